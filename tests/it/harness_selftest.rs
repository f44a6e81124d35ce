//! Proves the `common` harness against the real tools, so a failing product
//! test can be blamed on the product, not on the rig.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{self, require_tools};

#[test]
fn harness_run_captures_stdout_and_stderr() {
    let output = common::run(Command::new("sh").args(["-c", "echo out; echo err >&2"]));
    assert_eq!(common::stdout(&output), "out\n");
    assert_eq!(output.stderr, b"err\n");
}

#[test]
#[should_panic(expected = "exit status: 3")]
fn harness_run_panics_on_failure() {
    common::run(Command::new("sh").args(["-c", "exit 3"]));
}

#[test]
fn harness_run_unchecked_returns_failure() {
    let output = common::run_unchecked(Command::new("sh").args(["-c", "exit 4"]));
    assert_eq!(output.status.code(), Some(4));
}

#[test]
#[should_panic(expected = "timed out after")]
fn harness_run_times_out() {
    common::run_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200));
}

/// A background grandchild inheriting stdout must not hold `run` hostage.
#[test]
fn harness_run_returns_when_grandchild_keeps_stdout() {
    let start = Instant::now();
    let output = common::run(Command::new("sh").args(["-c", "sleep 3 & echo done"]));
    assert_eq!(common::stdout(&output), "done\n");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn harness_unique_names_differ() {
    assert_ne!(common::unique_name("Img"), common::unique_name("Img"));
    assert!(common::unique_name("Img").starts_with("img-"));
}

#[test]
fn harness_busybox_rootfs_has_fixture_owners_and_mtimes() {
    require_tools!("busybox");
    let dir = tempfile::tempdir().unwrap();
    common::busybox_rootfs(dir.path());
    let root = dir.path();
    for applet in common::BUSYBOX_APPLETS {
        let link = root.join("bin").join(applet);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("busybox"));
        assert_fixture_owner(&std::fs::symlink_metadata(&link).unwrap());
    }
    for (path, secs) in common::FIXTURE_MTIMES {
        let meta = std::fs::metadata(root.join(path)).unwrap();
        assert_eq!(meta.mtime(), secs as i64, "{path}");
        assert_fixture_owner(&meta);
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"));
    let output = common::run(Command::new(root.join("bin/sh")).args(["-c", "echo ok"]));
    assert_eq!(common::stdout(&output), "ok\n");
}

#[test]
fn harness_umoci_layout_unpacks_with_owners() {
    require_tools!("busybox", "umoci", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let layout = busybox_layout(dir.path());
    let bundle = dir.path().join("bundle");
    common::umoci_unpack(&layout, "t", &bundle);
    assert_fixture_owner(&std::fs::metadata(bundle.join("rootfs/bin/busybox")).unwrap());
    let manifest = common::skopeo_inspect(&format!("oci:{}:t", layout.display()), &["--raw"]);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

#[test]
fn harness_podman_runs_umoci_image() {
    require_tools!("busybox", "umoci", "skopeo", "podman", "runc");
    let Some(podman) = common::Podman::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (archive, name) = busybox_docker_archive(dir.path());
    let manifest =
        common::skopeo_inspect(&format!("docker-archive:{}", archive.display()), &["--raw"]);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(podman.load(&archive), name);
    assert_eq!(podman.run(&name, &["/bin/sh", "-c", "echo hi"]), "hi\n");
    // umoci keeps the fixture's owners: proof they reach the container.
    let owner = podman.run(&name, &["stat", "-c", "%u:%g", "/bin/busybox"]);
    assert_eq!(
        owner,
        format!("{}:{}\n", common::FIXTURE_UID, common::FIXTURE_GID)
    );
    assert_eq!(podman.inspect(&name)["Os"], "linux");
    let failed = podman.run_output(&[], &name, &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(failed.status.code(), Some(7));
}

#[test]
fn harness_podman_vfs_driver_runs_image() {
    require_tools!("busybox", "umoci", "skopeo", "podman", "runc");
    let Some(podman) = common::Podman::with_driver("vfs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (archive, name) = busybox_docker_archive(dir.path());
    podman.load(&archive);
    let out = podman.run_output(
        &["-e", "GREETING=vfs"],
        &name,
        &["sh", "-c", "echo $GREETING"],
    );
    assert_eq!(common::stdout(&out), "vfs\n");
}

#[test]
fn harness_podman_instances_do_not_share_images() {
    require_tools!("busybox", "umoci", "skopeo", "podman", "runc");
    let (Some(first), Some(second)) = (common::Podman::new(), common::Podman::new()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = busybox_docker_archive(dir.path());
    first.load(&archive);
    let images =
        |p: &common::Podman| common::stdout(&common::run(p.command().args(["images", "-q"])));
    assert_eq!(images(&first).lines().count(), 1);
    assert_eq!(images(&second), "");
}

#[test]
fn harness_docker_cli_loads_and_runs_via_podman_service() {
    require_tools!("busybox", "umoci", "skopeo", "podman", "runc", "docker");
    let Some(podman) = common::Podman::new() else {
        return;
    };
    let Some(service) = podman.docker_service() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (archive, name) = busybox_docker_archive(dir.path());
    assert_eq!(service.load(&archive), name);
    assert_eq!(service.run(&name, &["/bin/sh", "-c", "echo hi"]), "hi\n");
    let images = common::run(
        service
            .docker()
            .args(["images", "--format", "{{.Repository}}"]),
    );
    assert!(common::stdout(&images).contains(name.split(':').next().unwrap()));
}

#[test]
fn harness_legacy_tar_has_v1_structure() {
    require_tools!("python3");
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    std::fs::create_dir_all(layer.join("opt/conda")).unwrap();
    std::fs::write(layer.join("opt/conda/hello.txt"), "hello\n").unwrap();
    let out = dir.path().join("legacy.tar");
    if common::legacy_conda_docker_tar(&out, &layer).is_none() {
        return;
    }
    let entries = tar_entries(&out);
    let repositories: serde_json::Value = serde_json::from_slice(&entries["repositories"]).unwrap();
    let id = repositories["conda-docker-legacy"]["latest"]
        .as_str()
        .unwrap();
    assert_eq!(entries[&format!("{id}/VERSION")], b"1.0");
    let json: serde_json::Value = serde_json::from_slice(&entries[&format!("{id}/json")]).unwrap();
    assert_eq!(json["id"], id);
    assert!(json.get("parent").is_none());
    let layer_tar = &entries[&format!("{id}/layer.tar")];
    let names = tar_entries_from(&layer_tar[..]);
    assert_eq!(names["opt/conda/hello.txt"], b"hello\n");
    assert_eq!(entries.len(), 4, "{:?}", entries.keys());
}

#[test]
fn harness_legacy_tar_chains_layers_by_parent() {
    require_tools!("python3");
    let dir = tempfile::tempdir().unwrap();
    let (bottom, top) = (dir.path().join("bottom"), dir.path().join("top"));
    for (layer, file) in [(&bottom, "a"), (&top, "b")] {
        std::fs::create_dir_all(layer).unwrap();
        std::fs::write(layer.join(file), file).unwrap();
    }
    let out = dir.path().join("legacy.tar");
    let made = common::legacy_conda_docker_tar_layers(&out, "legacy/two", "v2", &[&bottom, &top]);
    if made.is_none() {
        return;
    }
    let entries = tar_entries(&out);
    let repositories: serde_json::Value = serde_json::from_slice(&entries["repositories"]).unwrap();
    let top_id = repositories["legacy/two"]["v2"].as_str().unwrap();
    let top_json: serde_json::Value =
        serde_json::from_slice(&entries[&format!("{top_id}/json")]).unwrap();
    let bottom_id = top_json["parent"].as_str().unwrap();
    let bottom_layer = tar_entries_from(&entries[&format!("{bottom_id}/layer.tar")][..]);
    assert_eq!(bottom_layer["a"], b"a");
}

/// Builds the busybox rootfs and an OCI layout of it (tag `t`) with umoci.
fn busybox_layout(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    let layout = dir.join("layout");
    common::umoci_layout_from_rootfs(&rootfs, &layout, "t");
    layout
}

/// A docker-archive of the busybox image, written by skopeo; returns the
/// archive and the fully qualified image name it carries.
fn busybox_docker_archive(dir: &Path) -> (PathBuf, String) {
    let layout = busybox_layout(dir);
    let archive = dir.join("image.tar");
    let name = format!("localhost/{}:t", common::unique_name("harness"));
    common::skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &format!("docker-archive:{}:{name}", archive.display()),
        &[],
    );
    (archive, name)
}

fn assert_fixture_owner(meta: &std::fs::Metadata) {
    if common::is_root() {
        assert_eq!(
            (meta.uid(), meta.gid()),
            (common::FIXTURE_UID, common::FIXTURE_GID)
        );
    }
}

fn tar_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
    tar_entries_from(std::fs::File::open(path).unwrap())
}

/// Every regular file of a tar, by path, with its contents.
fn tar_entries_from(reader: impl Read) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.insert(path, bytes);
        }
    }
    files
}
