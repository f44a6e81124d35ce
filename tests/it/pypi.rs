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
    self, ChannelServer, CondaChannel, PypiEntry, WheelFile, require_tools, write_pixi_lock_v6,
    write_wheel,
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

    // Reproducible: with empty caches, the same bytes.
    let fresh = build(&d.join("fresh"), &lock, "scratch", &d.join("e.tar"), &[]);
    assert_eq!(fresh["manifest_digest"], first["manifest_digest"]);
    assert!(layers(&fresh).iter().all(|(_, source)| source == "built"));

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

    let (_, linux_sha) = write_wheel(
        &wheels,
        ("native", "1.0", "py3-none-manylinux_2_17_x86_64"),
        &[],
        None,
    );
    let file = "native-1.0-py3-none-manylinux_2_17_x86_64.whl";
    let err = refuse(entry("native", url(file), Some(&linux_sha)));
    assert!(
        err.contains(&format!("wheel {file} does not suit the image")),
        "{err}"
    );
    assert!(
        err.contains("needs glibc 2.17, and the base image has no glibc"),
        "{err}"
    );

    let unreachable = "http://127.0.0.1:9/good-1.0-py3-none-any.whl".to_owned();
    let err = refuse(entry("good", unreachable, Some(&good_sha)));
    assert!(
        err.contains("cannot fetch wheel good-1.0-py3-none-any.whl"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:9"), "{err}");

    let good = entry("good", url("good-1.0-py3-none-any.whl"), Some(&good_sha));
    let no_python = channel.with_dependencies(&["cd-text"]);
    write_pixi_lock_v6(&lock, &channel.url(), &no_python, &[good]);
    let err = failure(&mut build_cmd(d, &lock, "scratch", &out));
    assert!(err.contains("PyPI packages (good)"), "{err}");
    assert!(err.contains("no python"), "{err}");
    assert!(!out.exists());

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

/// A C extension `cdext` with `answer() -> 42`, compiled against
/// `cpython`'s headers, as a `cpXY-cpXY-manylinux_2_17_x86_64` wheel.
fn extension_wheel(d: &Path, wheels: &Path, cpython: &common::CPython) -> (PathBuf, String) {
    let source = d.join("cdext.c");
    std::fs::write(
        &source,
        "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n\
         static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }\n\
         static PyMethodDef methods[] = {{\"answer\", answer, METH_NOARGS, \"42\"}, {NULL, NULL, 0, NULL}};\n\
         static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, \"cdext\", NULL, -1, methods};\n\
         PyMODINIT_FUNC PyInit_cdext(void) { return PyModule_Create(&module); }\n",
    )
    .unwrap();
    let library = d.join("cdext.so");
    common::run(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-O2", "-I"])
            .arg(cpython.include())
            .arg("-o")
            .arg(&library)
            .arg(&source),
    );
    let bytes = std::fs::read(&library).unwrap();
    let tag = cpython.tag();
    write_wheel(
        wheels,
        (
            "cdext",
            "1.0",
            &format!("{tag}-{tag}-manylinux_2_17_x86_64"),
        ),
        &[WheelFile {
            path: &format!("cdext.cpython-{}-x86_64-linux-gnu.so", &tag[2..]),
            bytes: &bytes,
            executable: true,
        }],
        None,
    )
}

/// The machine's real CPython 3.11 as the environment's python, on a base
/// with the host's glibc: the wheels import and run in podman, pip lists
/// them as installed by conda-docker, and with `--owner` the user can
/// `pip install` into the prefix (issue 16 §2).
#[test]
fn a_real_cpython_runs_the_wheels_in_podman() {
    require_tools!("busybox", "gcc", "ldd");
    let Some(cpython) = common::vanilla_cpython() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = d.join("channel");
    common::cpython_channel(&cpython, &channel);
    let wheels = channel.join("wheels");
    let (_, pure_sha) = pure_wheel(&wheels, "cdpure", "cdpure says hi");
    let (_, ext_sha) = extension_wheel(d, &wheels, &cpython);
    let (local_wheel, _) = pure_wheel(&d.join("local"), "cdlocal", "cdlocal says hi");
    let server = ChannelServer::serve(&channel);
    let records = common::channel_records(&channel, &server.url());
    let lock = d.join("pixi.lock");
    let ext_file = local_name(&wheels, "cdext");
    let pypi = [
        PypiEntry {
            name: "cdext".into(),
            version: "1.0".into(),
            location: format!("{}wheels/{ext_file}", server.url()),
            sha256: Some(ext_sha),
        },
        PypiEntry {
            name: "cdpure".into(),
            version: "1.0".into(),
            location: format!("{}wheels/cdpure-1.0-py3-none-any.whl", server.url()),
            sha256: Some(pure_sha),
        },
    ];
    write_pixi_lock_v6(&lock, &server.url(), &records, &pypi);
    let base = common::glibc_base(&d.join("base"), &common::python_binaries(&cpython));
    let base_layers = base.layers().len();
    base.write_file(d.join("base.tar")).unwrap();
    let base = format!("docker-archive:{}", d.join("base.tar").display());

    let report = build(d, &lock, &base, &d.join("py.tar"), &[]);
    let built = layers(&report);
    let names: Vec<&str> = built.iter().map(|(p, _)| p[0].as_str()).collect();
    let python = format!("python-{}-h0_cd", cpython.version);
    let wheel_names = [ext_file.as_str(), "cdpure-1.0-py3-none-any.whl"];
    assert_eq!(names, [&[python.as_str()][..], &wheel_names[..]].concat());
    let add = format!("{}:/srv/", local_wheel.display());
    let owned = build(
        d,
        &lock,
        &base,
        &d.join("owned.tar"),
        &["--owner", "1000:1000", "--add", &add],
    );
    assert_ne!(owned["manifest_digest"], report["manifest_digest"]);
    let owned_files = files(&d.join("owned.tar"), base_layers);
    let installer = "opt/conda/lib/python3.11/site-packages/cdpure-1.0.dist-info/INSTALLER";
    assert_eq!(
        owned_files[installer].2, 1000,
        "the wheel layers are the owner's too"
    );

    require_tools!("podman", "runc");
    let Some(podman) = common::Podman::new() else {
        return;
    };
    let id = podman.load(&d.join("py.tar"));
    let import = "import cdpure, cdext; print(cdext.answer())";
    assert_eq!(podman.run(&id, &["python", "-c", import]).trim(), "42");
    assert_eq!(podman.run(&id, &["cdpure"]).trim(), "cdpure says hi");
    assert_eq!(podman.run(&id, &["cdpure-raw"]).trim(), "cdpure says hi");
    let pip = ["python", "-m", "pip", "--disable-pip-version-check"];
    let listed = podman.run(&id, &[&pip[..], &["list", "-v"]].concat());
    for name in ["cdpure", "cdext"] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in pip list: {listed}"));
        assert!(line.trim_end().ends_with("conda-docker"), "{line}");
    }

    let id = podman.load(&d.join("owned.tar"));
    let install = "mkdir -p /opt/conda/var/tmp && export TMPDIR=/opt/conda/var/tmp HOME=/opt/conda/var/tmp && \
         python -m pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check \
         /srv/cdlocal-1.0-py3-none-any.whl && cdlocal && id -u";
    let output = podman.run_output(&["--user", "1000:1000"], &id, &["sh", "-c", install]);
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{out}\n{err}");
    assert!(out.contains("Successfully installed cdlocal-1.0"), "{out}");
    assert!(out.trim_end().ends_with("cdlocal says hi\n1000"), "{out}");
}

/// The file name of the one wheel of `name` in `dir`.
fn local_name(dir: &Path, name: &str) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with(&format!("{name}-")))
        .unwrap()
}
