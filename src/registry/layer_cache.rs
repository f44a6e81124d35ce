//! The registry as a layer cache shared by every machine that builds
//! (`--cache-repo`), as kaniko's cache is: one small OCI artifact per layer
//! identity in one repository, tagged by the identity's hex, whose manifest
//! lists the layer blob. No shared map to race on (each tag is written
//! whole, and two machines write the same bytes under it), and the blob
//! stays referenced, so registry garbage collection keeps it and other
//! repositories of the registry can mount it.
//!
//! Before a layer is built its identity's tag is looked up: a hit is
//! mounted into the repository being pushed to, or pulled (checked
//! against its digest, size and diff id) into the local cache. After the
//! build the entries the repository lacked are written. The cache
//! repository is trusted as the local cache is: whoever may push there
//! decides what later builds take from it. Nothing about it stops a
//! build: errors are warnings, and an entry that is not what it says is a
//! miss.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::client::content_digest;
use super::credentials::Login;
use super::pull::Puller;
use super::push::{Item, PushTarget, Pusher};
use super::store::BlobStore;
use super::{RegistryError, RegistryOptions};
use crate::blob::{Blob, read_capped};
use crate::digest::{DiffId, Digest};
use crate::layer::{Layer, LayerCache, oci_layer_media_type};
use crate::parallel::in_parallel;
use crate::reference::Reference;

/// The `artifactType` of a cache entry's manifest.
pub const LAYER_ARTIFACT_TYPE: &str = "application/vnd.conda-docker.layer.v1";
/// The layer descriptor's annotation holding the layer's diff id (the
/// digest of its uncompressed tar), which an image config needs.
const DIFF_ID_ANNOTATION: &str = "org.conda-docker.layer.diff-id";
/// The manifest's annotation naming the identity the entry is for: a tag
/// names it too, but can be moved.
const IDENTITY_ANNOTATION: &str = "org.conda-docker.layer.identity";
/// The OCI empty descriptor's media type and bytes: an artifact without
/// a config of its own (OCI image spec 1.1, "Guidelines for Artifact
/// Usage").
pub(super) const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub(super) const EMPTY: &[u8] = b"{}";
/// Entries are a few hundred bytes; a larger answer is not one.
const MAX_ENTRY: u64 = 64 << 10;
/// Entries written at once (each is up to three requests).
const PARALLEL_WRITES: usize = 3;

/// A registry repository that keeps package layers by identity for every
/// machine that builds (`--cache-repo`). The login is the user's for its
/// registry, found as for a pull or a push.
#[derive(Clone, Debug)]
pub struct CacheRepo {
    /// `REGISTRY/REPOSITORY` (a tag or digest in it is not used).
    pub repository: Reference,
    /// Look entries up, but never write one (`--cache-repo-read-only`):
    /// for builds that may read the cache but not change it, such as
    /// those of pull requests.
    pub read_only: bool,
    /// The login for its registry; `None`: the user's stored one, found
    /// as for a pull.
    pub login: Option<Login>,
}

/// A cache entry's manifest, as far as it is read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryManifest {
    artifact_type: Option<String>,
    #[serde(default)]
    layers: Vec<EntryLayer>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryLayer {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Where package layers may be found instead of built: the cache
/// repository, and the repository an image is pushed to when nothing
/// else needs its bytes.
pub(crate) struct SharedLayers<'a> {
    repo: Option<Puller<'a>>,
    config: Option<&'a CacheRepo>,
    push: Option<&'a PushTarget>,
    local: Option<&'a LayerCache>,
    /// Whether the cache repository had a usable entry, by identity, for
    /// the identities looked up.
    found: Mutex<HashMap<Digest, bool>>,
}

impl<'a> SharedLayers<'a> {
    /// Layers from `repo` (connected now: a repository that cannot be
    /// reached is a warning, and no more is asked of it) and, when `push`
    /// is given (the image is only pushed, to it), left in that
    /// repository. Layers pulled are kept in `local`; without it
    /// (`--no-cache`) nothing is looked up, only written.
    pub(crate) fn new(
        repo: Option<&'a CacheRepo>,
        push: Option<&'a PushTarget>,
        local: Option<&'a LayerCache>,
        options: &'a RegistryOptions,
    ) -> Self {
        let repo = repo.and_then(|config| {
            let puller = Puller::new(&config.repository, options).with_login(config.login.clone());
            match puller.client() {
                Ok(_) => Some((puller, config)),
                Err(e) => {
                    tracing::warn!(
                        "the cache repository cannot be used: {}",
                        crate::error_line(&e)
                    );
                    None
                }
            }
        });
        let (repo, config) = repo.unzip();
        SharedLayers {
            repo,
            config,
            push,
            local,
            found: Mutex::new(HashMap::new()),
        }
    }

    /// The layer of `identity`, if the cache repository has it: left in
    /// the registry when the repository pushed to holds it (or mounts it
    /// from the cache repository), else pulled into the local cache.
    pub(crate) fn find(&self, identity: &Digest) -> Option<Layer> {
        let (repo, config) = (self.repo.as_ref()?, self.config?);
        let local = self.local?;
        let entry = match lookup(repo, identity) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(
                    "the cache repository: looking up layer {identity}: {}",
                    crate::error_line(&e)
                );
                return None;
            }
        };
        self.note(identity, entry.is_some());
        let mut layer = entry?;
        layer.set_origin(Arc::new(config.repository.clone()));
        if let Some(push) = self.push {
            match push.holds(&layer.digest(), layer.size(), Some(&config.repository)) {
                Ok(true) => return Some(in_registry(layer, push.reference())),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "{}: checking {}: {}",
                    push.reference(),
                    layer.digest(),
                    crate::error_line(&e)
                ),
            }
        }
        match pulled(repo, layer) {
            Ok(layer) => {
                if let Err(e) = local.put(identity, &layer) {
                    tracing::warn!(
                        "cannot keep layer {} in the layer cache: {e}",
                        layer.digest()
                    );
                }
                Some(layer)
            }
            Err(e) => {
                tracing::warn!(
                    "the cache repository's entry for layer identity {identity} is not used: {}",
                    crate::error_line(&e)
                );
                self.note(identity, false);
                None
            }
        }
    }

    fn note(&self, identity: &Digest, usable: bool) {
        if let Ok(mut found) = self.found.lock() {
            found.insert(*identity, usable);
        }
    }

    /// Writes an entry for each of `layers` (identity, layer built or
    /// taken here) that the cache repository lacks, unless it is read
    /// only. A layer the cache repository then has gets it as its origin,
    /// so a push to the same registry mounts it from there.
    pub(crate) fn store(&self, layers: Vec<(Digest, &mut Layer)>) {
        let (Some(repo), Some(config)) = (&self.repo, self.config) else {
            return;
        };
        if config.read_only {
            return;
        }
        let known = self.found.lock().map(|f| f.clone()).unwrap_or_default();
        let todo: Vec<(Digest, &mut Layer)> = layers
            .into_iter()
            .filter(|(identity, layer)| {
                layer.blob().is_local() && known.get(identity) != Some(&true)
            })
            .collect();
        let written = in_parallel(&todo, PARALLEL_WRITES, |(identity, layer)| {
            let looked_up = known.contains_key(identity);
            Ok::<_, std::convert::Infallible>(
                write(repo, identity, layer, looked_up)
                    .inspect_err(|e| {
                        tracing::warn!(
                            "cannot write layer {} to the cache repository: {}",
                            layer.digest(),
                            crate::error_line(e)
                        );
                    })
                    .ok(),
            )
        });
        let mut count = 0;
        for ((_, layer), written) in todo.into_iter().zip(written) {
            let Ok(Some(written)) = written else {
                continue;
            };
            layer.set_origin(Arc::new(config.repository.clone()));
            count += usize::from(written);
        }
        if count > 0 {
            tracing::info!(
                "wrote {count} layers to the cache repository {}/{}",
                config.repository.registry(),
                config.repository.repository()
            );
        }
    }
}

/// The entry tagged `identity`'s hex: `None` when there is none, or
/// it is not a well-formed entry for that identity (a warning).
fn lookup(repo: &Puller, identity: &Digest) -> Result<Option<Layer>, RegistryError> {
    let client = repo.client()?;
    let response = repo.manifest_request(reqwest::Method::GET, &identity.hex())?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(client.status_error("fetching a cache entry", response));
    }
    let sent = content_digest(&response);
    let bytes = read_capped(response, MAX_ENTRY).map_err(|source| RegistryError::Transfer {
        host: client.registry().to_owned(),
        what: "reading a cache entry".into(),
        source,
    })?;
    let checked = bytes
        .ok_or_else(|| "it is not a cache entry: larger than 64 KiB".to_owned())
        .and_then(|bytes| match sent {
            Some(sent) if sent != Digest::of(&bytes) => {
                Err(format!("it does not match its digest {sent}"))
            }
            _ => entry(&bytes, identity, &repo.store),
        });
    match checked {
        Ok(entry) => Ok(Some(entry)),
        Err(why) => {
            tracing::warn!(
                "the cache repository's entry for layer identity {identity} is not used: {why}"
            );
            Ok(None)
        }
    }
}

/// `layer`, its bytes left in `target`'s repository.
fn in_registry(layer: Layer, target: &Reference) -> Layer {
    let mut remote = Layer::new(
        layer.media_type().clone(),
        layer.digest(),
        layer.size(),
        layer.diff_id(),
        Blob::in_registry(target.registry(), target.repository(), layer.size()),
    );
    if let Some(origin) = layer.origin() {
        remote.set_origin(Arc::new(origin.clone()));
    }
    tracing::debug!("layer {} stays in {target}", layer.digest());
    remote
}

/// The layer the entry in `bytes` names, if it is an entry for
/// `identity`: checked for form, not yet against the layer's bytes.
fn entry(bytes: &[u8], identity: &Digest, store: &BlobStore) -> Result<Layer, String> {
    let manifest: EntryManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("it is not a cache entry: {e}"))?;
    if manifest.artifact_type.as_deref() != Some(LAYER_ARTIFACT_TYPE) {
        return Err(format!("its artifactType is not {LAYER_ARTIFACT_TYPE}"));
    }
    if manifest.annotations.get(IDENTITY_ANNOTATION) != Some(&identity.to_string()) {
        return Err("it is for another layer identity".into());
    }
    let [layer] = &manifest.layers[..] else {
        return Err("it does not list exactly one layer".into());
    };
    let media_type = oci_layer_media_type(&layer.media_type)
        .ok_or_else(|| format!("`{}` is not a layer media type", layer.media_type))?;
    let digest: Digest = layer
        .digest
        .parse()
        .map_err(|_| "its layer digest is not valid")?;
    let diff_id: Digest = layer
        .annotations
        .get(DIFF_ID_ANNOTATION)
        .and_then(|d| d.parse().ok())
        .ok_or("its layer has no valid diff id")?;
    let blob = Blob::file(store.path(&digest));
    Ok(Layer::new(
        media_type,
        digest,
        layer.size,
        DiffId(diff_id),
        blob,
    ))
}

/// `layer` pulled into the blob store (checked against its digest and
/// size as it streams), then read once to check its diff id, which the
/// entry only states.
fn pulled(repo: &Puller, layer: Layer) -> Result<Layer, RegistryError> {
    let (digest, size) = (layer.digest(), layer.size());
    if !repo.store.has(&digest, Some(size)) {
        repo.blob(&digest, size, "layer")?;
    }
    let check = || std::io::copy(&mut layer.open_verified()?, &mut std::io::sink());
    check().map_err(|source| RegistryError::Transfer {
        host: repo.target().to_owned(),
        what: format!("checking layer {digest}"),
        source,
    })?;
    Ok(layer.with_checked_diff_id())
}

/// Writes the entry of `layer` under `identity`, unless (when it was not
/// `looked_up` before) the repository has one: whether it was written
/// (else it was there already).
fn write(
    repo: &Puller,
    identity: &Digest,
    layer: &Layer,
    looked_up: bool,
) -> Result<bool, RegistryError> {
    let client = repo.client()?;
    if !looked_up {
        let response = repo.manifest_request(reqwest::Method::HEAD, &identity.hex())?;
        if response.status().is_success() {
            return Ok(false);
        }
    }
    let pusher = Pusher::new(client, repo.repository());
    pusher.blob(&Item::Config(EMPTY, Digest::of(EMPTY)))?;
    pusher.blob(&Item::Layer(layer))?;
    let manifest = entry_manifest(identity, layer);
    pusher.manifest(&identity.hex(), &manifest, &Digest::of(&manifest))?;
    tracing::debug!(
        "{}: wrote the entry of layer {}",
        pusher.target,
        layer.digest()
    );
    Ok(true)
}

/// An OCI 1.1 artifact manifest of `artifact_type`: the empty config and
/// one blob, described by `blob`. Callers add `subject` and
/// `annotations` after it (the keys keep their order in the bytes).
pub(super) fn artifact_manifest(
    artifact_type: &str,
    blob: serde_json::Value,
) -> serde_json::Map<String, serde_json::Value> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": Digest::of(EMPTY).to_string(),
            "size": EMPTY.len(),
            "data": "e30=",
        },
        "layers": [blob],
    });
    match manifest {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// The manifest of the entry of `layer` under `identity`.
fn entry_manifest(identity: &Digest, layer: &Layer) -> Vec<u8> {
    let mut annotations = layer.annotations().clone();
    annotations.insert(DIFF_ID_ANNOTATION.into(), layer.diff_id().0.to_string());
    let mut manifest = artifact_manifest(
        LAYER_ARTIFACT_TYPE,
        json!({
            "mediaType": layer.media_type().to_string(),
            "digest": layer.digest().to_string(),
            "size": layer.size(),
            "annotations": annotations,
        }),
    );
    manifest.insert(
        "annotations".into(),
        json!(BTreeMap::from([(
            IDENTITY_ANNOTATION,
            identity.to_string()
        )])),
    );
    serde_json::to_vec(&manifest).expect("a manifest of strings and numbers serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Layer {
        Layer::new(
            oci_spec::image::MediaType::ImageLayerGzip,
            Digest::of(b"blob"),
            4,
            DiffId(Digest::of(b"tar")),
            Blob::file("/nonexistent"),
        )
    }

    #[test]
    fn an_entry_names_its_layer() {
        let identity = Digest::of(b"identity");
        let bytes = entry_manifest(&identity, &layer());
        let store = BlobStore::open();
        let read = entry(&bytes, &identity, &store).unwrap();
        assert_eq!(read.digest(), layer().digest());
        assert_eq!(read.size(), 4);
        assert_eq!(read.diff_id(), layer().diff_id());
        assert_eq!(read.media_type(), layer().media_type());
        assert_eq!(
            read.blob().file_path(),
            Some(store.path(&read.digest()).as_path())
        );
    }

    #[test]
    fn entries_that_are_not_what_they_say_are_refused() {
        let identity = Digest::of(b"identity");
        let store = BlobStore::open();
        let good: serde_json::Value =
            serde_json::from_slice(&entry_manifest(&identity, &layer())).unwrap();
        let refused = |why: &str, change: &dyn Fn(&mut serde_json::Value)| {
            let mut manifest = good.clone();
            change(&mut manifest);
            let bytes = serde_json::to_vec(&manifest).unwrap();
            let error = entry(&bytes, &identity, &store).err().unwrap();
            assert!(error.contains(why), "{error}");
        };
        refused("another layer identity", &|m| {
            m["annotations"][IDENTITY_ANNOTATION] = json!(Digest::of(b"other").to_string())
        });
        refused("artifactType", &|m| {
            m["artifactType"] = json!("application/x")
        });
        refused("exactly one layer", &|m| m["layers"] = json!([]));
        refused("no valid diff id", &|m| {
            m["layers"][0]["annotations"][DIFF_ID_ANNOTATION] = json!("sha256:short")
        });
        refused("not a layer media type", &|m| {
            m["layers"][0]["mediaType"] = json!("text/plain")
        });
        refused("not a cache entry", &|m| m["layers"][0]["size"] = json!(-1));
        let error = entry(b"{", &identity, &store).err().unwrap();
        assert!(error.contains("not a cache entry"), "{error}");
    }
}
