//! What can go wrong in a build, whatever the stage.

use crate::conda::CondaError;
use crate::image::ImageError;
use crate::layer::cache::LockError;
use crate::registry::RegistryError;

use super::DEFAULT_BASE;

/// What went wrong building.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading the environment or its packages.
    #[error(transparent)]
    Conda(#[from] CondaError),
    /// A PyPI wheel of a lock file.
    #[error(transparent)]
    Pypi(#[from] crate::pypi::PypiError),
    /// Reading the base or building layers.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Pulling the base from a registry.
    #[error(transparent)]
    Registry(Box<RegistryError>),
    /// A base image for another platform.
    #[error(
        "the base image is {base}, but the environment is {env} (needs {wanted}); pick a base for {wanted}"
    )]
    PlatformMismatch {
        /// The base's os/architecture.
        base: String,
        /// The environment's conda platform.
        env: String,
        /// The matching os/architecture.
        wanted: String,
    },
    /// A `--platform` that is not the environment's.
    #[error(
        "--platform {asked} does not match the environment, which is {env} ({platform}); drop --platform or build from an environment for {asked}"
    )]
    WrongPlatform {
        /// What was asked for.
        asked: String,
        /// The environment's conda platform.
        env: String,
        /// Its image platform.
        platform: String,
    },
    /// Several `--platform`s for an environment of one platform.
    #[error(
        "{what} is for one platform: build it with at most one --platform, or build several platforms from specs, an environment.yml, a pixi.lock or a conda-lock.yml"
    )]
    OnePlatformOnly {
        /// The environment (`the environment at PATH`).
        what: String,
    },
    /// The same platform asked for twice.
    #[error("--platform {0} is given twice: give each platform once")]
    SamePlatformTwice(String),
    /// A conda platform images cannot have.
    #[error("the environment is for {0}; images hold linux environments only")]
    NotLinux(String),
    /// A layer budget the base alone uses up.
    #[error(
        "--max-layers {max} leaves no room for the environment: the base has {base} layers and {extra} more are needed"
    )]
    NoLayerBudget {
        /// The budget.
        max: usize,
        /// The base's layers.
        base: usize,
        /// Layers besides the packages'.
        extra: usize,
    },
    /// An environment that needs a glibc the base does not have.
    #[error(
        "the base image {base} {has}, but the environment needs {needs} ({why}); build on a base with glibc such as {DEFAULT_BASE}, or pass --virtual-package __glibc=VERSION to build anyway"
    )]
    Glibc {
        /// The base, as given.
        base: String,
        /// `has no glibc` or `has glibc X`.
        has: String,
        /// `glibc` or `a newer glibc`.
        needs: String,
        /// Which package or file needs it.
        why: String,
    },
    /// A bad `--prefix-in-image`.
    #[error("--prefix-in-image `{0}` must be an absolute path such as /opt/conda")]
    BadImagePrefix(String),
    /// The cache's lock (see `cache prune`).
    #[error(transparent)]
    CacheLock(#[from] LockError),
    /// This build's staging folder could not be made.
    #[error(
        "cannot make a staging folder in {}; CONDA_DOCKER_CACHE_DIR must be a writable folder with free space", dir.display()
    )]
    Staging {
        /// `<cache>/staging`.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Staging or layer I/O.
    #[error("cannot build the layer of {what}")]
    Layer {
        /// The packages in the layer.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A registry's image errors stay image errors (the same messages whether a
/// base came from a file or a registry); the rest are registry errors.
impl From<RegistryError> for BuildError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Image(inner) => BuildError::Image(inner),
            other => BuildError::Registry(Box::new(other)),
        }
    }
}
