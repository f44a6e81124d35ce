//! Images the product tests start from, built with the library itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use conda_docker::Image;

use crate::common;

/// A busybox base image (one layer from a fixture rootfs owned by a
/// non-root uid) written as a docker-archive at `dir/base.tar`.
pub fn busybox_base(dir: &Path) -> Image {
    let rootfs = dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    let mut image = Image::scratch().unwrap();
    image.add_layer_path(&rootfs, "/", None).unwrap();
    image.config_mut().set_env("PATH", "/bin");
    image
}

/// The base plus a layer with `/app/hello.txt` and an in-memory file.
pub fn busybox_app(dir: &Path, name: &str) -> Image {
    let mut image = busybox_base(dir);
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("sub")).unwrap();
    std::fs::write(app.join("hello.txt"), "hello from the new layer\n").unwrap();
    std::fs::write(app.join("sub/data"), "data\n").unwrap();
    image.add_layer_path(&app, "/app", None).unwrap();
    image
        .add_layer_contents([("etc/motd", b"in memory\n".as_slice())])
        .unwrap();
    image.config_mut().append_env("FOO=BAR").unwrap();
    image.config_mut().set_cmd(Some(vec!["/bin/sh".into()]));
    image.set_name(name).unwrap();
    image
}

/// The path of the `conda-docker` binary cargo built for these tests.
pub fn conda_docker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conda-docker"))
}

/// The path of an example binary (`cargo test` builds examples beside the
/// test binary's `deps/` folder).
pub fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let debug: PathBuf = exe.parent().and_then(Path::parent).unwrap().to_owned();
    Command::new(debug.join("examples").join(name))
}

/// Runs a command expected to fail and returns its one-line error: the
/// last line of stderr, after any progress lines (`[n/m] ...`).
pub fn failure(cmd: &mut Command) -> String {
    let output: Output = common::run_unchecked(cmd);
    assert!(!output.status.success(), "expected failure: {cmd:?}");
    let all = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert!(!all.contains("panicked"), "{all}");
    let (progress, errors): (Vec<&str>, Vec<&str>) = all.lines().partition(|l| l.starts_with('['));
    assert_eq!(errors.len(), 1, "one error line expected: {all}");
    assert!(progress.iter().all(|l| l.contains('/')), "{all}");
    let stderr = errors[0].to_owned();
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// The packages (`name-version-build`) in the layers of `build --json`'s
/// summary, sorted.
pub fn built_packages(summary: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = summary["conda_layers"]
        .as_array()
        .expect("conda_layers in the summary")
        .iter()
        .flat_map(|l| l["packages"].as_array().unwrap().clone())
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// The busybox base written as an OCI layout under `dir` and pushed to
/// `registry` as `base/busybox:1`; returns its reference there and the
/// manifest digest skopeo reports for it.
pub fn busybox_in_registry(dir: &Path, registry: &common::Registry) -> (String, serde_json::Value) {
    let layout = dir.join("base-oci");
    busybox_base(&dir.join("base"))
        .write(&format!("oci:{}:base", layout.display()))
        .unwrap();
    registry.push(&format!("oci:{}:base", layout.display()), "base/busybox:1");
    let digest = registry.inspect("base/busybox:1", &[])["Digest"].clone();
    (registry.image("base/busybox:1"), digest)
}
