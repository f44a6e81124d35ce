//! Layers: building them (a deterministic tar, hashed and compressed in one
//! pass) and describing them (digest, size, diff id, media type, bytes).

pub mod cache;
pub mod compress;
mod encode;
pub(crate) mod headers;
pub mod tar;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use cache::LayerCache;
pub use compress::Compression;
pub use encode::{LayerFactory, LayerWriter};
use oci_spec::image::MediaType;

use crate::blob::Blob;
use crate::digest::{DiffId, Digest, VerifyingReader};
use crate::reference::Reference;

/// One layer of an image: its blob (compressed or not) and what describes it.
#[derive(Clone, Debug)]
pub struct Layer {
    media_type: MediaType,
    digest: Digest,
    size: u64,
    diff_id: DiffId,
    blob: Blob,
    annotations: BTreeMap<String, String>,
    origin: Option<Arc<Reference>>,
    /// Whether the diff id is known to be that of the blob's tar (this
    /// tool computed it while building the layer), so copies need not
    /// decompress the blob to check it.
    diff_id_checked: bool,
}

impl Layer {
    /// Describes a layer whose bytes are in `blob`. The caller vouches for
    /// the digest and size; they are checked again whenever the bytes are
    /// copied into an output.
    pub fn new(
        media_type: MediaType,
        digest: Digest,
        size: u64,
        diff_id: DiffId,
        blob: Blob,
    ) -> Self {
        Layer {
            media_type,
            digest,
            size,
            diff_id,
            blob,
            annotations: BTreeMap::new(),
            origin: None,
            diff_id_checked: false,
        }
    }

    /// Marks the diff id as computed from the blob itself (by the layer
    /// writer), so [`Layer::open_verified`] need not check it again.
    pub(crate) fn with_checked_diff_id(mut self) -> Self {
        self.diff_id_checked = true;
        self
    }

    /// Whether copying the layer must decompress it to check its diff id.
    pub(crate) fn diff_id_checked(&self) -> bool {
        self.diff_id_checked
    }

    /// The layer in messages: its digest and where it comes from (the
    /// image it was pulled from, else its file or archive member).
    pub fn describe(&self) -> String {
        match &self.origin {
            Some(origin) => format!("layer {} of {origin}", self.digest),
            None => format!("layer {} ({})", self.digest, self.blob),
        }
    }

    /// The blob, to copy it: the stream fails at its end unless the bytes
    /// have the layer's digest and size and, once decompressed, its diff
    /// id (hashed in the same pass, so the blob is read once). A stream
    /// that runs past the size fails as soon as it does.
    pub fn open_verified(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let what = self.describe();
        let checked = VerifyingReader::new(self.blob.open()?, self.digest, self.size, what.clone());
        if self.diff_id_checked {
            return Ok(Box::new(checked));
        }
        Ok(Box::new(verify::DiffIdReader::new(
            checked,
            &self.media_type,
            self.digest,
            self.diff_id,
            what,
        )?))
    }

    /// The media type of the blob (always an OCI layer type).
    pub fn media_type(&self) -> &MediaType {
        &self.media_type
    }

    /// The digest of the blob as stored (compressed).
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The size of the blob as stored.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of the uncompressed tar.
    pub fn diff_id(&self) -> DiffId {
        self.diff_id
    }

    /// Where the bytes are.
    pub fn blob(&self) -> &Blob {
        &self.blob
    }

    /// The same layer, its bytes in `blob` (the same bytes elsewhere, or
    /// left in a registry: [`Blob::in_registry`]).
    pub(crate) fn with_blob(mut self, blob: Blob) -> Self {
        self.blob = blob;
        self
    }

    /// Annotations of this layer's descriptor in an OCI manifest.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// Adds or replaces an annotation of this layer's descriptor.
    pub fn set_annotation(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.annotations.insert(key.into(), value.into());
    }

    /// The registry image this layer was pulled from, if any: a push to the
    /// same registry can mount the blob from there instead of uploading it.
    pub fn origin(&self) -> Option<&Reference> {
        self.origin.as_deref()
    }

    /// Records where the layer was pulled from.
    pub fn set_origin(&mut self, origin: Arc<Reference>) {
        self.origin = Some(origin);
    }

    /// The layer's tar, decompressed as its media type says.
    pub fn uncompressed(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let blob = self.blob.open()?;
        Ok(match self.media_type {
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                Box::new(flate2::read::MultiGzDecoder::new(blob))
            }
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                Box::new(zstd::Decoder::new(blob)?)
            }
            _ => blob,
        })
    }

    /// Whether the blob is compressed with zstd, which old `docker load`
    /// cannot read.
    pub fn is_zstd(&self) -> bool {
        matches!(
            self.media_type,
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd
        )
    }
}

/// Maps a layer media type found in an input (Docker's or OCI's) to the OCI
/// type used in the one image model. Returns `None` for a type that is not a
/// layer we can carry.
pub fn oci_layer_media_type(media_type: &str) -> Option<MediaType> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar" => MediaType::ImageLayer,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => MediaType::ImageLayerZstd,
        "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
        _ => return None,
    })
}

/// The compression of a blob judged from its first bytes (docker archives
/// carry no media types, so this is all there is to go on).
pub fn sniff_media_type(head: &[u8]) -> MediaType {
    if head.starts_with(&[0x1f, 0x8b]) {
        MediaType::ImageLayerGzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        MediaType::ImageLayerZstd
    } else {
        MediaType::ImageLayer
    }
}
