//! `conda-docker build` from installed environments: real packages, real
//! caches in both layouts, images run by podman.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use conda_docker::Image;

use crate::common::{
    self, CacheLayout, CondaChannel, CondaEnv, Podman, cd_binary_output, cd_show_output,
    explicit_file, install_env_at, require_tools,
};
use crate::fixtures::{busybox_base, conda_docker, failure};

/// `conda-docker build` isolated from the host's caches and config: only
/// the env's own cache is searched, and our cache lives under `home`.
fn build_command(env: &CondaEnv, home: &Path) -> Command {
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cd-cache"));
    match env.layout {
        CacheLayout::Conda => cmd.env("CONDA_PKGS_DIRS", &env.cache_dir),
        // rattler's cache root holds the package cache in `pkgs/`.
        CacheLayout::Rattler => cmd.env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap()),
    };
    cmd
}

/// Installs `names` with a cache where the product looks for it.
fn install(channel: &CondaChannel, names: &[&str], layout: CacheLayout, root: &Path) -> CondaEnv {
    let cache = match layout {
        CacheLayout::Conda => root.join("pkgs"),
        CacheLayout::Rattler => root.join("rattler/pkgs"),
    };
    install_env_at(channel, names, layout, &root.join("env"), &cache)
}

fn build(env: &CondaEnv, home: &Path, base: &Path, out: &Path, name: &str) -> String {
    let output = common::run(
        build_command(env, home)
            .args(["build", "--json", "-p"])
            .arg(&env.prefix)
            .arg("-b")
            .arg(format!("docker-archive:{}", base.display()))
            .arg("-o")
            .arg(out)
            .args(["-i", name]),
    );
    common::stdout(&output)
}

/// Every byte of every layer (uncompressed) and of the config.
fn image_bytes(image: &Image) -> Vec<u8> {
    let mut all = image.config().to_bytes();
    for layer in image.layers() {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(layer.blob().open().unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        all.extend(raw);
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

struct Built {
    _dir: tempfile::TempDir,
    /// What `build --json` printed.
    report: String,
    out: PathBuf,
    env: CondaEnv,
    home: PathBuf,
}

fn install_and_build(
    channel: &CondaChannel,
    names: &[&str],
    layout: CacheLayout,
    base: &Path,
    name: &str,
) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let env = install(channel, names, layout, dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = dir.path().join("image.tar");
    let report = build(&env, &home, base, &out, name);
    Built {
        report,
        out,
        env,
        home,
        _dir: dir,
    }
}

#[test]
fn environment_image_runs_relocated_from_either_cache_layout() {
    require_tools!("busybox", "podman", "runc", "gcc");
    let dir = tempfile::tempdir().unwrap();
    let Some(channel) = CondaChannel::build(&dir.path().join("channel")) else {
        return;
    };
    let base = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&base)
        .unwrap();
    let name = common::unique_name("cd-env");
    let packages = ["cd-binary", "cd-link", "cd-noarch", "cd-leaf"];

    let rattler = install_and_build(
        &channel,
        &packages,
        CacheLayout::Rattler,
        &base,
        &format!("{name}:r"),
    );
    let conda = install_and_build(
        &channel,
        &packages,
        CacheLayout::Conda,
        &base,
        &format!("{name}:c"),
    );
    let from_rattler = Image::open(rattler.out.to_str().unwrap()).unwrap();
    let from_conda = Image::open(conda.out.to_str().unwrap()).unwrap();
    let layers = |i: &Image| i.layers().iter().map(|l| l.digest()).collect::<Vec<_>>();
    assert_eq!(
        layers(&from_rattler),
        layers(&from_conda),
        "same layers from either cache layout"
    );

    for built in [&rattler, &conda] {
        let bytes = image_bytes(&Image::open(built.out.to_str().unwrap()).unwrap());
        for host in [
            &built.env.prefix,
            &built.env.cache_dir,
            &built.home,
            &channel.dir,
        ] {
            let host = host.to_str().unwrap();
            assert!(
                !contains(&bytes, host),
                "host path {host} leaked into the image"
            );
        }
    }

    let podman = Podman::new().unwrap();
    podman.load(&rattler.out);
    let image = format!("{name}:r");
    assert_eq!(
        podman.run(&image, &["cd-show"]),
        cd_show_output("/opt/conda")
    );
    assert_eq!(
        podman.run(&image, &["cd-binary"]),
        cd_binary_output("/opt/conda")
    );
    let out = podman.run(
        &image,
        &[
            "sh",
            "-c",
            "readlink /opt/conda/lib/libcd.so; test -f /opt/conda/lib/python3.12/site-packages/cdpkg/__init__.py && echo noarch; test -x /opt/conda/bin/cd-entry && echo entry; ls /opt/conda/conda-meta; echo $CONDA_PREFIX; echo $PATH",
        ],
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("libcd.so.1"));
    assert_eq!(lines.next(), Some("noarch"));
    assert_eq!(lines.next(), Some("entry"));
    let rest: Vec<&str> = lines.collect();
    for package in [
        "cd-binary-1.0",
        "cd-text-1.0",
        "cd-link-1.0",
        "cd-noarch-1.0",
        "python-3.12.0",
    ] {
        assert!(
            rest.iter()
                .any(|l| l.starts_with(package) && l.ends_with(".json")),
            "{package}: {rest:?}"
        );
    }
    assert!(rest.contains(&"history"), "{rest:?}");
    assert!(rest.contains(&"/opt/conda"), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("/opt/conda/bin:")),
        "{rest:?}"
    );
}

#[test]
fn a_new_leaf_package_keeps_every_layer_below_it() {
    require_tools!("busybox");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let base = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&base)
        .unwrap();
    let without = install_and_build(
        &channel,
        &["cd-link", "cd-noarch", "cd-text"],
        CacheLayout::Rattler,
        &base,
        "a:1",
    );
    let with = install_and_build(
        &channel,
        &["cd-link", "cd-noarch", "cd-leaf"],
        CacheLayout::Rattler,
        &base,
        "a:1",
    );
    // The conda layers as `--json` reports them: packages and digest.
    let packages = |b: &Built| -> Vec<(String, String)> {
        let report: serde_json::Value = serde_json::from_str(&b.report).unwrap();
        report["conda_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["packages"].to_string(), l["digest"].to_string()))
            .collect()
    };
    let (before, after) = (packages(&without), packages(&with));
    let after_without_leaf: Vec<_> = after
        .iter()
        .filter(|(p, _)| !p.contains("cd-leaf"))
        .cloned()
        .collect();
    assert_eq!(
        after_without_leaf, before,
        "other layers keep their order and bytes"
    );
    assert_eq!(after.len(), before.len() + 1);

    // A rebuild gives the very same image.
    let again = dir.path().join("again.tar");
    build(&with.env, &with.home, &base, &again, "a:1");
    let id = |p: &Path| Image::open(p.to_str().unwrap()).unwrap().manifest_digest();
    assert_eq!(id(&again), id(&with.out));
}

#[test]
fn bad_environments_fail_cleanly() {
    require_tools!("busybox");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install(
        &channel,
        &["cd-text"],
        CacheLayout::Rattler,
        &dir.path().join("e"),
    );
    let home = dir.path().join("home");
    let out = dir.path().join("out.tar");
    let attempt = |args: &[&str], prefix: &Path| {
        let mut cmd = build_command(&env, &home);
        cmd.args(["build", "-b", "scratch", "-o"])
            .arg(&out)
            .arg("-p")
            .arg(prefix)
            .args(args);
        let line = failure(&mut cmd);
        assert!(!out.exists(), "{} left behind after: {line}", out.display());
        line
    };

    let line = attempt(&[], &dir.path().join("nope"));
    assert!(line.contains("does not exist"), "{line}");
    let line = attempt(&["-n", "other"], &env.prefix);
    assert!(line.contains("only one of"), "{line}");
    let line = attempt(&[], dir.path());
    assert!(line.contains("has no conda-meta"), "{line}");
    let mut cmd = build_command(&env, &home);
    cmd.args(["build", "-b", "scratch", "-n", "no-such-env", "-o"])
        .arg(&out);
    let line = failure(&mut cmd);
    assert!(
        line.contains("no environment named `no-such-env`") && line.contains(".conda/envs"),
        "{line}"
    );
    let mut cmd = build_command(&env, &home);
    cmd.args(["build", "-b", "scratch", "-o"]).arg(&out);
    let line = failure(&mut cmd);
    assert!(
        line.contains("none is active") && line.contains("--prefix"),
        "{line}"
    );

    // Packages missing from every cache, with no installed prefix to
    // rebuild them from (an explicit spec): fetched from their URLs into
    // rattler's cache; one that cannot be fetched is named.
    let spec = dir.path().join("explicit.txt");
    explicit_file(&env.repodata_records(), &spec);
    let moved = dir.path().join("moved-cache");
    std::fs::rename(&env.cache_dir, &moved).unwrap();
    let unreachable = dir.path().join("unreachable.txt");
    let text = std::fs::read_to_string(&spec).unwrap();
    let channel = channel.url();
    std::fs::write(
        &unreachable,
        text.replace(&channel, "http://127.0.0.1:9/channel/"),
    )
    .unwrap();
    let mut cmd = build_command(&env, &home);
    cmd.args(["build", "-q", "-b", "scratch", "-o"])
        .arg(&out)
        .arg("--file")
        .arg(&unreachable);
    let line = failure(&mut cmd);
    assert!(
        line.contains("cannot fetch") && line.contains("127.0.0.1:9"),
        "{line}"
    );
    assert!(!out.exists());
    let mut cmd = build_command(&env, &home);
    cmd.args(["build", "-q", "-b", "scratch", "-o"])
        .arg(&out)
        .arg("--file")
        .arg(&spec);
    common::run(&mut cmd);
    assert!(out.exists(), "built from packages fetched from the channel");
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_dir_all(&env.cache_dir).unwrap();
    std::fs::rename(&moved, &env.cache_dir).unwrap();

    // A base image for another architecture.
    let mut arm = busybox_base(&dir.path().join("armbase"));
    arm.config_mut().set_platform("linux", "arm64", Some("v8"));
    let arm_tar = dir.path().join("arm.tar");
    arm.write_file(&arm_tar).unwrap();
    let mut cmd = build_command(&env, &home);
    cmd.args(["build", "-o"])
        .arg(&out)
        .arg("-p")
        .arg(&env.prefix)
        .arg("-b")
        .arg(&arm_tar);
    let line = failure(&mut cmd);
    assert!(
        line.contains("linux/arm64") && line.contains("linux/amd64"),
        "{line}"
    );

    // An output that cannot be written.
    let mut cmd = build_command(&env, &home);
    cmd.args([
        "build",
        "-b",
        "scratch",
        "-o",
        "/proc/no/such/out.tar",
        "-p",
    ])
    .arg(&env.prefix);
    let line = failure(&mut cmd);
    assert!(line.contains("/proc/no/such/out.tar"), "{line}");

    // A corrupt record.
    let record = std::fs::read_dir(env.prefix.join("conda-meta"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    std::fs::write(&record, "{ not json").unwrap();
    let line = attempt(&[], &env.prefix);
    assert!(line.contains("conda-meta"), "{line}");
}

/// Writes `path` under the env prefix with `content`.
fn put(env: &CondaEnv, path: &str, content: &[u8]) {
    let path = env.prefix.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

#[test]
fn untracked_files_activation_and_layer_options() {
    require_tools!("busybox", "podman", "runc");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let base = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&base)
        .unwrap();
    let env = install(
        &channel,
        &["cd-link", "cd-noarch", "cd-leaf"],
        CacheLayout::Conda,
        &dir.path().join("e"),
    );
    let host = env.prefix.to_str().unwrap().to_owned();
    put(
        &env,
        "share/user/notes.txt",
        format!("data at {host}/share\n").as_bytes(),
    );
    put(&env, "lib/user.bin", format!("\0\0{host}\0").as_bytes());
    put(
        &env,
        "lib/python3.12/site-packages/__pycache__/x.cpython-312.pyc",
        b"\0pyc",
    );
    put(&env, "pkgs/leftover.txt", b"cache");
    std::os::unix::fs::symlink(
        format!("{host}/share/user/notes.txt"),
        env.prefix.join("notes-link"),
    )
    .unwrap();
    put(
        &env,
        "etc/conda/env_vars.d/cd.json",
        br#"{"CD_VAR": "from-env-vars-d"}"#,
    );
    put(
        &env,
        "conda-meta/state",
        br#"{"env_vars": {"STATE_VAR": "from-state"}}"#,
    );
    put(
        &env,
        "etc/conda/activate.d/cd.sh",
        b"export CD_HOME=\"$CONDA_PREFIX/share\"\n",
    );
    // A post-link script (as a package would ship it) is named, not run.
    put(
        &env,
        "bin/.cd-text-post-link.sh",
        b"echo ran > $PREFIX/post-link-ran\n",
    );
    let dist = "cd-text-1.0-0";
    let text_record = env.prefix.join(format!("conda-meta/{dist}.json"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&text_record).unwrap()).unwrap();
    record["files"]
        .as_array_mut()
        .unwrap()
        .push("bin/.cd-text-post-link.sh".into());
    std::fs::write(&text_record, serde_json::to_vec(&record).unwrap()).unwrap();
    let app = dir.path().join("app.py");
    std::fs::write(&app, "print('app')\n").unwrap();

    let home = dir.path().join("home");
    let out = dir.path().join("image.tar");
    let name = common::unique_name("cd-untracked");
    let report = common::run(
        build_command(&env, &home)
            .args(["build", "--json", "-p"])
            .arg(&env.prefix)
            .arg("-b")
            .arg(&base)
            .arg("-o")
            .arg(&out)
            .args([
                "-i",
                &name,
                "--max-layers",
                "4",
                "--env",
                "USER_VAR=1",
                "--cmd",
                "cd-show",
            ])
            .arg("--add")
            .arg(format!("{}:/app/app.py", app.display())),
    );
    let warnings = String::from_utf8_lossy(&report.stderr);
    assert!(
        warnings.contains("post-link script of cd-text-1.0"),
        "{warnings}"
    );
    assert!(warnings.contains("lib/user.bin"), "{warnings}");
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["layers"].as_array().unwrap().len(), 4, "{report}");
    assert_eq!(
        report["conda_layers"].as_array().unwrap().len(),
        1,
        "budget 4 = base + 1 conda + env + add"
    );

    let podman = Podman::new().unwrap();
    podman.load(&out);
    let got = podman.run(
        &name,
        &[
            "sh",
            "-c",
            "cat /opt/conda/share/user/notes.txt; readlink /opt/conda/notes-link; cat /app/app.py; \
             ls /opt/conda/lib/user.bin /opt/conda/pkgs /opt/conda/lib/python3.12/site-packages/__pycache__ 2>&1 | grep -c 'No such'; \
             echo $CD_VAR $STATE_VAR $CD_HOME $USER_VAR",
        ],
    );
    assert_eq!(
        got,
        "data at /opt/conda/share\n/opt/conda/share/user/notes.txt\nprint('app')\n3\nfrom-env-vars-d from-state /opt/conda/share 1\n"
    );
    assert_eq!(podman.run(&name, &[]), cd_show_output("/opt/conda"));

    // --no-untracked and --layering single.
    let out2 = dir.path().join("single.tar");
    let name2 = common::unique_name("cd-single");
    common::run(
        build_command(&env, &home)
            .args([
                "build",
                "-q",
                "--no-untracked",
                "--layering",
                "single",
                "-p",
            ])
            .arg(&env.prefix)
            .arg("-b")
            .arg(&base)
            .arg("-o")
            .arg(&out2)
            .args(["-i", &name2]),
    );
    let single = Image::open(out2.to_str().unwrap()).unwrap();
    assert_eq!(single.layers().len(), 3, "base + all packages + env layer");
    podman.load(&out2);
    let got = podman.run(
        &name2,
        &[
            "sh",
            "-c",
            "test -e /opt/conda/share/user/notes.txt || echo gone; cd-show",
        ],
    );
    assert_eq!(got, format!("gone\n{}", cd_show_output("/opt/conda")));

    // Another prefix inside the image: relocation and config follow it.
    let out3 = dir.path().join("srv.tar");
    let name3 = common::unique_name("cd-srv");
    common::run(
        build_command(&env, &home)
            .args(["build", "-q", "--prefix-in-image", "/srv/env", "-p"])
            .arg(&env.prefix)
            .arg("-b")
            .arg(&base)
            .arg("-o")
            .arg(&out3)
            .args(["-i", &name3]),
    );
    podman.load(&out3);
    let got = podman.run(
        &name3,
        &[
            "sh",
            "-c",
            "cd-show; echo $CONDA_PREFIX $CD_HOME; cat /srv/env/share/user/notes.txt",
        ],
    );
    assert_eq!(
        got,
        format!(
            "{}/srv/env /srv/env/share\ndata at /srv/env/share\n",
            cd_show_output("/srv/env")
        )
    );
}

#[test]
fn explicit_spec_builds_from_the_cache_and_bad_lines_are_named() {
    require_tools!("busybox", "podman", "runc");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install(
        &channel,
        &["cd-link", "cd-noarch", "cd-text"],
        CacheLayout::Conda,
        &dir.path().join("e"),
    );
    let spec = dir.path().join("explicit.txt");
    explicit_file(&env.repodata_records(), &spec);
    let home = dir.path().join("home");
    let out = dir.path().join("explicit.tar");
    let name = common::unique_name("cd-explicit");
    // The prefix is gone: only the spec and the package cache are left.
    std::fs::remove_dir_all(&env.prefix).unwrap();
    let report = common::run(
        build_command(&env, &home)
            .args(["build", "--json", "--file"])
            .arg(&spec)
            .args(["-b", "scratch", "-o"])
            .arg(&out)
            .args(["-i", &name]),
    );
    // The spec names no dependencies; the packages' own index.json does.
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let order: Vec<String> = report["conda_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["packages"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "cd-link-1.0-0",
            "cd-text-1.0-0",
            "python-3.12.0-0",
            "cd-noarch-1.0-0"
        ]
    );
    let image = Image::open(out.to_str().unwrap()).unwrap();
    assert_eq!(image.config().architecture(), Some("amd64"));
    let base = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&base)
        .unwrap();
    let on_busybox = dir.path().join("explicit-busybox.tar");
    common::run(
        build_command(&env, &home)
            .args(["build", "-q", "--file"])
            .arg(&spec)
            .arg("-b")
            .arg(&base)
            .arg("-o")
            .arg(&on_busybox)
            .args(["-i", &name]),
    );
    let podman = Podman::new().unwrap();
    podman.load(&on_busybox);
    assert_eq!(
        podman.run(&name, &["cd-show"]),
        cd_show_output("/opt/conda")
    );

    // A bad line is named by its number; nothing is written.
    let text = std::fs::read_to_string(&spec).unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(
        &bad,
        text.replacen("https://", "not a url ", 1)
            .replacen("file://", "not a url ", 1),
    )
    .unwrap();
    let broken_line = std::fs::read_to_string(&bad)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("not a url"))
        .unwrap()
        + 1;
    let bad_out = dir.path().join("bad.tar");
    let line = failure(
        build_command(&env, &home)
            .args(["build", "--file"])
            .arg(&bad)
            .args(["-b", "scratch", "-o"])
            .arg(&bad_out),
    );
    assert!(line.contains(&format!("bad.txt:{broken_line}:")), "{line}");
    assert!(!bad_out.exists());

    // An archive whose bytes do not match: named, not used.
    let record = env.record("cd-text");
    let folder = env.cache_dir.join(format!(
        "cd-text-1.0-{}",
        record.repodata_record.package_record.build
    ));
    std::fs::remove_dir_all(folder).unwrap();
    let archive = env
        .cache_dir
        .join(record.repodata_record.identifier.to_string());
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let line = failure(
        build_command(&env, &home)
            .args(["build", "--file"])
            .arg(&spec)
            .args(["-b", "scratch", "-o"])
            .arg(&bad_out),
    );
    assert!(
        line.contains("does not match the record of cd-text-1.0"),
        "{line}"
    );
    assert!(!bad_out.exists());
}

/// Builds `env` with its cache as set up, and returns the manifest digest.
fn digest_of_build(env: &CondaEnv, home: &Path, out: &Path) -> String {
    let _ = std::fs::remove_file(out);
    common::run(
        build_command(env, home)
            .args(["build", "-q", "-b", "scratch", "-o"])
            .arg(out)
            .arg("-p")
            .arg(&env.prefix),
    );
    Image::open(out.to_str().unwrap())
        .unwrap()
        .manifest_digest()
        .to_string()
}

#[test]
fn a_cleaned_cache_gives_the_same_image_from_the_prefix() {
    require_tools!("gcc");
    let dir = tempfile::tempdir().unwrap();
    let Some(channel) = CondaChannel::build(&dir.path().join("channel")) else {
        return;
    };
    let names = ["cd-binary", "cd-link", "cd-noarch", "cd-leaf"];
    let mut digests = Vec::new();
    for layout in [CacheLayout::Conda, CacheLayout::Rattler] {
        let root = dir.path().join(format!("{layout:?}"));
        let env = install(&channel, &names, layout, &root);
        let home = root.join("home");
        let out = root.join("out.tar");
        let cached = digest_of_build(&env, &home, &out);
        // `conda clean -a`: every cache is gone, ours too.
        std::fs::remove_dir_all(&env.cache_dir).unwrap();
        std::fs::remove_dir_all(&home).unwrap();
        let rebuilt = digest_of_build(&env, &home, &out);
        assert_eq!(
            rebuilt, cached,
            "{layout:?}: from the prefix = from the cache"
        );
        digests.push(cached);
    }
    // A prefix shorter than /opt/conda relocates forward just the same.
    let short = tempfile::Builder::new()
        .prefix("c")
        .rand_bytes(3)
        .tempdir_in("/tmp")
        .unwrap();
    assert!(short.path().as_os_str().len() < "/opt/conda".len());
    let cache = dir.path().join("short-pkgs");
    let env = install_env_at(&channel, &names, CacheLayout::Conda, short.path(), &cache);
    let home = dir.path().join("short-home");
    let out = dir.path().join("short.tar");
    assert_eq!(
        digest_of_build(&env, &home, &out),
        digests[0],
        "same packages, same image"
    );
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::remove_dir_all(&home).unwrap();
    assert_eq!(
        digest_of_build(&env, &home, &out),
        digests[0],
        "and from a short prefix"
    );

    // A prefix so long that shebangs naming it were cut to `#!/usr/bin/env`.
    let long = dir.path().join("l".repeat(110));
    let cache = dir.path().join("long-pkgs");
    let long_env = install_env_at(&channel, &names, CacheLayout::Rattler, &long, &cache);
    let tool = std::fs::read_to_string(long.join("bin/cd-leaf-tool")).unwrap();
    assert!(
        !tool.starts_with(&format!("#!{}", long.display())),
        "shortened: {tool}"
    );
    let long_home = dir.path().join("long-home");
    std::fs::remove_dir_all(&cache).unwrap();
    assert_eq!(
        digest_of_build(&long_env, &long_home, &out),
        digests[1],
        "shebang restored"
    );

    // A file edited after install cannot be passed off as the package's:
    // one with a placeholder (read whole), and one relocation never touched
    // (copied as it streams), same size, other bytes.
    let refused = |file: &str, package: &str| {
        let _ = std::fs::remove_dir_all(&home);
        let _ = std::fs::remove_file(&out);
        let line = failure(
            build_command(&env, &home)
                .args(["build", "-b", "scratch", "-o"])
                .arg(&out)
                .arg("-p")
                .arg(&env.prefix),
        );
        assert!(
            line.contains(file)
                && line.contains(package)
                && line.contains("modified after install"),
            "{line}"
        );
        assert!(!out.exists());
    };
    let config = short.path().join("share/cd-text/config.txt");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}edited\n")).unwrap();
    refused("config.txt", "cd-text-1.0");
    std::fs::write(&config, text).unwrap();
    std::fs::write(short.path().join("share/cd-leaf/leaf.txt"), "LEAF\n").unwrap();
    refused("leaf.txt", "cd-leaf-1.0");
}

#[test]
fn named_environment_and_caches_from_condarc_give_a_valid_prefix() {
    require_tools!("umoci");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let envs = dir.path().join("my-envs");
    let pkgs = dir.path().join("my-pkgs");
    let env = install_env_at(
        &channel,
        &["cd-noarch", "cd-leaf"],
        CacheLayout::Conda,
        &envs.join("work"),
        &pkgs,
    );
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".condarc"),
        format!(
            "channels: [conda-forge]\npkgs_dirs:\n  - {}\nenvs_dirs:\n  - {}\n",
            pkgs.display(),
            envs.display()
        ),
    )
    .unwrap();
    let layout = dir.path().join("layout");
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cd-cache"))
        .args([
            "build", "-q", "-n", "work", "-b", "scratch", "--format", "oci", "-i", "work:1", "-o",
        ])
        .arg(&layout);
    common::run(&mut cmd);

    // The image's /opt/conda is a prefix rattler (like conda) can read, and
    // every file its records list is there.
    let bundle = dir.path().join("bundle");
    common::umoci_unpack(&layout, "1", &bundle);
    let prefix = bundle.join("rootfs/opt/conda");
    let records = rattler_conda_types::PrefixRecord::collect_from_prefix::<
        rattler_conda_types::PrefixRecord,
    >(&prefix)
    .unwrap();
    assert_eq!(records.len(), env.records.len());
    for record in &records {
        assert!(record.extracted_package_dir.is_none() && record.requested_specs.is_empty());
        for file in &record.files {
            assert!(
                prefix.join(file).symlink_metadata().is_ok(),
                "{} lists missing {}",
                record.repodata_record.identifier,
                file.display()
            );
        }
    }
    let history = std::fs::read_to_string(prefix.join("conda-meta/history")).unwrap();
    assert!(
        history.starts_with("==> 1970-01-01 00:00:00 <==\n"),
        "{history}"
    );
    // The channel by name, though conda recorded it as `.../channel/linux-64`.
    assert!(history.contains("+channel::cd-leaf-1.0-0\n"), "{history}");
}
