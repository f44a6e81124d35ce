//! A deterministic tar writer for layers.
//!
//! Every entry gets owner 0:0, no user or group names, the same mtime, and
//! no device numbers; directories come before their contents and every
//! parent directory is present. Trees are walked in sorted order, so the
//! bytes depend only on the tree's content, never on the file system's
//! order, timestamps or owners.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use tar::{EntryType, Header};

/// Mode of the parent directories a layer needs but no source provides.
const PARENT_DIR_MODE: u32 = 0o755;

/// Decides whether a path (relative to the root of an added tree) goes in.
/// Returning `false` for a directory leaves out everything below it.
pub type PathFilter<'a> = &'a dyn Fn(&Path) -> bool;

/// Who owns the entries at and below one folder of a layer (the
/// environment's prefix, for `--owner`); every other entry is 0:0, so the
/// folders above the prefix stay root's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
    /// The folder, as a layer names it (`opt/conda`).
    pub below: String,
}

impl Owner {
    /// Whether `path` (as a layer names it) is the folder or below it.
    fn owns(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        path == self.below
            || path
                .strip_prefix(self.below.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// A tar stream with the determinism rules of `design.md`.
pub struct LayerTar<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
    dirs: HashSet<String>,
    /// First archive path of each (device, inode) with several links, so
    /// later links become hardlink entries instead of copies.
    inodes: HashMap<(u64, u64), String>,
    /// Whether modes from the file system are reduced to 0755/0644.
    normalize_modes: bool,
    /// Whether files sharing an inode are written in full each time
    /// instead of as hard links to the first.
    links_as_copies: bool,
    /// Who owns the entries below one folder (else all are 0:0).
    owner: Option<Owner>,
    /// Non-directory paths written so far: a second entry for the same path
    /// (two trees providing one file) is left out, since tools disagree on
    /// which of two duplicate tar entries wins.
    written: HashSet<String>,
}

/// The header every entry starts from: only the entry type, mode, size and
/// the fixed mtime vary.
pub fn header(kind: EntryType, mode: u32, size: u64, mtime: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o7777);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Turns a path inside the image into the relative, `/`-separated form a
/// layer uses (`/opt/conda/` → `opt/conda`). Refuses `..`, which could
/// escape the root.
pub fn archive_path(path: &str) -> io::Result<String> {
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{path:?} is not UTF-8"),
                )
            })?),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path `{path}` inside the image must not contain `..`"),
                ));
            }
        }
    }
    Ok(parts.join("/"))
}

/// Yields exactly `left` bytes of `inner`, or an error.
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    path: &'a str,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One more read to notice data past the announced size.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} grew while it was being read", self.path),
                )),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being read", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl<W: Write> LayerTar<W> {
    /// Starts a tar stream whose entries all carry `mtime`.
    pub fn new(inner: W, mtime: u64) -> Self {
        let mut builder = tar::Builder::new(inner);
        builder.follow_symlinks(false);
        LayerTar {
            builder,
            mtime,
            dirs: HashSet::new(),
            inodes: HashMap::new(),
            normalize_modes: false,
            links_as_copies: false,
            owner: None,
            written: HashSet::new(),
        }
    }

    /// Writes directories as 0755 and files as 0755 (any execute bit) or
    /// 0644, whatever the file system says. For trees staged by this tool,
    /// whose modes would otherwise depend on the host's umask.
    pub fn normalize_modes(&mut self) {
        self.normalize_modes = true;
    }

    /// Writes every file in full, even one sharing its inode with a file
    /// written before. For trees staged by this tool, whose files are hard
    /// links into a package cache where the file system allows: the layer
    /// holds what a copy would have, however the staging was made.
    pub fn links_as_copies(&mut self) {
        self.links_as_copies = true;
    }

    /// Gives the entries at and below `owner.below` its user and group.
    pub fn set_owner(&mut self, owner: Option<Owner>) {
        self.owner = owner;
    }

    /// The header of an entry at `path`: [`header`], owned as
    /// [`LayerTar::set_owner`] says.
    fn header_at(&self, path: &str, kind: EntryType, mode: u32, size: u64) -> Header {
        let mut header = header(kind, mode, size, self.mtime);
        if let Some(owner) = self.owner.as_ref().filter(|o| o.owns(path)) {
            header.set_uid(u64::from(owner.uid));
            header.set_gid(u64::from(owner.gid));
        }
        header
    }

    fn mode(&self, mode: u32, is_dir: bool) -> u32 {
        match (self.normalize_modes, is_dir) {
            (false, _) => mode,
            (true, true) => 0o755,
            (true, false) if mode & 0o111 != 0 => 0o755,
            (true, false) => 0o644,
        }
    }

    /// Adds a directory entry (after its parents).
    pub fn add_directory(&mut self, path: &str, mode: u32) -> io::Result<()> {
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        self.ensure_parents(path)?;
        let mut header = self.header_at(path, EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut header, format!("{path}/"), io::empty())?;
        self.dirs.insert(path.to_owned());
        Ok(())
    }

    /// Adds a regular file of `size` bytes read from `data`. Fails, rather
    /// than writing a corrupt archive, if `data` holds more or fewer bytes
    /// (a file that changed while it was read).
    pub fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: impl Read,
    ) -> io::Result<()> {
        if !self.first_time(path) {
            return Ok(());
        }
        self.ensure_parents(path)?;
        let mode = self.mode(mode, false);
        let mut header = self.header_at(path, EntryType::Regular, mode, size);
        let exact = ExactReader {
            inner: data,
            left: size,
            path,
        };
        self.builder.append_data(&mut header, path, exact)
    }

    /// Adds a symbolic link to `target`, kept as a link.
    pub fn add_symlink(&mut self, path: &str, target: &Path) -> io::Result<()> {
        if !self.first_time(path) {
            return Ok(());
        }
        self.ensure_parents(path)?;
        let mut header = self.header_at(path, EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, path, target)
    }

    /// Adds a hard link to `target`, an earlier entry of this layer.
    pub fn add_hardlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        if !self.first_time(path) {
            return Ok(());
        }
        self.ensure_parents(path)?;
        let mut header = self.header_at(path, EntryType::Link, 0o644, 0);
        self.builder.append_link(&mut header, path, target)
    }

    /// Adds the file or tree at `source` under `arcpath`, in sorted order.
    pub fn add_tree(
        &mut self,
        source: &Path,
        arcpath: &str,
        filter: Option<PathFilter>,
    ) -> io::Result<()> {
        let meta = fs::symlink_metadata(source)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", source.display())))?;
        if meta.is_dir() {
            self.add_directory(arcpath, self.mode(meta.mode(), true))?;
            self.walk(source, arcpath, Path::new(""), filter)
        } else {
            self.add_host_entry(source, &meta, arcpath)
        }
    }

    fn walk(
        &mut self,
        dir: &Path,
        arcdir: &str,
        rel: &Path,
        filter: Option<PathFilter>,
    ) -> io::Result<()> {
        for name in sorted_names(dir)? {
            let rel_child = rel.join(&name);
            if filter.is_some_and(|keep| !keep(&rel_child)) {
                continue;
            }
            let path = dir.join(&name);
            let name = name.to_str().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: file name is not UTF-8", path.display()),
                )
            })?;
            let arc_child = if arcdir.is_empty() {
                name.to_owned()
            } else {
                format!("{arcdir}/{name}")
            };
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                self.add_directory(&arc_child, self.mode(meta.mode(), true))?;
                self.walk(&path, &arc_child, &rel_child, filter)?;
            } else {
                self.add_host_entry(&path, &meta, &arc_child)?;
            }
        }
        Ok(())
    }

    /// Adds the host's file or symlink at `path` (whose `meta` the caller
    /// read) as `arcpath`: a symlink stays a symlink, a file that shares
    /// its inode with one added before becomes a hardlink to it, and
    /// anything else (devices, sockets) is left out with a warning.
    pub fn add_host_entry(
        &mut self,
        path: &Path,
        meta: &fs::Metadata,
        arcpath: &str,
    ) -> io::Result<()> {
        let kind = meta.file_type();
        if kind.is_symlink() {
            return self.add_symlink(arcpath, &fs::read_link(path)?);
        }
        if !kind.is_file() {
            tracing::warn!(
                "leaving out {}: not a file, directory or symlink",
                path.display()
            );
            return Ok(());
        }
        if meta.nlink() > 1 && !self.links_as_copies {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.inodes.get(&key).cloned() {
                return self.add_hardlink(arcpath, &first);
            }
            self.inodes.insert(key, arcpath.to_owned());
        }
        let file = fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.add_file(arcpath, meta.mode(), meta.len(), file)
    }

    /// Records `path` as written; `false` (and a warning) if it already was.
    fn first_time(&mut self, path: &str) -> bool {
        if self.written.insert(path.to_owned()) {
            return true;
        }
        tracing::warn!("{path} is provided twice in one layer; keeping the first");
        false
    }

    fn ensure_parents(&mut self, path: &str) -> io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/')
            && !self.dirs.contains(parent)
        {
            self.add_directory(parent, PARENT_DIR_MODE)?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// The names in `dir`, sorted, so a walk is the same on every file system;
/// errors name the folder.
pub(crate) fn sorted_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_changed_size_is_an_error() {
        let mut tar = LayerTar::new(Vec::new(), 0);
        let err = tar.add_file("a", 0o644, 5, &b"abc"[..]).unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
        let mut tar = LayerTar::new(Vec::new(), 0);
        let err = tar.add_file("a", 0o644, 2, &b"abc"[..]).unwrap_err();
        assert!(err.to_string().contains("grew"), "{err}");
    }

    #[test]
    fn parents_come_first_with_fixed_metadata() {
        let mut tar = LayerTar::new(Vec::new(), 42);
        tar.add_file("opt/conda/bin/x", 0o755, 1, &b"x"[..])
            .unwrap();
        let bytes = tar.finish().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let entries: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("opt/".into(), 0o755, 0, 42),
                ("opt/conda/".into(), 0o755, 0, 42),
                ("opt/conda/bin/".into(), 0o755, 0, 42),
                ("opt/conda/bin/x".into(), 0o755, 0, 42),
            ]
        );
    }

    #[test]
    fn the_owner_has_the_prefix_and_root_the_rest() {
        let mut tar = LayerTar::new(Vec::new(), 0);
        tar.set_owner(Some(Owner {
            uid: 1000,
            gid: 100,
            below: "opt/conda".into(),
        }));
        tar.add_file("opt/conda/bin/x", 0o755, 1, &b"x"[..])
            .unwrap();
        tar.add_file("opt/condarc", 0o644, 1, &b"y"[..]).unwrap();
        let bytes = tar.finish().unwrap();
        let owners: Vec<(String, u64, u64)> = tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let path = e.path().unwrap().display().to_string();
                (path, h.uid().unwrap(), h.gid().unwrap())
            })
            .collect();
        assert_eq!(
            owners,
            [
                ("opt/".into(), 0, 0),
                ("opt/conda/".into(), 1000, 100),
                ("opt/conda/bin/".into(), 1000, 100),
                ("opt/conda/bin/x".into(), 1000, 100),
                ("opt/condarc".into(), 0, 0),
            ]
        );
    }

    #[test]
    fn a_path_is_written_once() {
        let mut tar = LayerTar::new(Vec::new(), 0);
        tar.add_file("a/x", 0o644, 1, &b"1"[..]).unwrap();
        tar.add_file("a/x", 0o644, 1, &b"2"[..]).unwrap();
        tar.add_symlink("a/x", Path::new("y")).unwrap();
        let bytes = tar.finish().unwrap();
        let count = tar::Archive::new(&bytes[..]).entries().unwrap().count();
        assert_eq!(count, 2, "a/ and one a/x");
    }

    #[test]
    fn archive_paths_are_relative_and_contained() {
        assert_eq!(archive_path("/opt/conda/").unwrap(), "opt/conda");
        assert_eq!(archive_path("./a//b").unwrap(), "a/b");
        assert_eq!(archive_path("/").unwrap(), "");
        assert!(archive_path("a/../../etc").is_err());
    }
}
