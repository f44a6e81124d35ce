//! Writing files so that a failure leaves nothing behind: bytes go to a
//! temp file beside the target, which is renamed into place when complete;
//! a run's temp folders are [`OwnedDir`]s, which the next run removes if
//! the run was killed.

use std::fs::{File, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A temp file in the folder of `path` (so the rename stays on one file
/// system), named so it is recognisable if a crash leaves it.
pub fn temp_beside(path: &Path) -> io::Result<NamedTempFile> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".conda-docker-")
        .tempfile_in(parent)
}

/// Gives a finished temp file `mode` and renames it to `path`.
pub fn publish(file: NamedTempFile, path: &Path, mode: u32) -> io::Result<()> {
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` with `mode`, atomically.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = temp_beside(path)?;
    file.write_all(bytes)?;
    publish(file, path, mode)
}

/// A folder of one run's temp files, locked (an advisory `flock` on the
/// folder) while the run holds it and removed when dropped. The kernel
/// drops the lock when the process ends, however it ends, so a folder of
/// this kind that nobody holds is a killed run's: [`remove_dead`] removes
/// those, and never a live run's. It is made as `.new-*`, locked, then
/// renamed to its name, so it is never seen under its name unlocked.
#[derive(Debug)]
pub struct OwnedDir {
    path: PathBuf,
    _lock: File,
}

impl OwnedDir {
    /// Removes the dead folders named `prefix*` in `parent`, then makes
    /// and locks a new one.
    pub fn create(parent: &Path, prefix: &str) -> io::Result<OwnedDir> {
        fs_err::create_dir_all(parent)?;
        remove_dead(parent, prefix);
        let made = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(parent)?
            .keep();
        let owned = File::open(&made)
            .and_then(|lock| lock.try_lock().map(|()| lock).map_err(io::Error::from))
            .and_then(|lock| {
                let suffix = made
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(".new-"))
                    .ok_or_else(|| io::Error::other("a temp folder without its prefix"))?;
                let path = parent.join(format!("{prefix}{suffix}"));
                fs_err::rename(&made, &path)?;
                Ok(OwnedDir { path, _lock: lock })
            });
        if owned.is_err() {
            let _ = std::fs::remove_dir_all(&made);
        }
        owned
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OwnedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes every folder named `prefix*` in `parent` that no live run
/// holds (see [`OwnedDir`]). Returns how many.
pub fn remove_dead(parent: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(prefix)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        let Some(folder) = ours.then(|| File::open(&path).ok()).flatten() else {
            continue;
        };
        match folder.try_lock() {
            Ok(()) => {
                tracing::info!("removing {}, left by a run that was killed", path.display());
                if std::fs::remove_dir_all(&path).is_ok() {
                    removed += 1;
                }
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                tracing::debug!("cannot lock {}: {e}", path.display());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live run's folder survives another run's clean-up; a dead one's
    /// does not; a run's own goes when it is dropped.
    #[test]
    fn only_dead_runs_folders_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let live = OwnedDir::create(root.path(), "build-").unwrap();
        std::fs::write(live.path().join("file"), "live").unwrap();
        let dead = root.path().join("build-dead");
        std::fs::create_dir_all(dead.join("pkg")).unwrap();
        let other = OwnedDir::create(root.path(), "build-").unwrap();
        assert!(!dead.exists());
        assert_eq!(std::fs::read(live.path().join("file")).unwrap(), b"live");
        assert!(other.path().is_dir());
        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists());
        assert_eq!(remove_dead(root.path(), "build-"), 0);
        assert!(other.path().is_dir());
    }
}
