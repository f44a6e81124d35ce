//! Conda environments and packages: which environment, where each
//! package's bytes are, and how its files land in the image prefix.
//!
//! The conda knowledge itself (records, archives, linking) is rattler's;
//! this module finds things and wraps rattler's calls.

pub(crate) mod activation;
pub mod cache;
pub(crate) mod condarc;
pub(crate) mod contained;
pub mod env;
pub(crate) mod envfile;
pub(crate) mod explicit;
pub(crate) mod glibc_needs;
pub(crate) mod hashes;
pub(crate) mod input;
pub(crate) mod layer_records;
pub(crate) mod order;
pub(crate) mod pixi;
pub(crate) mod relocate;
pub(crate) mod retry;
pub mod solve;
pub(crate) mod unrelocate;
pub(crate) mod untracked;
pub(crate) mod virtual_packages;

use std::path::PathBuf;

/// What can go wrong reading an environment or its packages. Each message
/// names the environment, package or file it is about.
#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    /// No environment was named and none is active.
    #[error(
        "no environment given and none is active: pass package specs, -p/--prefix PATH, -n/--name NAME or --file environment.yml/EXPLICIT.txt, or activate one"
    )]
    NoEnvironment,
    /// `pixi docker` outside any pixi workspace.
    #[error(
        "no pixi workspace in {} or above it (no pixi.toml with [workspace], or pyproject.toml with [tool.pixi.workspace]): run this inside a pixi project, or name the environment with -p, -n, --file or package specs",
        .0.display()
    )]
    NoPixiWorkspace(PathBuf),
    /// A pixi environment that `pixi install` has not installed.
    #[error(
        "the pixi environment `{name}` of {} is not installed: run `pixi install -e {name}` first, or build from the lock with --file pixi.lock --pixi-env {name}",
        manifest.display()
    )]
    PixiNotInstalled {
        /// The environment.
        name: String,
        /// The workspace's manifest.
        manifest: PathBuf,
    },
    /// `-c` or `--override-channels` for an environment that is not solved.
    #[error(
        "-c/--channel and --override-channels choose where a solve looks; this environment is not solved (only package specs and an environment.yml are): leave them out"
    )]
    ChannelsWithoutSolve,
    /// `--pixi-env` with a source that is not pixi's.
    #[error(
        "--pixi-env names an environment of a pixi workspace or of a pixi.lock given with --file; leave it out with -p, -n, specs or other files"
    )]
    PixiEnvMisplaced,
    /// More than one way of naming the environment.
    #[error("give only one of -p/--prefix, -n/--name, --file and package specs (got {0})")]
    TwoSources(String),
    /// A prefix that does not exist.
    #[error("environment prefix {} does not exist", .0.display())]
    NoSuchPrefix(PathBuf),
    /// A directory that is not a conda environment.
    #[error("{} is not a conda environment: it has no conda-meta/ folder", .0.display())]
    NotAnEnvironment(PathBuf),
    /// A name found in no envs directory.
    #[error("no environment named `{name}` in {searched}")]
    NoSuchName {
        /// The name.
        name: String,
        /// Where we looked.
        searched: String,
    },
    /// `conda-meta/*.json` that cannot be read.
    #[error("cannot read the package records in {}", path.display())]
    BadRecords {
        /// The conda-meta folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An environment with no packages.
    #[error("{} has no packages", .0.display())]
    Empty(PathBuf),
    /// Records of more than one platform (besides noarch).
    #[error("the environment mixes platforms: {0}")]
    MixedPlatforms(String),
    /// A package whose files are in no cache.
    #[error(
        "package {package} is in no package cache (searched {searched}); run `conda install --force-reinstall {name}` or rebuild the cache"
    )]
    NotCached {
        /// `name-version-build`.
        package: String,
        /// The package name.
        name: String,
        /// The caches searched.
        searched: String,
    },
    /// An archive whose bytes do not match the record.
    #[error("{}: does not match the record of {package} ({what})", path.display())]
    HashMismatch {
        /// The archive.
        path: PathBuf,
        /// The package.
        package: String,
        /// Which hash.
        what: String,
    },
    /// An archive that cannot be extracted into the staging cache.
    #[error("cannot extract {} into {}", archive.display(), into.display())]
    Extract {
        /// The archive.
        archive: PathBuf,
        /// The staging folder.
        into: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Linking a package into the staging prefix failed.
    #[error("cannot relocate {package} into the image prefix")]
    Relocate {
        /// The package.
        package: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A package whose metadata would read or write outside the package
    /// or the staging folder.
    #[error("refusing package {package}: its {what} `{path}` {reason}")]
    UnsafePackage {
        /// The package.
        package: String,
        /// Which part of the package.
        what: String,
        /// The path, as shown.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A record (from an environment, a lock or explicit file, a solve)
    /// with a field that cannot safely name a file or folder.
    #[error("{origin}: refusing the record of {package}: its {} `{}`", .field.field, .field.value)]
    UnsafeRecord {
        /// Where the record came from.
        origin: String,
        /// The package, as shown.
        package: String,
        /// The field, its value, and why.
        #[source]
        field: Box<contained::UnsafeField>,
    },
    /// A record that reached the build without the check at load time.
    #[error("the record of {0} names a path outside its folder")]
    NotContained(String),
    /// A noarch python package with no python in the environment.
    #[error("{0} is a noarch python package, but the environment has no usable python")]
    NoPython(String),
    /// An installed file that cannot be turned back into the package's.
    #[error("cannot rebuild {package} from the environment: {} {reason}", file.display())]
    Unrelocatable {
        /// The installed file.
        file: PathBuf,
        /// The package.
        package: String,
        /// Why.
        reason: String,
    },
    /// A line of an explicit spec or environment file that cannot be used.
    #[error("{}:{line}: {reason}", path.display())]
    BadExplicit {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Solving specs or fetching packages.
    #[error(transparent)]
    Solve(#[from] solve::SolveError),
    /// Other I/O on a named path.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
