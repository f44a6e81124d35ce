//! What a build tells its caller while it runs and when it is done; the
//! library never prints.

use crate::digest::Digest;

/// One conda layer of a built image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    /// The blob digest.
    pub digest: Digest,
    /// The blob size.
    pub size: u64,
    /// `name-version-build` of each conda package in it, or the file name
    /// of each PyPI wheel (`name-version-tags.whl`).
    pub packages: Vec<String>,
    /// Where the layer came from.
    pub source: LayerSource,
}

/// Where a package layer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerSource {
    /// Built from its packages.
    Built,
    /// Taken from the layer cache (`CONDA_DOCKER_CACHE_DIR`).
    Cache,
    /// Found in a registry by its identity (`--cache-repo`): pulled, or
    /// left in the registry the image is pushed to.
    Registry,
}

/// Hears how a build goes, so a front end can show progress; the library
/// itself never prints.
pub trait Reporter: Sync {
    /// `packages` packages are about to be downloaded.
    fn fetching(&self, _packages: usize) {}
    /// One package was downloaded (called from worker threads).
    fn fetched(&self, _package: &str) {}
    /// The build is about to relocate `packages` packages.
    fn start(&self, _packages: usize) {}
    /// One package layer is ready (called from worker threads).
    fn layer_built(&self, _layer: &LayerReport) {}
    /// All package layers are ready.
    fn finish(&self) {}
}

/// A reporter that ignores everything.
pub struct Silent;

impl Reporter for Silent {}
