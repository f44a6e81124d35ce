//! Every hash of a package that can be known, gathered for its record in
//! the image: `conda list --explicit --md5` in the image needs the md5, a
//! lock file read back from it the sha256. A package's record (and so its
//! layer) is then the same whichever input named it, as long as the same
//! hashes are known.
//!
//! Each source fills only a hash still missing, and only when it agrees
//! with a hash already known, in this order: the input's record (a lock, a
//! solve, an explicit spec, the installed `conda-meta/`); conda's
//! `info/repodata_record.json` beside the extracted package; the package's
//! archive in a conda pkgs dir or a `file://` channel, hashed; rattler's
//! cache entry the package was found or fetched into (its `.lock` file
//! holds the archive's sha256); and last the pairs of hashes earlier
//! builds saw, kept in our cache directory, so that an `@EXPLICIT` spec
//! naming packages by sha256 alone (the `--lock-file` a build writes)
//! gives the same records as the solve that wrote it.

use std::io::Read;
use std::path::{Path, PathBuf};

use rattler_conda_types::{PrefixRecord, RepoDataRecord};
use rattler_digest::digest::Digest;
use rattler_digest::{Md5, Md5Hash, Sha256, Sha256Hash};

use super::cache::{PackageCaches, dist_folder, dist_name};
use super::contained::file_name;

/// The size of rattler's cache metadata file with a hash: a big-endian
/// `u64` revision, then the archive's 32-byte sha256.
const RATTLER_LOCK_LEN: u64 = 40;

/// A package's md5 and sha256, as far as they are known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hashes {
    /// The archive's md5.
    pub md5: Option<Md5Hash>,
    /// The archive's sha256.
    pub sha256: Option<Sha256Hash>,
}

impl Hashes {
    /// What `record` knows.
    pub fn of(record: &PrefixRecord) -> Self {
        let p = &record.repodata_record.package_record;
        Hashes {
            md5: p.md5,
            sha256: p.sha256,
        }
    }

    /// Writes these into `record`.
    pub fn apply(self, record: &mut PrefixRecord) {
        let p = &mut record.repodata_record.package_record;
        p.md5 = self.md5;
        p.sha256 = self.sha256;
    }

    fn complete(&self) -> bool {
        self.md5.is_some() && self.sha256.is_some()
    }

    /// Takes `other`'s hashes where these lack them, if both name the same
    /// package: they agree on a hash both know (the sha256 when both know
    /// one).
    fn adopt(&mut self, other: Hashes) {
        let agrees = match (self.sha256, other.sha256, self.md5, other.md5) {
            (Some(a), Some(b), _, _) => a == b,
            (_, _, Some(a), Some(b)) => a == b,
            _ => false,
        };
        if agrees {
            self.md5 = self.md5.or(other.md5);
            self.sha256 = self.sha256.or(other.sha256);
        }
    }
}

/// `record`'s hashes, completed from conda's caches: the extracted
/// package's `info/repodata_record.json`, then the archive's bytes (in a
/// pkgs dir, or a local channel's).
pub fn from_conda_caches(record: &PrefixRecord, caches: &PackageCaches) -> Hashes {
    let mut known = Hashes::of(record);
    if known.complete() {
        return known;
    }
    let Ok(folder_name) = dist_folder(record) else {
        return known;
    };
    let folders = record
        .extracted_package_dir
        .iter()
        .cloned()
        .chain(caches.conda.iter().map(|d| d.join(&folder_name)));
    for cached in folders.filter_map(|folder| repodata_record(&folder)) {
        let p = &cached.package_record;
        known.adopt(Hashes {
            md5: p.md5,
            sha256: p.sha256,
        });
    }
    if known.complete() {
        return known;
    }
    let archive_name = record.repodata_record.identifier.to_string();
    let Ok(archive_name) = file_name(&archive_name) else {
        return known;
    };
    // A `file://` URL is an archive at hand too: a local channel's.
    let local = Some(&record.repodata_record.url)
        .filter(|url| url.scheme() == "file")
        .and_then(|url| url.to_file_path().ok());
    let archives = record
        .package_tarball_full_path
        .iter()
        .cloned()
        .chain(caches.conda.iter().map(|d| d.join(archive_name)))
        .chain(local);
    for archive in archives.filter(|a| a.is_file()) {
        if let Ok(hashed) = hash_file(&archive) {
            known.adopt(hashed);
        }
        if known.complete() {
            break;
        }
    }
    known
}

/// Fills the sha256 `record` lacks from rattler's cache entry at `folder`,
/// if that is one: rattler writes the sha256 of the archive it extracted
/// (and checked against the record's md5) into `<folder>.lock`.
pub fn from_rattler_entry(record: &mut PrefixRecord, folder: &Path) {
    let package = &mut record.repodata_record.package_record;
    if package.sha256.is_some() {
        return;
    }
    let mut lock = folder.as_os_str().to_owned();
    lock.push(".lock");
    let Ok(file) = std::fs::File::open(PathBuf::from(lock)) else {
        return;
    };
    let mut bytes = Vec::new();
    if file
        .take(RATTLER_LOCK_LEN + 1)
        .read_to_end(&mut bytes)
        .is_err()
        || bytes.len() as u64 != RATTLER_LOCK_LEN
    {
        return;
    }
    package.sha256 = Sha256Hash::try_from(&bytes[8..]).ok();
}

/// The pairs of hashes (sha256 → md5) builds have seen, one small file per
/// sha256 in `dir`: what lets a sha256 alone name a record with its md5.
pub struct HashMemo {
    dir: PathBuf,
}

impl HashMemo {
    /// The memo kept in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        HashMemo { dir }
    }

    fn path(&self, sha256: &Sha256Hash) -> PathBuf {
        self.dir.join(hex::encode(sha256))
    }

    /// Fills the md5 `record` lacks from the memo of its sha256.
    pub fn recall(&self, record: &mut PrefixRecord) {
        let package = &mut record.repodata_record.package_record;
        let (None, Some(sha256)) = (package.md5, package.sha256) else {
            return;
        };
        let Ok(file) = std::fs::File::open(self.path(&sha256)) else {
            return;
        };
        let mut text = String::new();
        if file.take(33).read_to_string(&mut text).is_ok() {
            package.md5 = rattler_digest::parse_digest_from_hex::<Md5>(text.trim());
        }
    }

    /// Keeps `record`'s pair of hashes, when it has both and the memo has
    /// none for its sha256. A memo that cannot be written is only a loss
    /// for later builds.
    pub fn remember(&self, record: &PrefixRecord) {
        let package = &record.repodata_record.package_record;
        let (Some(md5), Some(sha256)) = (package.md5, package.sha256) else {
            return;
        };
        let path = self.path(&sha256);
        if path.exists() {
            return;
        }
        let written = fs_err::create_dir_all(&self.dir)
            .and_then(|()| crate::atomic::write(&path, hex::encode(md5).as_bytes(), 0o644));
        if let Err(e) = written {
            tracing::debug!(
                "not remembering the md5 of {}: {e}",
                dist_name(&record.repodata_record)
            );
        }
    }
}

/// The packages of `records` that lack a hash, each with what it lacks
/// (`cd-a-1.0-0 (md5)`): their records in the image leave that hash out.
pub fn lacking(records: &[PrefixRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            let p = &r.repodata_record.package_record;
            let what = match (p.md5.is_some(), p.sha256.is_some()) {
                (true, true) => return None,
                (true, false) => "sha256",
                (false, true) => "md5",
                (false, false) => "md5, sha256",
            };
            Some(format!("{} ({what})", dist_name(&r.repodata_record)))
        })
        .collect()
}

/// conda's record of the package extracted at `folder`, if it has one.
fn repodata_record(folder: &Path) -> Option<RepoDataRecord> {
    let text = std::fs::read(folder.join("info/repodata_record.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The md5 and sha256 of a file, read once.
fn hash_file(path: &Path) -> std::io::Result<Hashes> {
    let mut file = std::fs::File::open(path)?;
    let (mut md5, mut sha256) = (Md5::new(), Sha256::new());
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(Hashes {
                md5: Some(md5.finalize()),
                sha256: Some(sha256.finalize()),
            });
        }
        md5.update(&buffer[..n]);
        sha256.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(md5: Option<&str>, sha256: Option<&str>) -> PrefixRecord {
        let repodata: RepoDataRecord = serde_json::from_value(serde_json::json!({
            "name": "cd-a", "version": "1.0", "build": "0", "build_number": 0,
            "subdir": "noarch", "md5": md5, "sha256": sha256, "depends": [],
            "url": "https://example.invalid/noarch/cd-a-1.0-0.conda",
            "fn": "cd-a-1.0-0.conda", "channel": "https://example.invalid/",
        }))
        .unwrap();
        PrefixRecord::from_repodata_record(repodata, Vec::new())
    }

    fn caches(conda: &Path) -> PackageCaches {
        PackageCaches {
            conda: vec![conda.to_owned()],
            rattler: Vec::new(),
            staging: conda.join("staging"),
        }
    }

    fn hashes(record: &PrefixRecord) -> (Option<String>, Option<String>) {
        let p = &record.repodata_record.package_record;
        (p.md5.map(hex::encode), p.sha256.map(hex::encode))
    }

    /// An archive fills the missing hash only when its bytes have the
    /// known one.
    #[test]
    fn an_archive_gives_the_other_hash_when_it_is_the_package() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cd-a-1.0-0.conda"), b"archive").unwrap();
        let md5 = hex::encode(rattler_digest::compute_bytes_digest::<Md5>(b"archive"));
        let sha = hex::encode(rattler_digest::compute_bytes_digest::<Sha256>(b"archive"));
        let mut known = record(Some(&md5), None);
        from_conda_caches(&known, &caches(dir.path())).apply(&mut known);
        assert_eq!(hashes(&known), (Some(md5.clone()), Some(sha.clone())));
        let mut other = record(Some(&"00".repeat(16)), None);
        from_conda_caches(&other, &caches(dir.path())).apply(&mut other);
        assert_eq!(hashes(&other), (Some("00".repeat(16)), None));
        assert_eq!(lacking(&[known, other]), ["cd-a-1.0-0 (sha256)"]);
    }

    /// conda's `repodata_record.json` gives the md5 of the sha256 it shares.
    #[test]
    fn conda_records_and_the_memo_give_the_md5() {
        let dir = tempfile::tempdir().unwrap();
        let (md5, sha) = ("11".repeat(16), "22".repeat(32));
        let folder = dir.path().join("cd-a-1.0-0/info");
        std::fs::create_dir_all(&folder).unwrap();
        let cached = record(Some(&md5), Some(&sha)).repodata_record;
        std::fs::write(
            folder.join("repodata_record.json"),
            serde_json::to_vec(&cached).unwrap(),
        )
        .unwrap();
        let mut known = record(None, Some(&sha));
        from_conda_caches(&known, &caches(dir.path())).apply(&mut known);
        assert_eq!(hashes(&known), (Some(md5.clone()), Some(sha.clone())));

        let memo = HashMemo::new(dir.path().join("memo"));
        memo.remember(&known);
        let mut later = record(None, Some(&sha));
        memo.recall(&mut later);
        assert_eq!(hashes(&later), (Some(md5), Some(sha)));
        let mut unknown = record(None, Some(&"33".repeat(32)));
        memo.recall(&mut unknown);
        assert_eq!(hashes(&unknown).0, None);
    }

    /// rattler's `.lock` of an entry gives its archive's sha256.
    #[test]
    fn a_rattler_entry_gives_the_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("cd-a-1.0-0");
        let mut lock = 3u64.to_be_bytes().to_vec();
        lock.extend([0x44; 32]);
        std::fs::write(dir.path().join("cd-a-1.0-0.lock"), lock).unwrap();
        let mut known = record(Some(&"11".repeat(16)), None);
        from_rattler_entry(&mut known, &folder);
        assert_eq!(hashes(&known).1, Some("44".repeat(32)));
        std::fs::write(dir.path().join("cd-a-1.0-0.lock"), 3u64.to_be_bytes()).unwrap();
        let mut bare = record(Some(&"11".repeat(16)), None);
        from_rattler_entry(&mut bare, &folder);
        assert_eq!(hashes(&bare).1, None);
    }
}
