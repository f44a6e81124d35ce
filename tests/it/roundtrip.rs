//! Reading what we (and other tools) wrote, writing it again: same bytes,
//! base layers untouched.

use std::path::Path;

use conda_docker::Image;

use crate::common::{self, Podman, require_tools};
use crate::fixtures::busybox_app;

/// Every file under `dir`, with its bytes, for comparing layouts.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                files.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn our_outputs_read_back_and_rewrite_identically() {
    require_tools!("busybox");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = busybox_app(d, "round:trip");
    // Annotations are OCI-only: without them the docker-archive round trip
    // keeps the manifest digest too.
    assert!(image.annotations().is_empty());
    for (kind, first, second) in [
        ("docker-archive", d.join("a1.tar"), d.join("a2.tar")),
        ("oci-archive", d.join("o1.tar"), d.join("o2.tar")),
        ("oci", d.join("l1"), d.join("l2")),
    ] {
        image.write(&format!("{kind}:{}", first.display())).unwrap();
        let again = Image::open(&format!("{kind}:{}", first.display())).unwrap();
        assert_eq!(again.config_digest(), image.config_digest(), "{kind}");
        assert_eq!(again.manifest_digest(), image.manifest_digest(), "{kind}");
        again
            .write(&format!("{kind}:{}", second.display()))
            .unwrap();
        if kind == "oci" {
            assert!(tree(&first) == tree(&second), "{kind}: layouts differ");
        } else {
            let (a, b) = (
                std::fs::read(&first).unwrap(),
                std::fs::read(&second).unwrap(),
            );
            assert!(a == b, "{kind}: archives differ");
        }
    }
    // A bare path is sniffed: a docker-archive tar, an OCI tar, a layout dir.
    for path in [d.join("a1.tar"), d.join("o1.tar"), d.join("l1")] {
        let sniffed = Image::open(path.to_str().unwrap()).unwrap();
        assert_eq!(
            sniffed.config_digest(),
            image.config_digest(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn skopeo_docker_archive_keeps_its_layer_digests() {
    require_tools!("busybox", "skopeo", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rootfs = d.join("rootfs");
    common::busybox_rootfs(&rootfs);
    common::umoci_layout_from_rootfs(&rootfs, &d.join("umoci"), "base");
    common::skopeo_copy(
        &format!("oci:{}:base", d.join("umoci").display()),
        &format!(
            "docker-archive:{}:skopeo/base:1",
            d.join("skopeo.tar").display()
        ),
        &[],
    );

    for source in [
        format!("docker-archive:{}", d.join("skopeo.tar").display()),
        format!("oci:{}:base", d.join("umoci").display()),
    ] {
        let base = Image::open(&source).unwrap();
        let base_layers: Vec<_> = base.layers().iter().map(|l| l.digest()).collect();
        let mut image = base.clone();
        image
            .add_layer_contents([("added", b"x".as_slice())])
            .unwrap();
        let out = d.join("out");
        let _ = std::fs::remove_dir_all(&out);
        image.write(&format!("oci:{}:t", out.display())).unwrap();
        let raw = common::skopeo_inspect(&format!("oci:{}:t", out.display()), &["--raw"]);
        let written: Vec<String> = raw["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(written.len(), base_layers.len() + 1, "{source}");
        for (ours, theirs) in written.iter().zip(&base_layers) {
            assert_eq!(
                ours,
                &theirs.to_string(),
                "{source}: base layer digest changed"
            );
        }
        common::umoci_unpack(&out, "t", &d.join("bundle"));
        std::fs::remove_dir_all(d.join("bundle")).unwrap();
    }
}

#[test]
fn legacy_v1_tar_from_python_conda_docker_is_read() {
    require_tools!("busybox", "podman", "runc", "python3");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rootfs = d.join("rootfs");
    common::busybox_rootfs(&rootfs);
    let app = d.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("legacy.txt"), "from conda-docker 0.0.3\n").unwrap();
    let legacy = d.join("legacy.tar");
    let name = common::unique_name("legacy");
    if common::legacy_conda_docker_tar_layers(&legacy, &name, "old", &[&rootfs, &app]).is_none() {
        return;
    }
    let image = Image::open(&format!("docker-archive:{}", legacy.display())).unwrap();
    assert_eq!(image.layers().len(), 2);
    assert_eq!(
        image.name().unwrap().familiar_tagged().unwrap(),
        format!("{name}:old")
    );
    let modern = d.join("modern.tar");
    image.write_file(&modern).unwrap();

    let podman = Podman::new().unwrap();
    podman.load(&modern);
    // 0.0.3 set the entrypoint to `/bin/sh -c`, so the command is one string.
    let out = podman.run(&format!("{name}:old"), &["cat /legacy.txt"]);
    assert_eq!(out, "from conda-docker 0.0.3\n");
}
