//! One image per platform as one OCI image index: what a multi-platform
//! build writes into an OCI layout or archive, and what it pushes.
//!
//! The images' blobs go into one layout, where a blob two platforms share
//! (a noarch package's layer) is one file: blobs are named by digest.

use std::collections::BTreeMap;

use oci_spec::image::MediaType;
use serde_json::{Value, json};

use super::annotations::BASE_DIGEST;
use super::oci_layout::{write_archive_with, write_dir_with};
use super::sink::{Sink, blob_name, descriptor, put_image, tag_entry};
use super::{Image, ImageDestination, ImageError};
use crate::digest::Digest;

/// The OCI image index of `images`, one per platform: each manifest's
/// descriptor with the platform of its config and its annotations; the
/// index carries the annotations every image has with the same value (the
/// creation time, a title, a source), and as `base.digest` the digest of
/// the base's own index where every image was built on a platform of it
/// (each manifest's `base.digest` names its platform's base manifest).
pub fn index_bytes(images: &[Image]) -> Vec<u8> {
    let manifests: Vec<Value> = images
        .iter()
        .map(|image| {
            let mut entry = descriptor(
                &MediaType::ImageManifest,
                &image.manifest_bytes(),
                image.annotations().clone(),
            );
            let config = image.config();
            let mut platform = json!({
                "architecture": config.architecture().unwrap_or_default(),
                "os": config.os().unwrap_or_default(),
            });
            if let Some(variant) = config.variant() {
                platform["variant"] = variant.into();
            }
            entry["platform"] = platform;
            entry
        })
        .collect();
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": manifests,
    });
    let common = common_annotations(images);
    if !common.is_empty() {
        index["annotations"] = json!(common);
    }
    // A JSON value's Display is its compact serialisation, and cannot fail.
    index.to_string().into_bytes()
}

fn common_annotations(images: &[Image]) -> BTreeMap<String, String> {
    let Some((first, others)) = images.split_first() else {
        return BTreeMap::new();
    };
    let mut common: BTreeMap<String, String> = first
        .annotations()
        .iter()
        .filter(|(key, value)| {
            others
                .iter()
                .all(|other| other.annotations().get(*key) == Some(value))
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let base_index = first.source_index();
    let one_base = others.iter().all(|o| o.source_index() == base_index);
    if let (Some(index), true) = (base_index, one_base) {
        common
            .entry(BASE_DIGEST.to_owned())
            .or_insert_with(|| index.to_string());
    }
    common
}

/// Writes `images` (one per platform) as one index into an OCI layout
/// directory or archive, tagged as asked or by the first image's name.
/// A docker-archive holds one image of one platform, and is refused.
pub fn write_index(images: &[Image], destination: &ImageDestination) -> Result<(), ImageError> {
    let Some(first) = images.first() else {
        return Err(ImageError::Refused {
            path: destination.path().to_owned(),
            reason: "an index needs at least one image".into(),
        });
    };
    tracing::info!(
        "writing {destination} (an index of {} images)",
        images.len()
    );
    let put = |sink: &mut dyn Sink, tag: Option<&str>| put_index(images, sink, tag);
    match destination {
        ImageDestination::DockerArchive(path) => Err(ImageError::Refused {
            path: path.clone(),
            reason: "a docker-archive holds the image of one platform: write an index of several to oci:DIR or oci-archive:PATH, or --push it".into(),
        }),
        ImageDestination::Oci { dir, tag } => {
            let tag = first.out_tag(tag);
            write_dir_with(dir, tag, &|sink| put(sink, tag))
        }
        ImageDestination::OciArchive { path, tag } => {
            let tag = first.out_tag(tag);
            write_archive_with(path, first.epoch(), &|sink| put(sink, tag))
        }
    }
}

/// Puts every image's blobs (a blob two of them share, once), then the
/// index, and returns the index's entry for `index.json`.
fn put_index(images: &[Image], sink: &mut dyn Sink, tag: Option<&str>) -> std::io::Result<Value> {
    for image in images {
        put_image(image, sink, None)?;
    }
    let index = index_bytes(images);
    let name = blob_name(&Digest::of(&index));
    if !sink.has(&name, index.len() as u64) {
        sink.put_bytes(&name, &index)?;
    }
    let mut entry = descriptor(&MediaType::ImageIndex, &index, BTreeMap::new());
    tag_entry(&mut entry, tag, images.first().and_then(Image::name));
    Ok(entry)
}
