//! Legacy docker v1 archives: `repositories` plus `<id>/layer.tar` and
//! `<id>/json`, with no `manifest.json` (what the original Python
//! conda-docker wrote, and what modern Docker refuses).

use super::tar_index::TarIndex;
use super::{Image, ImageError};

pub(crate) fn read(index: &TarIndex) -> Result<Image, ImageError> {
    Err(ImageError::Unsupported {
        path: index.path().to_owned(),
        reason: "legacy v1 archives are not read yet".into(),
    })
}
