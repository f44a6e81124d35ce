//! What the fuzz targets share: scratch files for parsers that read paths,
//! and the calls that make an opened image read its layers.

use std::path::{Path, PathBuf};

use conda_docker::Image;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A scratch directory, in memory where `/dev/shm` exists: the readers take
/// paths, and a disk write per execution would halve the rate.
pub fn scratch() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a scratch dir in /dev/shm")
    } else {
        tempfile::tempdir().expect("a scratch dir")
    }
}

/// Writes `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writing a scratch file");
    path
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A docker-archive (`docker save` layout) whose one layer is `layer`, with
/// the right diff id, so the layer's tar reader is what gets fuzzed.
pub fn docker_archive(layer: &[u8]) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
    })
    .to_string();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["fuzz:latest"],
        "Layers": ["layer.tar"],
    }])
    .to_string();
    let mut archive = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("config.json", config.as_bytes()),
        ("layer.tar", layer),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, name, bytes)
            .expect("an in-memory tar");
    }
    archive.into_inner().expect("an in-memory tar")
}

/// Reads what a build reads from a base image: its glibc version (ELF
/// files and symlinks across the layers) and the conda records in it.
pub fn read_layers(image: &Image) {
    let _ = conda_docker::image::glibc_version(image, &"fuzz");
    let _ = image.read_files(&|path| path.ends_with(".json"), 1 << 20);
}

/// Opens `transport:path` and, when it opens, reads its layers.
pub fn open_and_read(transport: &str, path: &Path) {
    if let Ok(image) = Image::open(&format!("{transport}:{}", path.display())) {
        read_layers(&image);
    }
}
