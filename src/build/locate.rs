//! Stage 2, *where the bytes are*: every package's extracted folder, found
//! in a cache, rebuilt from the installed prefix, or fetched from its URL.
//!
//! Every package is found before the plan: an explicit spec or a lock file
//! says nothing about dependencies, so the plan needs the packages' own
//! `index.json`.

use std::path::{Path, PathBuf};

use rattler::install::PythonInfo;
use rattler_conda_types::PrefixRecord;
use rattler_conda_types::package::{IndexJson, PackageFile};

use crate::conda::CondaError;
use crate::conda::cache::{PackageCaches, dist_name};
use crate::conda::env::{Environment, EnvironmentKind};
use crate::conda::hashes::{self, HashMemo};
use crate::conda::solve;
use crate::dirs::cache_dir;
use crate::parallel::{cores, in_parallel};

use super::{BuildError, Reporter};

/// Where a package's files were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// In a package cache (conda's, rattler's, or extracted by us from a
    /// cached archive), checked against the record's hash.
    Cache,
    /// Rebuilt from the installed prefix, for a package no cache has: its
    /// files are the host's, not an archive's.
    Prefix,
    /// Downloaded from the record's URL into rattler's cache, checked
    /// against its hash.
    Fetched,
}

/// The packages of an environment, in the order of its records.
pub(crate) struct Located {
    /// Each package's extracted folder.
    pub dirs: Vec<PathBuf>,
    /// Where each was found.
    pub found: Vec<Found>,
    /// Whether each is `noarch: python` by its own `info/index.json`, which
    /// is what relocation reads (an explicit spec's record does not say);
    /// `true` when that cannot be read.
    pub noarch_python: Vec<bool>,
}

/// Finds every package of `env`. `scratch` is this build's own folder,
/// where packages rebuilt from the prefix go. An environment that is not
/// installed learns its packages' dependencies from their `index.json`.
pub(crate) fn locate(
    env: &mut Environment,
    caches: &PackageCaches,
    python: Option<&PythonInfo>,
    scratch: &Path,
    reporter: &dyn Reporter,
) -> Result<Located, BuildError> {
    gather_from_conda_caches(&mut env.records, caches);
    let ((dirs, found), installed) = match &env.kind {
        EnvironmentKind::Installed { prefix } => (
            locate_or_rebuild(&env.records, caches, prefix, python, scratch)?,
            true,
        ),
        EnvironmentKind::Resolved { .. } => {
            (locate_or_fetch(&env.records, caches, reporter)?, false)
        }
    };
    gather_the_rest(&mut env.records, &dirs);
    let mut noarch_python = Vec::with_capacity(dirs.len());
    for (record, dir) in env.records.iter_mut().zip(&dirs) {
        let index = IndexJson::from_package_directory(dir).ok();
        noarch_python.push(index.as_ref().is_none_or(|i| i.noarch.is_python()));
        if let Some(index) = index.filter(|_| !installed) {
            record.repodata_record.package_record.depends = index.depends;
        }
    }
    Ok(Located {
        dirs,
        found,
        noarch_python,
    })
}

/// Fills the hashes the records lack from conda's caches (hashing an
/// archive where one is at hand), before the packages are looked for by
/// them.
fn gather_from_conda_caches(records: &mut [PrefixRecord], caches: &PackageCaches) {
    let found = in_parallel(records, cores(), |record| {
        Ok::<_, std::convert::Infallible>(hashes::from_conda_caches(record, caches))
    });
    for (record, found) in records.iter_mut().zip(found) {
        let Ok(found) = found;
        found.apply(record);
    }
}

/// Fills the hashes the records still lack from rattler's cache entries
/// the packages were found in (`dirs`), then from the hashes earlier
/// builds saw; keeps what this build knows for later ones, and says once
/// which packages' records in the image lack a hash.
fn gather_the_rest(records: &mut [PrefixRecord], dirs: &[PathBuf]) {
    let memo = HashMemo::new(cache_dir().join("hashes"));
    for (record, dir) in records.iter_mut().zip(dirs) {
        hashes::from_rattler_entry(record, dir);
        memo.recall(record);
        memo.remember(record);
    }
    let lacking = hashes::lacking(records);
    if !lacking.is_empty() {
        tracing::warn!(
            "no input, cache record or archive tells these hashes, so the image's conda-meta records leave them out: {}",
            lacking.join(", ")
        );
    }
}

/// The packages of an installed environment: from the caches, else rebuilt
/// from the prefix into `scratch`.
fn locate_or_rebuild(
    records: &[PrefixRecord],
    caches: &PackageCaches,
    prefix: &Path,
    python: Option<&PythonInfo>,
    scratch: &Path,
) -> Result<(Vec<PathBuf>, Vec<Found>), BuildError> {
    let indices: Vec<usize> = (0..records.len()).collect();
    let dirs = in_parallel(&indices, cores(), |&i| {
        Ok(caches.locate_or_rebuild(&records[i], Some(prefix), python, scratch)?)
    })
    .into_iter()
    .collect::<Result<Vec<PathBuf>, BuildError>>()?;
    // `scratch` is this build's own new folder: no cache lives in it, so
    // what is in it was rebuilt.
    let found = dirs
        .iter()
        .map(|dir| match dir.starts_with(scratch) {
            true => Found::Prefix,
            false => Found::Cache,
        })
        .collect();
    Ok((dirs, found))
}

/// The packages of an environment that is not installed (an explicit spec,
/// a lock file, a solve): from the caches, else downloaded from their URL
/// into rattler's package cache, where the fetch checks them.
fn locate_or_fetch(
    records: &[PrefixRecord],
    caches: &PackageCaches,
    reporter: &dyn Reporter,
) -> Result<(Vec<PathBuf>, Vec<Found>), BuildError> {
    let indices: Vec<usize> = (0..records.len()).collect();
    let mut folders = in_parallel(&indices, cores(), |&i| match caches.locate(&records[i]) {
        Ok(folder) => Ok(Some(folder)),
        // A cached archive with the wrong bytes stays an error: it is
        // worth knowing about, and is not silently replaced.
        Err(CondaError::NotCached { .. }) => Ok(None),
        Err(other) => Err(BuildError::from(other)),
    })
    .into_iter()
    .collect::<Result<Vec<Option<PathBuf>>, BuildError>>()?;
    let found = folders
        .iter()
        .map(|f| match f {
            Some(_) => Found::Cache,
            None => Found::Fetched,
        })
        .collect();
    let missing: Vec<usize> = indices
        .into_iter()
        .filter(|&i| folders[i].is_none())
        .collect();
    if !missing.is_empty() {
        reporter.fetching(missing.len());
        // PackageCaches::discover puts rattler's pkgs/ first; a caller's
        // own PackageCaches may have none.
        let pkgs_dir = caches
            .rattler
            .first()
            .cloned()
            .unwrap_or_else(|| cache_dir().join("rattler-pkgs"));
        let wanted: Vec<_> = missing
            .iter()
            .map(|&i| records[i].repodata_record.clone())
            .collect();
        let fetched = solve::fetch(&wanted, pkgs_dir, &|record| {
            reporter.fetched(&dist_name(record));
        })
        .map_err(CondaError::from)?;
        for (i, folder) in missing.into_iter().zip(fetched) {
            folders[i] = Some(folder);
        }
    }
    Ok((folders.into_iter().flatten().collect(), found))
}
