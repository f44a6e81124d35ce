//! Legacy docker v1 archives: `repositories` plus `<id>/layer.tar` and
//! `<id>/json`, with no `manifest.json`. The original Python conda-docker
//! wrote these, and modern Docker refuses them; reading them lets users
//! carry such images forward.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use super::tar_index::TarIndex;
use super::{Image, ImageConfig, ImageError};
use crate::blob::{MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};
use crate::digest::DiffId;
use crate::layer::{Layer, sniff_media_type};
use oci_spec::image::MediaType;

/// Fields of a v1 layer `json` that describe the image as a whole.
const IMAGE_FIELDS: [&str; 5] = ["architecture", "os", "author", "config", "created"];

pub(crate) fn read(index: &TarIndex) -> Result<Image, ImageError> {
    let path = index.path();
    let not_an_image = |reason: String| ImageError::NotAnImage {
        path: path.to_owned(),
        reason,
    };
    let bad_json = |what: String| {
        move |source| ImageError::BadJson {
            path: path.to_owned(),
            what,
            source,
        }
    };
    let repositories: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(&index.read("repositories", "a manifest", MAX_MANIFEST_SIZE)?)
            .map_err(bad_json("repositories".into()))?;
    let tagged: Vec<(String, String, String)> = repositories
        .iter()
        .flat_map(|(name, tags)| {
            tags.iter()
                .map(move |(tag, id)| (name.clone(), tag.clone(), id.clone()))
        })
        .collect();
    let (name, tag, top) = match tagged.as_slice() {
        [one] => one.clone(),
        [] => return Err(not_an_image("repositories names no image".into())),
        many => {
            let tags: Vec<String> = many.iter().map(|(n, t, _)| format!("{n}:{t}")).collect();
            return Err(ImageError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "the archive holds several images ({}); write one image per archive",
                    tags.join(", ")
                ),
            });
        }
    };

    // Walk from the top layer down its parents, then turn the chain around.
    let mut chain: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(top);
    while let Some(id) = next {
        if !seen.insert(id.clone()) {
            return Err(not_an_image(format!("layer {id} is its own ancestor")));
        }
        let json_name = format!("{id}/json");
        let json: Map<String, Value> =
            serde_json::from_slice(&index.read(&json_name, "a config", MAX_CONFIG_SIZE)?)
                .map_err(bad_json(json_name))?;
        next = json
            .get("parent")
            .and_then(Value::as_str)
            .map(str::to_owned);
        chain.push((id, json));
    }
    chain.reverse();

    let mut layers = Vec::new();
    let mut history = Vec::new();
    for (id, json) in &chain {
        let name = format!("{id}/layer.tar");
        let blob = index.blob(&name)?;
        let (digest, size, head) = blob.hash().map_err(|source| ImageError::Read {
            path: path.to_owned(),
            source,
        })?;
        if sniff_media_type(&head) != MediaType::ImageLayer {
            return Err(ImageError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "legacy layer {name} is compressed; only plain tar layers are read"
                ),
            });
        }
        layers.push(Layer::new(
            MediaType::ImageLayer,
            digest,
            size,
            DiffId(digest),
            blob,
        ));
        let mut entry = json!({ "created_by": format!("legacy layer {id}") });
        for key in ["created", "author"] {
            if let Some(value) = json.get(key) {
                entry[key] = value.clone();
            }
        }
        history.push(entry);
    }

    let top_json = &chain.last().expect("the chain has the top layer").1;
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
    let config = ImageConfig::from_json(config).map_err(|source| ImageError::BadConfig {
        path: path.to_owned(),
        source,
    })?;
    let reference = format!("{name}:{tag}").parse().ok();
    Image::from_parts(config, layers, BTreeMap::new(), reference)
}
