//! The glibc version of a base image, for the solver's `__glibc`: packages
//! built against a newer glibc than the base has would fail at run time.
//!
//! Read from the image's files, top layer first: `libc-2.31.so` names its
//! version (glibc before 2.34); a newer `libc.so.6` says
//! `release version 2.41` in its banner.

use std::io::Read;

use crate::image::Image;

/// The most of `libc.so.6` read to find its banner (it sits in .rodata,
/// well inside the first megabytes).
const BANNER_WINDOW: u64 = 4 << 20;

/// The glibc version of `image`, if it has one (musl images do not).
pub fn glibc_version(image: &Image) -> Option<String> {
    image.layers().iter().rev().find_map(|layer| {
        let reader = layer.uncompressed().ok()?;
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().ok()?;
        for entry in entries {
            let Ok(mut entry) = entry else { return None };
            let Ok(path) = entry.path() else { continue };
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if let Some(version) = name
                .strip_prefix("libc-")
                .and_then(|rest| rest.strip_suffix(".so"))
                .filter(|v| is_version(v))
            {
                return Some(version.to_owned());
            }
            if name == "libc.so.6" && entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                entry
                    .by_ref()
                    .take(BANNER_WINDOW)
                    .read_to_end(&mut bytes)
                    .ok()?;
                if let Some(version) = banner_version(&bytes) {
                    return Some(version);
                }
            }
        }
        None
    })
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

    #[test]
    fn versions_from_file_names_and_banners() {
        let mut image = Image::scratch().unwrap();
        image
            .add_layer_contents([("usr/lib/x86_64-linux-gnu/libc-2.31.so", b"elf".as_slice())])
            .unwrap();
        assert_eq!(glibc_version(&image).as_deref(), Some("2.31"));
        image
            .add_layer_contents([(
                "usr/glibc-compat/lib/libc.so.6",
                b"\x7fELF...GNU C Library (GNU libc) stable release version 2.41.\n".as_slice(),
            )])
            .unwrap();
        assert_eq!(
            glibc_version(&image).as_deref(),
            Some("2.41"),
            "top layer wins"
        );
        let musl = Image::scratch().unwrap();
        assert_eq!(glibc_version(&musl), None);
    }
}
