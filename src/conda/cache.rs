//! Finding a package's files in the caches the user already has.
//!
//! Two layouts are read, never written: conda's pkgs dirs (archives,
//! extracted folders with `info/repodata_record.json`, `urls.txt`) and
//! rattler/pixi's cache (extracted `name-version-build[-hash]/` folders,
//! each with a `.lock` file holding its archive's sha256). A folder or
//! archive is used only if its identity matches the record. Archives are
//! extracted into our own staging cache, keyed by sha256.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rattler_cache::package_cache::{CacheKey, PackageCacheLayer};
use rattler_conda_types::{PrefixRecord, RepoDataRecord};

use super::CondaError;
use super::contained::{DistName, file_name};
use super::env::conda_root;
use crate::dirs::{cache_dir, home, rattler_cache_dir};

/// The caches to search, in order, and where to stage extractions.
#[derive(Clone, Debug)]
pub struct PackageCaches {
    /// conda pkgs dirs.
    pub conda: Vec<PathBuf>,
    /// rattler / pixi package caches.
    pub rattler: Vec<PathBuf>,
    /// Our own folder for packages that had to be extracted.
    pub staging: PathBuf,
}

impl PackageCaches {
    /// The caches of this machine, as conda and rattler find them:
    /// `CONDA_PKGS_DIRS`, `pkgs_dirs` from the condarc files, `<root>/pkgs`,
    /// `~/.conda/pkgs`; rattler's cache's `pkgs/` (`RATTLER_CACHE_DIR`,
    /// else the user's cache folder's `rattler/cache`, as rattler finds it).
    pub fn discover() -> Self {
        let mut conda = super::condarc::CondaRc::load().pkgs_dirs;
        conda.extend(conda_root().map(|r| r.join("pkgs")));
        conda.extend(home().map(|h| h.join(".conda/pkgs")));
        let rattler = rattler_cache_dir().map(|r| r.join(rattler_cache::PACKAGE_CACHE_DIR));
        PackageCaches {
            conda: super::condarc::unique(conda),
            rattler: rattler.into_iter().collect(),
            staging: cache_dir().join("pkgs"),
        }
    }

    fn searched(&self) -> String {
        self.conda
            .iter()
            .chain(&self.rattler)
            .chain([&self.staging])
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The extracted folder of `record`'s package: from the caches, or
    /// extracted from a matching archive into the staging cache.
    pub fn locate(&self, record: &PrefixRecord) -> Result<PathBuf, CondaError> {
        let repodata = &record.repodata_record;
        let folder_name = dist_folder(record)?;
        let dist = folder_name.to_string();
        let folders = record
            .extracted_package_dir
            .iter()
            .cloned()
            .chain(self.conda.iter().map(|d| d.join(&folder_name)));
        for folder in folders {
            if conda_folder_matches(&folder, repodata) {
                return Ok(folder);
            }
        }
        for dir in &self.rattler {
            if let Some(folder) = rattler_folder(dir, repodata) {
                return Ok(folder);
            }
        }
        if let Some(staged) = self.staged(repodata) {
            return Ok(staged);
        }
        let archive_name = repodata.identifier.to_string();
        let archive_name = file_name(&archive_name).map_err(|_| unchecked(record))?;
        let archives = record
            .package_tarball_full_path
            .iter()
            .cloned()
            .chain(self.conda.iter().map(|d| d.join(archive_name)));
        let mut mismatched = None;
        for archive in archives {
            if !archive.is_file() {
                continue;
            }
            if archive_matches(&archive, repodata)? {
                return self.extract(&archive, repodata);
            }
            mismatched.get_or_insert(archive);
        }
        // An archive of the right name with the wrong bytes is worth naming:
        // a corrupt download or a different build under the same name.
        if let Some(path) = mismatched {
            return Err(CondaError::HashMismatch {
                path,
                package: dist,
                what: if repodata.package_record.sha256.is_some() {
                    "sha256"
                } else {
                    "md5"
                }
                .into(),
            });
        }
        Err(CondaError::NotCached {
            package: dist,
            name: repodata.package_record.name.as_normalized().to_owned(),
            searched: self.searched(),
        })
    }

    /// Like [`PackageCaches::locate`], but when no cache has the package
    /// and the environment is installed at `prefix`, rebuilds the package
    /// from the prefix (see `unrelocate`) into `scratch`, a folder of this
    /// build: a rebuilt package carries the record's metadata rather than
    /// the archive's, so it never enters the shared staging cache.
    pub fn locate_or_rebuild(
        &self,
        record: &PrefixRecord,
        prefix: Option<&Path>,
        python: Option<&rattler::install::PythonInfo>,
        scratch: &Path,
    ) -> Result<PathBuf, CondaError> {
        let missing = match self.locate(record) {
            Err(missing @ CondaError::NotCached { .. }) => missing,
            found => return found,
        };
        let Some(prefix) = prefix.filter(|_| !record.paths_data.paths.is_empty()) else {
            return Err(missing);
        };
        let dist = dist_folder(record)?;
        tracing::info!("rebuilding {dist} from {}", prefix.display());
        let target = scratch.join("rebuilt").join(&dist);
        super::unrelocate::unrelocate(record, prefix, python, &target)?;
        Ok(target)
    }

    /// The folder of `record`'s package in the rattler cache `dir`, if it
    /// holds a valid one (see [`PackageCaches::locate`]).
    pub fn in_rattler_cache(dir: &Path, record: &RepoDataRecord) -> Option<PathBuf> {
        rattler_folder(dir, record)
    }

    fn staging_folder(&self, record: &RepoDataRecord) -> Option<PathBuf> {
        let sha = record.package_record.sha256.map(hex::encode)?;
        Some(self.staging.join(sha))
    }

    fn staged(&self, record: &RepoDataRecord) -> Option<PathBuf> {
        self.staging_folder(record)
            .filter(|f| f.join("info/index.json").is_file())
    }

    /// Extracts into a temp folder beside the target, then renames, so a
    /// failed extraction never leaves a half-filled cache entry.
    fn extract(&self, archive: &Path, record: &RepoDataRecord) -> Result<PathBuf, CondaError> {
        let target = match self.staging_folder(record) {
            Some(t) => t,
            None => self
                .staging
                .join(
                    DistName::of(&record.package_record).map_err(|_| CondaError::Extract {
                        archive: archive.to_owned(),
                        into: self.staging.clone(),
                        source: "the record's name, version or build cannot name a folder".into(),
                    })?,
                ),
        };
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| CondaError::Extract {
            archive: archive.to_owned(),
            into: target.clone(),
            source,
        };
        fs_err::create_dir_all(&self.staging).map_err(|e| fail(e.into()))?;
        let temp = tempfile::Builder::new()
            .prefix(".extract-")
            .tempdir_in(&self.staging)
            .map_err(|e| fail(e.into()))?;
        rattler_package_streaming::fs::extract(archive, temp.path()).map_err(|e| fail(e.into()))?;
        // Entries appear only whole, by rename. Another build may stage the
        // same package meanwhile (before or during our rename): its folder
        // holds the same bytes, so keep it and drop ours, never removing
        // a folder another build may be reading.
        if let Err(e) = std::fs::rename(temp.path(), &target)
            && !target.join("info/index.json").is_file()
        {
            return Err(fail(e.into()));
        }
        Ok(target)
    }
}

/// rattler's package cache lock, `<pkgs>/.cache.lock`: rattler's
/// installer (pixi's too) holds it exclusively for a whole install, while
/// it fetches into the cache and links from it, and rattler_cache itself
/// replaces an entry (removes the old folder, renames the new one in)
/// assuming its caller holds it. A build holds it shared while it reads
/// package folders from the cache, so no install replaces a folder under
/// it, and exclusively while it fetches, so two fetches of one package
/// never race. An advisory `flock`: a killed holder releases it.
#[derive(Debug, Default)]
pub struct RattlerCacheLock {
    held: Vec<File>,
}

/// How often a build waiting for rattler's cache tries again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// rattler's name for the lock (`PackageCache::acquire_global_lock`).
const RATTLER_LOCK: &str = ".cache.lock";

impl RattlerCacheLock {
    /// Shares the lock of each of `dirs` that exists, waiting while an
    /// install holds one. The lock file is made if missing, as rattler
    /// makes it: an install that starts later must see the lock. A cache
    /// this user cannot write is skipped when it has no lock file: nobody
    /// can change it.
    pub fn shared(dirs: &[&Path]) -> Result<Self, CondaError> {
        let mut held = Vec::new();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            if let Some(file) = lock(dir, false)? {
                held.push(file);
            }
        }
        Ok(RattlerCacheLock { held })
    }

    /// Takes the lock of `dir` (made if missing) for this process alone,
    /// waiting while others hold it.
    pub fn exclusive(dir: &Path) -> Result<Self, CondaError> {
        fs_err::create_dir_all(dir).map_err(|source| CondaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(RattlerCacheLock {
            held: lock(dir, true)?.into_iter().collect(),
        })
    }

    /// Lets the lock go (as dropping it does).
    pub fn release(&mut self) {
        self.held.clear();
    }
}

/// Locks `dir`'s rattler cache lock, polling so that a signal stops the
/// wait; `None` when it has no lock file and none can be made.
fn lock(dir: &Path, exclusive: bool) -> Result<Option<File>, CondaError> {
    let path = dir.join(RATTLER_LOCK);
    let fail = |source| CondaError::Io {
        path: path.clone(),
        source,
    };
    let file = match File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .or_else(|_| File::open(&path))
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !exclusive => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    let mut warned = false;
    loop {
        let tried = match exclusive {
            true => file.try_lock(),
            false => file.try_lock_shared(),
        };
        match tried {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(
                        "waiting for another process using the package cache {}",
                        dir.display()
                    );
                }
                crate::interrupt::check().map_err(fail)?;
                std::thread::sleep(LOCK_POLL);
            }
            Err(TryLockError::Error(e)) => return Err(fail(e)),
        }
    }
}

/// The folder name of `record`'s package: the one way to turn a record into
/// a path. Only the name, version and build are checked again here (a
/// cheap check); the rest of the record was checked when the environment
/// was loaded.
pub fn dist_folder(record: &PrefixRecord) -> Result<DistName, CondaError> {
    DistName::of(&record.repodata_record.package_record).map_err(|_| unchecked(record))
}

fn unchecked(record: &PrefixRecord) -> CondaError {
    CondaError::NotContained(dist_name(&record.repodata_record))
}

/// `name-version-build`, for messages; [`dist_folder`] is the checked form
/// for paths.
pub fn dist_name(record: &RepoDataRecord) -> String {
    let p = &record.package_record;
    format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build)
}

/// A conda folder is the package if its `info/repodata_record.json` has the
/// record's sha256 (or, lacking one, md5).
fn conda_folder_matches(folder: &Path, record: &RepoDataRecord) -> bool {
    let Ok(text) = std::fs::read(folder.join("info/repodata_record.json")) else {
        return false;
    };
    let Ok(cached) = serde_json::from_slice::<RepoDataRecord>(&text) else {
        return false;
    };
    let (want, have) = (&record.package_record, &cached.package_record);
    match (want.sha256, have.sha256, want.md5, have.md5) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The folder rattler keeps for `record` in its cache `dir`, found and
/// checked by rattler itself: [`PackageCacheLayer::try_validate`] opens the
/// entry's `.lock` metadata read-only (`CacheMetadataFile::open_existing`,
/// never `acquire`, which creates and opens for writing), accepts it only
/// if it holds the record's sha256, reads the folder's `info/index.json`,
/// and writes nothing: only its fetching sibling `validate_or_fetch` does.
/// The build holds [`RattlerCacheLock`] shared around the lookup and
/// every read of the folder, so no install replaces it meanwhile. The
/// folder is
/// named by [`CacheKey`]: `name-version-build`, or with a hash of the
/// origin (the URL, or a `file://` URL's path) in a cache kept per origin.
fn rattler_folder(dir: &Path, record: &RepoDataRecord) -> Option<PathBuf> {
    let sha256 = record.package_record.sha256?;
    let key = CacheKey::from(&record.package_record).with_sha256(sha256);
    let mut keys = vec![key.clone(), key.clone().with_url(record.url.clone())];
    if let Ok(path) = record.url.to_file_path() {
        keys.push(key.with_path(&path));
    }
    let layer = PackageCacheLayer::new(dir);
    // try_validate is async and runs its file reads on tokio's blocking
    // pool; a current-thread runtime is enough for one lookup.
    let runtime = tokio::runtime::Builder::new_current_thread().build().ok()?;
    runtime.block_on(async {
        for key in &keys {
            if let Ok(entry) = layer.try_validate(key).await {
                return Some(entry.path().to_owned());
            }
        }
        None
    })
}

/// Whether an archive's bytes have the record's sha256 (or md5).
fn archive_matches(archive: &Path, record: &RepoDataRecord) -> Result<bool, CondaError> {
    let io = |source| CondaError::Io {
        path: archive.to_owned(),
        source,
    };
    let p = &record.package_record;
    if let Some(want) = p.sha256 {
        let have =
            rattler_digest::compute_file_digest::<rattler_digest::Sha256>(archive).map_err(io)?;
        return Ok(have == want);
    }
    if let Some(want) = p.md5 {
        let have =
            rattler_digest::compute_file_digest::<rattler_digest::Md5>(archive).map_err(io)?;
        return Ok(have == want);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sha256: &str) -> RepoDataRecord {
        serde_json::from_value(serde_json::json!({
            "name": "cd-a", "version": "1.0", "build": "0", "build_number": 0,
            "subdir": "noarch", "sha256": sha256, "depends": [],
            "url": "https://example.invalid/noarch/cd-a-1.0-0.conda",
            "fn": "cd-a-1.0-0.conda", "channel": "https://example.invalid/",
        }))
        .unwrap()
    }

    fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut all: Vec<_> = walk(dir);
        all.sort();
        all
    }

    fn walk(dir: &Path) -> Vec<(PathBuf, u64)> {
        std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|e| {
                let path = e.unwrap().path();
                let meta = std::fs::metadata(&path).unwrap();
                let mut here = vec![(path.clone(), meta.len())];
                if meta.is_dir() {
                    here.extend(walk(&path));
                }
                here
            })
            .collect()
    }

    /// A cache entry written by rattler itself is found by its sha256 and
    /// only by it, and looking writes nothing into the cache.
    #[test]
    fn rattler_entries_are_found_by_sha256_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "aa".repeat(32);
        let wanted = record(&sha);
        let sha256 = wanted.package_record.sha256;
        let cache = rattler_cache::package_cache::PackageCache::new(dir.path());
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(cache.get_or_fetch(
                &wanted.package_record,
                move |folder: PathBuf| async move {
                    std::fs::create_dir_all(folder.join("info"))?;
                    std::fs::write(
                        folder.join("info/index.json"),
                        r#"{"name":"cd-a","version":"1.0","build":"0","build_number":0}"#,
                    )?;
                    std::fs::write(
                        folder.join("info/paths.json"),
                        r#"{"paths":[],"paths_version":1}"#,
                    )?;
                    Ok::<_, std::io::Error>(sha256)
                },
                None,
            ))
            .unwrap();
        let before = listing(dir.path());
        assert_eq!(
            rattler_folder(dir.path(), &wanted),
            Some(dir.path().join("cd-a-1.0-0"))
        );
        assert_eq!(rattler_folder(dir.path(), &record(&"bb".repeat(32))), None);
        assert_eq!(listing(dir.path()), before);
    }
}
