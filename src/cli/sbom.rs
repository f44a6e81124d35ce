//! `build --sbom PATH`: which format the file gets, and writing it once
//! the image is out.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::build::{BuildError, file_for_platform};
use crate::digest::Digest;
use crate::image::Image;
use crate::platform::Platform;
use crate::registry::{PushTarget, ReferrersVia};
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

/// Writes the SBOM of each platform's image of a build of several, to a
/// file of its own: `path` with the platform in its name, as
/// `--lock-file` names its files (`sbom.spdx.json` →
/// `sbom.linux-64.spdx.json`).
pub(super) fn write_each(
    path: &Path,
    format: SbomFormat,
    platforms: &[Platform],
    inventories: &[Inventory],
) -> Result<(), CliError> {
    for (platform, inventory) in platforms.iter().zip(inventories) {
        let subdir = platform
            .subdir()
            .ok_or_else(|| BuildError::NotLinux(platform.to_string()))?;
        let file = file_for_platform(path, subdir, Some(format.ending()));
        write(&file, format, inventory)?;
    }
    Ok(())
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

/// Attaches both SBOMs of `inventory` to `image`, just pushed by
/// `target` (the artifacts' subject is its manifest: in an index, that
/// platform's), and tells how they are listed.
pub(super) fn attach(
    target: &PushTarget,
    image: &Image,
    inventory: &Inventory,
) -> Result<(), CliError> {
    let manifest = image.manifest_bytes();
    let subject = (Digest::of(&manifest), manifest.len());
    for format in SbomFormat::ALL {
        let what = (
            format.media_type(),
            format.file_name(),
            inventory.created.as_str(),
        );
        let (digest, via) = target.attach(subject, what, &inventory.render(format))?;
        let via = match via {
            ReferrersVia::Api => "the referrers API",
            ReferrersVia::TagSchema => "the sha256-<hex> referrers tag",
        };
        tracing::info!(
            "attached {} to {} as {digest}, listed by {via}",
            format.file_name(),
            subject.0
        );
    }
    Ok(())
}
