//! Pushing an image: each blob the registry lacks (mounted from the base's
//! repository when it came from the same registry, else uploaded), then the
//! manifest last, so a failed push never leaves the tag pointing at a
//! partial image.

use std::cell::Cell;
use std::io::Read;

use oci_spec::image::MediaType;
use reqwest::StatusCode;
use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use serde::Serialize;
use url::Url;

use super::client::{Action, Client, Scope, content_digest};
use super::credentials::{Credentials, Login, Origin, lookup};
use super::progress::{Direction, LayerOutcome, Transfers, Unwatched};
use super::{RegistryError, RegistryOptions};
use crate::digest::Digest;
use crate::image::Image;
use crate::layer::Layer;
use crate::parallel::in_parallel;
use crate::reference::Reference;

/// Blobs up to this size go in one PUT; larger ones in chunks of this size,
/// so a huge layer never has to be sent (or held) in one request.
const CHUNK: u64 = 16 << 20;
/// Uploads of one blob, each from its start in a new upload session, when
/// one breaks in a way that may have left its session unusable.
const BLOB_TRIES: u32 = 3;
/// Uploads at once: registries throttle clients that open many more.
const PARALLEL_UPLOADS: usize = 3;
const OCTET_STREAM: &str = "application/octet-stream";

/// What a push did.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    /// The reference pushed to, in full.
    pub reference: String,
    /// `registry/repository`, without tag.
    pub name: String,
    /// The manifest digest: pull `NAME@DIGEST` to get exactly this image.
    pub digest: Digest,
    /// Blobs sent.
    pub uploaded: usize,
    /// Bytes sent in those blobs.
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository of the same registry.
    pub mounted: usize,
    /// Blobs the repository already had.
    pub existing: usize,
}

pub(super) enum Outcome {
    Existing,
    Mounted,
    Uploaded(u64),
}

impl Outcome {
    fn of_layer(&self) -> LayerOutcome {
        match self {
            Outcome::Existing => LayerOutcome::Existing,
            Outcome::Mounted => LayerOutcome::Mounted,
            Outcome::Uploaded(_) => LayerOutcome::Uploaded,
        }
    }
}

/// One blob to push: the config, from memory, or a layer.
pub(super) enum Item<'a> {
    Config(&'a [u8], Digest),
    Layer(&'a Layer),
}

impl Item<'_> {
    fn digest(&self) -> Digest {
        match self {
            Item::Config(_, digest) => *digest,
            Item::Layer(layer) => layer.digest(),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Item::Config(bytes, _) => bytes.len() as u64,
            Item::Layer(layer) => layer.size(),
        }
    }

    /// The blob for sending, checked as it is read: a layer against its
    /// digest, size and diff id (the registry checks only the digest).
    fn open(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        match self {
            Item::Config(bytes, _) => Ok(Box::new(*bytes)),
            Item::Layer(layer) => layer.open_verified().map(|r| r as Box<dyn Read + Send>),
        }
    }

    /// The whole blob (at most [`CHUNK`] bytes), read and checked once, so
    /// a retry sends the same bytes and a bad layer fails before its upload.
    fn read_whole(&self) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.size()).unwrap_or(0));
        self.open()?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// Pushes `image` to `reference`: [`PushTarget::check`], then
/// [`PushTarget::push`]. `credentials`, if given, win over the user's
/// stored logins for that registry.
pub fn push(
    image: &Image,
    reference: &Reference,
    options: &RegistryOptions,
    credentials: Option<Credentials>,
) -> Result<PushReport, RegistryError> {
    let login = credentials.map(|credentials| Login {
        credentials,
        origin: Origin::Given,
    });
    PushTarget::check(reference, options, login)?.push(image)
}

/// A repository known to take a push: its registry answers, and the login
/// for it may push there. Made before an image is built, so that a missing
/// or refused login stops the work before it starts.
pub struct PushTarget {
    client: Client,
    reference: Reference,
}

impl std::fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PushTarget({})", self.reference)
    }
}

impl PushTarget {
    /// Finds the login for `reference`'s registry (`login` if given, else
    /// docker's and podman's stored ones), connects, and checks that the
    /// login may push to the repository, as crane's
    /// `CheckPushPermission` does: a token for `repository:NAME:pull,push`
    /// alone does not tell (Docker Hub grants one with fewer actions than
    /// asked for), so an upload is started, then cancelled. Nothing is
    /// written to the repository.
    pub fn check(
        reference: &Reference,
        options: &RegistryOptions,
        login: Option<Login>,
    ) -> Result<PushTarget, RegistryError> {
        let registry = reference.registry();
        let login = match login {
            Some(login) => Some(login),
            None => lookup(registry, reference.repository())?,
        };
        let target = PushTarget {
            client: Client::connect(registry, options, login)?,
            reference: reference.clone(),
        };
        let pusher = target.pusher();
        let location = pusher.start_upload()?;
        pusher.cancel_upload(location);
        tracing::info!("{}: the login may push there", pusher.target);
        Ok(target)
    }

    pub(super) fn pusher(&self) -> Pusher<'_> {
        Pusher::new(&self.client, self.reference.repository())
    }

    /// The registry and repository pushed to.
    pub(crate) fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Whether the repository has the blob `digest` of `size` bytes, or
    /// has it now by a cross-repository mount from `from` (when that is
    /// another repository of the same registry): a layer it holds need
    /// not be built, read or sent. A blob of another size is not the one
    /// asked for.
    pub(crate) fn holds(
        &self,
        digest: &Digest,
        size: u64,
        from: Option<&Reference>,
    ) -> Result<bool, RegistryError> {
        let pusher = self.pusher();
        if let Some(found) = pusher.head(digest)? {
            return Ok(found.is_none_or(|found| found == size));
        }
        let Some(from) = from.filter(|from| {
            from.registry() == self.client.registry()
                && from.repository() != self.reference.repository()
        }) else {
            return Ok(false);
        };
        if let Some(upload) = pusher.mount(digest, from.repository())? {
            pusher.cancel_upload(upload);
            return Ok(false);
        }
        Ok(pusher
            .head(digest)?
            .is_some_and(|found| found.is_none_or(|found| found == size)))
    }

    /// Pushes `image`: the blobs the repository lacks, then the manifest.
    pub fn push(&self, image: &Image) -> Result<PushReport, RegistryError> {
        self.push_with(image, &Unwatched)
    }

    /// [`PushTarget::push`], telling `progress` how the layers' upload
    /// goes.
    pub fn push_with(
        &self,
        image: &Image,
        progress: &dyn Transfers,
    ) -> Result<PushReport, RegistryError> {
        let pusher = self.pusher();
        let outcomes = send_image(&pusher, image, progress)?;
        let manifest = image.manifest_bytes();
        self.put_top(&pusher, &manifest, &MediaType::ImageManifest, outcomes)
    }

    /// Pushes `images` (one per platform) as one index: each image's blobs
    /// and manifest (by digest), then the index under the tag. A blob
    /// pushed for one image (a noarch package's layer) is found there for
    /// the next, and not sent again.
    pub fn push_index_with(
        &self,
        images: &[Image],
        progress: &dyn Transfers,
    ) -> Result<PushReport, RegistryError> {
        let pusher = self.pusher();
        let mut outcomes = Vec::new();
        for image in images {
            outcomes.extend(send_image(&pusher, image, progress)?);
            let manifest = image.manifest_bytes();
            let digest = Digest::of(&manifest);
            pusher.manifest(&digest.to_string(), &manifest, &digest)?;
        }
        let index = crate::image::index_bytes(images);
        self.put_top(&pusher, &index, &MediaType::ImageIndex, outcomes)
    }

    /// Puts the manifest or index `bytes` under the reference's tag (or
    /// its digest), once its blobs are there, and tells what was sent.
    fn put_top(
        &self,
        pusher: &Pusher,
        bytes: &[u8],
        media_type: &MediaType,
        outcomes: Vec<Outcome>,
    ) -> Result<PushReport, RegistryError> {
        let reference = &self.reference;
        let digest = Digest::of(bytes);
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            return Err(RegistryError::Unsupported {
                reference: reference.to_string(),
                reason: format!("the image's manifest digest is {digest}; drop @DIGEST to push it"),
            });
        }
        let rev = reference
            .tag()
            .map_or_else(|| digest.to_string(), str::to_owned);
        pusher.put_manifest(&rev, bytes, &digest, media_type)?;
        let mut report = PushReport {
            reference: match reference.tag() {
                Some(tag) => format!("{}:{tag}", pusher.target),
                None => format!("{}@{digest}", pusher.target),
            },
            name: pusher.target.clone(),
            digest,
            uploaded: 0,
            uploaded_bytes: 0,
            mounted: 0,
            existing: 0,
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Existing => report.existing += 1,
                Outcome::Mounted => report.mounted += 1,
                Outcome::Uploaded(bytes) => {
                    report.uploaded += 1;
                    report.uploaded_bytes += bytes;
                }
            }
        }
        tracing::info!(
            "pushed {} ({} uploaded, {} mounted, {} already there)",
            report.reference,
            report.uploaded,
            report.mounted,
            report.existing
        );
        Ok(report)
    }
}

/// Sends the config and layers of `image` that the repository lacks.
fn send_image(
    pusher: &Pusher,
    image: &Image,
    progress: &dyn Transfers,
) -> Result<Vec<Outcome>, RegistryError> {
    let config = image.config().to_bytes();
    let mut items = vec![Item::Config(&config, Digest::of(&config))];
    let mut seen = std::collections::HashSet::new();
    for layer in image.layers() {
        if seen.insert(layer.digest()) {
            items.push(Item::Layer(layer));
        }
    }
    send_blobs(pusher, &items, progress)
}

/// Sends `items` that the repository lacks, a few at a time, telling
/// `progress` of each layer.
fn send_blobs(
    pusher: &Pusher,
    items: &[Item],
    progress: &dyn Transfers,
) -> Result<Vec<Outcome>, RegistryError> {
    let layers = items.iter().filter(|item| matches!(item, Item::Layer(_)));
    let bytes = layers.clone().map(Item::size).fold(0, u64::saturating_add);
    progress.begin(Direction::Push, layers.count(), bytes);
    let outcomes = in_parallel(items, PARALLEL_UPLOADS, |item| match item {
        Item::Config(..) => pusher.blob(item),
        Item::Layer(layer) => {
            let outcome = pusher.send(item, progress)?;
            progress.layer_done(&layer.digest(), layer.size(), outcome.of_layer());
            Ok(outcome)
        }
    })
    .into_iter()
    .collect::<Result<Vec<Outcome>, _>>()?;
    progress.end();
    Ok(outcomes)
}

/// Sends blobs and manifests to one repository.
pub(super) struct Pusher<'a> {
    client: &'a Client,
    repository: &'a str,
    pub(super) target: String,
}

impl<'a> Pusher<'a> {
    /// A pusher to `repository` of `client`'s registry.
    pub(super) fn new(client: &'a Client, repository: &'a str) -> Self {
        Pusher {
            client,
            repository,
            target: format!("{}/{repository}", client.registry()),
        }
    }

    fn scope(&self) -> Scope {
        Scope::new(self.repository, Action::Push)
    }

    /// The registry's client.
    pub(super) fn client(&self) -> &'a Client {
        self.client
    }

    /// The repository pushed to.
    pub(super) fn repository(&self) -> &'a str {
        self.repository
    }

    /// Whether the repository has the blob `digest`: `Some` with the size
    /// it states, if it does.
    fn head(&self, digest: &Digest) -> Result<Option<Option<u64>>, RegistryError> {
        let client = self.client;
        let url = client.url(&format!("/v2/{}/blobs/{digest}", self.repository));
        let head = client.send(&self.scope(), "checking a blob", &|| {
            Ok(client.small(client.http().head(url.clone())))
        })?;
        if !head.status().is_success() {
            return Ok(None);
        }
        tracing::debug!("{}: has {digest}", self.target);
        Ok(Some(
            head.headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        ))
    }

    /// Sends one blob unless the repository has it (or can mount it from
    /// the repository the layer came from).
    pub(super) fn blob(&self, item: &Item) -> Result<Outcome, RegistryError> {
        self.send(item, &Unwatched)
    }

    /// [`Pusher::blob`], telling `progress` of the bytes as they are sent.
    fn send(&self, item: &Item, progress: &dyn Transfers) -> Result<Outcome, RegistryError> {
        let digest = item.digest();
        if self.head(&digest)?.is_some() {
            return Ok(Outcome::Existing);
        }
        let mut location = None;
        if let Item::Layer(layer) = item
            && let Some(origin) = layer.origin()
            && origin.registry() == self.client.registry()
            && origin.repository() != self.repository
        {
            match self.mount(&digest, origin.repository()) {
                Ok(None) => return Ok(Outcome::Mounted),
                Ok(Some(upload)) => location = Some(upload),
                Err(e) => {
                    tracing::debug!("{}: mount of {digest} failed ({e}); uploading", self.target)
                }
            }
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let location = match location.take() {
                Some(l) => l,
                None => self.start_upload()?,
            };
            let Err(e) = self.upload(item, location.clone(), progress) else {
                return Ok(Outcome::Uploaded(item.size()));
            };
            if !session_may_be_lost(&e) {
                return Err(e);
            }
            // The bytes may have arrived with only the answer lost.
            if matches!(self.head(&digest), Ok(Some(_))) {
                tracing::debug!("{}: {digest} arrived after all ({e})", self.target);
                // The failed try took back the bytes it had counted.
                progress.moved(item.size());
                return Ok(Outcome::Uploaded(item.size()));
            }
            if tries == BLOB_TRIES {
                return Err(e);
            }
            tracing::info!(
                "{}: uploading {digest} again from its start: {e}",
                self.target
            );
            // A session refused with 400 or 416 may still be open there.
            self.cancel_upload(location);
        }
    }

    /// Asks for `digest` to be mounted from `from`: `None` when it was,
    /// else the upload the registry opened instead.
    fn mount(&self, digest: &Digest, from: &str) -> Result<Option<Url>, RegistryError> {
        let client = self.client;
        let mut url = client.url(&format!("/v2/{}/blobs/uploads/", self.repository));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let scope = self.scope().and(from, Action::Pull);
        let response = client.send(&scope, "mounting a blob", &|| {
            Ok(client.small(client.http().post(url.clone()).header(CONTENT_LENGTH, 0)))
        })?;
        match response.status() {
            StatusCode::CREATED => {
                tracing::debug!("{}: mounted {digest} from {from}", self.target);
                Ok(None)
            }
            StatusCode::ACCEPTED => self.location(&response).map(Some),
            _ => Err(client.status_error("mounting a blob", response)),
        }
    }

    fn start_upload(&self) -> Result<Url, RegistryError> {
        let client = self.client;
        let url = client.url(&format!("/v2/{}/blobs/uploads/", self.repository));
        let response = client.send(&self.scope(), "starting an upload", &|| {
            Ok(client.small(client.http().post(url.clone()).header(CONTENT_LENGTH, 0)))
        })?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(client.status_error("starting an upload", response));
        }
        self.location(&response)
    }

    /// Cancels an upload that was only started to check the login, or
    /// that a new session replaces, with one request. As with crane, a
    /// refusal is of no consequence (a registry with token auth may want
    /// the `delete` action, which a push login need not have): registries
    /// purge abandoned uploads.
    fn cancel_upload(&self, location: Url) {
        let client = self.client;
        match client.send_once(&self.scope(), "cancelling an upload", &|| {
            Ok(client.small(client.http().delete(location.clone())))
        }) {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::debug!(
                "{}: cancelling an upload: HTTP {}",
                self.target,
                response.status().as_u16()
            ),
            Err(e) => tracing::debug!("{}: cancelling an upload: {e}", self.target),
        }
    }

    fn location(&self, response: &reqwest::blocking::Response) -> Result<Url, RegistryError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                host: self.client.registry().to_owned(),
                what: "the upload has no Location".into(),
                status: response.status().as_u16(),
                detail: String::new(),
            })?;
        self.client.resolve(location)
    }

    /// Sends the bytes: one PUT for a small blob, PATCHes of [`CHUNK`]
    /// bytes then a closing PUT for a large one. A failed upload takes
    /// back the bytes it told `progress` of: a new try sends them again.
    fn upload(
        &self,
        item: &Item,
        location: Url,
        progress: &dyn Transfers,
    ) -> Result<(), RegistryError> {
        let sent = Cell::new(0);
        let result = self.try_upload(item, location, progress, &sent);
        if result.is_err() {
            progress.rewound(sent.get());
        }
        result
    }

    /// [`Pusher::upload`], adding to `sent` the bytes told of.
    fn try_upload(
        &self,
        item: &Item,
        location: Url,
        progress: &dyn Transfers,
        sent: &Cell<u64>,
    ) -> Result<(), RegistryError> {
        let client = self.client;
        let digest = item.digest();
        let whole = item.size() <= CHUNK;
        let mut url = if whole {
            location
        } else {
            self.upload_chunks(item, location, progress, sent)?
        };
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let bytes = if whole {
            item.read_whole().map_err(|e| self.read_error(item, e))?
        } else {
            Vec::new()
        };
        let response = client.send(&self.scope(), "finishing an upload", &|| {
            Ok(client.upload(
                client
                    .http()
                    .put(url.clone())
                    .header(CONTENT_TYPE, OCTET_STREAM)
                    .body(Body::from(bytes.clone())),
                // The closing PUT of a chunked upload carries no bytes, but
                // the registry checks and moves the whole blob before it
                // answers: it gets the whole blob's time.
                item.size(),
            ))
        })?;
        if response.status() != StatusCode::CREATED {
            return Err(client.status_error(&format!("uploading blob {digest}"), response));
        }
        progress.moved(bytes.len() as u64);
        tracing::debug!("{}: uploaded {digest} ({} bytes)", self.target, item.size());
        Ok(())
    }

    /// PATCHes the blob in [`CHUNK`]-sized pieces, each held in memory so a
    /// retry can send it again; returns where to PUT the end of it.
    fn upload_chunks(
        &self,
        item: &Item,
        mut location: Url,
        progress: &dyn Transfers,
        sent: &Cell<u64>,
    ) -> Result<Url, RegistryError> {
        let client = self.client;
        let size = item.size();
        let mut reader = item.open().map_err(|e| self.read_error(item, e))?;
        let mut offset = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK as usize);
        while offset < size {
            chunk.clear();
            (&mut reader)
                .take(CHUNK)
                .read_to_end(&mut chunk)
                .map_err(|e| self.read_error(item, e))?;
            if chunk.is_empty() {
                let short = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the blob ended at {offset} of {size} bytes"),
                );
                return Err(self.read_error(item, short));
            }
            let end = offset + chunk.len() as u64 - 1;
            let response = client.send(&self.scope(), "uploading a chunk", &|| {
                Ok(client.upload(
                    client
                        .http()
                        .patch(location.clone())
                        .header(CONTENT_TYPE, OCTET_STREAM)
                        .header(CONTENT_RANGE, format!("{offset}-{end}"))
                        .body(chunk.clone()),
                    chunk.len() as u64,
                ))
            })?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(client.status_error("uploading a chunk", response));
            }
            location = self.location(&response)?;
            progress.moved(chunk.len() as u64);
            sent.set(sent.get() + chunk.len() as u64);
            offset = end + 1;
        }
        Ok(location)
    }

    fn read_error(&self, item: &Item, source: std::io::Error) -> RegistryError {
        RegistryError::Transfer {
            host: self.client.registry().to_owned(),
            what: format!("reading blob {} to push it", item.digest()),
            source,
        }
    }

    /// Puts the OCI manifest `bytes` (whose digest is `digest`) under
    /// `rev`, a tag or that digest.
    pub(super) fn manifest(
        &self,
        rev: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        self.put_manifest(rev, bytes, digest, &MediaType::ImageManifest)
    }

    /// Puts `bytes`, a manifest or index of `media_type`, under `rev`.
    pub(super) fn put_manifest(
        &self,
        rev: &str,
        bytes: &[u8],
        digest: &Digest,
        media_type: &MediaType,
    ) -> Result<(), RegistryError> {
        let client = self.client;
        let url = client.url(&format!("/v2/{}/manifests/{rev}", self.repository));
        let response = client.send(&self.scope(), "putting the manifest", &|| {
            Ok(client.small(
                client
                    .http()
                    .put(url.clone())
                    .header(CONTENT_TYPE, media_type.to_string())
                    .body(bytes.to_vec()),
            ))
        })?;
        if response.status() != StatusCode::CREATED {
            return Err(client.status_error("putting the manifest", response));
        }
        if let Some(answered) = content_digest(&response)
            && answered != *digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "the pushed manifest".into(),
                target: self.target.clone(),
                expected: *digest,
                actual: answered,
            });
        }
        Ok(())
    }
}

/// Whether an upload that failed with `error` should start again in a new
/// session: a try that stalled or broke may have left part of the bytes in
/// the session, so that the next try of the same request is answered
/// "unknown session" (404), "wrong offset" (416) or "digest invalid"
/// (400). A stall or a broken connection is already retried by the client
/// (a lasting one is reported); a refusal, a stopping run, or another
/// answer is reported as it is.
fn session_may_be_lost(error: &RegistryError) -> bool {
    matches!(
        error,
        RegistryError::Status {
            status: 400 | 404 | 416,
            ..
        }
    ) && crate::interrupt::received().is_none()
}
