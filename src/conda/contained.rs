//! Paths and names that come from data, checked once before they touch the
//! file system.
//!
//! Packages, lock files, repodata and `conda-meta` records may all be
//! hostile, and each of them carries strings that end up joined to a host
//! folder: `paths.json` entries, `python_site_packages_path`, entry point
//! names, and `name-version-build`. Each such string becomes a
//! [`ContainedPath`] or a [`DistName`] first; those types cannot hold an
//! absolute path, a `..`, a NUL or an empty string, and a `DistName` is a
//! single folder name. [`RealDirs`] adds the other half of containment:
//! no path is followed through a symlink that data could have planted.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use rattler_conda_types::prefix_record::PathType;
use rattler_conda_types::{PackageRecord, PrefixRecord};

/// Why a path or name from data was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsafe {
    /// An empty path.
    #[error("is empty")]
    Empty,
    /// `/...`.
    #[error("is absolute")]
    Absolute,
    /// A `..` (or `.`) component.
    #[error("has a `..` or `.` component")]
    Dots,
    /// A NUL byte, which no file name can hold.
    #[error("holds a NUL byte")]
    Nul,
    /// A character conda's grammar does not allow in this field.
    #[error("holds `{0}`, which conda does not allow there")]
    Character(char),
    /// A path that goes through a symlink on the way.
    #[error("goes through the symlink {0}")]
    ThroughSymlink(String),
}

/// A relative path from data that stays inside whatever folder it is
/// joined to: normal components only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainedPath(PathBuf);

impl ContainedPath {
    /// Checks `path`.
    pub fn new(path: &Path) -> Result<Self, Unsafe> {
        if path.as_os_str().is_empty() {
            return Err(Unsafe::Empty);
        }
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(Unsafe::Nul);
        }
        for component in path.components() {
            match component {
                Component::Normal(_) => {}
                Component::RootDir | Component::Prefix(_) => return Err(Unsafe::Absolute),
                Component::ParentDir | Component::CurDir => return Err(Unsafe::Dots),
            }
        }
        // `Path::components` drops an inner `.`; the raw text must not hide one.
        if path
            .as_os_str()
            .as_encoded_bytes()
            .split(|&b| b == b'/')
            .any(|part| part == b".")
        {
            return Err(Unsafe::Dots);
        }
        Ok(ContainedPath(path.components().collect()))
    }

    /// The path, relative.
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The proper ancestors, nearest the root first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = &Path> {
        let mut all: Vec<&Path> = self
            .0
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .collect();
        all.reverse();
        all.into_iter()
    }
}

/// `name-version-build`: the folder name every package cache uses, built
/// only from a record whose three fields follow conda's grammar, so it is
/// always one plain path component.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DistName(String);

impl DistName {
    /// The dist name of `record`, or which field is unsafe and why.
    pub fn of(record: &PackageRecord) -> Result<Self, (&'static str, Unsafe)> {
        let name = record.name.as_normalized();
        let version = record.version.to_string();
        check_chars("name", name, |c| {
            c.is_ascii_alphanumeric() || "_.-".contains(c)
        })?;
        check_chars("version", &version, |c| {
            c.is_ascii_alphanumeric() || "_.+!".contains(c)
        })?;
        check_chars("build", record.build.as_str(), |c| {
            c.is_ascii_alphanumeric() || "_.+".contains(c)
        })?;
        check_chars("subdir", &record.subdir, |c| {
            c.is_ascii_alphanumeric() || "_-".contains(c)
        })?;
        if name.starts_with('.') {
            return Err(("name", Unsafe::Dots));
        }
        Ok(DistName(format!("{name}-{version}-{}", record.build)))
    }

    /// The folder name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the package's record in `conda-meta/`:
    /// `name-version-build.json`.
    pub fn conda_meta_file(&self) -> String {
        format!("{}.json", self.0)
    }
}

impl AsRef<Path> for DistName {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl std::fmt::Display for DistName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_chars(
    field: &'static str,
    value: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), (&'static str, Unsafe)> {
    if value.is_empty() {
        return Err((field, Unsafe::Empty));
    }
    match value.chars().find(|&c| !allowed(c)) {
        Some('\0') => Err((field, Unsafe::Nul)),
        Some(c) => Err((field, Unsafe::Character(c))),
        None => Ok(()),
    }
}

/// A field of a record that cannot safely name a file or folder; it
/// displays as why.
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub struct UnsafeField {
    /// The field.
    pub field: &'static str,
    /// Its value, as [`shown`].
    pub value: String,
    /// Why.
    pub why: Unsafe,
}

/// Checks every field of `record` that this tool joins to a folder: name,
/// version, build and subdir (through [`DistName`]), the archive's file
/// name, `python_site_packages_path`, and, for an installed environment's
/// record, its files: plain relative paths, none below a symlink the
/// record itself lists.
pub fn check_record(record: &PrefixRecord) -> Result<DistName, UnsafeField> {
    let repodata = &record.repodata_record;
    let p = &repodata.package_record;
    let bad = |field: &'static str, value: &str, why: Unsafe| UnsafeField {
        field,
        value: shown(value),
        why,
    };
    let dist = DistName::of(p).map_err(|(field, why)| {
        let value = match field {
            "name" => p.name.as_source().to_owned(),
            "version" => p.version.to_string(),
            "build" => p.build.as_str().to_owned(),
            _ => p.subdir.clone(),
        };
        bad(field, &value, why)
    })?;
    let archive = repodata.identifier.to_string();
    file_name(&archive).map_err(|why| bad("fn", &archive, why))?;
    if let Some(site) = &p.python_site_packages_path {
        ContainedPath::new(Path::new(site))
            .map_err(|why| bad("python_site_packages_path", site, why))?;
    }
    let listed = record.paths_data.paths.iter().flat_map(|entry| {
        [Some(&entry.relative_path), entry.original_path.as_ref()]
            .into_iter()
            .flatten()
    });
    for path in listed.chain(&record.files) {
        ContainedPath::new(path).map_err(|why| bad("paths", &path.to_string_lossy(), why))?;
    }
    let links: HashSet<&Path> = record
        .paths_data
        .paths
        .iter()
        .filter(|entry| entry.path_type == PathType::SoftLink)
        .map(|entry| entry.relative_path.as_path())
        .collect();
    for entry in &record.paths_data.paths {
        let path = ContainedPath::new(&entry.relative_path)
            .map_err(|why| bad("paths", &entry.relative_path.to_string_lossy(), why))?;
        if let Some(link) = path.ancestors().find(|a| links.contains(a)) {
            return Err(bad(
                "paths",
                &entry.relative_path.to_string_lossy(),
                Unsafe::ThroughSymlink(link.display().to_string()),
            ));
        }
    }
    Ok(dist)
}

/// A file name from data (an archive's `fn`): one component, no NUL.
pub fn file_name(name: &str) -> Result<&OsStr, Unsafe> {
    let path = ContainedPath::new(Path::new(name))?;
    if path.as_path().components().count() != 1 {
        return Err(Unsafe::Character('/'));
    }
    Ok(OsStr::new(name))
}

/// `value` fit for an error message: control characters escaped and at most
/// 120 characters, so a hostile field cannot flood or garble the terminal.
pub fn shown(value: &str) -> String {
    let escaped: String = value.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() <= 120 {
        return escaped;
    }
    format!("{} ({} bytes)", cut(&escaped, 120), value.len())
}

/// `text` cut to at most `max` characters, with `…` where it was cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The folders under a root known to be real directories, not symlinks.
/// Joining a [`ContainedPath`] to a root stays inside it only if no
/// component on the way is a symlink: a package or an environment on disk
/// can hold one that points anywhere.
pub struct RealDirs<'a> {
    root: &'a Path,
    known: HashSet<PathBuf>,
}

impl<'a> RealDirs<'a> {
    /// Checks paths under `root` (itself trusted).
    pub fn new(root: &'a Path) -> Self {
        RealDirs {
            root,
            known: HashSet::new(),
        }
    }

    /// `root/path`, once every existing ancestor of it under the root is
    /// known to be a real directory. Ancestors that do not exist yet are
    /// fine: whoever creates them makes real directories.
    pub fn join(&mut self, path: &ContainedPath) -> Result<PathBuf, Unsafe> {
        for ancestor in path.ancestors() {
            if self.known.contains(ancestor) {
                continue;
            }
            match std::fs::symlink_metadata(self.root.join(ancestor)) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Unsafe::ThroughSymlink(ancestor.display().to_string()));
                }
                Ok(meta) if meta.is_dir() => {
                    self.known.insert(ancestor.to_owned());
                }
                _ => {}
            }
        }
        Ok(self.root.join(path.as_path()))
    }

    /// Creates the parent folders of `root/path` as real directories,
    /// refusing any symlink on the way, and returns `root/path`.
    pub fn create_parents(&mut self, path: &ContainedPath) -> Result<PathBuf, std::io::Error> {
        for ancestor in path.ancestors() {
            if self.known.contains(ancestor) {
                continue;
            }
            let full = self.root.join(ancestor);
            match std::fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(std::io::Error::other(format!(
                        "{} is not a directory",
                        full.display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs_err::create_dir(&full)?,
                Err(e) => return Err(e),
            }
            self.known.insert(ancestor.to_owned());
        }
        Ok(self.root.join(path.as_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_paths_are_plain_and_relative() {
        for good in ["lib/x.so", "a", "bin/python3.11", "a/b/c"] {
            assert!(ContainedPath::new(Path::new(good)).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", Unsafe::Empty),
            ("/etc/passwd", Unsafe::Absolute),
            ("../x", Unsafe::Dots),
            ("a/../../b", Unsafe::Dots),
            ("a/./b", Unsafe::Dots),
            ("a/\0b", Unsafe::Nul),
        ] {
            assert_eq!(ContainedPath::new(Path::new(bad)), Err(why), "{bad:?}");
        }
        let path = ContainedPath::new(Path::new("a/b/c")).unwrap();
        let ancestors: Vec<_> = path.ancestors().collect();
        assert_eq!(ancestors, [Path::new("a"), Path::new("a/b")]);
    }

    #[test]
    fn shown_values_are_escaped_and_cut() {
        assert_eq!(shown("a\nb"), "a\\nb");
        let long = "x".repeat(10_000);
        let cut = shown(&long);
        assert!(cut.len() < 200 && cut.ends_with("(10000 bytes)"), "{cut}");
    }

    #[test]
    fn real_dirs_refuse_symlinks_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("a/lnk")).unwrap();
        let mut dirs = RealDirs::new(dir.path());
        let ok = ContainedPath::new(Path::new("a/new/file")).unwrap();
        assert_eq!(
            dirs.create_parents(&ok).unwrap(),
            dir.path().join("a/new/file")
        );
        assert!(dir.path().join("a/new").is_dir());
        let through = ContainedPath::new(Path::new("a/lnk/x")).unwrap();
        assert_eq!(
            dirs.join(&through),
            Err(Unsafe::ThroughSymlink("a/lnk".into()))
        );
        assert!(dirs.create_parents(&through).is_err());
    }
}
