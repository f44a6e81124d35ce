//! The layer cache: a rebuild takes every package layer from
//! `CONDA_DOCKER_CACHE_DIR/layers` by its identity, with the same bytes;
//! `--no-cache` builds everything; a damaged entry is built again.

use std::path::Path;
use std::process::Command;

use crate::common::{self, CacheLayout, CondaChannel, install_env, sha256_file_hex};
use crate::fixtures::conda_docker;

fn build(dir: &Path, env: &Path, out: &str, extra: &[&str]) -> String {
    let mut cmd: Command = conda_docker();
    cmd.env("HOME", dir.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", dir.join("cache"))
        .env("CONDA_PKGS_DIRS", dir.join("pkgs"))
        .args(["build", "-v", "-b", "scratch", "-p"])
        .arg(env)
        .arg("-o")
        .arg(dir.join(out))
        .args(extra);
    let output = common::run(&mut cmd);
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn from_cache(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("from the layer cache"))
        .count()
}

#[test]
fn rebuilds_take_layers_from_the_cache_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, d);
    let packages = env.records.len();

    let cold = build(d, &env.prefix, "cold.tar", &[]);
    assert_eq!(from_cache(&cold), 0, "{cold}");
    let warm = build(d, &env.prefix, "warm.tar", &[]);
    assert_eq!(from_cache(&warm), packages, "{warm}");
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("warm.tar"))
    );
    // Entries and blobs are read-only: a hard link shares their inode.
    let layers = std::fs::read_dir(d.join("cache/layers")).unwrap().count();
    assert_eq!(layers, packages);
    for blob in std::fs::read_dir(d.join("cache/blobs/sha256")).unwrap() {
        let mode = blob.unwrap().metadata().unwrap().permissions();
        assert!(mode.readonly(), "{mode:?}");
    }

    // --no-cache builds every layer, to the same bytes.
    let fresh = build(d, &env.prefix, "fresh.tar", &["--no-cache"]);
    assert_eq!(from_cache(&fresh), 0, "{fresh}");
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("fresh.tar"))
    );

    // A blob of the wrong size is a miss: built again, and replaced.
    let blob = std::fs::read_dir(d.join("cache/blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();
    let repaired = build(d, &env.prefix, "repaired.tar", &[]);
    assert!(
        repaired.contains("has the wrong size; building it again"),
        "{repaired}"
    );
    assert_eq!(from_cache(&repaired), packages - 1, "{repaired}");
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("repaired.tar"))
    );
    assert_eq!(std::fs::read(&blob).unwrap(), bytes);
}
