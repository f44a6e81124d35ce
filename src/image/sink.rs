//! Where writers put files: a tar being written, or a directory. Both
//! commit atomically — a temp file renamed into place — so a failed write
//! leaves nothing at the output path.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use oci_spec::image::MediaType;
use serde_json::{Value, json};

use super::Image;
use crate::digest::Digest;
use crate::layer::Layer;
use crate::layer::tar::LayerTar;
use crate::reference::Reference;

/// A place to put the files of an image output.
pub(crate) trait Sink {
    /// Whether a file `name` of `size` bytes is already there (so it need
    /// not be written again).
    fn has(&self, _name: &str, _size: u64) -> bool {
        false
    }

    /// Adds file `name` with `size` bytes from `data`.
    fn put(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<()>;

    /// Adds file `name` as a hard link to `source`, a read-only file of
    /// `size` bytes, where the sink allows it (a directory on the same file
    /// system); `false` when it does not, and the file is copied instead.
    fn link(&mut self, _name: &str, _source: &Path, _size: u64) -> bool {
        false
    }

    /// Adds a small file from memory.
    fn put_bytes(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.put(name, bytes.len() as u64, &mut &bytes[..])
    }
}

/// Temp files are created 0600; outputs are meant to be shared like any
/// file `docker save` or `skopeo` writes.
fn publish(file: NamedTempFile, path: &Path) -> io::Result<()> {
    crate::atomic::publish(file, path, 0o644)
}

/// A deterministic tar (same rules as layers), renamed into place on commit.
pub(crate) struct TarSink {
    tar: LayerTar<BufWriter<NamedTempFile>>,
    path: PathBuf,
    /// The names written, so a blob two images share goes in once.
    written: HashSet<String>,
}

impl TarSink {
    pub(crate) fn create(path: &Path, mtime: u64) -> io::Result<Self> {
        let file = crate::atomic::temp_beside(path)?;
        Ok(TarSink {
            tar: LayerTar::new(BufWriter::with_capacity(1 << 20, file), mtime),
            path: path.to_owned(),
            written: HashSet::new(),
        })
    }

    pub(crate) fn commit(self) -> io::Result<()> {
        let mut buffered = self.tar.finish()?;
        buffered.flush()?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.as_file().sync_all()?;
        publish(file, &self.path)
    }
}

impl Sink for TarSink {
    fn has(&self, name: &str, _size: u64) -> bool {
        self.written.contains(name)
    }

    fn put(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        self.written.insert(name.to_owned());
        self.tar.add_file(name, 0o644, size, data)
    }
}

/// A directory; each file is written to a temp file and renamed.
pub(crate) struct DirSink {
    root: PathBuf,
}

impl DirSink {
    pub(crate) fn new(root: &Path) -> Self {
        DirSink {
            root: root.to_owned(),
        }
    }
}

impl Sink for DirSink {
    fn has(&self, name: &str, size: u64) -> bool {
        fs::metadata(self.root.join(name)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Only a file nobody can write is linked: nothing writes into a blob
    /// in place (every file here is a temp file renamed over the old), so
    /// the inode the cache shares stays as it is.
    fn link(&mut self, name: &str, source: &Path, size: u64) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let read_only = fs::metadata(source)
            .is_ok_and(|m| m.is_file() && m.len() == size && m.permissions().mode() & 0o222 == 0);
        let path = self.root.join(name);
        let Some(parent) = path.parent().filter(|_| read_only) else {
            return false;
        };
        fs_err::create_dir_all(parent).is_ok()
            && tempfile::Builder::new()
                .prefix(".conda-docker-")
                .make_in(parent, |temp| fs::hard_link(source, temp))
                .is_ok_and(|link| link.persist(&path).is_ok())
    }

    fn put(&mut self, name: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        let path = self.root.join(name);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let mut file = crate::atomic::temp_beside(&path)?;
        let mut writer = BufWriter::new(file.as_file_mut());
        io::copy(data, &mut writer)?;
        writer.flush()?;
        drop(writer);
        publish(file, &path)
    }
}

/// Copies a layer's blob into a sink, checking its digest, size and diff id
/// on the way (see [`Layer::open_verified`]). A blob the sink already has
/// is not copied again, but one whose diff id was never checked is still
/// read once to check it: the config written beside it vouches for it. A
/// layer this tool built (its diff id computed from its bytes) whose blob
/// is a read-only file, as the layer cache keeps them, is hard-linked
/// where the sink allows, its size checked and not its digest (the layer
/// cache's `--verify` checks that when it takes the layer).
pub(crate) fn put_layer(sink: &mut dyn Sink, layer: &Layer) -> io::Result<()> {
    let name = format!("blobs/sha256/{}", layer.digest().hex());
    if sink.has(&name, layer.size()) {
        if !layer.diff_id_checked() {
            io::copy(&mut layer.open_verified()?, &mut io::sink())?;
        }
        return Ok(());
    }
    if layer.diff_id_checked()
        && let Some(source) = layer.blob().file_path()
        && sink.link(&name, source, layer.size())
    {
        return Ok(());
    }
    sink.put(&name, layer.size(), &mut layer.open_verified()?)
}

/// The annotation that holds a manifest's tag in `index.json`.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker 25 use for the full image name in
/// `index.json`; it carries the name through an OCI round trip.
pub(crate) const IMAGE_NAME: &str = "io.containerd.image.name";

/// Where a blob lives in a layout: `blobs/sha256/<hex>`.
pub(crate) fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Puts an image's config, layers and OCI manifest as `blobs/sha256/`
/// files, and returns the manifest's entry for `index.json` (with `tag`
/// and the image's name as annotations). An OCI layout and a
/// docker-archive both hold these, so each reads back the same manifest.
pub(crate) fn put_image(
    image: &Image,
    sink: &mut dyn Sink,
    tag: Option<&str>,
) -> std::io::Result<Value> {
    let config = image.config().to_bytes();
    let config_name = blob_name(&Digest::of(&config));
    if !sink.has(&config_name, config.len() as u64) {
        sink.put_bytes(&config_name, &config)?;
    }
    let mut seen = std::collections::HashSet::new();
    for layer in image.layers() {
        if seen.insert(layer.digest()) {
            put_layer(sink, layer)?;
        }
    }
    let manifest = image.manifest_bytes();
    sink.put_bytes(&blob_name(&Digest::of(&manifest)), &manifest)?;
    let mut entry = descriptor(
        &MediaType::ImageManifest,
        &manifest,
        image.annotations().clone(),
    );
    tag_entry(&mut entry, tag, image.name());
    Ok(entry)
}

/// The descriptor of the manifest or index `bytes`, with `annotations`
/// (the manifest's own on its index entry too, as buildx's
/// `index-descriptor` annotations: tools that list an index see them).
pub(crate) fn descriptor(
    media_type: &MediaType,
    bytes: &[u8],
    annotations: BTreeMap<String, String>,
) -> Value {
    let mut entry = json!({
        "mediaType": media_type.to_string(),
        "digest": Digest::of(bytes).to_string(),
        "size": bytes.len(),
    });
    if !annotations.is_empty() {
        entry["annotations"] = json!(annotations);
    }
    entry
}

/// Names an `index.json` entry: its `tag`, and the image's full `name`.
pub(crate) fn tag_entry(entry: &mut Value, tag: Option<&str>, name: Option<&Reference>) {
    let mut annotations = entry["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(tag) = tag {
        annotations.insert(REF_NAME.into(), tag.into());
    }
    if let Some(name) = name {
        annotations.insert(IMAGE_NAME.into(), name.to_string().into());
    }
    if !annotations.is_empty() {
        entry["annotations"] = annotations.into();
    }
}

/// `index.json` listing `manifests`.
pub(crate) fn index_json(manifests: Vec<Value>) -> Vec<u8> {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": manifests,
    });
    // A JSON value's Display is its compact serialisation, and cannot fail.
    index.to_string().into_bytes()
}

/// The `oci-layout` file.
pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
