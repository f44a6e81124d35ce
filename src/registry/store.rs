//! Pulled manifests and blobs, kept on disk by digest so later builds and
//! pulls reuse them: `<cache>/blobs/sha256/<hex>`.
//!
//! An entry appears only by rename after its bytes were hashed and matched
//! the digest it is filed under, so a broken transfer never leaves a bad
//! entry behind.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::blob::Blob;
use crate::digest::{Digest, HashingWriter};
use crate::dirs::cache_dir;

/// The blob store.
pub(crate) struct BlobStore {
    dir: PathBuf,
}

/// Bytes that did not hash to what they were fetched as.
#[derive(Debug)]
pub(crate) struct Mismatch {
    pub(crate) actual: Digest,
    pub(crate) size: u64,
}

impl BlobStore {
    /// The store under our cache directory.
    pub(crate) fn open() -> Self {
        BlobStore {
            dir: cache_dir().join("blobs"),
        }
    }

    /// Where the blob `digest` is (or would be) kept.
    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }

    /// Whether the blob is there (with the expected size, if known).
    pub(crate) fn has(&self, digest: &Digest, size: Option<u64>) -> bool {
        std::fs::metadata(self.path(digest))
            .is_ok_and(|m| m.is_file() && size.is_none_or(|s| s == m.len()))
    }

    /// A small blob (manifest, config) read back and checked again, since
    /// it decides what else is read. `None` when it is not there, or has
    /// more than `cap` bytes (the same digest may name a large layer a
    /// hostile manifest points at as its config).
    pub(crate) fn read_small(&self, digest: &Digest, cap: u64) -> Option<Vec<u8>> {
        let bytes = Blob::file(self.path(digest)).read_capped(cap).ok()??;
        (Digest::of(&bytes) == *digest).then_some(bytes)
    }

    /// Streams `reader` into the store under `expected`. Returns the
    /// mismatch (and keeps nothing) when the bytes hash to something else.
    pub(crate) fn put(
        &self,
        expected: &Digest,
        reader: &mut dyn Read,
    ) -> io::Result<Result<PathBuf, Mismatch>> {
        let final_path = self.path(expected);
        let parent = final_path.parent().unwrap_or(&self.dir).to_owned();
        fs_err::create_dir_all(&parent)?;
        let temp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&parent)?;
        let mut writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, temp));
        io::copy(reader, &mut writer)?;
        let (buffered, actual, size) = writer.finish();
        let mut temp = buffered.into_inner().map_err(|e| e.into_error())?;
        temp.flush()?;
        if actual != *expected {
            return Ok(Err(Mismatch { actual, size }));
        }
        temp.persist(&final_path).map_err(|e| e.error)?;
        Ok(Ok(final_path))
    }
}
