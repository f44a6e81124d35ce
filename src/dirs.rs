//! The user's directories, found the way the tools we stand in for find
//! them (XDG first, then the home directory).

use std::path::PathBuf;

/// `$HOME`.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// rattler's (and pixi's) cache: `RATTLER_CACHE_DIR`, else the user's
/// cache folder's `rattler/cache`, exactly as rattler finds it, so packages
/// this tool downloads land where pixi looks. Its `pkgs/` and
/// `repodata/` are `rattler_cache::PACKAGE_CACHE_DIR` and
/// `REPODATA_CACHE_DIR`.
pub fn rattler_cache_dir() -> Option<PathBuf> {
    rattler_cache::default_cache_dir().ok()
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
