//! Where a blob's bytes live, so an image can be read, edited and written
//! without copying its layers around: a layer of an input archive stays a
//! byte range of that archive until it is written out.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::atomic::OwnedDir;
use crate::digest::{Digest, Hasher};

/// The largest manifest or image index read, 4 MiB: the registry of the
/// distribution project refuses larger ones (`maxManifestBodySize`), and
/// containers/image (skopeo, podman) and oras read no more, so no image
/// anyone can pull has one. Also the bound for a docker-archive's
/// `manifest.json` and an OCI layout's `index.json`.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// The largest image config read, 8 MiB. Configs grow with history entries,
/// labels and environment (a few hundred KB for images of hundreds of
/// layers), and containers/image refuses configs over 4 MB; twice that
/// leaves room for any real image while a hostile one cannot make us parse
/// (and hold) more than a few times this in memory.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// `8 GiB`, `4 MiB` for a size that is a whole number of those, else
/// `N bytes`.
pub(crate) fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads all of `reader` if it holds at most `cap` bytes: `None` when it
/// holds more. Never reads more than `cap + 1` bytes, so a stream that does
/// not end costs no more than that.
pub(crate) fn read_capped(reader: impl Read, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

/// A reader that passes on at most `limit` bytes and fails as soon as its
/// source has more: a download stops at the size its descriptor declares
/// instead of filling the disk.
pub(crate) struct Capped<R> {
    inner: R,
    left: u64,
    overflowed: bool,
}

impl<R: Read> Capped<R> {
    /// Wraps `inner`, allowing `limit` bytes.
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Capped {
            inner,
            left: limit,
            overflowed: false,
        }
    }

    /// Whether the source had more than the limit.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the limit, the stream must end here: one more byte is over.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.overflowed = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than its descriptor declares",
            ));
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A readable blob on disk.
#[derive(Clone)]
pub struct Blob {
    location: Location,
    /// Keeps the scratch directory of built layers alive while any image or
    /// layer still points into it.
    _scratch: Option<Arc<OwnedDir>>,
}

#[derive(Clone)]
enum Location {
    File(PathBuf),
    Range {
        archive: PathBuf,
        member: String,
        offset: u64,
        len: u64,
    },
    /// Bytes that stay in a registry: a layer the registry a push goes to
    /// already has, so it is neither built nor read here.
    Registry {
        registry: String,
        repository: String,
        len: u64,
    },
}

impl Blob {
    /// A whole file, such as a blob of an OCI layout directory.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Blob {
            location: Location::File(path.into()),
            _scratch: None,
        }
    }

    /// The file the blob is, if it is a whole file (not a range of one).
    pub(crate) fn file_path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Range { .. } | Location::Registry { .. } => None,
        }
    }

    /// A file in a scratch directory that must outlive this blob.
    pub(crate) fn scratch_file(path: PathBuf, scratch: Arc<OwnedDir>) -> Self {
        Blob {
            location: Location::File(path),
            _scratch: Some(scratch),
        }
    }

    /// `len` bytes at `offset` of `archive`: a member of a tar file.
    pub(crate) fn range(archive: &Path, member: &str, offset: u64, len: u64) -> Self {
        Blob {
            location: Location::Range {
                archive: archive.to_owned(),
                member: member.to_owned(),
                offset,
                len,
            },
            _scratch: None,
        }
    }

    /// `len` bytes that are in `repository` of `registry` and nowhere on
    /// this machine. Opening them fails: such a blob can be left where it
    /// is (a push to a repository that has it) but never read, so an
    /// output that needs the bytes cannot stream nothing by accident.
    pub(crate) fn in_registry(registry: &str, repository: &str, len: u64) -> Self {
        Blob {
            location: Location::Registry {
                registry: registry.to_owned(),
                repository: repository.to_owned(),
                len,
            },
            _scratch: None,
        }
    }

    /// Whether the bytes are on this machine (not only in a registry).
    pub(crate) fn is_local(&self) -> bool {
        !matches!(self.location, Location::Registry { .. })
    }

    /// Opens the bytes for reading from the start.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        match &self.location {
            Location::File(path) => Ok(Box::new(fs_err::File::open(path)?)),
            Location::Range {
                archive,
                offset,
                len,
                ..
            } => {
                let mut file = File::open(archive)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", archive.display())))?;
                file.seek(SeekFrom::Start(*offset))?;
                Ok(Box::new(file.take(*len)))
            }
            Location::Registry {
                registry,
                repository,
                ..
            } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the blob is in {registry}/{repository} and not on this machine, so it cannot be read; only a push to that repository can use it"
                ),
            )),
        }
    }

    /// Reads the blob once and returns its digest, its size and its first
    /// bytes (enough to tell its compression).
    pub fn hash(&self) -> io::Result<(Digest, u64, Vec<u8>)> {
        let mut reader = self.open()?;
        let mut hasher = Hasher::default();
        let mut head = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if head.len() < 8 {
                head.extend_from_slice(&buf[..n.min(8)]);
            }
            hasher.update(&buf[..n]);
        }
        let (digest, size) = hasher.finish();
        Ok((digest, size, head))
    }

    /// The size of the blob as it is now.
    pub fn size(&self) -> io::Result<u64> {
        match &self.location {
            Location::File(path) => Ok(fs_err::metadata(path)?.len()),
            Location::Range { len, .. } | Location::Registry { len, .. } => Ok(*len),
        }
    }

    /// Reads the whole blob if it has at most `cap` bytes (`None` if more):
    /// for manifests and configs, which are read into memory. A blob over
    /// the cap is refused before it is read, and reading stops at `cap + 1`
    /// bytes should it grow meanwhile.
    pub fn read_capped(&self, cap: u64) -> io::Result<Option<Vec<u8>>> {
        if self.size()? > cap {
            return Ok(None);
        }
        read_capped(self.open()?, cap)
    }
}

impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Range {
                archive, member, ..
            } => write!(f, "{} in {}", member, archive.display()),
            Location::Registry {
                registry,
                repository,
                ..
            } => write!(f, "{registry}/{repository} (not on this machine)"),
        }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_in_a_registry_cannot_be_read() {
        let blob = Blob::in_registry("ghcr.io", "org/app", 42);
        assert!(!blob.is_local());
        assert_eq!(blob.size().unwrap(), 42);
        assert_eq!(blob.file_path(), None);
        assert_eq!(blob.to_string(), "ghcr.io/org/app (not on this machine)");
        let error = blob.open().err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        assert!(error.to_string().contains("in ghcr.io/org/app"), "{error}");
        assert!(blob.hash().is_err());
        assert!(Blob::file("/x").is_local());
    }
}
