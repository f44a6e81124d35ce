//! Checking a layer as its bytes are copied: the blob against its digest
//! and size, and its uncompressed tar against the diff id the image config
//! lists. The blob is decompressed and hashed in the same pass that copies
//! it, so it is read once; nothing is kept but two running hashes.
//!
//! A diff id that does not match makes an image that engines refuse at
//! load or run time (the config describes other files than the layers
//! hold), so it is caught here, where the layer is read, and named.

use std::io::{self, Read, Write};

use oci_spec::image::MediaType;

use crate::digest::{DiffId, Digest, HashingWriter};

type HashSink = HashingWriter<io::Sink>;

/// Decompresses the bytes written to it and hashes the result.
enum Decoder {
    /// An uncompressed tar: its diff id is its digest, which the inner
    /// reader already checks.
    Plain(Digest),
    /// Several gzip members in a row are one stream, as Go's reader (and so
    /// Docker and containerd) takes them.
    Gzip(Box<flate2::write::MultiGzDecoder<HashSink>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, HashSink>>),
}

impl Decoder {
    fn new(media_type: &MediaType, digest: Digest) -> io::Result<Self> {
        let sink = || HashingWriter::new(io::sink());
        Ok(match media_type {
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(sink())))
            }
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                Decoder::Zstd(Box::new(zstd::stream::write::Decoder::new(sink())?))
            }
            _ => Decoder::Plain(digest),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Decoder::Plain(_) => "tar",
            Decoder::Gzip(_) => "gzip",
            Decoder::Zstd(_) => "zstd",
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Decoder::Plain(_) => Ok(()),
            Decoder::Gzip(d) => d.write_all(bytes),
            Decoder::Zstd(d) => d.write_all(bytes),
        }
    }

    /// Ends the stream; the digest of everything it decompressed to.
    fn finish(self) -> io::Result<Digest> {
        Ok(match self {
            Decoder::Plain(digest) => digest,
            Decoder::Gzip(d) => d.finish()?.finish().1,
            Decoder::Zstd(mut d) => {
                d.flush()?;
                d.into_inner().finish().1
            }
        })
    }
}

/// Passes on the bytes of a layer's blob and fails at the end of the stream
/// unless they decompress to a tar with the expected diff id. Wrap a reader
/// that checks the blob's own digest and size, so that error comes first.
pub(crate) struct DiffIdReader<R> {
    inner: R,
    decoder: Option<Decoder>,
    expected: DiffId,
    what: String,
}

impl<R: Read> DiffIdReader<R> {
    /// Checks the blob `inner` of a layer of `media_type` and `digest`
    /// against `expected`; `what` names the layer in errors.
    pub(crate) fn new(
        inner: R,
        media_type: &MediaType,
        digest: Digest,
        expected: DiffId,
        what: String,
    ) -> io::Result<Self> {
        Ok(DiffIdReader {
            inner,
            decoder: Some(Decoder::new(media_type, digest)?),
            expected,
            what,
        })
    }

    fn invalid(&self, kind: &str, error: io::Error) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not valid {kind} data ({error})", self.what),
        )
    }
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(decoder) = &mut self.decoder
                && let Err(e) = decoder.write_all(&buf[..n])
            {
                let kind = decoder.kind();
                self.decoder = None;
                return Err(self.invalid(kind, e));
            }
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // The end: check once (a caller may read past the end again).
        let Some(decoder) = self.decoder.take() else {
            return Ok(0);
        };
        let kind = decoder.kind();
        let actual = decoder.finish().map_err(|e| self.invalid(kind, e))?;
        if actual != self.expected.0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not match its diff id: expected {}, got {actual}",
                    self.what, self.expected
                ),
            ));
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(media_type: MediaType, blob: &[u8], tar: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        DiffIdReader::new(
            blob,
            &media_type,
            Digest::of(blob),
            DiffId(Digest::of(tar)),
            "layer x".into(),
        )?
        .read_to_end(&mut out)?;
        Ok(out)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn compressed_layers_are_checked_against_their_diff_id() {
        let tar = b"a tar stream".repeat(100);
        let gz = gzip(&tar);
        assert_eq!(check(MediaType::ImageLayerGzip, &gz, &tar).unwrap(), gz);
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        assert_eq!(check(MediaType::ImageLayerZstd, &zst, &tar).unwrap(), zst);
        // Two gzip members are one stream.
        let (a, b) = tar.split_at(500);
        let two = [gzip(a), gzip(b)].concat();
        check(MediaType::ImageLayerGzip, &two, &tar).unwrap();

        let err = check(MediaType::ImageLayerGzip, &gzip(b"other"), &tar).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("layer x does not match its diff id: expected sha256:"),
            "{err}"
        );
        let mut garbage = vec![0x1f, 0x8b];
        garbage.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        let err = check(MediaType::ImageLayerGzip, &garbage, &tar).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("layer x is not valid gzip data"),
            "{err}"
        );
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"junk after the gzip member");
        assert!(check(MediaType::ImageLayerGzip, &trailing, &tar).is_err());
        let err = check(MediaType::ImageLayerZstd, &gz, &tar).unwrap_err();
        assert!(err.to_string().contains("is not valid zstd data"), "{err}");
    }

    #[test]
    fn a_plain_layer_s_diff_id_is_its_digest() {
        let tar = b"plain".to_vec();
        check(MediaType::ImageLayer, &tar, &tar).unwrap();
        let err = check(MediaType::ImageLayer, &tar, b"other").unwrap_err();
        assert!(
            err.to_string().contains("does not match its diff id"),
            "{err}"
        );
    }
}
