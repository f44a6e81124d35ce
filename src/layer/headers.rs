//! Walking a layer's tar by its headers, decompressed as its media type
//! says, within budgets shared by every layer walked: for scans of an
//! image's file system that must read each header but keep (almost) no
//! data.
//!
//! The tar crate would read a long name or a PAX extension whole into
//! memory, whatever its size; here they are read raw and capped, so a
//! hostile layer costs no more than the budgets allow. The budgets stop a
//! decompression bomb (a few MB of zstd can claim hundreds of GB) and a
//! bomb of empty entries.

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tar::EntryType;

use super::Layer;
use crate::digest::Digest;

/// The most of a long-name or PAX extension entry kept in memory (a path
/// is at most a few KB; anything longer is not a real name).
const MAX_EXTENSION: u64 = 1 << 20;

/// What a walk may read, shared by every layer it walks (and by threads
/// walking layers at once).
#[derive(Debug)]
pub struct Budget {
    bytes: AtomicU64,
    entries: AtomicU64,
    bytes_spent: AtomicBool,
    max_bytes: u64,
    max_entries: u64,
}

impl Budget {
    /// At most `max_bytes` of decompressed tar and `max_entries` entries.
    pub fn new(max_bytes: u64, max_entries: u64) -> Self {
        Budget {
            bytes: AtomicU64::new(max_bytes),
            entries: AtomicU64::new(max_entries),
            bytes_spent: AtomicBool::new(false),
            max_bytes,
            max_entries,
        }
    }

    fn take_bytes(&self, want: u64) -> u64 {
        let mut left = self.bytes.load(Ordering::Relaxed);
        loop {
            let take = want.min(left);
            match self.bytes.compare_exchange_weak(
                left,
                left - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => left = now,
            }
        }
    }

    fn take_entry(&self) -> bool {
        self.entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Why a walk stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The layer could not be read, decompressed or parsed as a tar.
    #[error("cannot read layer {digest}")]
    Read {
        /// The layer's digest.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The byte budget is spent.
    #[error("read {0} bytes of decompressed layer data")]
    TooManyBytes(u64),
    /// The entry budget is spent.
    #[error("read {0} tar entries")]
    TooManyEntries(u64),
}

/// One entry as its headers describe it (long names and PAX extensions
/// applied).
#[derive(Debug)]
pub struct EntryHeader {
    /// The path as stored (may start with `./` or `/`, end with `/`).
    pub path: Vec<u8>,
    /// The entry type.
    pub kind: EntryType,
    /// The target of a symlink or hardlink.
    pub link: Option<Vec<u8>>,
    /// The permission bits (and setuid, setgid, sticky).
    pub mode: u32,
}

/// A reader that takes from a [`Budget`] and fails once it is spent.
struct Budgeted<'a, R> {
    inner: R,
    budget: &'a Budget,
}

impl<R: Read> Read for Budgeted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let granted = self.budget.take_bytes(buf.len() as u64);
        if granted == 0 {
            self.budget.bytes_spent.store(true, Ordering::Relaxed);
            return Err(io::Error::other("the byte budget is spent"));
        }
        let max = usize::try_from(granted).unwrap_or(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        // Give back what was granted but not read.
        self.budget
            .bytes
            .fetch_add(granted - n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Calls `visit` with each entry of `layer`'s tar in order, and a reader of
/// its data (read only what you need: the rest is skipped, and counts
/// against the byte budget either way). `visit` returns
/// `ControlFlow::Break(())` to stop early.
pub fn walk(
    layer: &Layer,
    budget: &Budget,
    mut visit: impl FnMut(&EntryHeader, &mut dyn Read) -> io::Result<ControlFlow<()>>,
) -> Result<(), WalkError> {
    let fail = |source: io::Error| {
        if budget.bytes_spent.load(Ordering::Relaxed) {
            WalkError::TooManyBytes(budget.max_bytes)
        } else {
            WalkError::Read {
                digest: layer.digest(),
                source,
            }
        }
    };
    let reader = Budgeted {
        inner: layer.uncompressed().map_err(fail)?,
        budget,
    };
    let mut archive = tar::Archive::new(reader);
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(fail)?.raw(true) {
        let mut entry = entry.map_err(fail)?;
        if !budget.take_entry() {
            return Err(WalkError::TooManyEntries(budget.max_entries));
        }
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_EXTENSION)
                .read_to_end(&mut data)
                .map_err(fail)?;
            let until_nul =
                |data: &[u8]| data.split(|b| *b == 0).next().unwrap_or_default().to_vec();
            if kind.is_gnu_longname() {
                long_name = Some(until_nul(&data));
            } else if kind.is_gnu_longlink() {
                long_link = Some(until_nul(&data));
            } else {
                for extension in tar::PaxExtensions::new(&data).filter_map(Result::ok) {
                    match extension.key_bytes() {
                        b"path" => long_name = Some(extension.value_bytes().to_vec()),
                        b"linkpath" => long_link = Some(extension.value_bytes().to_vec()),
                        _ => {}
                    }
                }
            }
            continue;
        }
        if kind.is_pax_global_extensions() {
            continue;
        }
        let header = entry.header();
        let path = long_name
            .take()
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let link = long_link
            .take()
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let described = EntryHeader {
            path,
            kind,
            link,
            mode: header.mode().unwrap_or(0o644),
        };
        if visit(&described, &mut entry).map_err(fail)?.is_break() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;

    #[test]
    fn long_names_and_links_are_followed() {
        let long = format!("{}/file", "deep/".repeat(40));
        let target = format!("/{}", "far/".repeat(40));
        let mut image = Image::scratch().unwrap();
        image
            .build_layer(|tar| {
                tar.add_file(&long, 0o600, 1, &b"x"[..])?;
                tar.add_symlink("link", std::path::Path::new(&target))
            })
            .map(|layer| image.push_layer(layer, "test"))
            .unwrap();
        let budget = Budget::new(1 << 30, 1000);
        let mut seen = Vec::new();
        walk(&image.layers()[0], &budget, |entry, _| {
            seen.push((
                String::from_utf8(entry.path.clone()).unwrap(),
                entry.link.clone().map(|l| String::from_utf8(l).unwrap()),
                entry.mode,
            ));
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        assert!(seen.contains(&(long.clone(), None, 0o600)), "{seen:?}");
        assert!(
            seen.contains(&("link".into(), Some(target.clone()), 0o777)),
            "{seen:?}"
        );
    }

    #[test]
    fn budgets_are_errors() {
        let files: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("f{i:02}"), vec![b'x'; 1000]))
            .collect();
        let mut image = Image::scratch().unwrap();
        image.add_layer_contents(files).unwrap();
        let layer = &image.layers()[0];
        let keep_going = |_: &EntryHeader, _: &mut dyn Read| Ok(ControlFlow::Continue(()));
        let err = walk(layer, &Budget::new(5000, 1000), keep_going).unwrap_err();
        assert!(matches!(err, WalkError::TooManyBytes(5000)), "{err:?}");
        let err = walk(layer, &Budget::new(1 << 30, 10), keep_going).unwrap_err();
        assert!(matches!(err, WalkError::TooManyEntries(10)), "{err:?}");
        walk(layer, &Budget::new(1 << 30, 1000), keep_going).unwrap();
    }
}
