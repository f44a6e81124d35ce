//! Attaching an artifact (an SBOM) to a pushed image, OCI 1.1 style: a
//! manifest whose `subject` is the image manifest. Registries with the
//! referrers API (`GET /v2/<repo>/referrers/<digest>` answering an index)
//! list it by themselves; for the others the distribution spec's fallback
//! keeps an index of the image's referrers under the tag
//! `sha256-<hex of the image digest>`, which we update.

use oci_spec::image::MediaType;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use super::RegistryError;
use super::client::{Action, Scope};
use super::layer_cache::{EMPTY, artifact_manifest};
use super::push::{Item, PushTarget, Pusher};
use crate::blob::read_capped;
use crate::digest::Digest;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A referrers index larger than this is not one we update.
const MAX_INDEX: u64 = 4 << 20;

/// How an attached artifact is listed among its image's referrers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrersVia {
    /// By the registry's referrers API.
    Api,
    /// By the `sha256-<hex>` tag holding an index (the spec's fallback).
    TagSchema,
}

impl PushTarget {
    /// Pushes `bytes` (of media type `artifact_type`, file `title`) as an
    /// artifact whose subject is the image manifest `subject` (its digest
    /// and size), made at `created` (RFC 3339), and lists it among that
    /// manifest's referrers: its manifest digest, and how.
    pub fn attach(
        &self,
        (subject, subject_size): (Digest, usize),
        (artifact_type, title, created): (&str, &str, &str),
        bytes: &[u8],
    ) -> Result<(Digest, ReferrersVia), RegistryError> {
        let pusher = self.pusher();
        let blob = Digest::of(bytes);
        pusher.blob(&Item::Config(EMPTY, Digest::of(EMPTY)))?;
        pusher.blob(&Item::Config(bytes, blob))?;
        let mut manifest = artifact_manifest(
            artifact_type,
            json!({
                "mediaType": artifact_type,
                "digest": blob.to_string(),
                "size": bytes.len(),
                "annotations": {"org.opencontainers.image.title": title},
            }),
        );
        manifest.insert(
            "subject".into(),
            json!({"mediaType": MANIFEST, "digest": subject.to_string(), "size": subject_size}),
        );
        manifest.insert(
            "annotations".into(),
            json!({"org.opencontainers.image.created": created}),
        );
        let manifest = serde_json::to_vec(&manifest).expect("JSON values serialise");
        let digest = Digest::of(&manifest);
        pusher.manifest(&digest.to_string(), &manifest, &digest)?;
        if has_referrers_api(&pusher, &subject)? {
            return Ok((digest, ReferrersVia::Api));
        }
        let descriptor = json!({
            "mediaType": MANIFEST,
            "digest": digest.to_string(),
            "size": manifest.len(),
            "artifactType": artifact_type,
            "annotations": {"org.opencontainers.image.created": created},
        });
        update_tag_index(&pusher, &subject, descriptor)?;
        Ok((digest, ReferrersVia::TagSchema))
    }
}

/// Whether the registry answers the referrers API for `subject`: a 200
/// whose body is an image index. Anything else (a 404, an error page) is
/// a registry without it.
fn has_referrers_api(pusher: &Pusher, subject: &Digest) -> Result<bool, RegistryError> {
    let client = pusher.client();
    let url = client.url(&format!("/v2/{}/referrers/{subject}", pusher.repository()));
    let scope = Scope::new(pusher.repository(), Action::Pull);
    let response = client.send(&scope, "asking for the referrers API", &|| {
        Ok(client.small(client.http().get(url.clone()).header(ACCEPT, INDEX)))
    })?;
    if response.status() != StatusCode::OK {
        return Ok(false);
    }
    let body = read_capped(response, MAX_INDEX).ok().flatten();
    let index: Option<Value> = body.and_then(|b| serde_json::from_slice(&b).ok());
    Ok(index.is_some_and(|i| i["manifests"].is_array() && i["schemaVersion"] == 2))
}

/// Adds `descriptor` to the index under `sha256-<hex>` (made if missing;
/// one already listing the same digest is left as it is).
fn update_tag_index(
    pusher: &Pusher,
    subject: &Digest,
    descriptor: Value,
) -> Result<(), RegistryError> {
    let tag = format!("sha256-{}", subject.hex());
    let mut manifests = current_tag_index(pusher, &tag)?;
    if manifests
        .iter()
        .any(|m| m["digest"] == descriptor["digest"])
    {
        return Ok(());
    }
    manifests.push(descriptor);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": manifests,
    }))
    .expect("JSON values serialise");
    pusher.put_manifest(&tag, &index, &Digest::of(&index), &MediaType::ImageIndex)
}

/// The descriptors of the index now under `tag`; none when there is no
/// such tag, or what it holds is no index (it is then replaced).
fn current_tag_index(pusher: &Pusher, tag: &str) -> Result<Vec<Value>, RegistryError> {
    let client = pusher.client();
    let url = client.url(&format!("/v2/{}/manifests/{tag}", pusher.repository()));
    let scope = Scope::new(pusher.repository(), Action::Pull);
    let response = client.send(&scope, "reading the referrers tag", &|| {
        Ok(client.small(client.http().get(url.clone()).header(ACCEPT, INDEX)))
    })?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !response.status().is_success() {
        return Err(client.status_error("reading the referrers tag", response));
    }
    let is_index = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(INDEX.as_bytes()));
    let body = read_capped(response, MAX_INDEX).ok().flatten();
    let index: Option<Value> = body.and_then(|b| serde_json::from_slice(&b).ok());
    Ok(match index {
        Some(Value::Object(mut index)) if is_index => match index.remove("manifests") {
            Some(Value::Array(manifests)) => manifests,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    })
}
