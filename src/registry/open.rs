//! Opening any image source: a registry reference is pulled, anything else
//! is read from its file or folder by the image module. This sits in
//! `registry`, above `image`, so the image model never reaches the network
//! (as go-containerregistry's `remote` depends on `v1`, never the reverse).

use super::progress::{Transfers, Unwatched};
use super::pull::{LayerPick, pull_layers};
use super::{RegistryError, RegistryOptions, pull_with};
use crate::image::{Image, ImageSource};
use crate::platform::Platform;
use crate::reference::Reference;

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
    opened(source, options, |reference| {
        pull_with(reference, &options.platform, &options.registry, progress)
    })
}

/// [`open`], pulling only the layers `wanted` chooses from a registry (the
/// others stay there: described, never read). Any other source is opened
/// as by `open`: its layers are files, read only when opened.
pub fn open_layers(
    source: &ImageSource,
    options: &OpenOptions,
    wanted: LayerPick,
) -> Result<Image, RegistryError> {
    opened(source, options, |reference| {
        pull_layers(reference, &options.platform, &options.registry, wanted)
    })
}

/// `source` pulled by `pull` when it is a registry reference, else read
/// from its file or folder.
fn opened(
    source: &ImageSource,
    options: &OpenOptions,
    pull: impl FnOnce(&Reference) -> Result<Image, RegistryError>,
) -> Result<Image, RegistryError> {
    match source {
        ImageSource::Registry(reference) => {
            tracing::info!("opening {source}");
            pull(reference)
        }
        local => Ok(local.open_local(&options.platform)?),
    }
}
