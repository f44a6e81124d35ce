//! What the cache directory holds (`cache info`) and making it smaller
//! (`cache prune`).
//!
//! The cache keeps things that are used, each with a time of last use:
//! layer entries (`layers/*.json`, whose time a hit sets), pulled
//! manifests and indexes (blobs themselves, whose access time a pull that
//! finds them updates: by the kernel's `relatime` rule at least once a
//! day) and glibc memos (`glibc/*`). Every other blob is kept only while
//! one of those refers to it (an entry to its layer, a manifest to its
//! config and layers, an index to its manifests), so removing the one
//! removes what only it needed. Temp files and staging folders are
//! leftovers of runs that were killed: under the exclusive lock no run
//! is using them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::{BLOBS, Entry, LAYERS, MAX_ENTRY};
use crate::blob::MAX_MANIFEST_SIZE;
use crate::digest::Digest;

/// The folder of glibc memos (see `image/glibc.rs`).
const GLIBC: &str = "glibc";
/// Where builds stage packages (see `build/mod.rs`).
const STAGING: &str = "staging";

/// What refers to blobs and has a time of last use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Entry,
    Memo,
    Image,
}

#[derive(Debug)]
struct Root {
    kind: Kind,
    /// The file that is the root: an entry, a memo, a manifest blob.
    path: PathBuf,
    /// Its own size (a manifest's is counted with the blobs).
    size: u64,
    used: SystemTime,
    /// The blobs it refers to directly.
    blobs: Vec<Digest>,
}

/// The cache directory as found.
struct Scan {
    roots: Vec<Root>,
    /// Every blob and its size.
    blobs: BTreeMap<Digest, u64>,
    /// What a manifest or index blob refers to.
    refers: BTreeMap<Digest, Vec<Digest>>,
    /// Temp files, staging folders, entries that do not read: removed by
    /// any prune.
    leftovers: Vec<(PathBuf, u64)>,
}

/// What the cache holds (`cache info`).
#[derive(Debug, Serialize)]
pub struct CacheUsage {
    /// The cache directory.
    pub dir: PathBuf,
    /// Bytes of everything `cache prune` manages (entries, blobs, memos,
    /// leftovers).
    pub size: u64,
    /// Layer entries.
    pub layer_entries: usize,
    /// Blob files (built layers, pulled manifests, configs and layers).
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Pulled manifests and indexes among the blobs.
    pub pulled_manifests: usize,
    /// Blobs nothing refers to.
    pub unreferenced_blobs: usize,
    /// glibc memos (a base's glibc version, by its layers).
    pub glibc_memos: usize,
    /// Leftovers of killed runs (temp files, staging).
    pub leftovers: usize,
    /// Other folders here (extracted packages, repodata), not pruned: name
    /// and bytes.
    pub other: BTreeMap<String, u64>,
}

/// What `cache prune` removes.
#[derive(Clone, Copy, Debug, Default)]
pub struct PruneOptions {
    /// Remove what was last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Then remove the least recently used until at most this many bytes
    /// are left.
    pub max_size: Option<u64>,
}

/// What `cache prune` removed and left.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Layer entries removed.
    pub layer_entries: usize,
    /// Pulled images (manifests, indexes) removed.
    pub pulled_manifests: usize,
    /// Blobs removed.
    pub blobs: usize,
    /// glibc memos removed.
    pub glibc_memos: usize,
    /// Leftovers removed.
    pub leftovers: usize,
    /// Bytes freed (of files no output still links).
    pub freed: u64,
    /// Bytes of removed blobs that another hard link (an OCI layout's)
    /// still holds: out of the cache, but not freed.
    pub still_linked: u64,
    /// Bytes left.
    pub size: u64,
}

/// The usage of the cache in `dir`.
pub fn usage(dir: &Path) -> CacheUsage {
    let scan = Scan::read(dir);
    let all: Vec<&Root> = scan.roots.iter().collect();
    let live = scan.live(&all);
    let count = |kind| scan.roots.iter().filter(|r| r.kind == kind).count();
    let managed = [LAYERS, "blobs", GLIBC, STAGING, "lock"];
    let other = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !managed.iter().any(|m| e.file_name() == *m))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                tree_size(&e.path()),
            )
        })
        .collect();
    CacheUsage {
        dir: dir.to_owned(),
        size: scan.size(&all, &live) + scan.leftovers.iter().map(|l| l.1).sum::<u64>(),
        layer_entries: count(Kind::Entry),
        blobs: scan.blobs.len(),
        blob_bytes: scan.blobs.values().sum(),
        pulled_manifests: count(Kind::Image),
        unreferenced_blobs: scan.blobs.keys().filter(|d| !live.contains(d)).count(),
        glibc_memos: count(Kind::Memo),
        leftovers: scan.leftovers.len(),
        other,
    }
}

/// Prunes the cache in `dir`. The caller holds its exclusive lock.
pub fn prune(dir: &Path, options: PruneOptions) -> PruneReport {
    let scan = Scan::read(dir);
    let now = SystemTime::now();
    let mut kept: Vec<&Root> = scan
        .roots
        .iter()
        .filter(|root| {
            options.older_than.is_none_or(|age| {
                now.duration_since(root.used)
                    .is_ok_and(|since| since <= age)
                    || root.used > now
            })
        })
        .collect();
    if let Some(max) = options.max_size {
        // Least recently used first; entries before images on a tie,
        // since they are the cheaper to make again.
        kept.sort_by_key(|root| (root.used, root.kind));
        let mut live = scan.live(&kept);
        while !kept.is_empty() && scan.size(&kept, &live) > max {
            kept.remove(0);
            live = scan.live(&kept);
        }
    }
    let live = scan.live(&kept);
    let mut report = PruneReport::default();
    for root in &scan.roots {
        if kept.iter().any(|k| std::ptr::eq(*k, root)) {
            continue;
        }
        match root.kind {
            Kind::Entry => report.layer_entries += 1,
            Kind::Memo => report.glibc_memos += 1,
            // Its blob goes with the unreferenced blobs below, unless an
            // index kept refers to it.
            Kind::Image => {
                report.pulled_manifests += usize::from(!live.contains(&root.blobs[0]));
                continue;
            }
        }
        report.add(remove(&root.path));
    }
    for digest in scan.blobs.keys().filter(|d| !live.contains(d)) {
        report.blobs += 1;
        report.add(remove(&dir.join(BLOBS).join(digest.hex())));
    }
    for (path, _) in &scan.leftovers {
        report.leftovers += 1;
        report.add(remove(path));
    }
    report.size = scan.size(&kept, &live);
    report
}

impl PruneReport {
    /// Counts what one removal gave back: `(freed, still linked)`.
    fn add(&mut self, (freed, linked): (u64, u64)) {
        self.freed += freed;
        self.still_linked += linked;
    }
}

/// Removes a file or folder; returns the bytes freed, and the bytes of a
/// file another hard link (an OCI layout's blob) still keeps.
fn remove(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (0, 0);
    };
    if meta.is_dir() {
        let size = tree_size(path);
        return match std::fs::remove_dir_all(path) {
            Ok(()) => (size, 0),
            Err(_) => (0, 0),
        };
    }
    match std::fs::remove_file(path) {
        Ok(()) if meta.nlink() == 1 => (meta.len(), 0),
        Ok(()) => (0, meta.len()),
        Err(_) => (0, 0),
    }
}

/// The folder of extracted packages (see `conda/cache.rs`), whose
/// `.extract-*` folders are extractions in progress.
const PKGS: &str = "pkgs";
/// Fetched wheels (`build/wheels.rs`) and the md5 memo (`conda/hashes.rs`),
/// written by temp file and rename.
const WHEELS: &str = "wheels";
const HASHES: &str = "hashes";

/// Removes the leftovers of killed runs in the cache `dir`: everything in
/// `staging/`, temp files (dot names) among the blobs, entries, memos,
/// wheels and hashes, and unfinished package extractions. Only for a caller that holds the
/// cache's exclusive lock, so that no live run owns any of them (a build
/// does this at its start when no other run holds the cache). Returns how
/// many were removed.
pub fn remove_leftovers(dir: &Path) -> usize {
    // Each folder, and the start of the names of leftovers in it.
    let places = [
        (STAGING, ""),
        (BLOBS, "."),
        (LAYERS, "."),
        (GLIBC, "."),
        (PKGS, ".extract-"),
        (WHEELS, "."),
        (HASHES, "."),
    ];
    let mut removed = 0;
    for (place, leftover) in places {
        for (name, path, meta) in files(&dir.join(place)) {
            if !name.starts_with(leftover) {
                continue;
            }
            let gone = match meta.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            if gone.is_ok() {
                tracing::info!("removed {}, left by a run that was killed", path.display());
                removed += 1;
            }
        }
    }
    removed
}

/// The bytes of the files under `path`.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| tree_size(&e.path()))
        .sum()
}

/// Opens a file to read without making it look used: its access time is
/// a pulled image's time of last use (`O_NOATIME`, where we own the file).
fn open_unseen(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
}

/// The later of a file's modification and access times.
fn last_used(meta: &std::fs::Metadata) -> SystemTime {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    meta.accessed().map_or(modified, |a| a.max(modified))
}

/// The files of a folder that is missing or unreadable are none.
fn files(dir: &Path) -> impl Iterator<Item = (String, PathBuf, std::fs::Metadata)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), e.path(), meta))
        })
}

impl Scan {
    fn read(dir: &Path) -> Scan {
        let mut scan = Scan {
            roots: Vec::new(),
            blobs: BTreeMap::new(),
            refers: BTreeMap::new(),
            leftovers: Vec::new(),
        };
        scan.read_blobs(&dir.join(BLOBS));
        scan.read_entries(&dir.join(LAYERS));
        for (name, path, meta) in files(&dir.join(GLIBC)) {
            if name.starts_with('.') {
                scan.leftovers.push((path, meta.len()));
                continue;
            }
            scan.roots.push(Root {
                kind: Kind::Memo,
                size: meta.len(),
                used: last_used(&meta),
                path,
                blobs: Vec::new(),
            });
        }
        for (_, path, _) in files(&dir.join(STAGING)) {
            let size = tree_size(&path);
            scan.leftovers.push((path, size));
        }
        scan
    }

    fn read_blobs(&mut self, blobs: &Path) {
        for (name, path, meta) in files(blobs) {
            if name.starts_with('.') {
                self.leftovers.push((path, meta.len()));
                continue;
            }
            let Ok(digest) = Digest::from_hex(&name) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            self.blobs.insert(digest, meta.len());
            let Some(refers) = manifest_refers(&path, meta.len()) else {
                continue;
            };
            self.roots.push(Root {
                kind: Kind::Image,
                path,
                size: 0,
                used: last_used(&meta),
                blobs: vec![digest],
            });
            self.refers.insert(digest, refers);
        }
    }

    fn read_entries(&mut self, layers: &Path) {
        for (name, path, meta) in files(layers) {
            let entry = open_unseen(&path)
                .ok()
                .and_then(|f| crate::blob::read_capped(f, MAX_ENTRY).ok()?)
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
                .and_then(|entry| entry.digest.parse::<Digest>().ok());
            match entry {
                Some(digest) if !name.starts_with('.') && self.blobs.contains_key(&digest) => {
                    self.roots.push(Root {
                        kind: Kind::Entry,
                        size: meta.len(),
                        used: last_used(&meta),
                        path,
                        blobs: vec![digest],
                    });
                }
                // A temp file, an entry that does not read or whose blob
                // is gone: a miss for every build.
                _ => self.leftovers.push((path, meta.len())),
            }
        }
    }

    /// The blobs `roots` keep: those they refer to, and what those refer
    /// to in turn.
    fn live(&self, roots: &[&Root]) -> BTreeSet<Digest> {
        let mut live = BTreeSet::new();
        let mut todo: Vec<Digest> = roots.iter().flat_map(|r| r.blobs.clone()).collect();
        while let Some(digest) = todo.pop() {
            if live.insert(digest) {
                todo.extend(self.refers.get(&digest).into_iter().flatten().copied());
            }
        }
        live
    }

    /// The bytes `roots` and the blobs they keep take.
    fn size(&self, roots: &[&Root], live: &BTreeSet<Digest>) -> u64 {
        let own: u64 = roots.iter().map(|r| r.size).sum();
        own + live.iter().filter_map(|d| self.blobs.get(d)).sum::<u64>()
    }
}

/// What a blob refers to when it is an image manifest (its config and
/// layers) or an index (its manifests); `None` for any other blob. Only
/// small blobs that start like JSON are read.
fn manifest_refers(path: &Path, size: u64) -> Option<Vec<Digest>> {
    if size > MAX_MANIFEST_SIZE {
        return None;
    }
    let mut file = open_unseen(path).ok()?;
    let mut first = [0u8; 1];
    file.read_exact(&mut first).ok()?;
    if first[0] != b'{' {
        return None;
    }
    let mut bytes = first.to_vec();
    file.take(MAX_MANIFEST_SIZE).read_to_end(&mut bytes).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let digest = |d: &Value| d["digest"].as_str()?.parse::<Digest>().ok();
    if let Some(manifests) = value["manifests"].as_array() {
        return Some(manifests.iter().filter_map(digest).collect());
    }
    let layers = value["layers"].as_array()?;
    Some(
        std::iter::once(&value["config"])
            .chain(layers)
            .filter_map(digest)
            .collect(),
    )
}

const SIZE_HINT: &str = "not a size: give bytes, or a number with a unit (500MB, 10GB, 2GiB)";

/// Reads a size: a number of bytes, optionally with a unit, `KB`, `MB`,
/// `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (of 1024):
/// `500MiB`, `10GB`, `1.5 GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(SIZE_HINT.into());
        }
    };
    let number: f64 = number.parse().map_err(|_| SIZE_HINT.to_owned())?;
    Ok((number * factor as f64) as u64)
}

/// Reads a number of days (`7`, `0.5`).
pub fn parse_days(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|days| days.is_finite() && *days >= 0.0)
        .and_then(|days| Duration::try_from_secs_f64(days * 86_400.0).ok())
        .ok_or_else(|| "not a number of days (e.g. 30 or 0.5)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("10 parsecs").unwrap_err().contains("not a size"));
        assert!(parse_size("GB").is_err());
        assert_eq!(parse_days("0.5"), Ok(Duration::from_secs(43_200)));
        assert!(parse_days("-1").is_err());
    }

    /// Only temp files and staging go; entries, blobs, memos, extracted
    /// packages, wheels and other folders stay.
    #[test]
    fn leftovers_are_temp_files_and_staging_only() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [
            "blobs/sha256/aa",
            "layers/bb.json",
            "glibc/cc",
            "pkgs/dd/info/index.json",
            "wheels/ee.whl",
            "hashes/ff",
            "repodata/.cache",
        ];
        let gone = [
            "staging/build-x/f",
            "staging/.new-y/f",
            "blobs/sha256/.conda-docker-1",
            "blobs/sha256/.partial-2",
            "layers/.conda-docker-3",
            "glibc/.conda-docker-4",
            "pkgs/.extract-5/info/index.json",
            "wheels/.conda-docker-6",
            "hashes/.conda-docker-7",
        ];
        for file in keep.iter().chain(&gone) {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        assert_eq!(remove_leftovers(dir.path()), gone.len());
        for file in keep {
            assert!(dir.path().join(file).is_file(), "{file}");
        }
        for file in gone {
            assert!(!dir.path().join(file).exists(), "{file}");
        }
    }
}
