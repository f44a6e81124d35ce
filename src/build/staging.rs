//! A build's scratch folder, `<cache>/staging/build-*`, and what dead
//! builds left there.
//!
//! A build holds an advisory `flock` on its own folder for as long as it
//! lives; the kernel drops it when the process ends, however it ends. So a
//! `build-*` folder nobody holds is a dead build's, and a new build
//! removes those (and only those) before it makes its own: a concurrent
//! live build's folder is never touched. A folder is locked before it gets
//! its `build-*` name (it is made as `.new-*` and renamed), so no build
//! ever sees a live one unlocked. What a build stopped by a signal leaves,
//! [`Staging`]'s `Drop` removes on the way out.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The prefix of a build's folder.
const BUILD: &str = "build-";

/// A build's own folder under `root`, locked while it lives and removed
/// when dropped.
#[derive(Debug)]
pub(crate) struct Staging {
    path: PathBuf,
    _lock: File,
}

impl Staging {
    /// Removes the folders dead builds left in `root`, then makes and
    /// locks this build's own.
    pub(crate) fn create(root: &Path) -> io::Result<Staging> {
        fs_err::create_dir_all(root)?;
        remove_dead(root);
        let made = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(root)?
            .keep();
        let locked = File::open(&made)
            .and_then(|lock| lock.try_lock().map(|()| lock).map_err(io::Error::from));
        let name = made
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(".new-"))
            .map(|suffix| format!("{BUILD}{suffix}"));
        let (lock, name) = match (locked, name) {
            (Ok(lock), Some(name)) => (lock, name),
            (Err(e), _) => {
                let _ = std::fs::remove_dir_all(&made);
                return Err(e);
            }
            (_, None) => {
                let _ = std::fs::remove_dir_all(&made);
                return Err(io::Error::other("a temp folder without its prefix"));
            }
        };
        let path = root.join(name);
        if let Err(e) = fs_err::rename(&made, &path) {
            let _ = std::fs::remove_dir_all(&made);
            return Err(e);
        }
        Ok(Staging { path, _lock: lock })
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes every `build-*` folder in `root` that no live build holds.
/// Returns how many.
pub(crate) fn remove_dead(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(BUILD) {
            continue;
        }
        let Ok(folder) = File::open(&path) else {
            continue;
        };
        match folder.try_lock() {
            Ok(()) => {
                tracing::info!(
                    "removing {}, left by a build that was killed",
                    path.display()
                );
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

    /// A live build's folder survives another build's clean-up; a dead
    /// one's does not; a build's own goes when it is dropped.
    #[test]
    fn only_dead_builds_folders_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let live = Staging::create(root.path()).unwrap();
        std::fs::write(live.path().join("file"), "live").unwrap();
        let dead = root.path().join("build-dead");
        std::fs::create_dir_all(dead.join("pkg")).unwrap();
        let other = Staging::create(root.path()).unwrap();
        assert!(!dead.exists());
        assert_eq!(std::fs::read(live.path().join("file")).unwrap(), b"live");
        assert!(other.path().is_dir());
        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists());
        assert_eq!(remove_dead(root.path()), 0);
        assert!(other.path().is_dir());
    }
}
