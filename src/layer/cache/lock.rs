//! `<cache>/lock`: builds hold it shared for their whole run, `cache prune`
//! exclusively, so a prune never removes a blob or entry a running build
//! has taken or is about to write. An advisory `flock`: it goes with the
//! open file, so a build killed by any signal releases it.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A held lock on a cache directory, released when dropped.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// The exclusive lock could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Builds still held the cache when the wait ran out.
    #[error(
        "the cache {} is still in use by a running build after {} s; try again when it has finished, or wait longer with --timeout", dir.display(), waited.as_secs()
    )]
    Busy {
        /// The cache directory.
        dir: PathBuf,
        /// How long was waited.
        waited: Duration,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock the cache {}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// How often a waiting prune tries again.
const POLL: Duration = Duration::from_millis(100);

fn open(cache_dir: &Path) -> io::Result<(File, PathBuf)> {
    fs_err::create_dir_all(cache_dir)?;
    let path = cache_dir.join("lock");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .or_else(|_| File::open(&path))?;
    Ok((file, path))
}

impl CacheLock {
    /// Shares the lock of `cache_dir` with other builds. While a prune
    /// holds it, calls `waiting` once and waits for the prune to end.
    pub fn shared(cache_dir: &Path, waiting: impl FnOnce()) -> Result<CacheLock, LockError> {
        let (file, path) = open(cache_dir).map_err(|source| LockError::Io {
            path: cache_dir.join("lock"),
            source,
        })?;
        let failed = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        match file.try_lock_shared() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                file.lock_shared().map_err(failed)?;
            }
            Err(TryLockError::Error(e)) => return Err(failed(e)),
        }
        Ok(CacheLock { _file: file })
    }

    /// Takes the lock of `cache_dir` for this process alone. While builds
    /// hold it, calls `waiting` once and tries again until `timeout` has
    /// passed, then fails with [`LockError::Busy`].
    pub fn exclusive(
        cache_dir: &Path,
        timeout: Duration,
        waiting: impl FnOnce(),
    ) -> Result<CacheLock, LockError> {
        let (file, path) = open(cache_dir).map_err(|source| LockError::Io {
            path: cache_dir.join("lock"),
            source,
        })?;
        let started = Instant::now();
        let mut waiting = Some(waiting);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(CacheLock { _file: file }),
                Err(TryLockError::WouldBlock) if started.elapsed() < timeout => {
                    if let Some(waiting) = waiting.take() {
                        waiting();
                    }
                    std::thread::sleep(POLL.min(timeout));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Busy {
                        dir: cache_dir.to_owned(),
                        waited: timeout,
                    });
                }
                Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
            }
        }
    }
}
