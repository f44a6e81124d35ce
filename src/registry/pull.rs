//! Pulling an image: manifest (through an index, for one platform),
//! config and layers into the blob store, then an [`Image`] whose layers
//! are files there. Nothing is recompressed.

use std::path::Path;
use std::sync::OnceLock;

use oci_spec::image::{ImageIndex, ImageManifest};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use super::client::{Action, Client, Scope, content_digest};
use super::credentials::{Login, lookup};
use super::progress::{Counted, Direction, LayerOutcome, Transfers, Unwatched};
use super::store::BlobStore;
use super::{RegistryError, RegistryOptions};
use crate::blob::{Blob, Capped, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, read_capped, size_text};
use crate::digest::Digest;
use crate::image::Image;
use crate::layer::Layer;
use crate::parallel::in_parallel;
use crate::platform::Platform;
use crate::reference::Reference;

/// Every manifest kind we read, and schema 1 so it can be named when refused.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1";

/// Blob downloads at once: enough to fill a link, few enough to be polite.
const PARALLEL_DOWNLOADS: usize = 4;

/// Pulls `reference` for `platform`. Blobs already in the store are not
/// fetched again, and a reference pinned by digest whose manifests are all
/// stored is opened without touching the network.
pub fn pull(
    reference: &Reference,
    platform: &Platform,
    options: &RegistryOptions,
) -> Result<Image, RegistryError> {
    pull_with(reference, platform, options, &Unwatched)
}

/// [`pull`], telling `progress` how the layers' download goes.
pub fn pull_with(
    reference: &Reference,
    platform: &Platform,
    options: &RegistryOptions,
    progress: &dyn Transfers,
) -> Result<Image, RegistryError> {
    let mut puller = Puller::new(reference, options);
    puller.progress = progress;
    puller.pull(platform, &|_| true)
}

/// Which layers of an image to download; the others stay in the registry.
pub type LayerPick<'a> = &'a dyn Fn(&Layer) -> bool;

/// [`pull`], downloading only the layers `wanted` chooses (it sees each
/// layer as the manifest describes it, annotations included). A layer it
/// leaves out that the blob store does not hold stays in the registry: it
/// is described, never read, and opening it is an error.
pub fn pull_layers(
    reference: &Reference,
    platform: &Platform,
    options: &RegistryOptions,
    wanted: LayerPick,
) -> Result<Image, RegistryError> {
    Puller::new(reference, options).pull(platform, wanted)
}

/// Reads manifests and blobs of one repository, connecting (with the
/// user's login for its registry) when first needed.
pub(super) struct Puller<'a> {
    reference: &'a Reference,
    target: String,
    pub(super) store: BlobStore,
    options: &'a RegistryOptions,
    /// The login to use, else the user's stored one for the registry.
    login: Option<Login>,
    client: OnceLock<Client>,
    progress: &'a dyn Transfers,
}

/// A manifest's bytes and what they are.
struct Fetched {
    bytes: Vec<u8>,
    media_type: String,
}

/// An image manifest, and the digest of the index it was picked from when
/// the reference named one.
struct Picked {
    manifest: Fetched,
    index: Option<Digest>,
}

impl<'a> Puller<'a> {
    /// A puller of `reference`'s repository, into the blob store.
    pub(super) fn new(reference: &'a Reference, options: &'a RegistryOptions) -> Self {
        Puller {
            reference,
            target: format!("{}/{}", reference.registry(), reference.repository()),
            store: BlobStore::open(),
            options,
            login: None,
            client: OnceLock::new(),
            progress: &Unwatched,
        }
    }

    /// Uses `login`, if given, instead of the user's stored one.
    pub(super) fn with_login(mut self, login: Option<Login>) -> Self {
        self.login = login;
        self
    }

    /// The repository read.
    pub(super) fn repository(&self) -> &str {
        self.reference.repository()
    }

    /// `registry/repository`, for messages.
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// The connection to the registry, made on first use.
    pub(super) fn client(&self) -> Result<&Client, RegistryError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let registry = self.reference.registry();
        let login = match &self.login {
            Some(login) => Some(login.clone()),
            None => lookup(registry, self.reference.repository())?,
        };
        let client = Client::connect(registry, self.options, login)?;
        Ok(self.client.get_or_init(|| client))
    }

    fn scope(&self) -> Scope {
        Scope::new(self.reference.repository(), Action::Pull)
    }

    fn pull(&self, platform: &Platform, wanted: LayerPick) -> Result<Image, RegistryError> {
        let Picked { manifest, index } = self.manifest_for(platform)?;
        let parsed: ImageManifest = self.parse(&manifest.bytes, "manifest")?;
        let config = self.config(&parsed)?;
        let input = self.reference.to_string();
        let mut image = Image::from_manifest(
            Path::new(&input),
            &parsed,
            &config,
            &|digest| Ok(Blob::file(self.store.path(digest))),
            Some(self.reference.clone()),
        )?;
        check_platform(&image, platform, input)?;
        let (registry, repository) = (self.reference.registry(), self.reference.repository());
        image.rehome_blobs(|layer| {
            let left = !wanted(layer) && !self.store.has(&layer.digest(), Some(layer.size()));
            left.then(|| Blob::in_registry(registry, repository, layer.size()))
        });
        self.fetch_layers(&image)?;
        image.set_origin(self.reference);
        image.set_source_digest(Digest::of(&manifest.bytes));
        if let Some(index) = index {
            image.set_source_index(index);
        }
        Ok(image)
    }

    /// The image manifest for `platform`: the reference's own, or its
    /// index's entry for `platform` (one level deep).
    fn manifest_for(&self, platform: &Platform) -> Result<Picked, RegistryError> {
        let top = match (self.reference.digest(), self.reference.tag()) {
            (Some(digest), _) => self.manifest(&digest.to_string(), Some(digest))?,
            (None, Some(tag)) => self.manifest(tag, None)?,
            (None, None) => unreachable!("a reference has a tag or a digest"),
        };
        if !is_index(&top.media_type) {
            return Ok(Picked {
                manifest: top,
                index: None,
            });
        }
        let index: ImageIndex = self.parse(&top.bytes, "image index")?;
        let entry =
            platform
                .pick(index.manifests())
                .map_err(|available| RegistryError::NoPlatform {
                    reference: self.reference.to_string(),
                    wanted: platform.to_string(),
                    available,
                })?;
        let digest: Digest = self.digest_of(entry.digest().as_ref())?;
        let child = self.manifest(&digest.to_string(), Some(digest))?;
        if is_index(&child.media_type) {
            return Err(self.unsupported("an index inside an index is not supported".into()));
        }
        Ok(Picked {
            manifest: child,
            index: Some(Digest::of(&top.bytes)),
        })
    }

    /// The manifest's config bytes, from the store or fetched into it. One
    /// whose descriptor says it is over the cap is refused unfetched.
    fn config(&self, manifest: &ImageManifest) -> Result<Vec<u8>, RegistryError> {
        let config_digest = self.digest_of(manifest.config().digest().as_ref())?;
        if manifest.config().size() > MAX_CONFIG_SIZE {
            return Err(self.too_large(
                format!("config {config_digest}"),
                format!("{}, the most a config may have", size_text(MAX_CONFIG_SIZE)),
            ));
        }
        if let Some(bytes) = self.store.read_small(&config_digest, MAX_CONFIG_SIZE) {
            return Ok(bytes);
        }
        self.blob(&config_digest, manifest.config().size(), "config")?;
        self.store
            .read_small(&config_digest, MAX_CONFIG_SIZE)
            .ok_or_else(|| self.cache_error(&config_digest))
    }

    /// Downloads the image's layers the store does not hold yet (and that
    /// are not left in the registry), a few at a time.
    fn fetch_layers(&self, image: &Image) -> Result<(), RegistryError> {
        let layers: Vec<(Digest, u64)> = image
            .layers()
            .iter()
            .filter(|l| l.blob().is_local())
            .map(|l| (l.digest(), l.size()))
            .collect();
        // Sizes are the manifest's claims: their sum must not overflow.
        let bytes = layers
            .iter()
            .map(|(_, size)| *size)
            .fold(0, u64::saturating_add);
        self.progress.begin(Direction::Pull, layers.len(), bytes);
        let mut missing = Vec::new();
        for (digest, size) in layers {
            if self.store.has(&digest, Some(size)) {
                self.progress
                    .layer_done(&digest, size, LayerOutcome::Stored);
            } else {
                missing.push((digest, size));
            }
        }
        if !missing.is_empty() {
            let bytes = missing.iter().map(|(_, s)| *s).fold(0, u64::saturating_add);
            tracing::info!(
                "pulling {}: {} of {} layers, {:.1} MB",
                self.reference,
                missing.len(),
                image.layers().len(),
                bytes as f64 / 1e6
            );
        }
        in_parallel(&missing, PARALLEL_DOWNLOADS, |(digest, size)| {
            self.download(digest, *size, "layer", self.progress)?;
            self.progress
                .layer_done(digest, *size, LayerOutcome::Downloaded);
            Ok::<_, RegistryError>(())
        })
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
        self.progress.end();
        Ok(())
    }

    /// A manifest by tag or digest: from the store when its digest is known
    /// and stored, else from the registry, checked against every digest
    /// that names it, then stored.
    fn manifest(&self, rev: &str, pinned: Option<Digest>) -> Result<Fetched, RegistryError> {
        let known = match pinned {
            Some(digest) => Some(digest),
            None => self.head_manifest(rev)?,
        };
        if let Some(digest) = known
            && let Some(bytes) = self.store.read_small(&digest, MAX_MANIFEST_SIZE)
        {
            tracing::debug!("manifest {digest} from the blob store");
            let media_type = media_type_of(&bytes, "");
            return Ok(Fetched { bytes, media_type });
        }
        // A body that breaks off or arrives with wrong bytes may be the
        // transfer's fault: two more tries, as for blobs.
        let mut attempt = 1;
        loop {
            match self.fetch_manifest(rev, pinned) {
                Err(
                    e @ (RegistryError::Transfer { .. } | RegistryError::DigestMismatch { .. }),
                ) if attempt < 3 => {
                    tracing::info!("{}: {}; trying again", self.target, crate::error_line(&e));
                    attempt += 1;
                }
                fetched => return fetched,
            }
        }
    }

    /// One GET of the manifest `rev`, checked against `pinned` and the
    /// digest the registry states, and kept in the blob store.
    fn fetch_manifest(&self, rev: &str, pinned: Option<Digest>) -> Result<Fetched, RegistryError> {
        let client = self.client()?;
        let response = self.manifest_request(reqwest::Method::GET, rev)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: match pinned {
                    Some(d) => format!("manifest {d}"),
                    None => format!("tag `{rev}`"),
                },
                target: self.target.clone(),
            });
        }
        if !response.status().is_success() {
            return Err(client.status_error("fetching the manifest", response));
        }
        let header_digest = content_digest(&response);
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // Refused before it is read whole: by its Content-Length when it
        // has one, else once the stream passes the cap.
        let too_large = || {
            self.too_large(
                match pinned {
                    Some(d) => format!("manifest {d}"),
                    None => format!("the manifest of tag `{rev}`"),
                },
                format!(
                    "{}, the most a manifest may have",
                    size_text(MAX_MANIFEST_SIZE)
                ),
            )
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_MANIFEST_SIZE)
        {
            return Err(too_large());
        }
        let bytes = read_capped(response, MAX_MANIFEST_SIZE)
            .map_err(|e| self.transfer("reading the manifest", e))?
            .ok_or_else(too_large)?;
        let digest = Digest::of(&bytes);
        for expected in [pinned, header_digest].into_iter().flatten() {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "the manifest".into(),
                    target: self.target.clone(),
                    expected,
                    actual: digest,
                });
            }
        }
        let media_type = media_type_of(&bytes, &content_type);
        if media_type.contains("distribution.manifest.v1") {
            return Err(self.unsupported(
                "it has a Docker schema 1 manifest, which is deprecated and not supported; push the image again with a current docker, podman or skopeo".into(),
            ));
        }
        self.store
            .put(&digest, &mut &bytes[..])
            .map_err(|source| RegistryError::Cache {
                path: self.store.path(&digest),
                source,
            })?
            .map_err(|_| self.cache_error(&digest))?;
        Ok(Fetched { bytes, media_type })
    }

    /// The digest a tag points at, from a HEAD (which Docker Hub does not
    /// count against pull limits), when the registry says.
    fn head_manifest(&self, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let response = self.manifest_request(reqwest::Method::HEAD, tag)?;
        Ok(response
            .status()
            .is_success()
            .then(|| content_digest(&response))
            .flatten())
    }

    /// A GET or HEAD of the manifest `rev` (tag or digest), accepting
    /// every kind we read.
    pub(super) fn manifest_request(
        &self,
        method: reqwest::Method,
        rev: &str,
    ) -> Result<reqwest::blocking::Response, RegistryError> {
        let client = self.client()?;
        let url = client.url(&format!(
            "/v2/{}/manifests/{rev}",
            self.reference.repository()
        ));
        client.send(&self.scope(), "fetching the manifest", &|| {
            Ok(client.small(
                client
                    .http()
                    .request(method.clone(), url.clone())
                    .header(ACCEPT, ACCEPT_MANIFESTS),
            ))
        })
    }

    /// Downloads a blob into the store, verifying digest and size as it
    /// streams; a broken transfer is tried again from the start. The
    /// download stops as soon as it passes `size`, the size its descriptor
    /// declares, so a registry cannot fill the disk.
    pub(super) fn blob(&self, digest: &Digest, size: u64, what: &str) -> Result<(), RegistryError> {
        self.download(digest, size, what, &Unwatched)
    }

    /// [`Puller::blob`], telling `progress` of the bytes as they arrive.
    fn download(
        &self,
        digest: &Digest,
        size: u64,
        what: &str,
        progress: &dyn Transfers,
    ) -> Result<(), RegistryError> {
        let client = self.client()?;
        let url = client.url(&format!(
            "/v2/{}/blobs/{digest}",
            self.reference.repository()
        ));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = client.send(&self.scope(), "fetching a blob", &|| {
                Ok(client.downloads().get(url.clone()))
            })?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    what: format!("{what} blob {digest}"),
                    target: self.target.clone(),
                });
            }
            if !response.status().is_success() {
                return Err(client.status_error("fetching a blob", response));
            }
            let oversized = || {
                self.too_large(
                    format!("{what} blob {digest}"),
                    format!("the {size} bytes its descriptor declares"),
                )
            };
            if response.content_length().is_some_and(|len| len > size) {
                return Err(oversized());
            }
            // Read on a thread of its own, so a signal is not kept waiting
            // by a registry that sends nothing.
            let body = crate::interrupt::Interruptible::new(response)
                .map_err(|e| self.transfer(&format!("fetching {what} {digest}"), e))?;
            let mut body = Counted::new(Capped::new(body, size), progress);
            match self.store.put(digest, &mut body) {
                Ok(Ok(path)) => {
                    let stored = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if stored != size {
                        let _ = std::fs::remove_file(&path);
                        return Err(RegistryError::SizeMismatch {
                            what: format!("{what} {digest}"),
                            target: self.target.clone(),
                            expected: size,
                            actual: stored,
                        });
                    }
                    return Ok(());
                }
                // Wrong bytes are not kept (the store checks before it
                // renames); they may be the transfer's fault, so try again.
                Ok(Err(mismatch)) if attempt < 3 => {
                    progress.rewound(body.reported());
                    tracing::info!(
                        "{}: {what} {digest} arrived with wrong bytes ({}); trying again",
                        self.target,
                        mismatch.actual
                    );
                }
                Ok(Err(mismatch)) => {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("{what} blob ({} bytes)", mismatch.size),
                        target: self.target.clone(),
                        expected: *digest,
                        actual: mismatch.actual,
                    });
                }
                Err(_) if body.get_ref().overflowed() => return Err(oversized()),
                Err(e) if attempt < 3 && crate::interrupt::received().is_none() => {
                    progress.rewound(body.reported());
                    tracing::info!(
                        "{}: {what} {digest} broke off ({e}); trying again",
                        self.target
                    );
                }
                Err(e) if crate::interrupt::is_stall(&e) => {
                    return Err(client.stalled(&format!("fetching {what} {digest}"), attempt));
                }
                Err(e) => return Err(self.transfer(&format!("fetching {what} {digest}"), e)),
            }
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<T, RegistryError> {
        serde_json::from_slice(bytes)
            .map_err(|e| self.unsupported(format!("its {what} is not valid: {e}")))
    }

    fn digest_of(&self, text: &str) -> Result<Digest, RegistryError> {
        text.parse()
            .map_err(|e: crate::digest::DigestParseError| self.unsupported(e.to_string()))
    }

    fn unsupported(&self, reason: String) -> RegistryError {
        RegistryError::Unsupported {
            reference: self.reference.to_string(),
            reason,
        }
    }

    fn too_large(&self, what: String, limit: String) -> RegistryError {
        RegistryError::TooLarge {
            what,
            reference: self.reference.to_string(),
            limit,
        }
    }

    fn transfer(&self, what: &str, source: std::io::Error) -> RegistryError {
        RegistryError::Transfer {
            host: self.reference.registry().to_owned(),
            what: what.to_owned(),
            source,
        }
    }

    fn cache_error(&self, digest: &Digest) -> RegistryError {
        RegistryError::Cache {
            path: self.store.path(digest),
            source: std::io::Error::other("a stored blob does not match its digest"),
        }
    }
}

/// Refuses an image whose config names another platform than `platform`
/// (an index entry can say one thing and the config another).
fn check_platform(image: &Image, platform: &Platform, input: String) -> Result<(), RegistryError> {
    let (os, arch) = (image.config().os(), image.config().architecture());
    if platform.matches(
        os.unwrap_or_default(),
        arch.unwrap_or_default(),
        image.config().variant(),
    ) {
        return Ok(());
    }
    Err(RegistryError::NoPlatform {
        reference: input,
        wanted: platform.to_string(),
        available: format!("{}/{}", os.unwrap_or("?"), arch.unwrap_or("?")),
    })
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("image.index") || media_type.contains("manifest.list")
}

/// A manifest's media type: its `mediaType` field, else the Content-Type,
/// else judged from its shape (old OCI manifests omit the field).
fn media_type_of(bytes: &[u8], content_type: &str) -> String {
    let json: Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(m) = json["mediaType"].as_str() {
        return m.to_owned();
    }
    if json["schemaVersion"].as_u64() == Some(1) {
        return "application/vnd.docker.distribution.manifest.v1+json".into();
    }
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    if !content_type.is_empty() && content_type != "application/json" {
        return content_type.to_owned();
    }
    if json.get("manifests").is_some() {
        "application/vnd.oci.image.index.v1+json".into()
    } else {
        "application/vnd.oci.image.manifest.v1+json".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_kinds_are_told_apart() {
        let oci = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            media_type_of(oci, "application/json"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        let schema1 = br#"{"schemaVersion":1,"name":"a","fsLayers":[]}"#;
        assert!(media_type_of(schema1, "").contains("distribution.manifest.v1"));
        let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(is_index(&media_type_of(list, "")));
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(is_index(&media_type_of(index, "")));
        assert!(!is_index("application/vnd.oci.image.manifest.v1+json"));
    }
}
