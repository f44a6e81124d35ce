//! `build --sbom PATH`: which format the file gets, and writing it once
//! the image is out.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::sbom::{Inventory, SbomFormat};

/// Where `--sbom` goes and in which format: `--sbom-format`, else the
/// file name's ending; a name that says neither is refused before any work.
pub(super) fn target(
    path: Option<PathBuf>,
    format: Option<SbomFormat>,
) -> Result<Option<(PathBuf, SbomFormat)>, CliError> {
    let Some(path) = path else {
        return Ok(None);
    };
    match format.or_else(|| SbomFormat::from_path(&path)) {
        Some(format) => Ok(Some((path, format))),
        None => Err(CliError::Usage(format!(
            "--sbom {}: say the format with a name ending in .spdx.json or .cdx.json, or with --sbom-format spdx|cyclonedx",
            path.display()
        ))),
    }
}

/// Refuses an SBOM flag (`asked`) with several `--platform`s: each
/// platform's image has its own, in its `conda-meta/sbom/`.
pub(super) fn one_platform(asked: bool) -> Result<(), CliError> {
    match asked {
        true => Err(CliError::Usage(
            "--sbom describes one image: build one --platform at a time to write it (each platform's image holds its own SBOMs in PREFIX/conda-meta/sbom/)".into(),
        )),
        false => Ok(()),
    }
}

/// Writes the SBOM of `inventory` to `path` by temp file and rename, so a
/// failed write leaves no partial file.
pub(super) fn write(
    path: &Path,
    format: SbomFormat,
    inventory: &Inventory,
) -> Result<(), CliError> {
    crate::atomic::write(path, &inventory.render(format), 0o644).map_err(|source| CliError::Sbom {
        path: path.to_owned(),
        source,
    })
}
