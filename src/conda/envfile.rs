//! Environment files: `environment.yml` (specs and channels to solve) and
//! lock files, `pixi.lock` and `conda-lock.yml` (packages, no solve).
//!
//! `--file` takes either kind of file this tool reads; which one is judged
//! from its name and contents, so users need not say.

use std::path::{Path, PathBuf};

use rattler_conda_types::{EnvironmentYaml, RepoDataRecord, Subdir};
use rattler_lock::{LockFile, PypiPackageData, UrlOrPath};
use url::Url;

use super::CondaError;
use super::explicit::bad_line;
use super::input::{read_text, read_yaml};

/// What a `--file` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// An `@EXPLICIT` spec: package URLs, no solve.
    Explicit,
    /// A conda `environment.yml`: specs and channels, solved.
    EnvironmentYaml,
    /// A `pixi.lock` or `conda-lock.yml`: locked packages, no solve.
    LockFile,
}

/// Tells what `path` holds: a file with an `@EXPLICIT` line is an explicit
/// spec (whatever its name: `--lock-file` output is often `*.lock`);
/// other `*.lock` files are lock files; YAML files
/// (`.yml`, `.yaml`) are lock files when they state a top-level `version:`
/// (pixi's and conda-lock's formats do, environment files do not), else
/// environment files; anything else is an explicit spec.
pub fn kind_of(path: &Path) -> FileKind {
    let text = read_text(path).unwrap_or_default();
    if text.lines().any(|l| l.trim() == "@EXPLICIT") {
        return FileKind::Explicit;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("lock") => FileKind::LockFile,
        Some("yml" | "yaml") if text.lines().any(|l| l.starts_with("version:")) => {
            FileKind::LockFile
        }
        Some("yml" | "yaml") => FileKind::EnvironmentYaml,
        _ => FileKind::Explicit,
    }
}

/// A PyPI wheel a lock file pins, checked: fetched by URL, named by its
/// sha256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedWheel {
    /// The package name, as the lock gives it.
    pub name: String,
    /// The version, as the lock gives it.
    pub version: String,
    /// Where the wheel is fetched from.
    pub url: Url,
    /// The wheel's file name (the last segment of its URL), which carries
    /// its tags.
    pub file_name: String,
    /// The sha256 of the wheel file.
    pub sha256: [u8; 32],
    /// Whether the pixi manifest beside the lock lists it as a direct
    /// dependency (pip's `REQUESTED`).
    pub requested: bool,
}

/// What a lock file pins for one environment and platform.
#[derive(Debug, Default)]
pub struct Locked {
    /// The conda packages.
    pub records: Vec<RepoDataRecord>,
    /// The PyPI wheels, by name (none when they are ignored).
    pub wheels: Vec<LockedWheel>,
}

/// The packages a lock file pins for `platform` in environment
/// `environment` (default: `default`). Its PyPI packages must be wheels
/// with a sha256 fetched by URL; any other is an error naming it. With
/// `ignore_pypi`, they are left out.
pub fn read_lock_file(
    path: &Path,
    environment: Option<&str>,
    platform: Subdir,
    ignore_pypi: bool,
) -> Result<Locked, CondaError> {
    let bad = |reason: String| bad_line(path, 1, reason);
    let text = read_yaml(path)?;
    let lock =
        LockFile::from_str_with_base_directory(&text, path.parent()).map_err(|e| match &e {
            rattler_lock::ParseCondaLockError::ParseError(yaml) => bad_line(
                path,
                yaml.location().map_or(1, |l| l.line()),
                format!("not a valid lock file: {e}"),
            ),
            _ => bad(format!("not a valid lock file: {e}")),
        })?;
    let names = || {
        lock.environments()
            .map(|(name, _)| name.to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let env = match environment {
        Some(name) => lock.environment(name).ok_or_else(|| {
            bad(format!(
                "it has no environment `{name}` (it has: {}); pick one with --pixi-env",
                names()
            ))
        })?,
        None => lock.default_environment().ok_or_else(|| {
            bad(format!(
                "it has no `default` environment (it has: {}); pick one with --pixi-env",
                names()
            ))
        })?,
    };
    let subdir = platform.to_string();
    let Some(locked_platform) = lock.platform(&subdir) else {
        let platforms: Vec<String> = lock.platforms().map(|p| p.subdir().to_string()).collect();
        return Err(bad(format!(
            "it locks nothing for {subdir} (it has: {}); pick one with --platform",
            platforms.join(", ")
        )));
    };
    let mut wheels = Vec::new();
    if !ignore_pypi && let Some(pypi) = env.pypi_packages(locked_platform) {
        let requested = super::pixi::direct_pypi_dependencies(path);
        for package in pypi {
            let line = line_of(&text, package.location().inner().as_str());
            let mut wheel = locked_wheel(package).map_err(|why| {
                bad_line(
                    path,
                    line,
                    format!(
                        "PyPI package `{}` cannot be installed: {why}; pass --ignore-pypi to leave the PyPI packages out",
                        package.name()
                    ),
                )
            })?;
            wheel.requested = requested.contains(&normalized_name(&wheel.name));
            wheels.push(wheel);
        }
        wheels.sort_by_key(|wheel| normalized_name(&wheel.name));
    }
    let records = env
        .conda_repodata_records(locked_platform)
        .map_err(|e| bad(format!("a package record cannot be read: {e}")))?
        .unwrap_or_default();
    if records.is_empty() {
        return Err(CondaError::Empty(path.to_owned()));
    }
    Ok(Locked { records, wheels })
}

/// A PyPI package name in its normal form (PEP 503): lowercase, each run
/// of `-`, `_` and `.` one `-`.
pub fn normalized_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '-' | '_' | '.' if out.ends_with('-') => {}
            '-' | '_' | '.' => out.push('-'),
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// The wheel a lock's PyPI entry pins, or why it cannot be installed: only
/// a wheel fetched by URL and named by a sha256 is.
fn locked_wheel(package: &PypiPackageData) -> Result<LockedWheel, String> {
    let Some(wheel) = package.as_wheel() else {
        return Err(match package.location().inner() {
            UrlOrPath::Url(url) if url.scheme().starts_with("git") => {
                format!("it is a git source ({url}), not a wheel")
            }
            UrlOrPath::Url(url) => format!("it is a source tree ({url}), not a wheel"),
            UrlOrPath::Path(path) => {
                format!(
                    "it is a local path ({path}: a source tree or editable install), not a wheel"
                )
            }
        });
    };
    let url = match wheel.location.inner() {
        UrlOrPath::Url(url) => url.clone(),
        UrlOrPath::Path(path) => {
            return Err(format!(
                "it is a local path ({path}); only wheels fetched by URL are installed"
            ));
        }
    };
    if url.scheme().starts_with("git+") || url.scheme() == "git" {
        return Err(format!("it is a git source ({url}), not a wheel"));
    }
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("its URL {url} is not http(s)"));
    }
    let file_name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_owned();
    if !file_name.ends_with(".whl") {
        return Err(format!(
            "`{file_name}` is a source distribution, not a wheel; only wheels are installed"
        ));
    }
    let sha256 = wheel
        .hash
        .as_ref()
        .and_then(|h| h.sha256())
        .ok_or_else(|| format!("the lock gives no sha256 for `{file_name}`"))?;
    Ok(LockedWheel {
        name: wheel.name.to_string(),
        version: wheel.version.to_string(),
        url,
        file_name,
        sha256: (*sha256).into(),
        requested: false,
    })
}

/// The 1-based line of `text` where `needle` first appears (1 if nowhere).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

/// The specs and channels of an `environment.yml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvironmentFile {
    /// Its `name`, if any.
    pub name: Option<String>,
    /// Its `channels`, highest priority first.
    pub channels: Vec<String>,
    /// Its conda `dependencies`.
    pub specs: Vec<String>,
}

/// Reads an `environment.yml`. A `pip:` section is an error naming it,
/// unless `ignore_pip` (conda-docker installs conda packages only).
pub fn read_environment_yaml(path: &Path, ignore_pip: bool) -> Result<EnvironmentFile, CondaError> {
    let text = read_yaml(path)?;
    let yaml = EnvironmentYaml::from_yaml_str(&text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        let reason = e.to_string();
        let reason = reason
            .split(" at line ")
            .next()
            .unwrap_or(&reason)
            .to_owned();
        bad_line(
            path,
            line,
            format!("not a valid environment file: {reason}"),
        )
    })?;
    if let Some(pip) = yaml.pip_specs()
        && !ignore_pip
    {
        let line = text
            .lines()
            .position(|l| l.trim_start().trim_start_matches("- ").starts_with("pip:"))
            .map_or(1, |i| i + 1);
        return Err(bad_line(
            path,
            line,
            format!(
                "a `pip:` section ({}) cannot be installed into an image; remove it or pass --ignore-pip",
                pip.join(", ")
            ),
        ));
    }
    if let Some((name, _)) = yaml
        .dependencies
        .iter()
        .filter_map(|d| d.as_sub_section())
        .find(|(name, _)| name.as_str() != "pip")
    {
        return Err(bad_line(
            path,
            1,
            format!("an unknown `{name}:` section in dependencies"),
        ));
    }
    let specs: Vec<String> = yaml.match_specs().map(ToString::to_string).collect();
    if specs.is_empty() {
        return Err(CondaError::Empty(PathBuf::from(path)));
    }
    Ok(EnvironmentFile {
        name: yaml.name.clone(),
        channels: yaml.channels.iter().map(ToString::to_string).collect(),
        specs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("environment.yml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_specs_and_channels() {
        let (_dir, path) = write(
            "name: demo\nchannels:\n  - conda-forge\n  - bioconda\ndependencies:\n  - python=3.12\n  - numpy>=2,<3\n  - pip:\n    - requests\n",
        );
        let err = read_environment_yaml(&path, false).unwrap_err().to_string();
        assert!(
            err.contains("environment.yml:8: a `pip:` section (requests)"),
            "{err}"
        );
        let file = read_environment_yaml(&path, true).unwrap();
        assert_eq!(file.channels, ["conda-forge", "bioconda"]);
        assert_eq!(file.specs.len(), 2);
        assert_eq!(file.name.as_deref(), Some("demo"));
    }

    #[test]
    fn bad_yaml_names_the_line() {
        let (_dir, path) = write("name: x\ndependencies:\n  - python\n  bad: [\n");
        let err = read_environment_yaml(&path, false).unwrap_err().to_string();
        assert!(err.contains("environment.yml:4"), "{err}");
    }

    #[test]
    fn kinds_by_name() {
        assert_eq!(
            kind_of(Path::new("environment.yml")),
            FileKind::EnvironmentYaml
        );
        assert_eq!(kind_of(Path::new("spec.txt")), FileKind::Explicit);
    }
}
