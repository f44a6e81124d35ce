//! The glibc version of a base image, for the solver's `__glibc`: packages
//! built against a newer glibc than the base has would fail at run time.
//!
//! Read from the image's files, top layer first: `libc-2.31.so` names its
//! version (glibc before 2.34); a newer `libc.so.6` says
//! `release version 2.41` in its banner.

use std::fmt::Display;
use std::io::{self, Read};
use std::ops::ControlFlow;

use super::{Image, ImageError};
use crate::blob::size_text;
use crate::layer::headers::{Budget, EntryHeader, WalkError, walk};

/// The most of `libc.so.6` read to find its banner (it sits in .rodata,
/// well inside the first megabytes).
const BANNER_WINDOW: u64 = 4 << 20;

/// The most decompressed layer data the scan reads from one base, 8 GiB.
/// The scan reads every layer above the one holding libc in full (a tar
/// in a compressed stream cannot be skipped through), so the bound must
/// exceed what real bases stack on their OS layer: a few hundred MB for
/// language images, a few GB for CUDA runtime images. It stops a
/// decompression bomb (a few MB of zstd can claim hundreds of GB) after
/// seconds of CPU instead of minutes.
const MAX_SCAN_BYTES: u64 = 8 << 30;

/// The most tar entries the scan looks at in one base, 1,000,000: a
/// distribution's base has tens of thousands of files, a large one with
/// a conda environment a few hundred thousand. Bounds the per-entry work
/// of a bomb made of empty entries, which costs little of the byte bound.
const MAX_SCAN_ENTRIES: u64 = 1_000_000;

/// The glibc version of `image`, if it has one (musl images do not).
/// `base` names the image in errors. Fails, rather than guessing, when a
/// layer cannot be read or decompressed, and when the base is larger
/// than the scan's bounds (8 GiB of decompressed data, 1,000,000 entries):
/// the error says to give the version with `--virtual-package __glibc=X`.
///
/// The answer is kept under the cache directory, keyed by the layers' diff
/// ids, so a base is scanned once, not on every build that uses it.
pub fn glibc_version(image: &Image, base: &dyn Display) -> Result<Option<String>, ImageError> {
    if image.layers().is_empty() {
        return Ok(None);
    }
    let ids: Vec<String> = image
        .layers()
        .iter()
        .map(|l| l.diff_id().0.to_string())
        .collect();
    let memo = crate::dirs::cache_dir()
        .join("glibc")
        .join(crate::digest::Digest::of(ids.join("\n").as_bytes()).hex());
    if let Ok(known) = std::fs::read_to_string(&memo) {
        let known = known.trim();
        return Ok((!known.is_empty()).then(|| known.to_owned()));
    }
    let found = scan(image, base, MAX_SCAN_BYTES, MAX_SCAN_ENTRIES)?;
    // Only a hint for later builds: a memo that cannot be written is skipped.
    let _ = fs_err::create_dir_all(memo.parent().unwrap_or(&memo)).and_then(|()| {
        crate::atomic::write(&memo, found.as_deref().unwrap_or("").as_bytes(), 0o644)
    });
    Ok(found)
}

/// The scan, within one budget shared by all the base's layers.
fn scan(
    image: &Image,
    base: &dyn Display,
    max_bytes: u64,
    max_entries: u64,
) -> Result<Option<String>, ImageError> {
    let budget = Budget::new(max_bytes, max_entries);
    for layer in image.layers().iter().rev() {
        let mut found = None;
        walk(layer, &budget, |entry, data| {
            found = version_of(entry, data)?;
            Ok(match found {
                Some(_) => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            })
        })
        .map_err(|error| scan_error(base, error))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The glibc version `entry` gives: by its name (`libc-2.31.so`), or for
/// a `libc.so.6` file by the banner in the first [`BANNER_WINDOW`] of
/// `data`.
fn version_of(entry: &EntryHeader, data: &mut dyn Read) -> io::Result<Option<String>> {
    let name = entry
        .path
        .split(|b| *b == b'/')
        .rfind(|part| !part.is_empty())
        .unwrap_or_default();
    let Ok(name) = std::str::from_utf8(name) else {
        return Ok(None);
    };
    if let Some(version) = name
        .strip_prefix("libc-")
        .and_then(|rest| rest.strip_suffix(".so"))
        .filter(|v| is_version(v))
    {
        return Ok(Some(version.to_owned()));
    }
    if name == "libc.so.6" && entry.kind.is_file() {
        let mut bytes = Vec::new();
        data.take(BANNER_WINDOW).read_to_end(&mut bytes)?;
        return Ok(banner_version(&bytes));
    }
    Ok(None)
}

/// A failed walk as the scan reports it: a layer that cannot be read
/// names the base and the layer; a spent budget says which bound stopped
/// the scan and how to do without it.
fn scan_error(base: &dyn Display, error: WalkError) -> ImageError {
    let what = match error {
        WalkError::Read { digest, source } => {
            return ImageError::LayerRead {
                input: base.to_string(),
                digest,
                source,
            };
        }
        WalkError::TooManyBytes(max) => format!("{} of decompressed layer data", size_text(max)),
        WalkError::TooManyEntries(max) => format!("{max} tar entries"),
    };
    ImageError::Bounded {
        input: base.to_string(),
        reason: format!(
            "stopped looking for glibc after {what} (a bound against decompression bombs); give the base's glibc version with --virtual-package __glibc=VERSION, e.g. __glibc=2.36"
        ),
    }
}

fn is_version(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').count() >= 2
        && text
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `2.41` from `... stable release version 2.41.` in libc's banner.
fn banner_version(bytes: &[u8]) -> Option<String> {
    let marker = b"release version ";
    let start = bytes.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let version: String = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| *b as char)
        .collect();
    let version = version.trim_end_matches('.').to_owned();
    is_version(&version).then_some(version)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Layer;

    #[test]
    fn versions_from_file_names_and_banners() {
        let mut image = Image::scratch().unwrap();
        image
            .add_layer_contents([("usr/lib/x86_64-linux-gnu/libc-2.31.so", b"elf".as_slice())])
            .unwrap();
        assert_eq!(
            glibc_version(&image, &"base").unwrap().as_deref(),
            Some("2.31")
        );
        image
            .add_layer_contents([(
                "usr/glibc-compat/lib/libc.so.6",
                b"\x7fELF...GNU C Library (GNU libc) stable release version 2.41.\n".as_slice(),
            )])
            .unwrap();
        assert_eq!(
            glibc_version(&image, &"base").unwrap().as_deref(),
            Some("2.41"),
            "top layer wins"
        );
        let musl = Image::scratch().unwrap();
        assert_eq!(glibc_version(&musl, &"musl").unwrap(), None);
    }

    #[test]
    fn long_names_are_followed_and_bounds_are_errors() {
        let long = format!("{}/libc-2.28.so", "deep/".repeat(40));
        let mut image = Image::scratch().unwrap();
        image
            .add_layer_contents([(long.as_str(), b"elf".as_slice())])
            .unwrap();
        assert_eq!(
            glibc_version(&image, &"base").unwrap().as_deref(),
            Some("2.28")
        );

        let files: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("f{i:02}"), vec![b'x'; 1000]))
            .collect();
        let mut big = Image::scratch().unwrap();
        big.add_layer_contents(files).unwrap();
        let err = scan(&big, &"docker-archive:big.tar", 5000, 1000).unwrap_err();
        let line = crate::error_line(&err);
        assert!(
            line.starts_with("docker-archive:big.tar: stopped looking for glibc after 5000 bytes of decompressed layer data"),
            "{line}"
        );
        assert!(line.contains("--virtual-package __glibc="), "{line}");
        let err = scan(&big, &"base", 1 << 30, 10).unwrap_err();
        assert!(
            crate::error_line(&err).contains("after 10 tar entries"),
            "{err}"
        );
        assert_eq!(scan(&big, &"base", 1 << 30, 1000).unwrap(), None);
    }

    #[test]
    fn an_unreadable_layer_is_an_error_naming_it() {
        let mut image = Image::scratch().unwrap();
        image
            .add_layer_contents([("etc/hostname", b"box".as_slice())])
            .unwrap();
        let layer = &image.layers()[0];
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        bytes.extend((0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8));
        std::fs::write(&garbage, &bytes).unwrap();
        let bad = Layer::new(
            layer.media_type().clone(),
            layer.digest(),
            bytes.len() as u64,
            layer.diff_id(),
            crate::blob::Blob::file(&garbage),
        );
        let mut broken = Image::scratch().unwrap();
        broken.push_layer(bad, "garbage");
        let err = glibc_version(&broken, &"docker-archive:bad.tar").unwrap_err();
        let line = crate::error_line(&err);
        assert!(
            line.starts_with(&format!(
                "cannot read layer {} of docker-archive:bad.tar: ",
                layer.digest()
            )),
            "{line}"
        );
    }
}
