//! Legacy docker v1 archives: `repositories` plus `<id>/layer.tar` and
//! `<id>/json`, with no `manifest.json`. The original Python conda-docker
//! wrote these, and modern Docker refuses them; reading them lets users
//! carry such images forward.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use super::tar_index::TarIndex;
use super::{ConfigError, Image, ImageConfig, ImageError};
use crate::blob::{MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};
use crate::digest::DiffId;
use crate::layer::{Layer, sniff_media_type};
use oci_spec::image::MediaType;

/// Fields of a v1 layer `json` that describe the image as a whole.
const IMAGE_FIELDS: [&str; 5] = ["architecture", "os", "author", "config", "created"];

/// A v1 layer: its id and its `json`.
type V1Layer = (String, Map<String, Value>);

pub(crate) fn read(index: &TarIndex) -> Result<Image, ImageError> {
    let path = index.path();
    let (name, tag, top) = only_image(index)?;
    let chain = chain_from(index, top)?;
    let mut layers = Vec::new();
    let mut history = Vec::new();
    for (id, json) in &chain {
        layers.push(plain_layer(index, id)?);
        history.push(history_entry(id, json));
    }
    let top_json = &chain.last().expect("the chain has the top layer").1;
    let config =
        image_config(top_json, &layers, history).map_err(|source| ImageError::BadConfig {
            path: path.to_owned(),
            source,
        })?;
    let reference = format!("{name}:{tag}").parse().ok();
    Image::from_parts(config, layers, BTreeMap::new(), reference)
}

fn not_an_image(index: &TarIndex, reason: String) -> ImageError {
    ImageError::NotAnImage {
        path: index.path().to_owned(),
        reason,
    }
}

/// Parses the JSON member `name`, of at most `cap` bytes.
fn read_json<T: serde::de::DeserializeOwned>(
    index: &TarIndex,
    name: &str,
    kind: &'static str,
    cap: u64,
) -> Result<T, ImageError> {
    serde_json::from_slice(&index.read(name, kind, cap)?).map_err(|source| ImageError::BadJson {
        path: index.path().to_owned(),
        what: name.to_owned(),
        source,
    })
}

/// The one image `repositories` names, as its name, tag and top layer id.
/// An archive of several images is refused rather than one picked.
fn only_image(index: &TarIndex) -> Result<(String, String, String), ImageError> {
    let repositories: BTreeMap<String, BTreeMap<String, String>> =
        read_json(index, "repositories", "a manifest", MAX_MANIFEST_SIZE)?;
    let tagged: Vec<(String, String, String)> = repositories
        .iter()
        .flat_map(|(name, tags)| {
            tags.iter()
                .map(move |(tag, id)| (name.clone(), tag.clone(), id.clone()))
        })
        .collect();
    match tagged.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(not_an_image(index, "repositories names no image".into())),
        many => {
            let tags: Vec<String> = many.iter().map(|(n, t, _)| format!("{n}:{t}")).collect();
            Err(ImageError::Unsupported {
                path: index.path().to_owned(),
                reason: format!(
                    "the archive holds several images ({}); write one image per archive",
                    tags.join(", ")
                ),
            })
        }
    }
}

/// The layers from the bottom up, each with its `json`: walked from `top`
/// down its parents, then turned around. A cycle is refused.
fn chain_from(index: &TarIndex, top: String) -> Result<Vec<V1Layer>, ImageError> {
    let mut chain: Vec<V1Layer> = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(top);
    while let Some(id) = next {
        if !seen.insert(id.clone()) {
            return Err(not_an_image(
                index,
                format!("layer {id} is its own ancestor"),
            ));
        }
        let json: Map<String, Value> =
            read_json(index, &format!("{id}/json"), "a config", MAX_CONFIG_SIZE)?;
        next = json
            .get("parent")
            .and_then(Value::as_str)
            .map(str::to_owned);
        chain.push((id, json));
    }
    chain.reverse();
    Ok(chain)
}

/// Layer `id`'s `layer.tar`, hashed; its digest is also its diff id, since
/// only uncompressed layers are read.
fn plain_layer(index: &TarIndex, id: &str) -> Result<Layer, ImageError> {
    let path = index.path();
    let name = format!("{id}/layer.tar");
    let blob = index.blob(&name)?;
    let (digest, size, head) = blob.hash().map_err(|source| ImageError::Read {
        path: path.to_owned(),
        source,
    })?;
    if sniff_media_type(&head) != MediaType::ImageLayer {
        return Err(ImageError::Unsupported {
            path: path.to_owned(),
            reason: format!("legacy layer {name} is compressed; only plain tar layers are read"),
        });
    }
    Ok(Layer::new(
        MediaType::ImageLayer,
        digest,
        size,
        DiffId(digest),
        blob,
    ))
}

/// The config's history entry for layer `id`, keeping its `created` and
/// `author`.
fn history_entry(id: &str, json: &Map<String, Value>) -> Value {
    let mut entry = json!({ "created_by": format!("legacy layer {id}") });
    for key in ["created", "author"] {
        if let Some(value) = json.get(key) {
            entry[key] = value.clone();
        }
    }
    entry
}

/// The image config: the top layer's image-wide fields, plus the rootfs
/// and history of every layer.
fn image_config(
    top_json: &Map<String, Value>,
    layers: &[Layer],
    history: Vec<Value>,
) -> Result<ImageConfig, ConfigError> {
    let mut config: Map<String, Value> = IMAGE_FIELDS
        .iter()
        .filter_map(|key| top_json.get(*key).map(|v| (key.to_string(), v.clone())))
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id().to_string()).collect();
    config.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    config.insert("history".into(), Value::Array(history));
    ImageConfig::from_json(config)
}
