//! How new layers are compressed: the settings ([`Compression`]) and the
//! compressing writers, which use every `--jobs` thread on one layer while
//! writing the same bytes whatever the number of threads.

mod gzip;
mod zstdmt;

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::Arc;

use oci_spec::image::MediaType;

pub(crate) use gzip::{ChunkedGzip, GzipThreads};
pub use gzip::{GZIP_CHUNK_SIZE, GZIP_IMPLEMENTATION};
pub use zstdmt::ZSTD_JOB_SIZE;
use zstdmt::ZstdWriter;

/// How new layers are compressed. Levels are fixed per build so that the
/// same input always gives the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip, level 0-9 (`tar+gzip`): readable by every engine. Written as
    /// independent gzip members of [`GZIP_CHUNK_SIZE`] uncompressed bytes
    /// each (RFC 1952 multi-member, as eStargz layers are), compressed in
    /// parallel.
    Gzip(u32),
    /// zstd, level 1-22 (`tar+zstd`): smaller and faster, but older engines
    /// cannot read it. One frame, compressed by zstd's own threads in jobs
    /// of [`ZSTD_JOB_SIZE`].
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

/// `gzip`, `gzip:LEVEL`, `zstd`, `zstd:LEVEL` or `none`, as `--compression`
/// takes it: the levels default to 6 (gzip) and 3 (zstd), as their tools'.
impl FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "`{text}` is not a compression: use gzip[:0-9] (default gzip:6), zstd[:1-22] or none"
            )
        };
        let (algorithm, level) = match text.split_once(':') {
            Some((algorithm, level)) => (algorithm, Some(level)),
            None => (text, None),
        };
        match (algorithm, level) {
            ("none", None) => Ok(Compression::None),
            ("gzip", None) => Ok(Compression::Gzip(6)),
            ("zstd", None) => Ok(Compression::Zstd(3)),
            ("gzip", Some(level)) => match level.parse() {
                Ok(level @ 0..=9) => Ok(Compression::Gzip(level)),
                _ => Err(bad()),
            },
            ("zstd", Some(level)) => match level.parse() {
                Ok(level @ 1..=22) => Ok(Compression::Zstd(level)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Gzip(level) => write!(f, "gzip:{level}"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
        }
    }
}

/// The threads that compress the layers of one image: gzip chunks go to
/// a pool of `jobs` threads shared by every layer written at the same
/// time, zstd jobs to zstd's pool of as many.
#[derive(Clone)]
pub(crate) struct Threads {
    jobs: usize,
    gzip: Arc<GzipThreads>,
}

impl Threads {
    /// Threads for `jobs` (at least one), started when first needed.
    pub(crate) fn new(jobs: usize) -> Self {
        let jobs = jobs.max(1);
        Threads {
            jobs,
            gzip: Arc::new(GzipThreads::new(jobs)),
        }
    }
}

/// A stream compressed as one [`Compression`] says.
pub(crate) enum Compressor<W: Write> {
    None(W),
    Gzip(ChunkedGzip<W>),
    Zstd(ZstdWriter<W>),
}

impl<W: Write> Compressor<W> {
    /// Compresses into `inner` on `threads`.
    pub(crate) fn new(inner: W, compression: Compression, threads: &Threads) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::None(inner),
            Compression::Gzip(level) => {
                Compressor::Gzip(ChunkedGzip::new(inner, level.min(9), threads.gzip.clone()))
            }
            Compression::Zstd(level) => {
                Compressor::Zstd(ZstdWriter::new(inner, level, threads.jobs)?)
            }
        })
    }

    /// Ends the stream and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions_parse_and_print_as_the_flag_takes_them() {
        for (text, compression) in [
            ("gzip", Compression::Gzip(6)),
            ("gzip:1", Compression::Gzip(1)),
            ("gzip:0", Compression::Gzip(0)),
            ("zstd", Compression::Zstd(3)),
            ("zstd:19", Compression::Zstd(19)),
            ("none", Compression::None),
        ] {
            assert_eq!(text.parse::<Compression>(), Ok(compression), "{text}");
        }
        assert_eq!(Compression::Gzip(9).to_string(), "gzip:9");
        assert_eq!(
            "zstd:7".parse::<Compression>().unwrap().to_string(),
            "zstd:7"
        );
        for bad in ["gzip:10", "zstd:0", "zstd:x", "gzip:", "xz", "none:1", ""] {
            let err = bad.parse::<Compression>().unwrap_err();
            assert!(err.contains("gzip[:0-9]"), "{bad}: {err}");
        }
    }
}
