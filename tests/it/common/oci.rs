//! skopeo and umoci: independent readers and writers of image formats.

use std::path::Path;
use std::process::Command;

use super::process::run;
use super::tools::{expect_tool, is_root};

/// `skopeo inspect EXTRA... REFERENCE`, parsed as JSON.
///
/// `extra` carries flags such as `--raw`, `--config` or
/// `--tls-verify=false`; `reference` is e.g. `docker-archive:/x.tar`,
/// `oci:/layout:tag` or `docker://127.0.0.1:5000/r:t`.
pub fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let output = run(Command::new(expect_tool("skopeo"))
        .arg("inspect")
        .args(extra)
        .arg(reference));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "skopeo inspect {reference} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `skopeo --insecure-policy copy EXTRA... SRC DST`.
///
/// `--insecure-policy` spares us `/etc/containers/policy.json`, which a
/// `--no-install-recommends` install may not provide; `extra` carries e.g.
/// `--dest-tls-verify=false` or `--format oci`.
pub fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) {
    run(Command::new(expect_tool("skopeo"))
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(extra)
        .args([src, dst]));
}

/// `umoci unpack --image LAYOUT:TAG BUNDLE`: verifies every blob digest and
/// leaves the filesystem in `BUNDLE/rootfs` (`bundle` must not exist yet).
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    run(umoci()
        .arg("unpack")
        .args(rootless())
        .arg("--image")
        .arg(image_ref(layout, tag))
        .arg(bundle));
}

/// Writes an OCI image layout at `layout` (created if missing) whose `tag`
/// is one layer holding the contents of `rootfs`, written by umoci.
///
/// Uses `new` + `unpack` + `repack` rather than `umoci insert`: umoci 0.4.7's
/// `insert` leaves the layer tar without its end-of-archive blocks.
pub fn umoci_layout_from_rootfs(rootfs: &Path, layout: &Path, tag: &str) {
    if !layout.join("index.json").exists() {
        run(umoci().args(["init", "--layout"]).arg(layout));
    }
    let image = image_ref(layout, tag);
    run(umoci().args(["new", "--image"]).arg(&image));
    let scratch = tempfile::Builder::new()
        .prefix("umoci-bundle-")
        .tempdir()
        .expect("bundle temp dir");
    let bundle = scratch.path().join("bundle");
    umoci_unpack(layout, tag, &bundle);
    // `cp -a` keeps owners, modes, mtimes and symlinks exactly as given.
    let mut source = rootfs.as_os_str().to_owned();
    source.push("/.");
    run(Command::new("cp")
        .arg("-a")
        .arg(source)
        .arg(bundle.join("rootfs")));
    run(umoci()
        .arg("repack")
        .args(rootless())
        .arg("--image")
        .arg(&image)
        .arg(&bundle));
}

fn umoci() -> Command {
    Command::new(expect_tool("umoci"))
}

/// umoci refuses to unpack owners it cannot chown to unless told it is
/// rootless; CI runs as root, a developer may not.
fn rootless() -> &'static [&'static str] {
    if is_root() { &[] } else { &["--rootless"] }
}

fn image_ref(layout: &Path, tag: &str) -> String {
    format!("{}:{tag}", layout.display())
}
