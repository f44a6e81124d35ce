//! The OCI standard annotations a built image carries on its manifest
//! (and on its entry of an OCI layout's `index.json`), from the image
//! spec's `annotations.md`: when it was made and what it was built on.
//! Every value comes from the build's inputs, never the clock or the host,
//! so the same build gives the same manifest.

use std::collections::BTreeMap;

use super::config::rfc3339;
use crate::digest::Digest;
use crate::reference::Reference;

/// When the image was made (RFC 3339): the build's epoch, as the config's
/// `created`.
pub const CREATED: &str = "org.opencontainers.image.created";
/// The reference of the base image, as pulled (normalised:
/// `docker.io/library/debian:bookworm`).
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The digest of the base image's manifest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The standard annotations of an image made at `epoch` on a base pulled
/// as `base_name` whose manifest has `base_digest` (each left out when
/// unknown: `scratch`, or a base read from a file has no reference), then
/// the user's `extra` (`--annotation K=V`), which replace any of them.
pub fn standard(
    epoch: u64,
    base_name: Option<&Reference>,
    base_digest: Option<Digest>,
    extra: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    annotations.insert(CREATED.to_owned(), rfc3339(epoch));
    if let Some(name) = base_name {
        annotations.insert(BASE_NAME.to_owned(), name.to_string());
    }
    if let Some(digest) = base_digest {
        annotations.insert(BASE_DIGEST.to_owned(), digest.to_string());
    }
    for (key, value) in extra {
        annotations.insert(key.clone(), value.clone());
    }
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_the_base_and_the_user_say_what_is_written() {
        let base: Reference = "debian:bookworm".parse().unwrap();
        let digest = Digest::of(b"manifest");
        let extra = [
            (
                "org.opencontainers.image.source".to_owned(),
                "https://example.com/app".to_owned(),
            ),
            (CREATED.to_owned(), "2024-01-01T00:00:00Z".to_owned()),
        ];
        let all = standard(1_700_000_000, Some(&base), Some(digest), &extra);
        assert_eq!(all[BASE_NAME], "docker.io/library/debian:bookworm");
        assert_eq!(all[BASE_DIGEST], digest.to_string());
        assert_eq!(
            all["org.opencontainers.image.source"],
            "https://example.com/app"
        );
        assert_eq!(all[CREATED], "2024-01-01T00:00:00Z", "the user's wins");
        let bare = standard(1_700_000_000, None, None, &[]);
        assert_eq!(
            bare.into_iter().collect::<Vec<_>>(),
            [(CREATED.to_owned(), "2023-11-14T22:13:20Z".to_owned())]
        );
    }
}
