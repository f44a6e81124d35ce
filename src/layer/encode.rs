//! One pass from tar bytes to a stored blob: the stream is hashed (diff id),
//! compressed, hashed again (blob digest) and written to disk as it goes, so
//! memory does not grow with the layer.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use flate2::write::GzEncoder;
use oci_spec::image::MediaType;
use tempfile::{NamedTempFile, TempDir};

use super::Layer;
use crate::blob::Blob;
use crate::digest::{DiffId, HashingWriter};

/// How new layers are compressed. Levels are fixed per build so that the
/// same input always gives the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip, level 0-9 (`tar+gzip`): readable by every engine.
    Gzip(u32),
    /// zstd, level 1-22 (`tar+zstd`): smaller and faster, but older engines
    /// cannot read it.
    Zstd(i32),
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip(6)
    }
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip(_) => MediaType::ImageLayerGzip,
            Compression::Zstd(_) => MediaType::ImageLayerZstd,
        }
    }
}

enum Compressor<W: Write> {
    None(W),
    Gzip(GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn new(inner: W, compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::None(inner),
            // GzBuilder writes no file name and a zero mtime: nothing of the
            // host or the clock reaches the header.
            Compression::Gzip(level) => Compressor::Gzip(
                flate2::GzBuilder::new().write(inner, flate2::Compression::new(level.min(9))),
            ),
            Compression::Zstd(level) => Compressor::Zstd(zstd::Encoder::new(inner, level)?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}

type Sink = HashingWriter<BufWriter<NamedTempFile>>;

/// A `Write` that takes a layer's uncompressed tar stream and, when
/// finished, yields the [`Layer`] stored in a scratch directory.
pub struct LayerWriter {
    inner: HashingWriter<Compressor<Sink>>,
    compression: Compression,
    scratch: Arc<TempDir>,
}

impl LayerWriter {
    /// Starts a layer whose blob will be stored in `scratch`.
    pub fn new(scratch: Arc<TempDir>, compression: Compression) -> io::Result<Self> {
        let file = NamedTempFile::new_in(scratch.path())?;
        let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        Ok(LayerWriter {
            inner: HashingWriter::new(Compressor::new(sink, compression)?),
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
/// time stamp). Cheap to clone and usable from several threads at once, so
/// independent layers can be built in parallel.
#[derive(Clone)]
pub struct LayerFactory {
    scratch: Arc<TempDir>,
    compression: Compression,
    epoch: u64,
}

impl LayerFactory {
    /// A factory storing blobs in `scratch`.
    pub fn new(scratch: Arc<TempDir>, compression: Compression, epoch: u64) -> Self {
        LayerFactory {
            scratch,
            compression,
            epoch,
        }
    }

    /// The folder the layers' blobs are stored in.
    pub fn scratch(&self) -> Arc<TempDir> {
        self.scratch.clone()
    }

    /// A writer for a layer whose tar stream the caller makes itself.
    pub fn writer(&self) -> io::Result<LayerWriter> {
        LayerWriter::new(self.scratch.clone(), self.compression)
    }

    /// Builds a layer from whatever `fill` writes into a deterministic tar.
    pub fn build(
        &self,
        fill: impl FnOnce(&mut super::tar::LayerTar<LayerWriter>) -> io::Result<()>,
    ) -> io::Result<Layer> {
        let mut tar = super::tar::LayerTar::new(self.writer()?, self.epoch);
        fill(&mut tar)?;
        tar.finish()?.finish()
    }
}
