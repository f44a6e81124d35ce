//! Where a blob's bytes live, so an image can be read, edited and written
//! without copying its layers around: a layer of an input archive stays a
//! byte range of that archive until it is written out.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

use crate::digest::{Digest, Hasher};

/// A readable blob on disk.
#[derive(Clone)]
pub struct Blob {
    location: Location,
    /// Keeps the scratch directory of built layers alive while any image or
    /// layer still points into it.
    _scratch: Option<Arc<TempDir>>,
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
}

impl Blob {
    /// A whole file, such as a blob of an OCI layout directory.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Blob {
            location: Location::File(path.into()),
            _scratch: None,
        }
    }

    /// A file in a scratch directory that must outlive this blob.
    pub(crate) fn scratch_file(path: PathBuf, scratch: Arc<TempDir>) -> Self {
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

    /// Reads the whole blob; only for small blobs such as configs.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open()?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Range {
                archive, member, ..
            } => write!(f, "{} in {}", member, archive.display()),
        }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({self})")
    }
}
