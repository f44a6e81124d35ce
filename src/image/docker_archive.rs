//! `docker save` archives: `manifest.json` naming a config and layer files.
//!
//! Written as Docker 25 writes them: an OCI layout (`blobs/sha256/`,
//! `index.json`, `oci-layout`) with `manifest.json` beside it. The OCI
//! manifest is the one this tool pushes, so an archive stands for exactly
//! that manifest: `build --json`, `inspect`, `copy` and a push all report
//! the same digest. Read from any docker-archive: Docker's old
//! `<id>/layer.tar` layout, Docker 25's, skopeo's `<hex>.tar`, ours (whose
//! OCI part `source` reads first).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::sink::{OCI_LAYOUT, Sink, TarSink, index_json, put_image};
use super::tar_index::TarIndex;
use super::{Image, ImageConfig, ImageError};
use crate::blob::{MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};
use crate::digest::Digest;
use crate::layer::{Layer, sniff_media_type};
use oci_spec::image::MediaType;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a member name carries, for names that are content
/// addresses (`blobs/sha256/<hex>`, `<hex>.json`).
fn digest_in_name(name: &str) -> Option<Digest> {
    let hex = name
        .strip_prefix("blobs/sha256/")
        .or_else(|| name.strip_suffix(".json"))?;
    Digest::from_hex(hex).ok()
}

pub(crate) fn read(index: &TarIndex) -> Result<Image, ImageError> {
    let path = index.path();
    let not_an_image = |reason: String| ImageError::NotAnImage {
        path: path.to_owned(),
        reason,
    };
    let entries: Vec<ManifestEntry> =
        serde_json::from_slice(&index.read("manifest.json", "a manifest", MAX_MANIFEST_SIZE)?)
            .map_err(|source| ImageError::BadJson {
                path: path.to_owned(),
                what: "manifest.json".into(),
                source,
            })?;
    let entry = match entries.as_slice() {
        [one] => one,
        [] => return Err(not_an_image("manifest.json lists no image".into())),
        many => {
            let tags: Vec<String> = many
                .iter()
                .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                .collect();
            return Err(ImageError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "the archive holds several images ({}); write one image per archive",
                    tags.join(", ")
                ),
            });
        }
    };
    let config_bytes = index.read(&entry.config, "a config", MAX_CONFIG_SIZE)?;
    let actual = Digest::of(&config_bytes);
    if let Some(expected) = digest_in_name(&entry.config).filter(|d| *d != actual) {
        return Err(ImageError::DigestMismatch {
            path: path.to_owned(),
            what: format!("config {}", entry.config),
            expected,
            actual,
        });
    }
    let config = ImageConfig::parse(&config_bytes).map_err(|source| ImageError::BadConfig {
        path: path.to_owned(),
        source,
    })?;
    let diff_ids = config.diff_ids()?;
    if diff_ids.len() != entry.layers.len() {
        return Err(not_an_image(format!(
            "manifest.json lists {} layers but the config has {} diff ids",
            entry.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
        let blob = index.blob(name)?;
        let (digest, size, head) = blob.hash().map_err(|source| ImageError::Read {
            path: path.to_owned(),
            source,
        })?;
        let media_type = sniff_media_type(&head);
        let expected = match (&media_type, digest_in_name(name)) {
            (MediaType::ImageLayer, _) => Some(diff_id.0),
            (_, named) => named,
        };
        if let Some(expected) = expected.filter(|d| *d != digest) {
            return Err(ImageError::DigestMismatch {
                path: path.to_owned(),
                what: format!("layer {name}"),
                expected,
                actual: digest,
            });
        }
        layers.push(Layer::new(media_type, digest, size, diff_id, blob));
    }
    let name = entry
        .repo_tags
        .as_ref()
        .and_then(|tags| tags.first())
        .and_then(|tag| tag.parse().ok());
    Image::from_parts(config, layers, BTreeMap::new(), name)
}

/// Why a docker-archive at `path` cannot hold zstd layers, and what to do.
pub(crate) fn zstd_refused(path: &Path) -> ImageError {
    ImageError::Refused {
        path: path.to_owned(),
        reason: "docker-archive cannot hold zstd layers (older `docker load` cannot read them); \
                 use gzip compression (--compression gzip) or write `oci:` / `oci-archive:`"
            .into(),
    }
}

pub(crate) fn write(image: &Image, path: &Path) -> Result<(), ImageError> {
    if image.layers().iter().any(Layer::is_zstd) {
        return Err(zstd_refused(path));
    }
    let fail = |source| ImageError::Write {
        path: path.to_owned(),
        source,
    };
    let mut sink = TarSink::create(path, image.epoch()).map_err(fail)?;
    let entry = put_image(image, &mut sink, None).map_err(fail)?;
    sink.put_bytes("index.json", &index_json(vec![entry]))
        .map_err(fail)?;
    sink.put_bytes("oci-layout", OCI_LAYOUT).map_err(fail)?;
    let config_name = format!("blobs/sha256/{}", image.config_digest().hex());
    let repo_tags: Vec<String> = image
        .name()
        .and_then(|n| n.familiar_tagged())
        .into_iter()
        .collect();
    let manifest = vec![ManifestEntry {
        config: config_name,
        repo_tags: Some(repo_tags),
        layers: image
            .layers()
            .iter()
            .map(|l| format!("blobs/sha256/{}", l.digest().hex()))
            .collect(),
    }];
    let manifest = serde_json::to_vec(&manifest).map_err(|e| fail(e.into()))?;
    sink.put_bytes("manifest.json", &manifest).map_err(fail)?;
    if let (Some(name), Some(top)) = (image.name(), image.layers().last())
        && let Some(tag) = name.tag()
    {
        let repositories = serde_json::json!({ name.familiar_name(): { tag: top.digest().hex() } });
        sink.put_bytes("repositories", repositories.to_string().as_bytes())
            .map_err(fail)?;
    }
    sink.commit().map_err(fail)
}
