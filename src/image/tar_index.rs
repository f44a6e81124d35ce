//! The members of a tar file by name, with their byte ranges, so blobs of an
//! archive can be read in place without unpacking it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::ImageError;
use crate::blob::Blob;

/// Byte ranges of the regular files of a tar, and its symlinks.
#[derive(Clone)]
pub(crate) struct TarIndex {
    path: PathBuf,
    files: BTreeMap<String, (u64, u64)>,
    links: BTreeMap<String, String>,
}

/// `./a/b/` → `a/b`; resolves `..` so link targets compare equal.
fn normalise(name: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

impl TarIndex {
    /// Reads every header of the tar at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, ImageError> {
        let not_an_image = |reason: String| ImageError::NotAnImage {
            path: path.to_owned(),
            reason,
        };
        let read_error = |source| ImageError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let file_len = file.metadata().map_err(read_error)?.len();
        let mut magic = [0u8; 2];
        if file.read(&mut magic).map_err(read_error)? == 2 && magic == [0x1f, 0x8b] {
            return Err(not_an_image(
                "it is gzip-compressed; decompress it first (e.g. `gunzip`)".into(),
            ));
        }
        let file = File::open(path).map_err(read_error)?;
        let mut archive = tar::Archive::new(file);
        let mut index = TarIndex {
            path: path.to_owned(),
            files: BTreeMap::new(),
            links: BTreeMap::new(),
        };
        let corrupt =
            |_: std::io::Error| not_an_image("it is not a tar file, or a damaged one".into());
        for entry in archive.entries_with_seek().map_err(corrupt)? {
            let entry = entry.map_err(corrupt)?;
            let name = normalise(&entry.path().map_err(corrupt)?);
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (offset, size) = (entry.raw_file_position(), entry.size());
                    if offset + size > file_len {
                        return Err(not_an_image(format!(
                            "it is truncated: member {name} ends past the end of the file"
                        )));
                    }
                    index.files.insert(name, (offset, size));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry.link_name().map_err(corrupt)? {
                        let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                            Path::new(&name)
                                .parent()
                                .unwrap_or(Path::new(""))
                                .join(target)
                        } else {
                            target.into_owned()
                        };
                        index.links.insert(name, normalise(&base));
                    }
                }
                _ => {}
            }
        }
        if index.files.is_empty() {
            return Err(not_an_image("it is an empty or unreadable tar file".into()));
        }
        Ok(index)
    }

    /// The archive's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn resolve<'a>(&'a self, mut name: &'a str) -> Option<(&'a str, (u64, u64))> {
        for _ in 0..16 {
            if let Some(range) = self.files.get(name) {
                return Some((name, *range));
            }
            name = self.links.get(name)?;
        }
        None
    }

    /// Whether the archive has a member `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.resolve(&normalise(Path::new(name))).is_some()
    }

    /// The bytes of member `name`, in place.
    pub(crate) fn blob(&self, name: &str) -> Result<Blob, ImageError> {
        let name = normalise(Path::new(name));
        let (member, (offset, len)) =
            self.resolve(&name)
                .ok_or_else(|| ImageError::MissingMember {
                    path: self.path.clone(),
                    member: name.clone(),
                })?;
        Ok(Blob::range(&self.path, member, offset, len))
    }

    /// Reads member `name` whole if it has at most `cap` bytes (metadata
    /// files); a larger one is refused unread as too large for a `kind`.
    pub(crate) fn read(
        &self,
        name: &str,
        kind: &'static str,
        cap: u64,
    ) -> Result<Vec<u8>, ImageError> {
        super::read_capped(&self.path, &self.blob(name)?, name, kind, cap)
    }
}
