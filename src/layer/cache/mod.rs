//! Layers built before, found by their identity: a digest of everything
//! that decides a layer's bytes, known before any of them is written (the
//! build computes it; see `build/identity.rs`). A rebuild takes a cached
//! layer without opening its packages.
//!
//! `<cache>/layers/<identity hex>.json` names the layer (media type,
//! digest, size, diff id); its blob is `<cache>/blobs/sha256/<hex>`, the
//! store pulled blobs use too. Both appear only by rename, read-only, the
//! entry after its blob, so a reader never sees half of one. A blob of the
//! wrong size makes the entry a miss (it is rebuilt, and replaced); a blob
//! of the wrong bytes fails its digest check when it is streamed to any
//! output, so it is never published.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Layer, oci_layer_media_type};
use crate::blob::Blob;
use crate::digest::{DiffId, Digest};

/// What an entry records of its layer.
#[derive(Serialize, Deserialize)]
struct Entry {
    media_type: String,
    digest: String,
    size: u64,
    diff_id: String,
}

/// The largest entry file read: a few hundred bytes are written.
const MAX_ENTRY: u64 = 64 << 10;

/// The layer cache under a cache directory.
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    /// The cache in `cache_dir` (normally `CONDA_DOCKER_CACHE_DIR`).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        LayerCache {
            dir: cache_dir.into(),
        }
    }

    fn entry_path(&self, identity: &Digest) -> PathBuf {
        self.dir
            .join("layers")
            .join(format!("{}.json", identity.hex()))
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// The layer cached under `identity`, if its entry reads and its blob
    /// has the size the entry states; anything else is a miss.
    pub fn get(&self, identity: &Digest) -> Option<Layer> {
        let bytes = crate::blob::read_capped(
            std::fs::File::open(self.entry_path(identity)).ok()?,
            MAX_ENTRY,
        )
        .ok()??;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        let media_type = oci_layer_media_type(&entry.media_type)?;
        let digest: Digest = entry.digest.parse().ok()?;
        let diff_id: Digest = entry.diff_id.parse().ok()?;
        let path = self.blob_path(&digest);
        let on_disk = std::fs::metadata(&path).ok()?;
        if !on_disk.is_file() || on_disk.len() != entry.size {
            tracing::warn!("the cached layer {digest} has the wrong size; building it again");
            return None;
        }
        Some(
            Layer::new(
                media_type,
                digest,
                entry.size,
                DiffId(diff_id),
                Blob::file(path),
            )
            .with_checked_diff_id(),
        )
    }

    /// Keeps `layer` under `identity`: its blob (hard-linked when it is a
    /// file on the same file system, else copied), then the entry.
    pub fn put(&self, identity: &Digest, layer: &Layer) -> io::Result<()> {
        let blob = self.blob_path(&layer.digest());
        let same_size = std::fs::metadata(&blob).is_ok_and(|m| m.len() == layer.size());
        if !same_size {
            let dir = blob.parent().unwrap_or(&self.dir).to_owned();
            fs_err::create_dir_all(&dir)?;
            let linked = layer.blob().file_path().and_then(|source| {
                tempfile::Builder::new()
                    .prefix(".conda-docker-")
                    .make_in(&dir, |temp| std::fs::hard_link(source, temp))
                    .ok()
            });
            match linked {
                Some(link) => {
                    std::fs::set_permissions(link.path(), std::fs::Permissions::from_mode(0o444))?;
                    link.persist(&blob).map_err(|e| e.error)?;
                }
                None => {
                    let mut temp = crate::atomic::temp_beside(&blob)?;
                    io::copy(&mut layer.open_verified()?, &mut temp)?;
                    crate::atomic::publish(temp, &blob, 0o444)?;
                }
            }
        }
        let entry = Entry {
            media_type: layer.media_type().to_string(),
            digest: layer.digest().to_string(),
            size: layer.size(),
            diff_id: layer.diff_id().0.to_string(),
        };
        let path = self.entry_path(identity);
        fs_err::create_dir_all(path.parent().unwrap_or(&self.dir))?;
        let text = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        crate::atomic::write(&path, &text, 0o444)
    }
}
