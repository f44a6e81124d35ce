//! Files in an environment that no package owns (pip installs, files a
//! user put there), for the environment's last layer.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::CondaError;
use super::env::Environment;

/// Top-level entries of a prefix that are never exported: package caches,
/// nested environments, conda's own bookkeeping (its records are written
/// fresh), configuration and lock or cache markers.
const SKIPPED_TOP: [&str; 6] = [
    "pkgs",
    "envs",
    "conda-meta",
    ".condarc",
    "CACHEDIR.TAG",
    ".nonadmin",
];

/// What to do with one untracked file.
#[derive(Debug, PartialEq, Eq)]
pub enum Untracked {
    /// Copy as is.
    Copy(PathBuf),
    /// A text file naming the host prefix: copy with the prefix replaced.
    Relocate(PathBuf),
    /// A symlink, kept (its target relocated if it points into the prefix).
    Symlink(PathBuf),
    /// A binary file naming the host prefix: cannot be relocated safely.
    Unrelocatable(PathBuf),
}

fn skipped(rel: &Path) -> bool {
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
    let Some(first) = parts.next() else {
        return true;
    };
    if SKIPPED_TOP.contains(&first.as_ref()) || first.ends_with(".lock") {
        return true;
    }
    rel.components().any(|c| c.as_os_str() == "__pycache__")
        || rel.extension().is_some_and(|e| e == "pyc")
}

/// Whether the file holds `needle`, and whether it looks binary (a NUL
/// byte), read in one streaming pass.
fn scan(path: &Path, needle: &[u8]) -> std::io::Result<(bool, bool)> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut carry: Vec<u8> = Vec::new();
    let (mut found, mut binary) = (false, false);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((found, binary));
        }
        binary |= buf[..n].contains(&0);
        carry.extend_from_slice(&buf[..n]);
        found |= carry.windows(needle.len()).any(|w| w == needle);
        let keep = needle.len().saturating_sub(1).min(carry.len());
        carry.drain(..carry.len() - keep);
    }
}

/// The untracked files of the environment installed at `prefix`, sorted,
/// each with what to do with it.
pub fn untracked(env: &Environment, prefix: &Path) -> Result<Vec<Untracked>, CondaError> {
    let owned: HashSet<&Path> = env
        .records
        .iter()
        .flat_map(|r| r.files.iter().map(PathBuf::as_path))
        .collect();
    let host = prefix.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = prefix.join(&rel_dir);
        let io = |source| CondaError::Io {
            path: dir.clone(),
            source,
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        names.sort();
        for name in names.into_iter().rev() {
            let rel = rel_dir.join(&name);
            if skipped(&rel) || owned.contains(rel.as_path()) {
                continue;
            }
            let path = prefix.join(&rel);
            let meta = std::fs::symlink_metadata(&path).map_err(|source| CondaError::Io {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                stack.push(rel);
            } else if meta.file_type().is_symlink() {
                found.push(Untracked::Symlink(rel));
            } else if meta.is_file() {
                let (names_host, binary) =
                    scan(&path, host.as_bytes()).map_err(|source| CondaError::Io {
                        path: path.clone(),
                        source,
                    })?;
                found.push(match (names_host, binary) {
                    (false, _) => Untracked::Copy(rel),
                    (true, false) => Untracked::Relocate(rel),
                    (true, true) => Untracked::Unrelocatable(rel),
                });
            }
        }
    }
    found.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    Ok(found)
}

/// The relative path an entry is about.
pub fn path_of(entry: &Untracked) -> &Path {
    match entry {
        Untracked::Copy(p)
        | Untracked::Relocate(p)
        | Untracked::Symlink(p)
        | Untracked::Unrelocatable(p) => p,
    }
}
