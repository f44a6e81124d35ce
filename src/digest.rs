//! Content digests.
//!
//! Images name every blob by the sha256 of its bytes. A layer has two such
//! names: the digest of its (compressed) blob and the digest of the
//! uncompressed tar (the "diff id" listed in the config). Mixing them up is a
//! classic bug, so they are distinct types here.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The sha256 digest of a blob, written `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// The digest of a layer's uncompressed tar stream, as listed in the image
/// config's `rootfs.diff_ids`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiffId(pub Digest);

/// A string that is not a `sha256:<hex>` digest.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a sha256 digest (expected `sha256:` and 64 hex digits)")]
pub struct DigestParseError(pub String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix; used for
    /// file names in blob stores.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The 32 bytes, for encodings other than hex (a wheel's `RECORD`).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits with no algorithm prefix.
    pub fn from_hex(text: &str) -> Result<Self, DigestParseError> {
        let mut bytes = [0u8; 32];
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(DigestParseError(text.to_owned()));
        }
        hex::decode_to_slice(text, &mut bytes).map_err(|_| DigestParseError(text.to_owned()))?;
        Ok(Digest(bytes))
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestParseError(text.to_owned()))?;
        Digest::from_hex(hex).map_err(|_| DigestParseError(text.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiffId({})", self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A running sha256 plus a byte count: what a stream needs to know to become
/// a descriptor.
#[derive(Default, Clone)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digest and the number of bytes seen.
    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.sha.finalize().into()), self.len)
    }
}

/// A writer that hashes everything passed through to the inner writer.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::default(),
        }
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        let (digest, len) = self.hasher.finish();
        (self.inner, digest, len)
    }

    /// The inner writer, for a caller that must finish it in place.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that fails at end of stream unless the bytes read had exactly
/// the expected digest and size, so a corrupt blob can never be copied
/// silently into an output (the check of go-containerregistry's `verify`).
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    expected_size: u64,
    what: String,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`; `what` names the blob in the error message.
    pub fn new(inner: R, expected: Digest, expected_size: u64, what: impl Into<String>) -> Self {
        VerifyingReader {
            inner,
            hasher: Hasher::default(),
            expected,
            expected_size,
            what: what.into(),
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            if self.hasher.len > self.expected_size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is larger than the {} bytes its descriptor states",
                        self.what, self.expected_size
                    ),
                ));
            }
            return Ok(n);
        }
        let (digest, len) = self.hasher.clone().finish();
        if len != self.expected_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} has {len} bytes, but its descriptor states {}",
                    self.what, self.expected_size
                ),
            ));
        }
        if digest != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not match its digest: expected {}, got {digest}",
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

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"{}");
        assert_eq!(
            d.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("sha512:00".parse::<Digest>().is_err());
        assert!("sha256:XYZ".parse::<Digest>().is_err());
    }

    #[test]
    fn verifying_reader_rejects_changed_bytes() {
        let d = Digest::of(b"hello");
        let mut out = Vec::new();
        VerifyingReader::new(&b"hello"[..], d, 5, "blob")
            .read_to_end(&mut out)
            .unwrap();
        let err = VerifyingReader::new(&b"hellp"[..], d, 5, "blob")
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
        let err = VerifyingReader::new(&b"hell"[..], d, 5, "blob")
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("has 4 bytes"), "{err}");
    }
}
