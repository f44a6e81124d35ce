//! `conda-docker build SPEC...` and `--file environment.yml`: solved for
//! the image's platform against a real channel (served over HTTP by the
//! test, and as `file://`), fetched into rattler's cache, built.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use conda_docker::Image;
use serde_json::Value;

use crate::common::{self, ChannelServer, CondaChannel, cd_arch_output, require_tools};
use crate::fixtures::{busybox_base, conda_docker, failure};

/// A build isolated from the host: caches and config under `home`.
fn cd(home: &Path) -> Command {
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cd-cache"))
        .env("RATTLER_CACHE_DIR", home.join("rattler"));
    cmd
}

/// Every byte of every layer, uncompressed.
fn layer_bytes(path: &Path) -> Vec<u8> {
    let image = Image::open(path.to_str().unwrap()).unwrap();
    let mut all = Vec::new();
    for layer in image.layers() {
        flate2::read::MultiGzDecoder::new(layer.blob().open().unwrap())
            .read_to_end(&mut all)
            .unwrap();
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn package_downloads(server: &ChannelServer) -> usize {
    server.downloads(".conda") + server.downloads(".tar.bz2")
}

struct Setup {
    dir: tempfile::TempDir,
    channel: CondaChannel,
    server: ChannelServer,
    base: PathBuf,
    home: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let base = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&base)
        .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    Setup {
        dir,
        channel,
        server,
        base,
        home,
    }
}

impl Setup {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `build -q --json -b BASE --override-channels -c SERVER ARGS...`.
    fn build(&self, args: &[&str]) -> Value {
        let output = common::run(
            cd(&self.home)
                .args(["build", "-q", "--json", "--override-channels", "-c"])
                .arg(self.server.url())
                .arg("-b")
                .arg(format!("docker-archive:{}", self.base.display()))
                .args(args),
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

#[test]
fn specs_are_solved_fetched_and_built_and_the_lock_file_rebuilds_the_same_image() {
    require_tools!("busybox", "podman", "runc");
    let s = setup();
    let first = s.out("first.tar");
    let lock = s.out("env.lock");
    let report = s.build(&[
        "cd-arch",
        "-o",
        first.to_str().unwrap(),
        "-i",
        "solved:1",
        "--lock-file",
        lock.to_str().unwrap(),
    ]);
    assert_eq!(report["architecture"], "amd64");
    let downloads = package_downloads(&s.server);
    assert!(
        downloads >= 3,
        "cd-arch, cd-lib and cd-data fetched: {downloads}"
    );
    let lock_text = std::fs::read_to_string(&lock).unwrap();
    assert!(
        lock_text.contains("# platform: linux-64\n@EXPLICIT\n"),
        "{lock_text}"
    );
    assert!(
        lock_text.contains("linux-64/cd-lib-2.0-0.conda#sha256:"),
        "the newest cd-lib: {lock_text}"
    );

    // A warm cache: nothing is downloaded again.
    let second = s.out("second.tar");
    let again = s.build(&["cd-arch", "-o", second.to_str().unwrap(), "-i", "solved:1"]);
    assert_eq!(
        package_downloads(&s.server),
        downloads,
        "no second download"
    );
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);

    // The lock file builds the identical image without a solve.
    let from_lock = s.out("from-lock.tar");
    let locked = common::run(
        cd(&s.home)
            .args(["build", "-q", "--json", "--file"])
            .arg(&lock)
            .arg("-b")
            .arg(format!("docker-archive:{}", s.base.display()))
            .args(["-o", from_lock.to_str().unwrap(), "-i", "solved:1"]),
    );
    let locked: Value = serde_json::from_slice(&locked.stdout).unwrap();
    assert_eq!(locked["id"], report["id"], "same config");
    assert_eq!(locked["manifest_digest"], report["manifest_digest"]);

    let Some(podman) = common::Podman::new() else {
        return;
    };
    podman.load(&first);
    assert_eq!(
        podman.run("solved:1", &["cd-arch"]),
        cd_arch_output("linux-64")
    );
}

#[test]
fn other_platforms_and_environment_files_are_solved_for_the_image() {
    let s = setup();
    // linux-aarch64 on this x86_64 host, from the file:// channel.
    let arm = s.out("arm.tar");
    let output = common::run(
        cd(&s.home)
            .args(["build", "-q", "--json", "--platform", "linux-aarch64"])
            .args(["--override-channels", "-c", &s.channel.url()])
            .args(["-b", "scratch", "cd-arch", "cd-lib<2", "-o"])
            .arg(&arm),
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["architecture"], "arm64");
    let bytes = layer_bytes(&arm);
    assert!(
        contains(&bytes, "cd-lib 1.0 linux-aarch64"),
        "cd-lib<2 from aarch64"
    );
    assert!(contains(&bytes, "linux-aarch64\n"));
    assert!(!contains(&bytes, "linux-64\n"), "no linux-64 package");
    assert_eq!(package_downloads(&s.server), 0, "file:// needs no server");

    // environment.yml: its channels and dependencies.
    let env_file = s.out("environment.yml");
    std::fs::write(
        &env_file,
        format!(
            "name: demo\nchannels:\n  - {}\ndependencies:\n  - cd-arch\n  - cd-lib<2\n",
            s.server.url()
        ),
    )
    .unwrap();
    let from_yaml = s.out("yaml.tar");
    common::run(
        cd(&s.home)
            .args(["build", "-q", "--override-channels", "--file"])
            .arg(&env_file)
            .arg("-b")
            .arg(format!("docker-archive:{}", s.base.display()))
            .arg("-o")
            .arg(&from_yaml),
    );
    let bytes = layer_bytes(&from_yaml);
    assert!(contains(&bytes, "cd-lib 1.0 linux-64"));

    // A pip: section is refused unless --ignore-pip.
    std::fs::write(
        &env_file,
        "channels: [x]\ndependencies:\n  - cd-arch\n  - pip:\n    - requests\n",
    )
    .unwrap();
    let err = failure(cd(&s.home).args(["build", "--file"]).arg(&env_file).args([
        "-b",
        "scratch",
        "-o",
        s.out("pip.tar").to_str().unwrap(),
    ]));
    assert!(
        err.contains("environment.yml:4: a `pip:` section (requests)"),
        "{err}"
    );
    assert!(err.contains("--ignore-pip"), "{err}");
}

#[test]
fn bad_solves_and_bad_downloads_fail_cleanly() {
    let s = setup();
    let out = s.out("bad.tar");
    let fails = |args: &[&str]| {
        let mut cmd = cd(&s.home);
        cmd.args(["build", "-q", "--override-channels", "-b", "scratch", "-o"])
            .arg(&out)
            .args(args);
        let err = failure(&mut cmd);
        assert!(!out.exists(), "nothing at -o after: {err}");
        err
    };
    let url = s.server.url();
    let err = fails(&["-c", &url, "no-such-package"]);
    assert!(err.contains("no package named `no-such-package`"), "{err}");
    assert!(err.contains(&url), "names the channels searched: {err}");

    // The solver's explanation keeps its tree layout, over several lines.
    let unsolvable = common::run_unchecked(
        cd(&s.home)
            .args(["build", "-q", "--override-channels", "-b", "scratch", "-o"])
            .arg(&out)
            .args(["-c", &url, "cd-arch", "cd-lib>=3"]),
    );
    assert_eq!(unsolvable.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unsolvable.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0], "error: the specs cannot be satisfied together:",
        "{err}"
    );
    assert!(
        lines.len() >= 2 && lines[1..].iter().all(|l| l.starts_with("  ")),
        "{err}"
    );
    assert!(err.contains("cd-lib"), "{err}");
    assert!(!out.exists());

    let err = fails(&["-c", "http://127.0.0.1:9/nowhere", "cd-arch"]);
    assert!(err.contains("127.0.0.1:9"), "{err}");

    let err = fails(&["-c", &url, "cd-arch", "--virtual-package", "cuda"]);
    assert!(err.contains("__NAME=VERSION"), "{err}");

    // A package whose bytes do not match its sha256: refused, not cached.
    s.server.corrupt("cd-arch-1.0-0.conda");
    let err = fails(&["-c", &url, "cd-arch"]);
    assert!(err.contains("cd-arch-1.0-0"), "{err}");
    s.server.restore("cd-arch-1.0-0.conda");
    common::run(
        cd(&s.home)
            .args(["build", "-q", "--override-channels", "-b", "scratch", "-o"])
            .arg(&out)
            .args(["-c", &url, "cd-arch"]),
    );
    assert!(out.exists());
}

#[test]
fn pixi_and_conda_lock_files_build_without_a_solve() {
    let s = setup();
    let records = s
        .channel
        .with_dependencies_in("linux-aarch64", &["cd-arch"]);
    let lock = s.out("pixi.lock");
    common::write_pixi_lock(
        &lock,
        "linux-aarch64",
        &["default", "other"],
        &s.channel.url(),
        &records,
    );

    let out = s.out("locked.tar");
    let report: Value = serde_json::from_slice(
        &common::run(
            cd(&s.home)
                .args(["build", "-q", "--json", "--platform", "linux-aarch64"])
                .args(["-b", "scratch", "--file"])
                .arg(&lock)
                .arg("-o")
                .arg(&out),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(report["architecture"], "arm64");
    let packages = crate::fixtures::built_packages(&report);
    assert_eq!(packages.len(), records.len(), "{packages:?}");
    assert!(contains(&layer_bytes(&out), "linux-aarch64\n"));

    let fails = |extra: &[&str]| {
        let mut cmd = cd(&s.home);
        cmd.args(["build", "-q", "-b", "scratch", "--file"])
            .arg(&lock)
            .args(extra)
            .arg("-o")
            .arg(s.out("never.tar"));
        let err = failure(&mut cmd);
        assert!(!s.out("never.tar").exists());
        err
    };
    let err = fails(&[]);
    assert!(err.contains("locks nothing for linux-64"), "{err}");
    assert!(err.contains("linux-aarch64"), "{err}");
    let err = fails(&["--platform", "linux-aarch64", "--pixi-env", "nope"]);
    assert!(err.contains("no environment `nope`"), "{err}");
    assert!(
        err.contains("default, other") || err.contains("other, default"),
        "{err}"
    );
    std::fs::write(&lock, "version: 6\nenvironments: [\n").unwrap();
    let err = fails(&["--platform", "linux-aarch64"]);
    assert!(err.contains("pixi.lock:"), "{err}");
    assert!(err.contains("not a valid lock file"), "{err}");
}

#[test]
fn the_build_env_example_solves_and_writes_an_archive() {
    let s = setup();
    let out = s.out("example.tar");
    let output = common::run(
        crate::fixtures::example("build_env")
            .env_clear()
            .env("HOME", &s.home)
            .env("RATTLER_CACHE_DIR", s.home.join("rattler"))
            .env("CONDA_DOCKER_CACHE_DIR", s.home.join("cd-cache"))
            .args(["-c", &s.server.url()])
            .arg(format!("docker-archive:{}", s.base.display()))
            .args(["example-image:123456"])
            .arg(&out)
            .args(["cd-arch", "cd-lib<2"]),
    );
    assert!(common::stdout(&output).starts_with("example-image:123456 -> "));
    let image = Image::open(out.to_str().unwrap()).unwrap();
    assert_eq!(
        image.name().unwrap().to_string(),
        "docker.io/library/example-image:123456"
    );
    assert!(contains(&layer_bytes(&out), "cd-lib 1.0 linux-64"));
}

/// A `conda-lock.yml` as conda-lock 2 writes it (format version 1).
fn conda_lock_yml(records: &[rattler_conda_types::RepoDataRecord], url: &str) -> String {
    let mut text = format!(
        "version: 1\nmetadata:\n  content_hash:\n    linux-64: x\n  channels:\n  - url: {url}\n    used_env_vars: []\n  platforms:\n  - linux-64\n  sources:\n  - environment.yml\npackage:\n"
    );
    for record in records {
        let p = &record.package_record;
        let mut depends = String::new();
        for spec in &p.depends {
            let (name, constraint) = spec.split_once(' ').unwrap_or((spec, ""));
            depends.push_str(&format!("    {name}: '{constraint}'\n"));
        }
        text.push_str(&format!(
            "- name: {}\n  version: '{}'\n  manager: conda\n  platform: linux-64\n  dependencies:{}\n{}  url: {}\n  hash:\n    md5: {}\n    sha256: {}\n  category: main\n  optional: false\n",
            p.name.as_normalized(),
            p.version,
            if depends.is_empty() { " {}" } else { "" },
            depends,
            record.url,
            CondaChannel::md5_of(record),
            CondaChannel::sha256_of(record),
        ));
    }
    text
}

#[test]
fn conda_lock_files_build_too() {
    let s = setup();
    let records = s.channel.with_dependencies_in("linux-64", &["cd-arch"]);
    let lock = s.out("conda-lock.yml");
    std::fs::write(&lock, conda_lock_yml(&records, &s.channel.url())).unwrap();
    let out = s.out("conda-lock.tar");
    let output = common::run(
        cd(&s.home)
            .args(["build", "-q", "--json", "-b", "scratch", "--file"])
            .arg(&lock)
            .arg("-o")
            .arg(&out),
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let layers = report["conda_layers"].as_array().unwrap();
    assert_eq!(layers.len(), records.len(), "{report}");
    assert!(contains(&layer_bytes(&out), "linux-64\n"));
}
