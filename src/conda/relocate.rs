//! One package's files, relocated to the image prefix, in a staging folder.
//!
//! The linking is rattler's (`link_package_sync` with a target prefix that
//! differs from the folder written to): text and binary placeholders,
//! noarch python paths and entry points, symlinks and file modes. Files are
//! copied, never hard-linked, so nothing touches the user's cache. The
//! package's `conda-meta` record is written fresh from its own metadata, so
//! a layer depends only on the package, the image prefix and the python
//! version: never on the host, its paths or how the package was installed.

use std::path::Path;

use rattler::install::{InstallOptions, PythonInfo, link_package_sync};
use rattler_conda_types::package::{IndexJson, PackageFile};
use rattler_conda_types::prefix::Prefix;
use rattler_conda_types::{PackageRecord, PrefixRecord, RepoDataRecord, Subdir};

use super::CondaError;
use super::cache::dist_name;

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
/// from (url, channel, file name, hashes, size) and nothing else.
pub fn fresh_record(
    package_dir: &Path,
    source: &RepoDataRecord,
    paths: Vec<rattler_conda_types::prefix_record::PathsEntry>,
) -> Result<PrefixRecord, CondaError> {
    let dist = dist_name(source);
    let fail = |cause: Box<dyn std::error::Error + Send + Sync>| CondaError::Relocate {
        package: dist.clone(),
        source: cause,
    };
    let index = IndexJson::from_package_directory(package_dir).map_err(|e| fail(e.into()))?;
    // One identity for the package, whichever way the environment was
    // named (an explicit spec knows one hash and no size; a solve knows
    // all three), so the layer is the same either way: the sha256 if
    // known, else the md5, and no size.
    let p = &source.package_record;
    let md5 = if p.sha256.is_some() { None } else { p.md5 };
    let package_record =
        PackageRecord::from_index_json(index, None, p.sha256, md5).map_err(|e| fail(e.into()))?;
    let (url, channel) = image_origin(source);
    let repodata = RepoDataRecord {
        package_record,
        identifier: source.identifier.clone(),
        url,
        channel,
    };
    Ok(PrefixRecord::from_repodata_record(repodata, paths))
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
    let prefix = Prefix::create(staging).map_err(|e| fail(e.into()))?;
    let options = InstallOptions {
        target_prefix: Some(target.image_prefix.into()),
        platform: Some(target.platform),
        python_info: target.python.cloned(),
        allow_hard_links: Some(false),
        allow_ref_links: Some(false),
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
    let record = fresh_record(package_dir, source, paths)?;
    let conda_meta = staging.join("conda-meta");
    let io = |source| CondaError::Io {
        path: conda_meta.clone(),
        source,
    };
    fs_err::create_dir_all(&conda_meta).map_err(io)?;
    let json = serde_json::to_value(&record).map_err(|e| fail(e.into()))?;
    let mut text = serde_json::to_vec_pretty(&json).map_err(|e| fail(e.into()))?;
    text.push(b'\n');
    fs_err::write(conda_meta.join(format!("{dist}.json")), text).map_err(io)?;
    Ok(record)
}
