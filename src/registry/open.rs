//! Opening any image source: a registry reference is pulled, anything else
//! is read from its file or folder by the image module. This sits in
//! `registry`, above `image`, so the image model never reaches the network
//! (as go-containerregistry's `remote` depends on `v1`, never the reverse).

use super::{RegistryError, RegistryOptions, pull};
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
    match source {
        ImageSource::Registry(reference) => {
            tracing::info!("opening {source}");
            pull(reference, &options.platform, &options.registry)
        }
        local => Ok(local.open_local(&options.platform)?),
    }
}
