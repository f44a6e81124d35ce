//! Opening any image source: a registry reference is pulled, anything else
//! is read from its file or folder by the image module. This sits in
//! `registry`, above `image`, so the image model never reaches the network
//! (as go-containerregistry's `remote` depends on `v1`, never the reverse).

use super::progress::{Transfers, Unwatched};
use super::{RegistryError, RegistryOptions, pull_with};
use crate::image::{Image, ImageSource};
use crate::platform::Platform;

/// How to open images whose source leaves a choice: which platform to take
/// from a multi-platform image, and how to reach registries.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// The platform to pick from an image index (default linux/amd64).
    pub platform: Platform,
    /// TLS and plain-HTTP settings for registries.
    pub registry: RegistryOptions,
}

/// Reads the image `source` names, pulling it when it is a reference.
pub fn open(source: &ImageSource, options: &OpenOptions) -> Result<Image, RegistryError> {
    open_with(source, options, &Unwatched)
}

/// [`open`], telling `progress` how a pull's download goes.
pub fn open_with(
    source: &ImageSource,
    options: &OpenOptions,
    progress: &dyn Transfers,
) -> Result<Image, RegistryError> {
    match source {
        ImageSource::Registry(reference) => {
            tracing::info!("opening {source}");
            pull_with(reference, &options.platform, &options.registry, progress)
        }
        local => Ok(local.open_local(&options.platform)?),
    }
}
