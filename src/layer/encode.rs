//! One pass from tar bytes to a stored blob: the stream is hashed (diff id),
//! compressed, hashed again (blob digest) and written to disk as it goes, so
//! memory does not grow with the layer.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use tempfile::NamedTempFile;

use super::Layer;
use super::compress::{Compression, Compressor, Threads};
use super::tar::Owner;
use crate::atomic::OwnedDir;
use crate::blob::Blob;
use crate::digest::{DiffId, HashingWriter};

type Sink = HashingWriter<BufWriter<NamedTempFile>>;

/// A `Write` that takes a layer's uncompressed tar stream and, when
/// finished, yields the [`Layer`] stored in a scratch directory.
pub struct LayerWriter {
    inner: HashingWriter<Compressor<Sink>>,
    compression: Compression,
    scratch: Arc<OwnedDir>,
}

impl LayerWriter {
    /// Starts a layer whose blob will be stored in `scratch`, compressed
    /// on `threads`.
    fn new(
        scratch: Arc<OwnedDir>,
        compression: Compression,
        threads: &Threads,
    ) -> io::Result<Self> {
        let file = NamedTempFile::new_in(scratch.path())?;
        let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        Ok(LayerWriter {
            inner: HashingWriter::new(Compressor::new(sink, compression, threads)?),
            compression,
            scratch,
        })
    }

    /// Ends the stream and stores the blob under its digest.
    pub fn finish(self) -> io::Result<Layer> {
        let (compressor, diff_id, _) = self.inner.finish();
        let (buffered, digest, size) = compressor.finish()?.finish();
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        let path = self.scratch.path().join(digest.hex());
        file.persist(&path).map_err(|e| e.error)?;
        let blob = Blob::scratch_file(path, self.scratch);
        Ok(Layer::new(
            self.compression.media_type(),
            digest,
            size,
            DiffId(diff_id),
            blob,
        )
        .with_checked_diff_id())
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Builds layers with one image's settings (scratch folder, compression,
/// time stamp, threads). Cheap to clone and usable from several threads at
/// once, so independent layers can be built in parallel; its clones share
/// one pool of `jobs` compressing threads.
#[derive(Clone)]
pub struct LayerFactory {
    scratch: Arc<OwnedDir>,
    compression: Compression,
    epoch: u64,
    threads: Threads,
    owner: Option<Owner>,
}

impl LayerFactory {
    /// A factory storing blobs in `scratch`, compressing on `jobs` threads
    /// (at least one; the bytes do not depend on it).
    pub fn new(scratch: Arc<OwnedDir>, compression: Compression, epoch: u64, jobs: usize) -> Self {
        LayerFactory {
            scratch,
            compression,
            epoch,
            threads: Threads::new(jobs),
            owner: None,
        }
    }

    /// The factory with `owner` owning the entries below its folder in
    /// every layer it builds.
    pub fn with_owner(mut self, owner: Option<Owner>) -> Self {
        self.owner = owner;
        self
    }

    /// The folder the layers' blobs are stored in.
    pub fn scratch(&self) -> Arc<OwnedDir> {
        self.scratch.clone()
    }

    /// A writer for a layer whose tar stream the caller makes itself.
    pub fn writer(&self) -> io::Result<LayerWriter> {
        LayerWriter::new(self.scratch.clone(), self.compression, &self.threads)
    }

    /// Builds a layer from whatever `fill` writes into a deterministic tar.
    pub fn build(
        &self,
        fill: impl FnOnce(&mut super::tar::LayerTar<LayerWriter>) -> io::Result<()>,
    ) -> io::Result<Layer> {
        let mut tar = super::tar::LayerTar::new(self.writer()?, self.epoch);
        tar.set_owner(self.owner.clone());
        fill(&mut tar)?;
        tar.finish()?.finish()
    }
}
