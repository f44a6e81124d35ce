//! The user's directories, found the way the tools we stand in for find
//! them (XDG first, then the home directory).

use std::path::PathBuf;

/// `$HOME`.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Our cache directory (conda packages we had to extract, pulled image
/// blobs): `CONDA_DOCKER_CACHE_DIR`, else `$XDG_CACHE_HOME/conda-docker`,
/// else `~/.cache/conda-docker`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONDA_DOCKER_CACHE_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("conda-docker")
}
