//! Which environment to export, found the way conda finds it.

use crate::dirs::home;
use std::path::{Path, PathBuf};

use rattler_conda_types::{PrefixRecord, Subdir};

use super::CondaError;
use super::explicit::read_explicit;

/// How the user named the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSelector {
    /// `-p/--prefix PATH`.
    Prefix(PathBuf),
    /// `-n/--name NAME` (`base` is the root environment).
    Name(String),
    /// `--file PATH`: an `@EXPLICIT` spec; packages come from the caches.
    Explicit(PathBuf),
    /// Nothing given: `CONDA_PREFIX`.
    Active,
}

/// The root of the conda installation: `CONDA_ROOT`, else the one
/// `CONDA_EXE` (`<root>/bin/conda`) or `MAMBA_ROOT_PREFIX` points at.
pub fn conda_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("CONDA_ROOT") {
        return Some(root.into());
    }
    if let Some(exe) = std::env::var_os("CONDA_EXE") {
        let exe = PathBuf::from(exe);
        if let Some(root) = exe.parent().and_then(Path::parent) {
            return Some(root.to_owned());
        }
    }
    std::env::var_os("MAMBA_ROOT_PREFIX").map(PathBuf::from)
}

/// The folders conda looks for named environments in, in its order:
/// `CONDA_ENVS_DIRS` (or the older `CONDA_ENVS_PATH`), `envs_dirs` from the
/// condarc files, `<root>/envs`, `~/.conda/envs`.
pub fn envs_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("CONDA_ENVS_DIRS")
        .or_else(|| std::env::var_os("CONDA_ENVS_PATH"))
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.extend(super::condarc::CondaRc::load().envs_dirs);
    dirs.extend(conda_root().map(|r| r.join("envs")));
    dirs.extend(home().map(|h| h.join(".conda/envs")));
    dirs
}

/// Finds the prefix of environment `name`: in the envs dirs, then among the
/// prefixes conda recorded in `~/.conda/environments.txt`.
pub fn find_named(name: &str) -> Result<PathBuf, CondaError> {
    if name == "base"
        && let Some(root) = conda_root()
    {
        return Ok(root);
    }
    let dirs = envs_dirs();
    if let Some(found) = dirs
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.join("conda-meta").is_dir())
    {
        return Ok(found);
    }
    let registry = home().map(|h| h.join(".conda/environments.txt"));
    if let Some(text) = registry
        .as_ref()
        .and_then(|r| std::fs::read_to_string(r).ok())
        && let Some(found) = text
            .lines()
            .map(|l| PathBuf::from(l.trim()))
            .find(|p| p.file_name().is_some_and(|f| f == name) && p.join("conda-meta").is_dir())
    {
        return Ok(found);
    }
    let mut searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    searched.extend(registry.map(|r| r.display().to_string()));
    Err(CondaError::NoSuchName {
        name: name.to_owned(),
        searched: searched.join(", "),
    })
}

impl EnvSelector {
    /// The prefix this selector names.
    pub fn prefix(&self) -> Result<PathBuf, CondaError> {
        let prefix = match self {
            EnvSelector::Prefix(path) => path.clone(),
            EnvSelector::Name(name) => find_named(name)?,
            EnvSelector::Explicit(path) => return Err(CondaError::NoSuchPrefix(path.clone())),
            EnvSelector::Active => std::env::var_os("CONDA_PREFIX")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .ok_or(CondaError::NoEnvironment)?,
        };
        if !prefix.is_dir() {
            return Err(CondaError::NoSuchPrefix(prefix));
        }
        if !prefix.join("conda-meta").is_dir() {
            return Err(CondaError::NotAnEnvironment(prefix));
        }
        Ok(prefix)
    }
}

/// An environment to export: the records of its packages and, when it is
/// installed, its prefix.
#[derive(Debug)]
pub struct Environment {
    /// The host path of the environment (`None` for an explicit spec).
    pub prefix: Option<PathBuf>,
    /// One record per package, sorted by name.
    pub records: Vec<PrefixRecord>,
    /// The platform of its packages (`linux-64`, ...).
    pub platform: Subdir,
}

impl Environment {
    /// Reads the environment the selector names.
    pub fn load(selector: &EnvSelector) -> Result<Self, CondaError> {
        let (prefix, mut records, stated) = match selector {
            EnvSelector::Explicit(path) => {
                let (records, platform) = read_explicit(path)?;
                (None, records, platform)
            }
            other => {
                let prefix = other.prefix()?;
                let records = PrefixRecord::collect_from_prefix::<PrefixRecord>(&prefix).map_err(
                    |source| CondaError::BadRecords {
                        path: prefix.join("conda-meta"),
                        source,
                    },
                )?;
                (Some(prefix), records, None)
            }
        };
        let origin = match (&prefix, selector) {
            (Some(prefix), _) => prefix.clone(),
            (None, EnvSelector::Explicit(path)) => path.clone(),
            (None, _) => PathBuf::new(),
        };
        if records.is_empty() {
            return Err(CondaError::Empty(origin));
        }
        records.sort_by(|a, b| {
            let (a, b) = (
                &a.repodata_record.package_record,
                &b.repodata_record.package_record,
            );
            a.name.as_normalized().cmp(b.name.as_normalized())
        });
        let platform = match stated {
            Some(platform) => platform,
            None => platform_of(&records)?,
        };
        Ok(Environment {
            prefix,
            records,
            platform,
        })
    }
}

/// The one platform (besides noarch) of the records.
fn platform_of(records: &[PrefixRecord]) -> Result<Subdir, CondaError> {
    let mut subdirs: Vec<&str> = records
        .iter()
        .map(|r| r.repodata_record.package_record.subdir.as_str())
        .filter(|s| *s != "noarch")
        .collect();
    subdirs.sort_unstable();
    subdirs.dedup();
    match subdirs.as_slice() {
        [] => Ok(Subdir::current().unwrap_or(Subdir::Linux64)),
        [one] => one
            .parse()
            .map_err(|_| CondaError::MixedPlatforms(format!("unknown platform {one}"))),
        many => Err(CondaError::MixedPlatforms(many.join(", "))),
    }
}
