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
    /// `name-version-build` of each package in it.
    pub packages: Vec<String>,
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
