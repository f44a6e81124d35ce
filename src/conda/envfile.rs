//! Environment files: `environment.yml` (specs and channels to solve).
//!
//! `--file` takes either kind of file this tool reads; which one is judged
//! from its name and contents, so users need not say.

use std::path::{Path, PathBuf};

use rattler_conda_types::EnvironmentYaml;

use super::CondaError;
use super::explicit::bad_line;

/// What a `--file` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// An `@EXPLICIT` spec: package URLs, no solve.
    Explicit,
    /// A conda `environment.yml`: specs and channels, solved.
    EnvironmentYaml,
}

/// Tells what `path` holds: YAML files (`.yml`, `.yaml`) are environment
/// files, anything else an explicit spec.
pub fn kind_of(path: &Path) -> FileKind {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yml" | "yaml") => FileKind::EnvironmentYaml,
        _ => FileKind::Explicit,
    }
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
    let text = std::fs::read_to_string(path).map_err(|source| CondaError::Io {
        path: path.to_owned(),
        source,
    })?;
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
