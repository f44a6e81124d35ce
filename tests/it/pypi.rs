//! PyPI wheels from a pixi.lock (issue 16 §1): installed by the wheel
//! spec into layers of their own above the conda layers, and refused by
//! name when they cannot be (an sdist, a git or path entry, no sha256,
//! wrong bytes, tags that do not suit the image, an unreachable URL).
//!
//! The layer tests run on the conda fixtures' python stand-in (3.12);
//! the image test packages the machine's real CPython 3.11 and runs the
//! wheels in podman, including `pip install` as a non-root `--owner`
//! (issue 16 §2).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use conda_docker::Image;
use serde_json::Value;

use crate::common::{
    self, ChannelServer, CondaChannel, PypiEntry, WheelFile, write_pixi_lock_v6, write_wheel,
};
use crate::fixtures::{conda_docker, failure};

/// A pure wheel `NAME` 1.0 whose module prints `MESSAGE` from `main()`,
/// with the console script `NAME = NAME:main`, a `.data` script, a data
/// file and a header.
fn pure_wheel(dir: &Path, name: &str, message: &str) -> (PathBuf, String) {
    let module = format!("def main():\n    print({message:?})\n");
    let script = format!("#!python\nimport {name}\n{name}.main()\n");
    write_wheel(
        dir,
        (name, "1.0", "py3-none-any"),
        &[
            WheelFile {
                path: &format!("{name}/__init__.py"),
                bytes: module.as_bytes(),
                executable: false,
            },
            WheelFile {
                path: &format!("{name}-1.0.data/scripts/{name}-raw"),
                bytes: script.as_bytes(),
                executable: true,
            },
            WheelFile {
                path: &format!("{name}-1.0.data/data/share/{name}/note.txt"),
                bytes: b"data\n",
                executable: false,
            },
            WheelFile {
                path: &format!("{name}-1.0.data/headers/{name}.h"),
                bytes: b"#define ANSWER 42\n",
                executable: false,
            },
        ],
        Some(&format!("[console_scripts]\n{name} = {name}:main\n")),
    )
}

/// Every file of the layers above the first `skip`, by path: (content,
/// mode, uid), top layer winning.
fn files(image: &Path, skip: usize) -> BTreeMap<String, (Vec<u8>, u32, u64)> {
    let image = Image::open(image.to_str().unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for layer in &image.layers()[skip..] {
        let mut archive = tar::Archive::new(layer.uncompressed().unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let (mode, uid) = (
                entry.header().mode().unwrap(),
                entry.header().uid().unwrap(),
            );
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            out.insert(path, (bytes, mode, uid));
        }
    }
    out
}

/// A build of `lock` on `base` into `out`, with the test's own caches.
fn build_cmd(d: &Path, lock: &Path, base: &str, out: &Path) -> Command {
    let mut cmd = conda_docker();
    cmd.env("HOME", d.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", d.join("cache"))
        .env("CONDA_PKGS_DIRS", d.join("pkgs"))
        .env("RATTLER_CACHE_DIR", d.join("rattler"))
        .args(["build", "-q", "--json", "-b", base, "--file"])
        .arg(lock)
        .arg("-o")
        .arg(out);
    cmd
}

fn build(d: &Path, lock: &Path, base: &str, out: &Path, extra: &[&str]) -> Value {
    let mut cmd = build_cmd(d, lock, base, out);
    cmd.args(extra);
    serde_json::from_slice(&common::run(&mut cmd).stdout).unwrap()
}

/// The packages of each conda layer of a `--json` report, and its source.
fn layers(report: &Value) -> Vec<(Vec<String>, String)> {
    report["conda_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let packages = l["packages"].as_array().unwrap();
            let names = packages.iter().map(|p| p.as_str().unwrap().to_owned());
            (names.collect(), l["source"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn wheels_get_layers_of_their_own_above_the_conda_layers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let records = channel.with_dependencies(&["python"]);
    let wheels = d.join("served");
    let (_, alpha_sha) = pure_wheel(&wheels, "alpha", "alpha says hi");
    let (_, beta_sha) = pure_wheel(&wheels, "beta_pkg", "beta says hi");
    let server = ChannelServer::serve(&wheels);
    let entry = |name: &str, sha: &str| PypiEntry {
        name: name.replace('_', "-"),
        version: "1.0".into(),
        location: format!("{}{name}-1.0-py3-none-any.whl", server.url()),
        sha256: Some(sha.to_owned()),
    };
    let project = d.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("pixi.toml"),
        "[workspace]\nname = 'p'\n[pypi-dependencies]\nalpha = '*'\n",
    )
    .unwrap();
    let lock = project.join("pixi.lock");
    let pypi = [entry("alpha", &alpha_sha), entry("beta_pkg", &beta_sha)];
    write_pixi_lock_v6(&lock, &channel.url(), &records, &pypi);

    let first = build(d, &lock, "scratch", &d.join("a.tar"), &[]);
    let built = layers(&first);
    let n = built.len();
    assert_eq!(built[n - 2].0, ["alpha-1.0-py3-none-any.whl"], "{built:?}");
    assert_eq!(built[n - 1].0, ["beta_pkg-1.0-py3-none-any.whl"]);
    assert!(built[..n - 2].iter().all(|(p, _)| !p[0].ends_with(".whl")));

    let files = files(&d.join("a.tar"), 0);
    let site = "opt/conda/lib/python3.12/site-packages";
    let text = |path: &str| {
        let (bytes, ..) = files.get(path).unwrap_or_else(|| panic!("{path} missing"));
        String::from_utf8(bytes.clone()).unwrap()
    };
    assert_eq!(
        text(&format!("{site}/alpha-1.0.dist-info/INSTALLER")),
        "conda-docker\n"
    );
    // Only the manifest's direct dependency is REQUESTED.
    assert!(files.contains_key(&format!("{site}/alpha-1.0.dist-info/REQUESTED")));
    assert!(!files.contains_key(&format!("{site}/beta_pkg-1.0.dist-info/REQUESTED")));
    let console = text("opt/conda/bin/alpha");
    assert!(
        console.starts_with("#!/opt/conda/bin/python3.12\n"),
        "{console}"
    );
    assert!(console.contains("from alpha import main"), "{console}");
    let raw = text("opt/conda/bin/alpha-raw");
    assert_eq!(
        raw,
        "#!/opt/conda/bin/python3.12\nimport alpha\nalpha.main()\n"
    );
    assert_eq!(files["opt/conda/bin/alpha-raw"].1 & 0o111, 0o111);
    assert_eq!(text("opt/conda/share/alpha/note.txt"), "data\n");
    assert_eq!(
        text("opt/conda/include/python3.12/alpha/alpha.h"),
        "#define ANSWER 42\n"
    );
    let record = text(&format!("{site}/alpha-1.0.dist-info/RECORD"));
    for listed in [
        "alpha/__init__.py,sha256=",
        "../../../bin/alpha,sha256=",
        "../../../bin/alpha-raw,sha256=",
        "../../../share/alpha/note.txt,sha256=",
        "alpha-1.0.dist-info/INSTALLER,sha256=",
        "alpha-1.0.dist-info/RECORD,,",
    ] {
        assert!(
            record.lines().any(|l| l.starts_with(listed)),
            "{listed}: {record}"
        );
    }

    // The same inputs: the same image, every layer from the cache.
    let again = build(d, &lock, "scratch", &d.join("b.tar"), &[]);
    assert_eq!(again["manifest_digest"], first["manifest_digest"]);
    assert!(layers(&again).iter().all(|(_, source)| source == "cache"));

    // A changed wheel rebuilds its own layer only.
    let (_, beta2_sha) = pure_wheel(&wheels, "beta_pkg", "beta changed");
    let pypi = [entry("alpha", &alpha_sha), entry("beta_pkg", &beta2_sha)];
    write_pixi_lock_v6(&lock, &channel.url(), &records, &pypi);
    let changed = build(d, &lock, "scratch", &d.join("c.tar"), &[]);
    let sources: Vec<String> = layers(&changed).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sources[n - 1], "built", "{sources:?}");
    assert!(sources[..n - 1].iter().all(|s| s == "cache"), "{sources:?}");
    let digests = |report: &Value| -> Vec<Value> {
        let layers = report["conda_layers"].as_array().unwrap();
        layers.iter().map(|l| l["digest"].clone()).collect()
    };
    assert_eq!(digests(&changed)[..n - 1], digests(&first)[..n - 1]);
    assert_ne!(digests(&changed)[n - 1], digests(&first)[n - 1]);

    // --ignore-pypi leaves them out.
    let ignored = build(d, &lock, "scratch", &d.join("d.tar"), &["--ignore-pypi"]);
    assert_eq!(layers(&ignored).len(), n - 2);
}

#[test]
fn wheels_that_cannot_be_installed_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let records = channel.with_dependencies(&["python"]);
    let wheels = d.join("served");
    let (_, good_sha) = pure_wheel(&wheels, "good", "hi");
    let (_, cp311_sha) = write_wheel(
        &wheels,
        ("old", "1.0", "cp311-cp311-manylinux_2_17_x86_64"),
        &[],
        None,
    );
    let server = ChannelServer::serve(&wheels);
    let url = |file: &str| format!("{}{file}", server.url());
    let lock = d.join("pixi.lock");
    let out = d.join("never.tar");
    let refuse = |entry: PypiEntry| {
        write_pixi_lock_v6(&lock, &channel.url(), &records, &[entry]);
        let err = failure(&mut build_cmd(d, &lock, "scratch", &out));
        assert!(!out.exists(), "no output for: {err}");
        err
    };
    let entry = |name: &str, location: String, sha256: Option<&str>| PypiEntry {
        name: name.into(),
        version: "1.0".into(),
        location,
        sha256: sha256.map(str::to_owned),
    };

    let wrong = "ab".repeat(32);
    let err = refuse(entry(
        "good",
        url("good-1.0-py3-none-any.whl"),
        Some(&wrong),
    ));
    assert!(err.contains("wheel good-1.0-py3-none-any.whl"), "{err}");
    assert!(err.contains(&format!("has sha256 {good_sha}")), "{err}");
    assert!(
        err.contains(&format!("the lock file says {wrong}")),
        "{err}"
    );
    let cached = d.join("cache/wheels");
    let kept: Vec<_> = std::fs::read_dir(&cached).map_or(Vec::new(), |r| r.collect());
    assert!(
        kept.is_empty(),
        "wrong bytes never enter the cache: {kept:?}"
    );

    let err = refuse(entry("good", url("good-1.0.tar.gz"), Some(&good_sha)));
    assert!(err.contains("pixi.lock:"), "{err}");
    assert!(err.contains("PyPI package `good`"), "{err}");
    assert!(err.contains("source distribution"), "{err}");
    assert!(err.contains("--ignore-pypi"), "{err}");

    let err = refuse(entry("good", url("good-1.0-py3-none-any.whl"), None));
    assert!(err.contains("no sha256"), "{err}");

    let git =
        "git+https://github.com/example/good.git?rev=v1#0123456789abcdef0123456789abcdef01234567";
    let err = refuse(entry("good", git.into(), None));
    assert!(err.contains("git source"), "{err}");

    let err = refuse(entry("good", "./vendor/good".into(), None));
    assert!(err.contains("local path"), "{err}");

    let file = "old-1.0-cp311-cp311-manylinux_2_17_x86_64.whl";
    let err = refuse(entry("old", url(file), Some(&cp311_sha)));
    assert!(
        err.contains(&format!("wheel {file} does not suit the image")),
        "{err}"
    );
    assert!(err.contains("python is 3.12"), "{err}");

    let unreachable = "http://127.0.0.1:9/good-1.0-py3-none-any.whl".to_owned();
    let err = refuse(entry("good", unreachable, Some(&good_sha)));
    assert!(
        err.contains("cannot fetch wheel good-1.0-py3-none-any.whl"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:9"), "{err}");

    // A lock file with PyPI packages builds without them when asked.
    write_pixi_lock_v6(
        &lock,
        &channel.url(),
        &records,
        &[entry("good", git.into(), None)],
    );
    build(d, &lock, "scratch", &out, &["--ignore-pypi"]);
    assert!(out.exists());
}
