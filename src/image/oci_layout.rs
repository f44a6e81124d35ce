//! OCI image layouts, as a directory (`oci:`) or a tar (`oci-archive:`).

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde_json::Value;

use super::sink::{
    DirSink, IMAGE_NAME, OCI_LAYOUT, REF_NAME, Sink, TarSink, blob_name, index_json, put_image,
};
use super::tar_index::TarIndex;
use super::{Image, ImageError};
use crate::blob::{Blob, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};
use crate::digest::Digest;
use crate::platform::Platform;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Where a layout's files are.
pub(crate) enum Store {
    /// A layout directory.
    Dir(PathBuf),
    /// A layout inside a tar.
    Tar(TarIndex),
}

impl Store {
    fn path(&self) -> &Path {
        match self {
            Store::Dir(dir) => dir,
            Store::Tar(index) => index.path(),
        }
    }

    fn blob(&self, name: &str) -> Result<Blob, ImageError> {
        match self {
            Store::Dir(dir) => {
                let path = dir.join(name);
                if path.is_file() {
                    Ok(Blob::file(path))
                } else {
                    Err(ImageError::MissingMember {
                        path: dir.clone(),
                        member: name.to_owned(),
                    })
                }
            }
            Store::Tar(index) => index.blob(name),
        }
    }

    /// Reads `name` whole if it has at most `cap` bytes.
    fn read(&self, name: &str, kind: &'static str, cap: u64) -> Result<Vec<u8>, ImageError> {
        super::read_capped(self.path(), &self.blob(name)?, name, kind, cap)
    }

    /// A descriptor's digest, which must be sha256 to be found in the store.
    fn digest_of(&self, descriptor: &Descriptor) -> Result<Digest, ImageError> {
        descriptor
            .digest()
            .to_string()
            .parse()
            .map_err(|e: crate::digest::DigestParseError| self.unsupported(e.to_string()))
    }

    /// Reads a small blob and checks it against its descriptor. One
    /// over `cap` (by its descriptor or its file) is refused unread as too
    /// large for `kind` (`a manifest`).
    fn read_verified(
        &self,
        descriptor: &Descriptor,
        what: &str,
        kind: &'static str,
        cap: u64,
    ) -> Result<Vec<u8>, ImageError> {
        let expected = self.digest_of(descriptor)?;
        if descriptor.size() > cap {
            return Err(ImageError::TooLarge {
                path: self.path().to_owned(),
                what: format!("{what} {expected}"),
                kind,
                limit: cap,
            });
        }
        let bytes = self.read(&blob_name(&expected), kind, cap)?;
        let actual = Digest::of(&bytes);
        if bytes.len() as u64 != descriptor.size() {
            return Err(ImageError::SizeMismatch {
                path: self.path().to_owned(),
                what: what.to_owned(),
                expected: descriptor.size(),
                actual: bytes.len() as u64,
            });
        }
        if actual != expected {
            return Err(ImageError::DigestMismatch {
                path: self.path().to_owned(),
                what: what.to_owned(),
                expected,
                actual,
            });
        }
        Ok(bytes)
    }

    fn unsupported(&self, reason: String) -> ImageError {
        ImageError::Unsupported {
            path: self.path().to_owned(),
            reason,
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<T, ImageError> {
        serde_json::from_slice(bytes).map_err(|source| ImageError::BadJson {
            path: self.path().to_owned(),
            what: what.to_owned(),
            source,
        })
    }
}

fn tags(index: &ImageIndex) -> String {
    let tags: Vec<&str> = index
        .manifests()
        .iter()
        .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).map(String::as_str))
        .collect();
    if tags.is_empty() {
        "none".into()
    } else {
        tags.join(", ")
    }
}

fn is_index(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageIndex) || media_type.to_string() == DOCKER_LIST
}

pub(crate) fn read(
    store: Store,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<Image, ImageError> {
    let index = read_index(&store)?;
    let descriptor = select(&store, &index, tag)?;
    let descriptor_name = descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(IMAGE_NAME).cloned());
    // read_verified checks an index's bytes against this digest.
    let index = is_index(descriptor.media_type())
        .then(|| descriptor.digest().to_string().parse().ok())
        .flatten();
    let descriptor = for_platform(&store, descriptor, platform)?;
    let media_type = descriptor.media_type().to_string();
    if media_type != MediaType::ImageManifest.to_string() && media_type != DOCKER_MANIFEST {
        return Err(store.unsupported(format!("unsupported manifest type {media_type}")));
    }
    let manifest: ImageManifest = store.parse(
        &store.read_verified(&descriptor, "manifest", "a manifest", MAX_MANIFEST_SIZE)?,
        "manifest",
    )?;
    let config_bytes =
        store.read_verified(manifest.config(), "config", "a config", MAX_CONFIG_SIZE)?;
    let name = descriptor_name
        .as_deref()
        .and_then(|name| name.parse().ok());
    let mut image = Image::from_manifest(
        store.path(),
        &manifest,
        &config_bytes,
        &|digest| store.blob(&blob_name(digest)),
        name,
    )?;
    // read_verified checked the manifest's bytes against this digest.
    if let Ok(digest) = descriptor.digest().to_string().parse() {
        image.set_source_digest(digest);
    }
    if let Some(index) = index {
        image.set_source_index(index);
    }
    Ok(image)
}

/// The layout's `index.json`, once the `oci-layout` file says this is a
/// layout at all.
fn read_index(store: &Store) -> Result<ImageIndex, ImageError> {
    if store.blob("oci-layout").is_err() {
        return Err(ImageError::NotAnImage {
            path: store.path().to_owned(),
            reason: "it has no oci-layout file (not an OCI image layout)".into(),
        });
    }
    store.parse(
        &store.read("index.json", "an image index", MAX_MANIFEST_SIZE)?,
        "index.json",
    )
}

/// The entry of `index.json` to read: the one tagged `tag`, or with no tag
/// the only entry (several are ambiguous).
fn select(store: &Store, index: &ImageIndex, tag: Option<&str>) -> Result<Descriptor, ImageError> {
    match tag {
        Some(tag) => index
            .manifests()
            .iter()
            .find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .map(String::as_str)
                    == Some(tag)
            })
            .cloned()
            .ok_or_else(|| ImageError::NoSuchTag {
                path: store.path().to_owned(),
                tag: tag.to_owned(),
                available: tags(index),
            }),
        None => match index.manifests().as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ImageError::NotAnImage {
                path: store.path().to_owned(),
                reason: "index.json lists no image".into(),
            }),
            _ => Err(ImageError::Ambiguous {
                path: store.path().to_owned(),
                available: tags(index),
            }),
        },
    }
}

/// Follows nested indexes (multi-platform images) down to the entry for
/// `platform`, at most four deep; a descriptor that is no index is returned
/// as it is.
fn for_platform(
    store: &Store,
    mut descriptor: Descriptor,
    platform: &Platform,
) -> Result<Descriptor, ImageError> {
    for _ in 0..4 {
        if !is_index(descriptor.media_type()) {
            break;
        }
        let nested: ImageIndex = store.parse(
            &store.read_verified(
                &descriptor,
                "image index",
                "an image index",
                MAX_MANIFEST_SIZE,
            )?,
            "image index",
        )?;
        descriptor = platform
            .pick(nested.manifests())
            .map_err(|available| {
                store.unsupported(format!(
                    "the image index has no image for {platform} (it offers: {available})"
                ))
            })?
            .clone();
    }
    Ok(descriptor)
}

/// What goes into a layout: puts its blobs into a sink and returns the
/// entry for `index.json` (an image's manifest, or an index of them).
pub(crate) type Put<'a> = &'a dyn Fn(&mut dyn Sink) -> std::io::Result<Value>;

/// Writes `image` as an OCI archive.
pub(crate) fn write_archive(
    image: &Image,
    path: &Path,
    tag: Option<&str>,
) -> Result<(), ImageError> {
    write_archive_with(path, image.epoch(), &|sink| put_image(image, sink, tag))
}

/// Writes an OCI archive holding what `put` puts, its tar entries dated
/// `epoch`.
pub(crate) fn write_archive_with(path: &Path, epoch: u64, put: Put) -> Result<(), ImageError> {
    let fail = |source| ImageError::Write {
        path: path.to_owned(),
        source,
    };
    let mut sink = TarSink::create(path, epoch).map_err(fail)?;
    let entry = put(&mut sink).map_err(fail)?;
    sink.put_bytes("index.json", &index_json(vec![entry]))
        .map_err(fail)?;
    sink.put_bytes("oci-layout", OCI_LAYOUT).map_err(fail)?;
    sink.commit().map_err(fail)
}

/// Writes into a layout directory, creating it or adding to an existing
/// layout (an entry with the same tag is replaced). `index.json` is written
/// last, so a failed write leaves any previous layout as it was.
pub(crate) fn write_dir(image: &Image, dir: &Path, tag: Option<&str>) -> Result<(), ImageError> {
    write_dir_with(dir, tag, &|sink| put_image(image, sink, tag))
}

/// [`write_dir`] of what `put` puts, whose entry is tagged `tag`.
pub(crate) fn write_dir_with(dir: &Path, tag: Option<&str>, put: Put) -> Result<(), ImageError> {
    let fail = |source| ImageError::Write {
        path: dir.to_owned(),
        source,
    };
    let mut manifests = Vec::new();
    if dir.join("index.json").is_file() {
        let existing: Value = serde_json::from_slice(&super::read_capped(
            dir,
            &Blob::file(dir.join("index.json")),
            "index.json",
            "an image index",
            MAX_MANIFEST_SIZE,
        )?)
        .map_err(|source| ImageError::BadJson {
            path: dir.to_owned(),
            what: "index.json".into(),
            source,
        })?;
        manifests = existing["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
    } else if dir.exists() && fs_err::read_dir(dir).map_err(fail)?.next().is_some() {
        return Err(ImageError::Refused {
            path: dir.to_owned(),
            reason: "the directory exists, is not empty and is not an OCI layout".into(),
        });
    }
    let created = !dir.exists();
    let result = (|| {
        fs_err::create_dir_all(dir)?;
        let mut sink = DirSink::new(dir);
        let entry = put(&mut sink)?;
        // The tag moves to the new manifest; an identical entry is not repeated.
        manifests.retain(|m| {
            let same_tag = tag.is_some() && m["annotations"][REF_NAME].as_str() == tag;
            !same_tag && *m != entry
        });
        manifests.push(entry);
        sink.put_bytes("oci-layout", OCI_LAYOUT)?;
        sink.put_bytes("index.json", &index_json(manifests))
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_dir_all(dir);
    }
    result.map_err(fail)
}
