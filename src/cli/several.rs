//! `build` with several `--platform`s: one image per platform, written as
//! one OCI index or pushed as one.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::progress::Progress;
use super::{CliError, counted, print_pushed, sbom, summary};
use crate::build::{BuildOptions, LayerReport, PlatformImages, build_platforms_with_output};
use crate::digest::Digest;
use crate::image::{Image, ImageDestination, index_bytes, write_index};
use crate::platform::Platform;
use crate::registry::{PushReport, PushTarget};
use crate::sbom::SbomFormat;

/// Where the images of a build go.
pub(super) struct Outputs {
    /// The file or layout to write, if any.
    pub destination: Option<ImageDestination>,
    /// The repository to push to, if any (its login already checked).
    pub push_target: Option<Arc<PushTarget>>,
    /// Whether the base's plain layers are compressed first.
    pub compress_base: bool,
    /// `--sbom`: each platform's goes to a file of its own named from it.
    pub sbom_to: Option<(PathBuf, SbomFormat)>,
    /// `--attach-sbom`: each platform's image gets its own SBOMs attached.
    pub attach_sbom: bool,
}

/// Refuses, before any work, a docker-archive for several platforms.
pub(super) fn check_destination(destination: Option<&ImageDestination>) -> Result<(), CliError> {
    match destination {
        Some(ImageDestination::DockerArchive(path)) => Err(CliError::Usage(format!(
            "cannot write {}: a docker-archive holds one platform's image, and several --platform need an index: write oci:DIR or oci-archive:PATH (or --format oci), or --push, or give one --platform",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Builds one image per platform and writes and/or pushes them as one
/// index; prints what it did as `build` does (`json`, `quiet`).
pub(super) fn build_index(
    options: &BuildOptions,
    platforms: &[Platform],
    outputs: &Outputs,
    progress: &Progress,
    (json, quiet): (bool, bool),
) -> Result<(), CliError> {
    let (PlatformImages { images, layers, .. }, pushed) =
        build_platforms_with_output(options, platforms, progress, |built| {
            output(built, platforms, outputs, progress)
        })?;
    if json {
        print_json(&images, &layers, pushed.as_ref());
        return Ok(());
    }
    if !quiet && let Some(destination) = &outputs.destination {
        let each: Vec<String> = images
            .iter()
            .map(|image| {
                format!(
                    "{} ({}, id {})",
                    platform_of(image),
                    counted(image.layers().len(), "layer"),
                    image.config_digest()
                )
            })
            .collect();
        eprintln!(
            "wrote {destination}: an index of {}: {}",
            counted(images.len(), "image"),
            each.join(", ")
        );
    }
    if let Some(report) = &pushed {
        print_pushed(report, quiet);
    }
    Ok(())
}

/// Writes and/or pushes the images `built` as one index, then each
/// platform's SBOMs where `outputs` asks.
fn output(
    built: &mut PlatformImages,
    platforms: &[Platform],
    outputs: &Outputs,
    progress: &Progress,
) -> Result<Option<PushReport>, CliError> {
    let images = &mut built.images;
    if outputs.compress_base {
        for image in images.iter_mut() {
            image.compress_plain_layers()?;
        }
    }
    if let Some(destination) = &outputs.destination {
        write_index(images, destination)?;
    }
    let pushed = match &outputs.push_target {
        Some(target) => Some(target.push_index_with(images, progress)?),
        None => None,
    };
    if let (Some(target), true) = (&outputs.push_target, outputs.attach_sbom) {
        for (image, inventory) in images.iter().zip(&built.inventories) {
            sbom::attach(target, image, inventory)?;
        }
    }
    if let Some((path, format)) = &outputs.sbom_to {
        sbom::write_each(path, *format, platforms, &built.inventories)?;
    }
    Ok(pushed)
}

fn platform_of(image: &Image) -> String {
    let config = image.config();
    let mut platform = format!(
        "{}/{}",
        config.os().unwrap_or("?"),
        config.architecture().unwrap_or("?")
    );
    if let Some(variant) = config.variant() {
        platform = format!("{platform}/{variant}");
    }
    platform
}

/// `build --json` for an index: its digest, each platform's summary and
/// conda layers, and what was pushed.
fn print_json(images: &[Image], layers: &[Vec<LayerReport>], pushed: Option<&PushReport>) {
    let index_digest = Digest::of(&index_bytes(images));
    let images: Vec<_> = images
        .iter()
        .zip(layers)
        .map(|(image, layers)| {
            let mut summary = summary(image);
            summary["platform"] = json!(platform_of(image));
            summary["conda_layers"] = json!(layers);
            summary
        })
        .collect();
    let mut out = json!({
        "index_digest": index_digest,
        "images": images,
    });
    if let Some(report) = pushed {
        out["pushed"] = json!(report);
    }
    println!("{out:#}");
}
