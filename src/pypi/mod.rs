//! PyPI wheels a lock file pins (issue 16 §1): checked against the image
//! (tags), fetched into our cache by sha256, and installed by the wheel
//! spec (PEP 427) into a staging folder laid out like the environment's
//! prefix, which the build writes as a layer of its own.
//!
//! Wheels are untrusted: their file names, archive entries, `RECORD` and
//! entry points all come from data, so every path becomes a
//! `ContainedPath` (`conda/contained.rs`) first and every
//! size is a bound.

mod fetch;
mod install;
mod tags;
mod wheel;

use std::path::PathBuf;

pub(crate) use fetch::fetch;
pub use install::INSTALL_FORMAT;
pub(crate) use install::{Layout, install};
pub(crate) use tags::{Target, check_tags, parse_glibc};

/// What can go wrong with a wheel; each names the wheel.
#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    /// A PyPI package and no python in the environment to install it into.
    #[error(
        "the lock file has PyPI packages ({0}) but its environment has no python to install them into; add python to it or pass --ignore-pypi"
    )]
    NoPython(String),
    /// A wheel built for another python or platform.
    #[error("wheel {wheel} does not suit the image: {why}")]
    Tags {
        /// The wheel's file name.
        wheel: String,
        /// Which tag does not fit, and what the image has.
        why: String,
    },
    /// The URL could not be fetched.
    #[error("cannot fetch wheel {wheel} from {url}")]
    Fetch {
        /// The wheel's file name.
        wheel: String,
        /// Its URL.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bytes fetched are not the ones the lock names.
    #[error(
        "wheel {wheel} from {url} has sha256 {actual}, but the lock file says {expected}; the lock file or the server is wrong"
    )]
    Hash {
        /// The wheel's file name.
        wheel: String,
        /// Its URL.
        url: String,
        /// What the lock says.
        expected: String,
        /// What was fetched.
        actual: String,
    },
    /// A wheel whose contents break the wheel spec or our bounds.
    #[error("wheel {wheel} cannot be installed: {why}")]
    Bad {
        /// The wheel's file name.
        wheel: String,
        /// What is wrong with it.
        why: String,
    },
    /// Reading or writing a file.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}
