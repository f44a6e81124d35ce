//! Which environment to export, found the way conda finds it.

use crate::dirs::home;
use std::path::{Path, PathBuf};

use rattler_conda_types::{PrefixRecord, Subdir};

use super::CondaError;
use super::contained::{check_record, shown};
use super::envfile::{FileKind, LockedWheel, kind_of, read_environment_yaml, read_lock_file};
use super::explicit::read_explicit;
use super::solve::{self, SolveRequest};
use super::virtual_packages::Overrides;

/// How the user named the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSelector {
    /// `-p/--prefix PATH`.
    Prefix(PathBuf),
    /// `-n/--name NAME` (`base` is the root environment).
    Name(String),
    /// `--file PATH`: an `@EXPLICIT` spec; packages come from the caches,
    /// or are downloaded into rattler's.
    Explicit(PathBuf),
    /// `--file environment.yml`: specs and channels to solve.
    EnvironmentFile(PathBuf),
    /// `--file pixi.lock` or `conda-lock.yml`: locked packages.
    LockFile(PathBuf),
    /// Match specs on the command line, solved.
    Specs(Vec<String>),
    /// An environment of the pixi workspace around the current folder
    /// (`pixi docker` with no source, or `--pixi-env NAME` alone); `None`
    /// is the one `pixi shell` activated, else `default`.
    Pixi(Option<String>),
    /// Nothing given: `CONDA_PREFIX`.
    Active,
}

/// The ways `build` can name an environment, as given on its command line.
#[derive(Clone, Debug, Default)]
pub struct EnvFlags {
    /// `-p PATH`.
    pub prefix: Option<PathBuf>,
    /// `-n NAME`.
    pub name: Option<String>,
    /// `--file PATH`.
    pub file: Option<PathBuf>,
    /// Package specs.
    pub specs: Vec<String>,
    /// `--pixi-env NAME`.
    pub pixi_env: Option<String>,
    /// Run as `pixi docker`, whose default is the pixi workspace's.
    pub as_pixi: bool,
    /// `-c` or `--override-channels` was given.
    pub channels: bool,
}

impl EnvSelector {
    /// The environment `flags` name: at most one of a prefix, a name, a
    /// file and specs; none means the pixi workspace's (under `pixi
    /// docker`, or with `--pixi-env`), else the active one. Channels and
    /// `--pixi-env` only go with the sources that use them.
    pub fn choose(flags: EnvFlags) -> Result<Self, CondaError> {
        let mut sources: Vec<(&str, EnvSelector)> = Vec::new();
        sources.extend(flags.prefix.map(|p| ("-p", EnvSelector::Prefix(p))));
        sources.extend(flags.name.map(|n| ("-n", EnvSelector::Name(n))));
        sources.extend(flags.file.map(|f| ("--file", EnvSelector::file(f))));
        if !flags.specs.is_empty() {
            sources.push(("package specs", EnvSelector::Specs(flags.specs)));
        }
        let env = match sources.len() {
            0 if flags.as_pixi || flags.pixi_env.is_some() => {
                EnvSelector::Pixi(flags.pixi_env.clone())
            }
            0 => EnvSelector::Active,
            1 => sources.remove(0).1,
            _ => {
                let given: Vec<&str> = sources.iter().map(|(flag, _)| *flag).collect();
                return Err(CondaError::TwoSources(given.join(" and ")));
            }
        };
        if flags.channels && !env.solves() {
            return Err(CondaError::ChannelsWithoutSolve);
        }
        if flags.pixi_env.is_some()
            && !matches!(env, EnvSelector::Pixi(_) | EnvSelector::LockFile(_))
        {
            return Err(CondaError::PixiEnvMisplaced);
        }
        Ok(env)
    }

    /// `--file PATH`, by what the file holds.
    pub fn file(path: PathBuf) -> Self {
        match kind_of(&path) {
            FileKind::EnvironmentYaml => EnvSelector::EnvironmentFile(path),
            FileKind::LockFile => EnvSelector::LockFile(path),
            FileKind::Explicit => EnvSelector::Explicit(path),
        }
    }
}

/// How to solve an environment given as specs or an environment file.
#[derive(Clone, Debug, Default)]
pub struct SolveOptions {
    /// `-c` channels, highest priority first.
    pub channels: Vec<String>,
    /// Only the `-c` (and the file's) channels, not `.condarc`'s.
    pub override_channels: bool,
    /// `__name=version` virtual packages to add or override.
    pub virtual_packages: Vec<String>,
    /// Leave out an environment file's `pip:` section instead of failing.
    pub ignore_pip: bool,
    /// Leave out a lock file's PyPI packages instead of installing them.
    pub ignore_pypi: bool,
    /// The environment of a lock file to build (default `default`).
    pub lock_environment: Option<String>,
    /// The platform to solve for (default linux-64, whatever the host).
    pub platform: Option<Subdir>,
    /// The base image's glibc, for `__glibc` (`None`: it has none).
    pub glibc: Option<String>,
}

impl SolveOptions {
    /// The platform to solve or read a lock file for: `platform`, else
    /// linux-64 (an image's default, whatever the host).
    pub fn subdir(&self) -> Subdir {
        self.platform.unwrap_or(Subdir::Linux64)
    }

    /// Whether the user states the glibc (`--virtual-package __glibc=...`,
    /// `CONDA_OVERRIDE_GLIBC`, `.condarc`), so the base image's need not be
    /// read.
    pub fn glibc_given(&self) -> bool {
        Overrides::from_config(&self.virtual_packages).is_ok_and(|o| o.glibc().is_some())
    }
}

impl EnvSelector {
    /// Whether this environment is solved (specs, environment.yml), and so
    /// depends on the base image's glibc.
    pub fn solves(&self) -> bool {
        matches!(
            self,
            EnvSelector::Specs(_) | EnvSelector::EnvironmentFile(_)
        )
    }
}

/// The root of the conda installation: conda's `CONDA_ROOT_PREFIX`
/// setting, else `CONDA_ROOT` (which conda and the plugin set), else the
/// one `CONDA_EXE` (`<root>/bin/conda`) or `MAMBA_ROOT_PREFIX` points at.
pub fn conda_root() -> Option<PathBuf> {
    for name in ["CONDA_ROOT_PREFIX", "CONDA_ROOT"] {
        if let Some(root) = std::env::var_os(name).filter(|r| !r.is_empty()) {
            return Some(root.into());
        }
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
    let mut dirs = super::condarc::CondaRc::load().envs_dirs;
    dirs.extend(conda_root().map(|r| r.join("envs")));
    dirs.extend(home().map(|h| h.join(".conda/envs")));
    super::condarc::unique(dirs)
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
            EnvSelector::Explicit(path)
            | EnvSelector::EnvironmentFile(path)
            | EnvSelector::LockFile(path) => {
                return Err(CondaError::NoSuchPrefix(path.clone()));
            }
            EnvSelector::Specs(_) => return Err(CondaError::NoEnvironment),
            EnvSelector::Pixi(name) => {
                let here = std::env::current_dir().unwrap_or_default();
                super::pixi::Workspace::find(&here)?.environment(name.as_deref())?
            }
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

/// An environment to export: what it is, the records of its packages, and
/// their platform.
#[derive(Debug)]
pub struct Environment {
    /// Installed in a prefix, or resolved from specs or a file.
    pub kind: EnvironmentKind,
    /// One record per package, sorted by name. Only an installed
    /// environment's records list their files.
    pub records: Vec<PrefixRecord>,
    /// The platform of its packages (`linux-64`, ...), as the source
    /// states it: `None` when it does not (every package noarch), and the
    /// build decides.
    pub platform: Option<Subdir>,
    /// The PyPI wheels a lock file pins, by name (installed above the
    /// conda packages); empty for every other source.
    pub wheels: Vec<LockedWheel>,
}

/// What an environment is: the build matches on it once per stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvironmentKind {
    /// Installed: its files are in `prefix`, its records in `conda-meta/`.
    Installed {
        /// The host path of the environment.
        prefix: PathBuf,
    },
    /// Resolved (solved, locked or listed): records only, whose packages
    /// come from the caches or their URLs.
    Resolved {
        /// Where the records came from.
        origin: Origin,
    },
}

/// Where a resolved environment's records came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Match specs on the command line, solved.
    Specs,
    /// An `@EXPLICIT` spec, an environment file or a lock file.
    File(PathBuf),
}

impl EnvironmentKind {
    /// Where the records came from, for errors: the prefix or the file;
    /// empty for specs.
    fn origin_path(&self) -> &Path {
        match self {
            EnvironmentKind::Installed { prefix } => prefix,
            EnvironmentKind::Resolved {
                origin: Origin::File(path),
            } => path,
            EnvironmentKind::Resolved {
                origin: Origin::Specs,
            } => Path::new(""),
        }
    }
}

/// What one source gives: the records in the source's order, the
/// platform when the source states it (a solve or lock file is for the
/// platform asked; an installed prefix or an explicit file without
/// `# platform:` says it through its records), and a lock file's wheels.
type Loaded = (Vec<PrefixRecord>, Option<Subdir>, Vec<LockedWheel>);

impl Environment {
    /// Reads the environment the selector names, solving it if it is
    /// given as specs.
    pub fn load(selector: &EnvSelector, solve: &SolveOptions) -> Result<Self, CondaError> {
        let (kind, (mut records, stated, wheels)) = read_source(selector, solve)?;
        let origin = kind.origin_path().to_owned();
        if records.is_empty() {
            return Err(CondaError::Empty(origin));
        }
        check_all(&records, &origin)?;
        sort_by_name(&mut records);
        let platform = match stated {
            Some(platform) => Some(platform),
            None => platform_of(&records)?,
        };
        Ok(Environment {
            kind,
            records,
            platform,
            wheels,
        })
    }
}

/// What `selector` names and its records, not yet checked.
fn read_source(
    selector: &EnvSelector,
    options: &SolveOptions,
) -> Result<(EnvironmentKind, Loaded), CondaError> {
    let resolved = |origin| EnvironmentKind::Resolved { origin };
    let file = |path: &PathBuf| resolved(Origin::File(path.clone()));
    Ok(match selector {
        EnvSelector::Explicit(path) => {
            let (records, platform) = read_explicit(path)?;
            (file(path), (records, platform, Vec::new()))
        }
        EnvSelector::Specs(specs) => (
            resolved(Origin::Specs),
            solved(specs.clone(), Vec::new(), options)?,
        ),
        EnvSelector::EnvironmentFile(path) => {
            let yaml = read_environment_yaml(path, options.ignore_pip)?;
            (file(path), solved(yaml.specs, yaml.channels, options)?)
        }
        EnvSelector::LockFile(path) => (file(path), locked(path, options)?),
        other => {
            let prefix = other.prefix()?;
            let records = installed(&prefix)?;
            (
                EnvironmentKind::Installed { prefix },
                (records, None, Vec::new()),
            )
        }
    })
}

/// Solves `specs` for the requested platform; an environment file's own
/// channels come after the `-c` ones.
fn solved(
    specs: Vec<String>,
    file_channels: Vec<String>,
    options: &SolveOptions,
) -> Result<Loaded, CondaError> {
    let platform = options.subdir();
    let mut channels = options.channels.clone();
    channels.extend(file_channels);
    let request = SolveRequest {
        specs,
        channels,
        override_channels: options.override_channels,
        platform,
        glibc: options.glibc.clone(),
        virtual_packages: options.virtual_packages.clone(),
    };
    let records = solve::solve(&request)?
        .into_iter()
        .map(|r| PrefixRecord::from_repodata_record(r, Vec::new()))
        .collect::<Vec<_>>();
    Ok((records, Some(platform), Vec::new()))
}

/// The packages a lock file pins for the requested platform.
fn locked(path: &Path, options: &SolveOptions) -> Result<Loaded, CondaError> {
    let platform = options.subdir();
    let locked = read_lock_file(
        path,
        options.lock_environment.as_deref(),
        platform,
        options.ignore_pypi,
    )?;
    let records = locked
        .records
        .into_iter()
        .map(|r| PrefixRecord::from_repodata_record(r, Vec::new()))
        .collect();
    Ok((records, Some(platform), locked.wheels))
}

/// The records in an installed prefix's `conda-meta/`.
fn installed(prefix: &Path) -> Result<Vec<PrefixRecord>, CondaError> {
    super::input::check_records(prefix)?;
    PrefixRecord::collect_from_prefix::<PrefixRecord>(prefix).map_err(|source| {
        CondaError::BadRecords {
            path: prefix.join("conda-meta"),
            source,
        }
    })
}

/// The one place records enter: every field that later names a file or
/// folder is checked here, whatever the source.
fn check_all(records: &[PrefixRecord], origin: &Path) -> Result<(), CondaError> {
    for record in records {
        check_record(record).map_err(|bad| {
            let p = &record.repodata_record.package_record;
            CondaError::UnsafeRecord {
                origin: match origin.as_os_str().is_empty() {
                    true => "the solved environment".into(),
                    false => origin.display().to_string(),
                },
                package: shown(&format!(
                    "{}-{}-{}",
                    p.name.as_source(),
                    p.version,
                    p.build.as_str()
                )),
                field: Box::new(bad),
            }
        })?;
    }
    Ok(())
}

/// Records in name order, as every later stage expects.
fn sort_by_name(records: &mut [PrefixRecord]) {
    records.sort_by(|a, b| {
        let (a, b) = (
            &a.repodata_record.package_record,
            &b.repodata_record.package_record,
        );
        a.name.as_normalized().cmp(b.name.as_normalized())
    });
}

/// The one platform (besides noarch) of the records, if any.
fn platform_of(records: &[PrefixRecord]) -> Result<Option<Subdir>, CondaError> {
    let mut subdirs: Vec<&str> = records
        .iter()
        .map(|r| r.repodata_record.package_record.subdir.as_str())
        .filter(|s| *s != "noarch")
        .collect();
    subdirs.sort_unstable();
    subdirs.dedup();
    match subdirs.as_slice() {
        [] => Ok(None),
        [one] => one
            .parse()
            .map(Some)
            .map_err(|_| CondaError::MixedPlatforms(format!("unknown platform {one}"))),
        many => Err(CondaError::MixedPlatforms(many.join(", "))),
    }
}
