//! `build --sbom PATH`: which format the file gets, and writing it once
//! the image is out.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::image::Image;
use crate::registry::{PushReport, PushTarget, ReferrersVia};
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
            "--sbom and --attach-sbom describe one image: build one --platform at a time for them (each platform's image holds its own SBOMs in PREFIX/conda-meta/sbom/)".into(),
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

/// Whether to attach the SBOMs to the pushed image: `--attach-sbom`
/// without a push has nothing to attach them to.
pub(super) fn attach_to(asked: bool, pushing: bool) -> Result<bool, CliError> {
    if asked && !pushing {
        return Err(CliError::Usage(
            "--attach-sbom attaches the SBOMs to a pushed image: add --push (or -o docker://REF)"
                .into(),
        ));
    }
    Ok(asked)
}

/// Attaches both SBOMs of `inventory` to `image`, just pushed as `report`
/// says, and tells how they are listed.
pub(super) fn attach(
    target: &PushTarget,
    image: &Image,
    report: &PushReport,
    inventory: &Inventory,
) -> Result<(), CliError> {
    let subject_size = image.manifest_bytes().len();
    for format in SbomFormat::ALL {
        let what = (
            format.media_type(),
            format.file_name(),
            inventory.created.as_str(),
        );
        let (digest, via) = target.attach(
            &report.digest,
            subject_size,
            what,
            &inventory.render(format),
        )?;
        let via = match via {
            ReferrersVia::Api => "the referrers API",
            ReferrersVia::TagSchema => "the sha256-<hex> referrers tag",
        };
        tracing::info!(
            "attached {} as {digest}, listed by {via}",
            format.file_name()
        );
    }
    Ok(())
}
