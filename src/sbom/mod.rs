//! SBOMs of a built image: its conda packages (from the records the build
//! writes), the PyPI wheels it installs and its base image, as SPDX 2.3
//! JSON and CycloneDX 1.6 JSON.
//!
//! Every value comes from the image's content and the build's epoch: the
//! document id / serial number is a UUID made from a hash of the document
//! itself, and the timestamp is the epoch, so the same image gives the
//! same bytes. No I/O here: the build hands an [`Inventory`] in and writes
//! the bytes where they go.

mod cyclonedx;
mod inventory;
mod purl;
mod spdx;

use std::path::Path;

use sha2::{Digest as _, Sha256};

pub use inventory::{BaseImage, Ecosystem, Inventory, Package};

/// An SBOM format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON (`.spdx.json`).
    Spdx,
    /// CycloneDX 1.6 JSON (`.cdx.json`).
    Cyclonedx,
}

impl SbomFormat {
    /// Both formats, in the order they are written into an image.
    pub const ALL: [SbomFormat; 2] = [SbomFormat::Spdx, SbomFormat::Cyclonedx];

    /// The format a file name asks for by its ending, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        Self::ALL
            .into_iter()
            .find(|format| name.ends_with(format.ending()))
    }

    /// The ending of a file name that asks for this format.
    pub fn ending(self) -> &'static str {
        match self {
            SbomFormat::Spdx => ".spdx.json",
            SbomFormat::Cyclonedx => ".cdx.json",
        }
    }

    /// The file name of this format inside an image's `conda-meta/sbom/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "sbom.spdx.json",
            SbomFormat::Cyclonedx => "sbom.cdx.json",
        }
    }

    /// The media type (an OCI artifact's `artifactType`).
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "application/spdx+json",
            SbomFormat::Cyclonedx => "application/vnd.cyclonedx+json",
        }
    }
}

impl Inventory {
    /// The SBOM in `format`, as pretty-printed JSON ending in a newline.
    pub fn render(&self, format: SbomFormat) -> Vec<u8> {
        let document = match format {
            SbomFormat::Spdx => spdx::document(self),
            SbomFormat::Cyclonedx => cyclonedx::document(self),
        };
        let mut bytes = serde_json::to_vec_pretty(&document).expect("JSON values serialise");
        bytes.push(b'\n');
        bytes
    }
}

/// A UUID (version 5 layout, RFC 9562) made from the sha256 of `content`:
/// the same content gives the same UUID, different content another.
fn content_uuid(content: &[u8]) -> String {
    let hash = Sha256::digest(content);
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_come_from_the_content() {
        let a = content_uuid(b"one");
        assert_eq!(a, content_uuid(b"one"));
        assert_ne!(a, content_uuid(b"two"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
        assert!("89ab".contains(&a[19..20]));
    }

    #[test]
    fn formats_come_from_the_file_name() {
        assert_eq!(
            SbomFormat::from_path(Path::new("out/img.spdx.json")),
            Some(SbomFormat::Spdx)
        );
        assert_eq!(
            SbomFormat::from_path(Path::new("img.cdx.json")),
            Some(SbomFormat::Cyclonedx)
        );
        assert_eq!(SbomFormat::from_path(Path::new("img.json")), None);
    }
}
