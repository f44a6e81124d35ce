//! Images we write, checked by independent consumers: podman, docker (via
//! podman's socket), skopeo and umoci.

use std::os::unix::fs::MetadataExt;

use crate::common::{self, Podman, require_tools};
use crate::fixtures::busybox_app;

#[test]
fn docker_archive_loads_and_runs_in_podman_and_docker() {
    require_tools!("busybox", "podman", "runc", "docker");
    let dir = tempfile::tempdir().unwrap();
    let name = common::unique_name("cd-archive");
    let image = busybox_app(dir.path(), &format!("{name}:v1"));
    let tar = dir.path().join("out.tar");
    image
        .write(&format!("docker-archive:{}", tar.display()))
        .unwrap();

    let podman = Podman::new().unwrap();
    podman.load(&tar);
    let out = podman.run(
        &format!("{name}:v1"),
        &["/bin/sh", "-c", "cat /app/hello.txt /etc/motd; echo $FOO; stat -c '%u:%g %a' /app/hello.txt /bin/busybox"],
    );
    assert_eq!(
        out,
        "hello from the new layer\nin memory\nBAR\n0:0 644\n0:0 755\n"
    );

    let docker = podman.docker_service().unwrap();
    docker.load(&tar);
    let out = docker.run(&format!("{name}:v1"), &["cat", "/app/sub/data"]);
    assert_eq!(out, "data\n");
}

#[test]
fn oci_layout_passes_skopeo_and_umoci() {
    require_tools!("busybox", "skopeo", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_app(dir.path(), "layout-test:v2");
    let layout = dir.path().join("layout");
    image.write(&format!("oci:{}", layout.display())).unwrap();

    let raw = common::skopeo_inspect(&format!("oci:{}:v2", layout.display()), &["--raw"]);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(raw["layers"].as_array().unwrap().len(), 3);
    let config = common::skopeo_inspect(&format!("oci:{}:v2", layout.display()), &["--config"]);
    assert_eq!(config["config"]["Env"][1], "FOO=BAR");

    let bundle = dir.path().join("bundle");
    common::umoci_unpack(&layout, "v2", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/hello.txt")).unwrap(),
        "hello from the new layer\n"
    );
    // The fixture files belong to 1234:5678 on the host; the layer says 0:0.
    let meta = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
}

#[test]
fn oci_archive_copies_with_skopeo() {
    require_tools!("busybox", "skopeo", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_app(dir.path(), "archive-test:v3");
    let archive = dir.path().join("image.oci.tar");
    image
        .write(&format!("oci-archive:{}", archive.display()))
        .unwrap();

    let copy = dir.path().join("copy");
    common::skopeo_copy(
        &format!("oci-archive:{}:v3", archive.display()),
        &format!("oci:{}:copied", copy.display()),
        &[],
    );
    let raw = common::skopeo_inspect(&format!("oci:{}:copied", copy.display()), &["--raw"]);
    let ours: serde_json::Value = serde_json::from_slice(&image.manifest_bytes()).unwrap();
    assert_eq!(
        raw["layers"], ours["layers"],
        "skopeo kept every layer digest"
    );
    common::umoci_unpack(&copy, "copied", &dir.path().join("bundle"));
}

#[test]
fn zstd_layers_go_to_oci_outputs_only() {
    require_tools!("busybox", "podman", "runc", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let mut image = crate::fixtures::busybox_base(dir.path());
    image.set_compression(conda_docker::layer::Compression::Zstd(3));
    image
        .add_layer_contents([("z/file", b"zstd!".as_slice())])
        .unwrap();
    assert_eq!(
        image.layers()[1].media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let name = common::unique_name("cd-zstd");
    image.set_name(&name).unwrap();
    // umoci 0.4 cannot read zstd layers; podman (containers/image) can.
    let archive = dir.path().join("z.oci.tar");
    image
        .write(&format!("oci-archive:{}", archive.display()))
        .unwrap();
    let raw = common::skopeo_inspect(&format!("oci-archive:{}", archive.display()), &["--raw"]);
    assert_eq!(
        raw["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let podman = Podman::new().unwrap();
    let loaded = podman.load(&archive);
    assert_eq!(podman.run(&loaded, &["cat", "/z/file"]), "zstd!");

    let tar = dir.path().join("z.tar");
    let err = image.write_file(&tar).unwrap_err().to_string();
    assert!(err.contains("zstd"), "{err}");
    assert!(!tar.exists());
}
