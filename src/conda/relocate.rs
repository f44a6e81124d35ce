//! One package's files, relocated to the image prefix, in a staging folder.
//!
//! The linking is rattler's (`link_package_sync` with a target prefix that
//! differs from the folder written to): text and binary placeholders,
//! noarch python paths and entry points, symlinks and file modes. A file
//! with no placeholder is hard-linked from the package folder where the
//! file system allows, so most bytes are never copied:
//! the staged tree is only read, once, into the layer's tar (which writes
//! such links as plain files), then unlinked; a file with a placeholder is
//! written anew. Nothing is ever written through a link. The
//! package's `conda-meta` record is written fresh from its own metadata, so
//! a layer depends only on the package, the image prefix and the python
//! version: never on the host, its paths or how the package was installed.
//!
//! rattler trusts a package's `info/paths.json`; we do not. Before linking,
//! `checked_package` reads the package's metadata (bounded in size) and
//! refuses any entry that would read or write outside the package folder
//! or the staging folder; rattler then links exactly what was checked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rattler::install::{InstallOptions, PythonInfo, link_package_sync};
use rattler_conda_types::package::{
    IndexJson, LinkJson, NoArchLinks, PackageFile, PathType, PathsEntry, PathsJson,
};
use rattler_conda_types::prefix::Prefix;
use rattler_conda_types::{PackageRecord, PrefixRecord, RepoDataRecord, Subdir};

use super::CondaError;
use super::cache::dist_name;
use super::contained::{ContainedPath, DistName, RealDirs, Unsafe, shown};

/// The largest `info/paths.json` (or legacy `info/files`) read: the biggest
/// packages on conda-forge list tens of thousands of files in a few MB.
const MAX_PATHS_JSON: u64 = 64 << 20;
/// The largest `info/index.json` or `info/link.json` read.
const MAX_INFO_JSON: u64 = 4 << 20;

/// Where a package is linked and what for.
pub struct Target<'a> {
    /// The prefix inside the image (`/opt/conda`).
    pub image_prefix: &'a str,
    /// The platform of the image's packages.
    pub platform: Subdir,
    /// The environment's python, for noarch python packages.
    pub python: Option<&'a PythonInfo>,
}

/// The record conda keeps in `conda-meta/` for a package linked with
/// `paths`, built from the package's `info/index.json` plus where it came
/// from (url, channel, file name, md5 and sha256) and nothing else.
fn fresh_record(
    index: IndexJson,
    source: &RepoDataRecord,
    paths: Vec<rattler_conda_types::prefix_record::PathsEntry>,
) -> Result<PrefixRecord, CondaError> {
    let dist = dist_name(source);
    let fail = |cause: Box<dyn std::error::Error + Send + Sync>| CondaError::Relocate {
        package: dist.clone(),
        source: cause,
    };
    // Every hash known, so that `conda list --explicit --md5` works in the
    // image; the build gathered them from every source first
    // (`conda::hashes`), so the record is the same whichever input named
    // the package. No size: an explicit spec does not know it.
    let p = &source.package_record;
    let package_record =
        PackageRecord::from_index_json(index, None, p.sha256, p.md5).map_err(|e| fail(e.into()))?;
    let (url, channel) = image_origin(source);
    let repodata = RepoDataRecord {
        package_record,
        identifier: source.identifier.clone(),
        url,
        channel,
    };
    Ok(PrefixRecord::from_repodata_record(repodata, paths))
}

/// The record [`relocate`] writes for the package at `package_dir` (from
/// `source`), without its file list, and the name of its `conda-meta/`
/// file: what a layer's records annotation says of the package, known
/// without linking it (for a layer taken from a cache too).
pub fn image_record(
    package_dir: &Path,
    source: &RepoDataRecord,
) -> Result<(String, RepoDataRecord), CondaError> {
    let dist = dist_name(source);
    let folder =
        DistName::of(&source.package_record).map_err(|_| CondaError::NotContained(dist.clone()))?;
    let index = read_index(package_dir, &dist)?;
    let record = fresh_record(index, source, Vec::new())?;
    Ok((folder.conda_meta_file(), record.repodata_record))
}

/// Where a package came from, as the image records it. A `file://` channel
/// is a folder on the host, so only its name is kept
/// (`file:///home/alice/conda-bld/linux-64/x.conda` becomes
/// `file:///conda-bld/linux-64/x.conda`); channel URLs lose their trailing
/// slash, which tools spell differently.
pub fn image_origin(source: &RepoDataRecord) -> (url::Url, Option<String>) {
    let channel = source
        .channel
        .as_deref()
        .map(|c| c.trim_end_matches('/').to_owned());
    if source.url.scheme() != "file" {
        return (source.url.clone(), channel);
    }
    let segments: Vec<&str> = source
        .url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let tail = &segments[segments.len().saturating_sub(3)..];
    let local = format!("file:///{}", tail.join("/"));
    let url = url::Url::parse(&local).unwrap_or_else(|_| source.url.clone());
    let channel = tail.first().map(|name| format!("file:///{name}"));
    (url, channel)
}

/// Links the extracted package at `package_dir` into `staging` as if the
/// environment lived at `target.image_prefix`, and writes its fresh
/// `conda-meta/<dist>.json`. Returns that record.
pub fn relocate(
    package_dir: &Path,
    source: &RepoDataRecord,
    staging: &Path,
    target: &Target,
) -> Result<PrefixRecord, CondaError> {
    let dist = dist_name(source);
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| CondaError::Relocate {
        package: dist.clone(),
        source,
    };
    if source.package_record.noarch.is_python() && target.python.is_none() {
        return Err(CondaError::NoPython(dist.clone()));
    }
    let checked = checked_package(package_dir, &dist, target.python)?;
    let prefix = Prefix::create(staging).map_err(|e| fail(e.into()))?;
    let options = InstallOptions {
        target_prefix: Some(target.image_prefix.into()),
        platform: Some(target.platform),
        python_info: target.python.cloned(),
        // A file rattler need not rewrite is hard-linked from the package
        // folder: the staging costs no copy, and the layer reads the bytes
        // once, from the cache. Not reflinked: rattler's reflink attempt
        // creates the file before it learns that ext4 cannot clone, then
        // deletes it, and that churn cost more system time than the whole
        // compression (perf: ext4_create, recently_deleted).
        allow_hard_links: Some(true),
        allow_ref_links: Some(false),
        // Symlinks stay symlinks: copying one's target would read the host.
        allow_symbolic_links: Some(true),
        paths_json: Some(checked.paths),
        index_json: Some(checked.index.clone()),
        link_json: Some(checked.link),
        ..InstallOptions::default()
    };
    let (paths, _) = link_package_sync(package_dir, &prefix, Default::default(), options)
        .map_err(|e| fail(e.into()))?;
    // `Prefix::create` makes an empty `conda-meta/history` and a
    // `CACHEDIR.TAG`; neither is the package's, so both stay out of its layer.
    for made in ["CACHEDIR.TAG", "conda-meta/history"] {
        let owned = paths.iter().any(|p| p.relative_path == Path::new(made));
        let path = staging.join(made);
        if !owned && path.exists() {
            fs_err::remove_file(&path).map_err(|e| fail(e.into()))?;
        }
    }
    let record = fresh_record(checked.index, source, paths)?;
    let conda_meta = staging.join("conda-meta");
    let io = |source| CondaError::Io {
        path: conda_meta.clone(),
        source,
    };
    fs_err::create_dir_all(&conda_meta).map_err(io)?;
    let json = serde_json::to_value(&record).map_err(|e| fail(e.into()))?;
    let mut text = serde_json::to_vec_pretty(&json).map_err(|e| fail(e.into()))?;
    text.push(b'\n');
    let folder =
        DistName::of(&source.package_record).map_err(|_| CondaError::NotContained(dist.clone()))?;
    fs_err::write(conda_meta.join(folder.conda_meta_file()), text).map_err(io)?;
    Ok(record)
}

/// A package's metadata, checked: what rattler is given to link.
struct CheckedPackage {
    index: IndexJson,
    paths: PathsJson,
    link: Option<LinkJson>,
}

fn too_big(dist: &str, path: &Path, max: u64) -> Result<(), CondaError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > max => Err(CondaError::UnsafePackage {
            package: dist.to_owned(),
            what: "file".into(),
            path: path.display().to_string(),
            reason: format!(
                "is {} bytes, over the {} MiB this tool reads",
                meta.len(),
                max >> 20
            ),
        }),
        _ => Ok(()),
    }
}

/// The package's `info/index.json`, refused when over `MAX_INFO_JSON`.
pub fn read_index(package_dir: &Path, dist: &str) -> Result<IndexJson, CondaError> {
    too_big(dist, &package_dir.join("info/index.json"), MAX_INFO_JSON)?;
    IndexJson::from_package_directory(package_dir).map_err(|e| CondaError::Relocate {
        package: dist.to_owned(),
        source: e.into(),
    })
}

/// What a `paths.json` entry is called in errors.
const PATHS_ENTRY: &str = "paths.json entry";
/// What a `link.json` entry point is called in errors.
const ENTRY_POINT: &str = "link.json entry point";

/// A package whose metadata cannot be read.
fn unreadable(dist: &str, source: std::io::Error) -> CondaError {
    CondaError::Relocate {
        package: dist.to_owned(),
        source: source.into(),
    }
}

/// A package refused because its `what` at `path` is unsafe for `reason`.
fn refuse(dist: &str, what: &str, path: &Path, reason: String) -> CondaError {
    CondaError::UnsafePackage {
        package: dist.to_owned(),
        what: what.to_owned(),
        path: shown(&path.to_string_lossy()),
        reason,
    }
}

/// Reads and checks what rattler will link from `package_dir`: every path
/// is plain and relative; no two entries land on one path; nothing lands
/// in `conda-meta/` or under a symlink the package itself makes; on the
/// package side no entry is read through a symlink, and a file is a file
/// (a symlink listed as a file, or a copied symlink whose target is outside
/// the package, would copy a host file into the image).
fn checked_package(
    package_dir: &Path,
    dist: &str,
    python: Option<&PythonInfo>,
) -> Result<CheckedPackage, CondaError> {
    let index = read_index(package_dir, dist)?;
    let paths = read_paths(package_dir, dist)?;
    let python = match (index.noarch.is_python(), python) {
        (true, Some(python)) => Some(python),
        (true, None) => return Err(CondaError::NoPython(dist.to_owned())),
        (false, _) => None,
    };
    let link = match python {
        Some(_) => read_link(package_dir, dist)?,
        None => None,
    };
    let mut landings = Landings::default();
    check_entries(package_dir, dist, &paths, python, &mut landings)?;
    if let (Some(link), Some(python)) = (&link, python) {
        land_entry_points(dist, link, python, &mut landings)?;
    }
    landings.check(dist)?;
    Ok(CheckedPackage { index, paths, link })
}

/// The package's `info/paths.json`, or what rattler makes of the legacy
/// `info/files`, `info/has_prefix` and `info/no_link`; each refused when
/// over `MAX_PATHS_JSON`.
fn read_paths(package_dir: &Path, dist: &str) -> Result<PathsJson, CondaError> {
    for legacy in [
        "info/paths.json",
        "info/files",
        "info/has_prefix",
        "info/no_link",
    ] {
        too_big(dist, &package_dir.join(legacy), MAX_PATHS_JSON)?;
    }
    PathsJson::from_package_directory_with_deprecated_fallback(package_dir)
        .map_err(|e| unreadable(dist, e))
}

/// A noarch python package's `info/link.json`, if it has one, refused when
/// over `MAX_INFO_JSON`.
fn read_link(package_dir: &Path, dist: &str) -> Result<Option<LinkJson>, CondaError> {
    too_big(dist, &package_dir.join("info/link.json"), MAX_INFO_JSON)?;
    match LinkJson::from_package_directory(package_dir) {
        Ok(link) => Ok(Some(link)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(dist, e)),
    }
}

/// Where a package's entries land in the staging prefix. They are checked
/// together once all are known: a clash or a symlink above one can come
/// from any two entries.
#[derive(Default)]
struct Landings {
    /// Each landing path, with what listed it.
    paths: Vec<(ContainedPath, &'static str)>,
    /// The landing paths the package makes symlinks.
    links: HashSet<PathBuf>,
}

impl Landings {
    /// Refuses a path in `conda-meta/`, one listed twice, and one under a
    /// symlink of the package.
    fn check(&self, dist: &str) -> Result<(), CondaError> {
        let mut seen = HashSet::new();
        for (lands, what) in &self.paths {
            let path = lands.as_path();
            if path.starts_with("conda-meta") {
                return Err(refuse(
                    dist,
                    what,
                    path,
                    "is in conda-meta/, which is conda's, not a package's".into(),
                ));
            }
            if !seen.insert(path) {
                return Err(refuse(dist, what, path, "is listed twice".into()));
            }
            if let Some(link) = lands.ancestors().find(|a| self.links.contains(*a)) {
                return Err(refuse(
                    dist,
                    what,
                    path,
                    format!(
                        "would be written through {}, a symlink of the package",
                        link.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Checks every `paths.json` entry: where it lands goes into `landings`,
/// and what it reads from the package is checked at once.
fn check_entries(
    package_dir: &Path,
    dist: &str,
    paths: &PathsJson,
    python: Option<&PythonInfo>,
    landings: &mut Landings,
) -> Result<(), CondaError> {
    let mut source = RealDirs::new(package_dir);
    let canonical_package = std::fs::canonicalize(package_dir).map_err(|e| unreadable(dist, e))?;
    for entry in &paths.paths {
        let rel = ContainedPath::new(&entry.relative_path)
            .map_err(|why| refuse(dist, PATHS_ENTRY, &entry.relative_path, why.to_string()))?;
        let lands = landing_of(dist, &rel, python)?;
        if entry.path_type == PathType::SoftLink {
            landings.links.insert(lands.as_path().to_owned());
        }
        landings.paths.push((lands, PATHS_ENTRY));
        check_source(dist, entry, &rel, &mut source, &canonical_package)?;
    }
    Ok(())
}

/// Where the entry at `rel` lands: a noarch python package's moves under
/// the environment's python.
fn landing_of(
    dist: &str,
    rel: &ContainedPath,
    python: Option<&PythonInfo>,
) -> Result<ContainedPath, CondaError> {
    let lands = match python {
        Some(python) => python
            .get_python_noarch_target_path(rel.as_path())
            .into_owned(),
        None => rel.as_path().to_owned(),
    };
    ContainedPath::new(&lands).map_err(|why| refuse(dist, PATHS_ENTRY, &lands, why.to_string()))
}

/// The package side of an entry: it is not read through a symlink, a file
/// is not a symlink, and a `no_link` symlink (whose target rattler copies)
/// points inside the package. An entry missing from the package is left
/// for rattler to report.
fn check_source(
    dist: &str,
    entry: &PathsEntry,
    rel: &ContainedPath,
    source: &mut RealDirs,
    canonical_package: &Path,
) -> Result<(), CondaError> {
    let from = source
        .join(rel)
        .map_err(|why| refuse(dist, PATHS_ENTRY, rel.as_path(), why.to_string()))?;
    let Ok(meta) = std::fs::symlink_metadata(&from) else {
        return Ok(());
    };
    let is_link = meta.file_type().is_symlink();
    let read_as_file = entry.path_type == PathType::HardLink || entry.prefix_placeholder.is_some();
    if read_as_file && is_link {
        return Err(refuse(
            dist,
            PATHS_ENTRY,
            rel.as_path(),
            "is listed as a file but is a symlink in the package".into(),
        ));
    }
    // rattler copies the target of a `no_link` symlink instead of
    // making the link: that target must be inside the package.
    if entry.path_type == PathType::SoftLink && entry.no_link && is_link {
        let inside =
            std::fs::canonicalize(&from).is_ok_and(|target| target.starts_with(canonical_package));
        if !inside {
            return Err(refuse(
                dist,
                PATHS_ENTRY,
                rel.as_path(),
                "is a no_link symlink to a file outside the package".into(),
            ));
        }
    }
    Ok(())
}

/// Adds where `link.json`'s entry points land: a bare command name, in the
/// environment's `bin`.
fn land_entry_points(
    dist: &str,
    link: &LinkJson,
    python: &PythonInfo,
    landings: &mut Landings,
) -> Result<(), CondaError> {
    let NoArchLinks::Python(entry_points) = &link.noarch else {
        // rattler would reach an `unreachable!` on this.
        return Err(refuse(
            dist,
            "file",
            Path::new("info/link.json"),
            "says noarch generic, but index.json says noarch python".into(),
        ));
    };
    for entry_point in &entry_points.entry_points {
        let command = Path::new(&entry_point.command);
        let lands = ContainedPath::new(command)
            .and_then(|c| match c.as_path().components().count() {
                1 => ContainedPath::new(&python.bin_dir.join(c.as_path())),
                _ => Err(Unsafe::Character('/')),
            })
            .map_err(|why| refuse(dist, ENTRY_POINT, command, why.to_string()))?;
        landings.paths.push((lands, ENTRY_POINT));
    }
    Ok(())
}
