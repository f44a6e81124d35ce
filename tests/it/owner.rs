//! `--owner UID:GID`: the environment's prefix and everything below it
//! belong to that user in every layer the build writes (package layers,
//! the environment's own layer, `--add` below the prefix); the folders
//! above it, and `--add` elsewhere, stay root's. A user running the image
//! as that owner can change the environment.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use conda_docker::Image;

use crate::common::{self, CacheLayout, CondaChannel, install_env, require_tools};
use crate::fixtures::{busybox_base, conda_docker};

fn build(dir: &Path, env: &Path, out: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd: Command = conda_docker();
    cmd.env("HOME", dir.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", dir.join("cache"))
        .env("CONDA_PKGS_DIRS", dir.join("pkgs"))
        .args(["build", "-q", "--json", "-b"])
        .arg(format!("docker-archive:{}", dir.join("base.tar").display()))
        .arg("-p")
        .arg(env)
        .arg("-o")
        .arg(dir.join(out))
        .args(extra);
    serde_json::from_slice(&common::run(&mut cmd).stdout).unwrap()
}

/// `(path, uid, gid)` of every entry of every layer above the base's.
fn owners(image: &Path, base_layers: usize) -> Vec<(String, u64, u64)> {
    let image = Image::open(image.to_str().unwrap()).unwrap();
    let mut out = Vec::new();
    for layer in &image.layers()[base_layers..] {
        let mut archive = tar::Archive::new(layer.uncompressed().unwrap());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            out.push((
                entry.path().unwrap().display().to_string(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            ));
        }
    }
    out
}

#[test]
fn the_owner_has_the_prefix_in_every_layer_and_can_change_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, d);
    let base = busybox_base(&d.join("base"));
    let base_layers = base.layers().len();
    base.write_file(d.join("base.tar")).unwrap();
    std::fs::write(d.join("note.txt"), "note\n").unwrap();
    let adds = [
        "--add",
        &format!("{}:/opt/conda/share/", d.join("note.txt").display()),
        "--add",
        &format!("{}:/srv/", d.join("note.txt").display()),
    ];

    let root = build(d, &env.prefix, "root.tar", &adds);
    let mut args = adds.to_vec();
    args.extend(["--owner", "1000:100", "--user", "1000:100"]);
    let owned = build(d, &env.prefix, "owned.tar", &args);
    // Root's layers in the cache are not taken for the owner's.
    for layer in owned["layers"].as_array().unwrap() {
        assert_ne!(layer["source"], "cache", "{layer}");
    }
    assert_ne!(root["manifest_digest"], owned["manifest_digest"]);
    let again = build(d, &env.prefix, "again.tar", &args);
    assert_eq!(
        again["manifest_digest"], owned["manifest_digest"],
        "reproducible"
    );

    let entries = owners(&d.join("owned.tar"), base_layers);
    assert!(
        entries
            .iter()
            .any(|(p, ..)| p == "opt/conda/share/note.txt")
    );
    for (path, uid, gid) in &entries {
        let below = path.trim_end_matches('/') == "opt/conda" || path.starts_with("opt/conda/");
        let expected = if below { (1000, 100) } else { (0, 0) };
        assert_eq!((*uid, *gid), expected, "{path}");
    }
    assert!(
        entries
            .iter()
            .any(|(p, u, _)| p == "srv/note.txt" && *u == 0)
    );
    assert!(entries.iter().any(|(p, u, _)| p == "opt/" && *u == 0));
    let root_entries = owners(&d.join("root.tar"), base_layers);
    assert!(
        root_entries
            .iter()
            .all(|(_, uid, gid)| (*uid, *gid) == (0, 0))
    );

    require_tools!("busybox", "podman", "runc");
    let Some(podman) = common::Podman::new() else {
        return;
    };
    let change = "touch /opt/conda/new && mkdir /opt/conda/share/mine && \
                  echo x >> /opt/conda/share/cd-leaf/leaf.txt && id -u";
    let owned_id = podman.load(&d.join("owned.tar"));
    assert_eq!(podman.run(&owned_id, &["sh", "-c", change]).trim(), "1000");
    let root_id = podman.load(&d.join("root.tar"));
    let refused = podman.run_output(&["--user", "1000:100"], &root_id, &["sh", "-c", change]);
    assert!(!refused.status.success(), "root's prefix is not the user's");
    let mut stderr = String::new();
    (&refused.stderr[..]).read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("Permission denied"), "{stderr}");
}
