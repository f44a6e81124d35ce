//! The image model and its formats.
//!
//! One model, OCI media types throughout: a config, a list of layers and
//! manifest annotations. Readers (`docker_archive`, `legacy`, `oci_layout`)
//! produce it, writers consume it, and no format module calls another, in
//! the manner of go-containerregistry's `tarball`/`layout` split. Layers are
//! not copied when an image is opened: they stay byte ranges of their input
//! until written, and every copy is checked against its digest.

mod add;
pub mod annotations;
mod config;
mod docker_archive;
mod glibc;
mod index;
mod legacy;
mod oci_layout;
mod rootfs;
mod sink;
mod source;
mod tar_index;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::atomic::OwnedDir;
use oci_spec::image::{ImageManifest, MediaType};
use serde_json::{Value, json};

pub use config::{ConfigError, ImageConfig, rfc3339};
pub use glibc::glibc_version;
pub use index::{index_bytes, write_index};
pub use rootfs::{KnownFiles, PickedFile as ImageFile};
pub use source::{ImageDestination, ImageSource};

use self::add::{Plan, PlanError};
use self::rootfs::RootFs;
use crate::blob::Blob;
use crate::digest::Digest;
use crate::layer::tar::{LayerTar, Owner, PathFilter, archive_path};
use crate::layer::{Compression, Layer, LayerFactory, LayerWriter, oci_layer_media_type};
use crate::reference::{Reference, ReferenceError};

/// The fixed time used when `SOURCE_DATE_EPOCH` is not set, so that builds
/// are reproducible by default.
pub const DEFAULT_EPOCH: u64 = 0;

/// What can go wrong reading, editing or writing an image. Each message
/// names the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An image source string that names no transport and no existing path.
    #[error(
        "invalid image source `{0}`: expected `scratch`, an image reference (`debian:stable-slim`, `docker://ghcr.io/org/img:tag`), `docker-archive:PATH`, `oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]` or an existing path"
    )]
    BadSource(String),
    /// An image destination string of an unknown form.
    #[error(
        "invalid image destination `{0}`: expected `docker-archive:PATH`, `oci:DIR[:TAG]` or `oci-archive:PATH[:TAG]`"
    )]
    BadDestination(String),
    /// An input file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An input that is not an image of the expected kind.
    #[error("{} is not an image: {reason}", path.display())]
    NotAnImage {
        /// The input.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// An image that names a file it does not contain.
    #[error("{} is incomplete: it has no {member}", path.display())]
    MissingMember {
        /// The archive or directory.
        path: PathBuf,
        /// The missing member.
        member: String,
    },
    /// A metadata file that is not the JSON it should be.
    #[error("{}: {what} is not valid", path.display())]
    BadJson {
        /// The archive or directory.
        path: PathBuf,
        /// Which file.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A config blob that is not an image config.
    #[error("{}: bad image config", path.display())]
    BadConfig {
        /// The input.
        path: PathBuf,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// Bytes that do not match the digest they are stored under.
    #[error("{}: {what} does not match its digest: expected {expected}, found {actual}", path.display())]
    DigestMismatch {
        /// The input.
        path: PathBuf,
        /// Which blob.
        what: String,
        /// The digest it is named by.
        expected: Digest,
        /// The digest of its bytes.
        actual: Digest,
    },
    /// A blob whose size is not the one its descriptor states.
    #[error("{}: {what} has {actual} bytes, but its descriptor states {expected}", path.display())]
    SizeMismatch {
        /// The input.
        path: PathBuf,
        /// Which blob.
        what: String,
        /// The size the descriptor states.
        expected: u64,
        /// The size of its bytes.
        actual: u64,
    },
    /// A manifest, index or config larger than any real image has, refused
    /// before it is read into memory.
    #[error("{}: {what} is larger than {}, the most {kind} may have", path.display(), crate::blob::size_text(*limit))]
    TooLarge {
        /// The input.
        path: PathBuf,
        /// Which file or blob.
        what: String,
        /// What it is, with its article (`a manifest`, `an image index`).
        kind: &'static str,
        /// The cap.
        limit: u64,
    },
    /// A layer whose bytes could not be read or decompressed.
    #[error("cannot read layer {digest} of {input}")]
    LayerRead {
        /// The image it belongs to.
        input: String,
        /// The layer's digest.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A read of an image that stopped at a bound set against hostile
    /// input (such as a decompression bomb).
    #[error("{input}: {reason}")]
    Bounded {
        /// The image.
        input: String,
        /// Which bound, and what to do instead.
        reason: String,
    },
    /// A tag that is not in the layout.
    #[error("{} has no image tagged `{tag}` (tags: {available})", path.display())]
    NoSuchTag {
        /// The layout.
        path: PathBuf,
        /// The tag asked for.
        tag: String,
        /// The tags there are.
        available: String,
    },
    /// An OCI layout with several images and no tag to choose one.
    #[error("{} holds several images; pick one with `oci:{}:TAG` or `oci-archive:{}:TAG` (tags: {available})", path.display(), path.display(), path.display())]
    Ambiguous {
        /// The layout or archive.
        path: PathBuf,
        /// The tags there are.
        available: String,
    },
    /// Something valid that this tool does not handle.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The input.
        path: PathBuf,
        /// What and why.
        reason: String,
    },
    /// A tree or file that could not be added as a layer.
    #[error("cannot add {} as a layer", path.display())]
    AddLayer {
        /// The source.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file or tree that does not fit where it was to be added: a
    /// directory of the image would become a file or the reverse, or the
    /// destination's symlinks loop.
    #[error("--add {}:{dest}: {reason}", src.display())]
    AddConflict {
        /// The source on the host.
        src: PathBuf,
        /// The destination as given.
        dest: String,
        /// The path in the image and what is there.
        reason: String,
    },
    /// A layer that could not be built from the given contents.
    #[error("cannot build layer from {what}")]
    BuildLayer {
        /// The kind of input.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `remove_layer` on an image without layers.
    #[error("the image has no layer to remove")]
    NoLayers,
    /// An output that could not be written (nothing is left at its path).
    #[error("cannot write {}", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An output format that cannot hold this image.
    #[error("cannot write {}: {reason}", path.display())]
    Refused {
        /// The output.
        path: PathBuf,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A bad image name.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A bad config edit.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A registry reference given where files are read.
    #[error(
        "{0} is an image in a registry: open it with conda_docker::registry::open (Image::open reads files and folders only)"
    )]
    InRegistry(String),
    /// A `SOURCE_DATE_EPOCH` that is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH=`{0}` is not a whole number of seconds since 1970")]
    BadEpoch(String),
}

/// Reads a small blob (manifest, index, config) whole, refusing it unread
/// when it is over `cap`: what a file claims about its size is a bound to
/// enforce, not a promise.
pub(crate) fn read_capped(
    input: &Path,
    blob: &Blob,
    what: &str,
    kind: &'static str,
    cap: u64,
) -> Result<Vec<u8>, ImageError> {
    blob.read_capped(cap)
        .map_err(|source| ImageError::Read {
            path: input.to_owned(),
            source,
        })?
        .ok_or_else(|| ImageError::TooLarge {
            path: input.to_owned(),
            what: what.to_owned(),
            kind,
            limit: cap,
        })
}

/// The build time from `SOURCE_DATE_EPOCH`, else [`DEFAULT_EPOCH`].
pub fn source_date_epoch() -> Result<u64, ImageError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => {
            text.trim().parse().map_err(|_| ImageError::BadEpoch(text))
        }
        _ => Ok(DEFAULT_EPOCH),
    }
}

impl ImageDestination {
    /// Refuses, before any work, a destination that cannot hold layers
    /// compressed as `compression` says (a docker-archive and zstd).
    pub fn check_compression(&self, compression: Compression) -> Result<(), ImageError> {
        match (self, compression) {
            (ImageDestination::DockerArchive(path), Compression::Zstd(_)) => {
                Err(docker_archive::zstd_refused(path))
            }
            _ => Ok(()),
        }
    }
}

/// A container image: config, layers and manifest annotations, plus the
/// settings used for layers added to it.
#[derive(Clone, Debug)]
pub struct Image {
    config: ImageConfig,
    layers: Vec<Layer>,
    annotations: BTreeMap<String, String>,
    name: Option<Reference>,
    compression: Compression,
    jobs: usize,
    owner: Option<Owner>,
    epoch: u64,
    scratch: Option<Arc<OwnedDir>>,
    scratch_parent: Option<PathBuf>,
    /// The file system of `layers`, once `add_layer_path` needed it; kept
    /// up to date by `add_layer_path` and dropped by any other change of
    /// the layers.
    rootfs: Option<Arc<RootFs>>,
    /// The digest of the manifest the image was read from, where that
    /// manifest's bytes were read and checked (a registry, an OCI layout).
    source_digest: Option<Digest>,
    /// The digest of the image index that manifest was picked from by
    /// platform, where the source named an index.
    source_index: Option<Digest>,
}

impl Image {
    /// An empty linux/amd64 image with no layers (`scratch`).
    pub fn scratch() -> Result<Self, ImageError> {
        let config = ImageConfig::scratch("linux", "amd64", source_date_epoch()?);
        Self::from_parts(config, Vec::new(), BTreeMap::new(), None)
    }

    /// Opens an image from a source string in skopeo's transport syntax
    /// (`scratch`, `docker-archive:PATH`, `oci:DIR[:TAG]`,
    /// `oci-archive:PATH[:TAG]`) or a path to a tar or a directory.
    pub fn open(source: &str) -> Result<Self, ImageError> {
        source.parse::<ImageSource>()?.open()
    }

    /// Assembles an image; readers use this after checking their input.
    pub(crate) fn from_parts(
        config: ImageConfig,
        layers: Vec<Layer>,
        annotations: BTreeMap<String, String>,
        name: Option<Reference>,
    ) -> Result<Self, ImageError> {
        Ok(Image {
            config,
            layers,
            annotations,
            name,
            compression: Compression::default(),
            jobs: crate::parallel::cores(),
            owner: None,
            epoch: source_date_epoch()?,
            scratch: None,
            scratch_parent: None,
            rootfs: None,
            source_digest: None,
            source_index: None,
        })
    }

    /// Assembles an image from an image manifest, its config's bytes (both
    /// already verified) and where each layer's blob is. Layers that only
    /// Windows images have (foreign, non-distributable) are refused.
    pub(crate) fn from_manifest(
        input: &Path,
        manifest: &ImageManifest,
        config_bytes: &[u8],
        blob: &dyn Fn(&Digest) -> Result<Blob, ImageError>,
        name: Option<Reference>,
    ) -> Result<Self, ImageError> {
        let unsupported = |reason: String| ImageError::Unsupported {
            path: input.to_owned(),
            reason,
        };
        let config = ImageConfig::parse(config_bytes).map_err(|source| ImageError::BadConfig {
            path: input.to_owned(),
            source,
        })?;
        if config.os().is_some_and(|os| os != "linux") {
            return Err(unsupported(format!(
                "it is a {} image; only Linux images can be used",
                config.os().unwrap_or_default()
            )));
        }
        let diff_ids = config.diff_ids()?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(unsupported(format!(
                "the manifest lists {} layers but the config has {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (descriptor, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let kind = descriptor.media_type().to_string();
            let media_type = oci_layer_media_type(&kind).ok_or_else(|| {
                unsupported(if kind.contains("foreign") || kind.contains("nondistributable") {
                    format!(
                        "it has a non-distributable (foreign) layer, {kind}, as Windows images do; only Linux images can be used"
                    )
                } else {
                    format!("layer type {kind} cannot be carried")
                })
            })?;
            let digest: Digest = descriptor
                .digest()
                .to_string()
                .parse()
                .map_err(|e: crate::digest::DigestParseError| unsupported(e.to_string()))?;
            let mut layer = Layer::new(
                media_type,
                digest,
                descriptor.size(),
                diff_id,
                blob(&digest)?,
            );
            for (key, value) in descriptor.annotations().iter().flatten() {
                layer.set_annotation(key, value);
            }
            layers.push(layer);
        }
        let annotations = manifest
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Image::from_parts(config, layers, annotations, name)
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The regular files of the image's file system (its layers applied in
    /// order, whiteouts included) whose path `pick` chooses (relative to
    /// the root: `opt/conda/conda-meta/x.json`), read whole, each at most
    /// `max_file` bytes, with the layer it comes from. Only the picked
    /// files' bytes are kept; layers are bounded as for `--add`.
    pub fn read_files(
        &self,
        pick: &(dyn Fn(&str) -> bool + Sync),
        max_file: u64,
    ) -> Result<Vec<ImageFile>, ImageError> {
        RootFs::pick_files(&self.layers, &[], pick, max_file)
    }

    /// [`Image::read_files`], taking the layer at index `i` to hold the
    /// files `known[i]` says (path relative to the root, bytes) where it
    /// is `Some`, and nothing else: that layer is not read, so its blob
    /// need not be there. The others are read as for `read_files`, in
    /// order, so their whiteouts still hide what the known layers hold.
    pub fn read_files_knowing(
        &self,
        known: &[Option<KnownFiles>],
        pick: &(dyn Fn(&str) -> bool + Sync),
        max_file: u64,
    ) -> Result<Vec<ImageFile>, ImageError> {
        RootFs::pick_files(&self.layers, known, pick, max_file)
    }

    /// Gives each layer for which `blob` has one that blob instead: a
    /// puller leaves the layers it did not fetch in the registry.
    pub(crate) fn rehome_blobs(&mut self, blob: impl Fn(&Layer) -> Option<Blob>) {
        let layers = std::mem::take(&mut self.layers);
        self.layers = layers
            .into_iter()
            .map(|layer| match blob(&layer) {
                Some(blob) => layer.with_blob(blob),
                None => layer,
            })
            .collect();
        self.rootfs = None;
    }

    /// Marks every layer as pulled from `origin` (see [`Layer::origin`]).
    pub(crate) fn set_origin(&mut self, origin: &Reference) {
        let origin = Arc::new(origin.clone());
        for layer in &mut self.layers {
            layer.set_origin(origin.clone());
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The configuration, to edit Env, Entrypoint, Cmd, labels and so on.
    pub fn config_mut(&mut self) -> &mut ImageConfig {
        &mut self.config
    }

    /// The image name, if set.
    pub fn name(&self) -> Option<&Reference> {
        self.name.as_ref()
    }

    /// Names the image, `NAME[:TAG]` (tag `latest` if omitted).
    pub fn set_name(&mut self, name: &str) -> Result<(), ImageError> {
        self.set_reference(name.parse()?);
        Ok(())
    }

    /// Names the image with a reference already parsed.
    pub fn set_reference(&mut self, name: Reference) {
        self.name = Some(name);
    }

    /// Manifest annotations (OCI outputs only; docker archives have none).
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// Adds or replaces a manifest annotation.
    pub fn add_annotation(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.annotations.insert(key.into(), value.into());
    }

    /// Replaces every manifest annotation: a base's annotations describe
    /// the base, not an image built on it.
    pub fn set_annotations(&mut self, annotations: BTreeMap<String, String>) {
        self.annotations = annotations;
    }

    /// The digest of the manifest this image was read from, as its source
    /// stores it: for an image pulled from a registry or read from an OCI
    /// layout (or a docker-archive holding one, as Docker 25 writes them);
    /// `None` for others and for `scratch`. Edits of the image
    /// leave it as it was: it names where the image came from.
    pub fn source_digest(&self) -> Option<Digest> {
        self.source_digest
    }

    pub(crate) fn set_source_digest(&mut self, digest: Digest) {
        self.source_digest = Some(digest);
    }

    /// The digest of the image index the source named, when the image was
    /// picked from it by platform (a multi-platform image in a registry or
    /// an OCI layout); kept through edits as [`Image::source_digest`] is, so
    /// the images built on one platform each of a base share their base's
    /// index.
    pub fn source_index(&self) -> Option<Digest> {
        self.source_index
    }

    pub(crate) fn set_source_index(&mut self, digest: Digest) {
        self.source_index = Some(digest);
    }

    /// How layers added from now on are compressed.
    pub fn set_compression(&mut self, compression: Compression) {
        self.compression = compression;
    }

    /// How layers added from now on are compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// How many threads build and compress layers (default: one per core;
    /// at least one). The bytes written do not depend on it.
    pub fn set_jobs(&mut self, jobs: usize) {
        self.jobs = jobs.max(1);
    }

    /// How many threads build and compress layers.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Gives the entries at and below one folder of every layer added from
    /// now on to a user and group (`--owner`; `None`: all are 0:0).
    pub fn set_owner(&mut self, owner: Option<Owner>) {
        self.owner = owner;
    }

    /// The time stamped on new layers' entries and history, in seconds
    /// since 1970 (default: `SOURCE_DATE_EPOCH`, else 0).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The time stamped on new layers.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where new layer blobs are staged (default: the system temp dir). Set
    /// it before adding layers.
    pub fn set_scratch_dir(&mut self, dir: impl Into<PathBuf>) {
        self.scratch_parent = Some(dir.into());
    }

    /// The image id: the digest of the config.
    pub fn config_digest(&self) -> Digest {
        self.config.digest()
    }

    /// The OCI manifest, compact JSON with the keys in the spec's order
    /// (serde_json's `preserve_order` is on in this tree). Written by hand,
    /// not through oci-spec's `ImageManifest`: its annotations are a
    /// `HashMap`, whose order changes from run to run, and these bytes are
    /// pinned (tests/it/golden.rs).
    pub fn manifest_bytes(&self) -> Vec<u8> {
        let config = self.config.to_bytes();
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| {
                let mut d = json!({
                    "mediaType": l.media_type().to_string(),
                    "digest": l.digest().to_string(),
                    "size": l.size(),
                });
                if !l.annotations().is_empty() {
                    d["annotations"] = json!(l.annotations());
                }
                d
            })
            .collect();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::ImageManifest.to_string(),
            "config": {
                "mediaType": MediaType::ImageConfig.to_string(),
                "digest": Digest::of(&config).to_string(),
                "size": config.len(),
            },
            "layers": layers,
        });
        if !self.annotations.is_empty() {
            manifest["annotations"] = json!(self.annotations);
        }
        // A JSON value's Display is its compact serialisation, and cannot fail.
        manifest.to_string().into_bytes()
    }

    /// The digest of the OCI manifest.
    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest_bytes())
    }

    /// A handle that builds layers with this image's settings, from any
    /// thread; add what it builds with [`Image::push_layer`].
    pub fn layer_factory(&mut self) -> io::Result<LayerFactory> {
        let scratch = match &self.scratch {
            Some(dir) => dir.clone(),
            None => {
                let parent = self
                    .scratch_parent
                    .clone()
                    .unwrap_or_else(std::env::temp_dir);
                // Locked while any layer in it lives, so a later run
                // removes it only if this one was killed.
                let dir = Arc::new(OwnedDir::create(&parent, "conda-docker-scratch-")?);
                self.scratch = Some(dir.clone());
                dir
            }
        };
        Ok(
            LayerFactory::new(scratch, self.compression, self.epoch, self.jobs)
                .with_owner(self.owner.clone()),
        )
    }

    /// Compresses with the image's compression every layer stored as a
    /// plain tar, as a `docker save` base's are, so pushes and archives
    /// carry about a third of the bytes (nothing, when the compression is
    /// `none`). Those layers' digests change; their diff ids, and so the
    /// image id, do not. Each layer is checked against its digest while it
    /// is read. Returns how many it compressed.
    pub fn compress_plain_layers(&mut self) -> Result<usize, ImageError> {
        let plain: Vec<usize> = (0..self.layers.len())
            .filter(|&i| *self.layers[i].media_type() == MediaType::ImageLayer)
            .collect();
        if plain.is_empty() || self.compression == Compression::None {
            return Ok(0);
        }
        let fail = |what: String| move |source| ImageError::BuildLayer { what, source };
        let factory = self
            .layer_factory()
            .map_err(fail("the scratch folder".into()))?;
        let layers = &self.layers;
        let compressed = crate::parallel::in_parallel(&plain, self.jobs, |&i| {
            let layer = &layers[i];
            let mut writer = factory.writer()?;
            io::copy(&mut layer.open_verified()?, &mut writer)?;
            let mut compressed = writer.finish()?;
            for (key, value) in layer.annotations() {
                compressed.set_annotation(key.clone(), value.clone());
            }
            Ok::<_, io::Error>(compressed)
        });
        for (&i, result) in plain.iter().zip(compressed) {
            self.layers[i] = result.map_err(fail(self.layers[i].describe()))?;
        }
        Ok(plain.len())
    }

    /// Appends a layer already built (its blob, digest and diff id known),
    /// with a history entry saying `created_by`.
    pub fn push_layer(&mut self, layer: Layer, created_by: &str) {
        self.config
            .push_layer(layer.diff_id(), self.epoch, created_by);
        self.layers.push(layer);
        self.rootfs = None;
    }

    /// Appends a layer holding the file or directory tree at `path`, put at
    /// `arcpath` inside the image by Docker's `COPY` rules: a directory's
    /// contents go into `arcpath`; a file goes inside `arcpath` when it ends
    /// with `/` or is a directory of the image, else it becomes `arcpath`.
    /// Symlinks of the image on the way are followed inside the image (so
    /// `/bin/` of a base with `/bin -> usr/bin` means `/usr/bin/`, and the
    /// link stays), and a directory of the image never becomes a file nor
    /// the reverse ([`ImageError::AddConflict`]). To know what is there,
    /// the first call reads the headers of every layer (see
    /// `image/rootfs.rs`); later calls reuse what it found.
    ///
    /// Symlinks inside the tree stay symlinks (a top-level `path` that is a
    /// symlink is followed), hardlinks stay hardlinks, modes are kept,
    /// owners become 0:0 and times the image's epoch. `filter` sees each
    /// path relative to `path` and leaves it out when it returns `false`.
    pub fn add_layer_path(
        &mut self,
        path: impl AsRef<Path>,
        arcpath: &str,
        filter: Option<PathFilter>,
    ) -> Result<&Layer, ImageError> {
        let path = path.as_ref();
        let fail = |source| ImageError::AddLayer {
            path: path.to_owned(),
            source,
        };
        let created_by = format!(
            "conda-docker add_layer_path /{}",
            archive_path(arcpath).map_err(fail)?
        );
        // A missing source fails before the image's layers are read.
        std::fs::metadata(path).map_err(fail)?;
        let mut rootfs = match self.rootfs.take() {
            Some(rootfs) => rootfs,
            None => Arc::new(RootFs::of(&self.layers)?),
        };
        let plan = match Plan::new(&rootfs, path, arcpath, filter) {
            Ok(plan) => plan,
            Err(error) => {
                self.rootfs = Some(rootfs);
                return Err(match error {
                    PlanError::Io(source) => fail(source),
                    PlanError::Conflict(reason) => ImageError::AddConflict {
                        src: path.to_owned(),
                        dest: arcpath.to_owned(),
                        reason,
                    },
                });
            }
        };
        let built = self.build_layer(|tar| plan.write(&rootfs, tar));
        let layer = match built {
            Ok(layer) => layer,
            Err(source) => {
                self.rootfs = Some(rootfs);
                return Err(fail(source));
            }
        };
        self.push_layer(layer, &created_by);
        plan.apply(Arc::make_mut(&mut rootfs));
        self.rootfs = Some(rootfs);
        Ok(self.layers.last().expect("just pushed"))
    }

    /// Builds a layer (without adding it) from whatever `fill` writes into a
    /// deterministic tar, compressed with this image's settings. Add it with
    /// [`Image::push_layer`].
    pub fn build_layer(
        &mut self,
        fill: impl FnOnce(&mut LayerTar<LayerWriter>) -> io::Result<()>,
    ) -> io::Result<Layer> {
        self.layer_factory()?.build(fill)
    }

    /// Appends a layer of regular files (mode 0644) given as path → bytes.
    pub fn add_layer_contents<P, B>(
        &mut self,
        files: impl IntoIterator<Item = (P, B)>,
    ) -> Result<&Layer, ImageError>
    where
        P: AsRef<str>,
        B: AsRef<[u8]>,
    {
        let fail = |source| ImageError::BuildLayer {
            what: "in-memory contents".into(),
            source,
        };
        let mut sorted = BTreeMap::new();
        for (path, bytes) in files {
            sorted.insert(archive_path(path.as_ref()).map_err(fail)?, bytes);
        }
        let layer = self
            .build_layer(|tar| {
                sorted.iter().try_for_each(|(path, bytes)| {
                    let bytes = bytes.as_ref();
                    tar.add_file(path, 0o644, bytes.len() as u64, bytes)
                })
            })
            .map_err(fail)?;
        let names: Vec<_> = sorted.keys().map(|p| format!("/{p}")).collect();
        self.push_layer(
            layer,
            &format!("conda-docker add_layer_contents {}", names.join(" ")),
        );
        Ok(self.layers.last().expect("just pushed"))
    }

    /// Appends a layer from a ready, uncompressed tar stream, taken as is
    /// (compressed with the image's compression setting).
    pub fn add_layer_tar(
        &mut self,
        mut tar: impl Read,
        created_by: &str,
    ) -> Result<&Layer, ImageError> {
        let fail = |source| ImageError::BuildLayer {
            what: "a tar stream".into(),
            source,
        };
        let mut writer = self
            .layer_factory()
            .and_then(|f| f.writer())
            .map_err(fail)?;
        io::copy(&mut tar, &mut writer).map_err(fail)?;
        let layer = writer.finish().map_err(fail)?;
        self.push_layer(layer, created_by);
        Ok(self.layers.last().expect("just pushed"))
    }

    /// Removes the top layer (and its history entry) and returns it.
    pub fn remove_layer(&mut self) -> Result<Layer, ImageError> {
        let layer = self.layers.pop().ok_or(ImageError::NoLayers)?;
        self.config.pop_layer(self.epoch);
        self.rootfs = None;
        Ok(layer)
    }

    /// Writes the image to a destination in skopeo's transport syntax
    /// (`docker-archive:PATH`, `oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`).
    pub fn write(&self, destination: &str) -> Result<(), ImageError> {
        self.write_to(&destination.parse()?)
    }

    /// Writes the image to `destination`. Nothing is left at the output
    /// path if writing fails.
    pub fn write_to(&self, destination: &ImageDestination) -> Result<(), ImageError> {
        tracing::info!(
            "writing {} ({} layers, id {})",
            destination,
            self.layers.len(),
            self.config_digest()
        );
        match destination {
            ImageDestination::DockerArchive(path) => docker_archive::write(self, path),
            ImageDestination::Oci { dir, tag } => {
                oci_layout::write_dir(self, dir, self.out_tag(tag))
            }
            ImageDestination::OciArchive { path, tag } => {
                oci_layout::write_archive(self, path, self.out_tag(tag))
            }
        }
    }

    /// Writes a `docker load`-able archive, like the original `write_file`.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), ImageError> {
        docker_archive::write(self, path.as_ref())
    }

    /// The tag for an OCI output: the one asked for, else the image name's.
    fn out_tag<'a>(&'a self, asked: &'a Option<String>) -> Option<&'a str> {
        asked
            .as_deref()
            .or_else(|| self.name.as_ref().and_then(Reference::tag))
    }
}
