//! Layers built before, found by their identity: a digest of everything
//! that decides a layer's bytes, known before any of them is written (the
//! build computes it; see `build/identity.rs`). A rebuild takes a cached
//! layer without opening its packages.
//!
//! `<cache>/layers/<identity hex>.json` names the layer (media type,
//! digest, size, diff id); its blob is `<cache>/blobs/sha256/<hex>`, the
//! store pulled blobs use too. Both appear only by rename, read-only, the
//! entry after its blob, so a reader never sees half of one, and nothing
//! ever writes into an existing blob file: an OCI layout may hold the same
//! inode as a hard link. A blob of the wrong size makes the entry a miss
//! (it is rebuilt, and replaced). A blob of the wrong bytes fails its
//! digest check when it is streamed to any output (or when it is taken,
//! with `verify`), so it is never published: the build evicts it and
//! builds the layer again.
//!
//! A hit sets the entry's modification time, so `cache prune` removes the
//! least recently used entries first (see [`prune`]); [`CacheLock`] keeps
//! a prune from removing what a running build uses.

mod lock;
pub mod prune;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Layer, oci_layer_media_type};
use crate::blob::Blob;
use crate::digest::{DiffId, Digest};

pub use lock::{CacheLock, LockError};

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

/// The folder of the entries, under the cache directory.
const LAYERS: &str = "layers";

/// The folder of the blobs (ours and pulled ones), under the cache directory.
const BLOBS: &str = "blobs/sha256";

/// The layer cache under a cache directory.
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
    verify: bool,
    /// The entries served in this run, `(identity, blob digest)`: what
    /// [`LayerCache::evict_damaged`] checks after a failed output.
    served: Arc<Mutex<Vec<(Digest, Digest)>>>,
}

impl LayerCache {
    /// The cache in `cache_dir` (normally `CONDA_DOCKER_CACHE_DIR`).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        LayerCache {
            dir: cache_dir.into(),
            verify: false,
            served: Arc::default(),
        }
    }

    /// Checks every blob against its digest before it is taken (`--verify`),
    /// not only when it is streamed: for outputs that only link blobs (an
    /// OCI layout).
    pub fn verifying(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, identity: &Digest) -> PathBuf {
        self.dir
            .join(LAYERS)
            .join(format!("{}.json", identity.hex()))
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(BLOBS).join(digest.hex())
    }

    /// The layer cached under `identity`, if its entry reads and its blob
    /// has the size the entry states (and, when verifying, its digest);
    /// anything else is a miss. A damaged blob is evicted.
    pub fn get(&self, identity: &Digest) -> Option<Layer> {
        let file = std::fs::File::open(self.entry_path(identity)).ok()?;
        let bytes = crate::blob::read_capped(&file, MAX_ENTRY).ok()??;
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
        if self.verify && !self.intact(identity, &digest) {
            return None;
        }
        // The last use, for `cache prune`; only a hint, so a file another
        // user owns is left as it is.
        let _ = file.set_modified(SystemTime::now());
        if let Ok(mut served) = self.served.lock() {
            served.push((*identity, digest));
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

    /// Whether the blob of the entry `identity` still has its `digest`;
    /// if not, the entry and the blob are removed (with a warning).
    fn intact(&self, identity: &Digest, digest: &Digest) -> bool {
        let path = self.blob_path(digest);
        match Blob::file(&path).hash() {
            Ok((actual, _, _)) if actual == *digest => true,
            Ok((actual, _, _)) => {
                tracing::warn!(
                    "the cached layer {digest} is damaged (its bytes hash to {actual}); \
                     removed it, building it again"
                );
                let _ = std::fs::remove_file(self.entry_path(identity));
                let _ = std::fs::remove_file(&path);
                false
            }
            Err(e) => {
                tracing::warn!("cannot read the cached layer {digest}: {e}; building it again");
                false
            }
        }
    }

    /// Checks the blob of every entry served in this run against its
    /// digest, and evicts those that fail (entry and blob). Returns how
    /// many failed: after an output failed, a build that took a damaged
    /// layer runs again and builds it.
    pub fn evict_damaged(&self) -> usize {
        let served = match self.served.lock() {
            Ok(mut served) => std::mem::take(&mut *served),
            Err(_) => return 0,
        };
        served
            .iter()
            .filter(|(identity, digest)| {
                self.blob_path(digest).exists() && !self.intact(identity, digest)
            })
            .count()
    }

    /// Keeps `layer` under `identity`: its blob, then the entry. A blob
    /// file on the same file system is hard-linked in place of any blob
    /// already there (which a damaged copy of the same size would
    /// otherwise stay); else it is copied, checked, when none of its size
    /// is there.
    pub fn put(&self, identity: &Digest, layer: &Layer) -> io::Result<()> {
        let blob = self.blob_path(&layer.digest());
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
            None if std::fs::metadata(&blob).is_ok_and(|m| m.len() == layer.size()) => {}
            None => {
                let mut temp = crate::atomic::temp_beside(&blob)?;
                io::copy(&mut layer.open_verified()?, &mut temp)?;
                crate::atomic::publish(temp, &blob, 0o444)?;
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
