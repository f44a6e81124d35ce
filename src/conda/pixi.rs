//! The environments of a pixi project: what `pixi docker build` builds
//! when no source is given, found the way pixi finds its workspace.
//!
//! pixi installs environment `NAME` at `.pixi/envs/NAME` next to the
//! manifest; with `detached-environments` that folder is a symlink to the
//! real one (on Unix), so the same path serves both.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::CondaError;

/// The manifests pixi looks for in each folder, in its order, and the
/// tables that make one a workspace rather than a package of another.
const MANIFESTS: &[(&str, &[&str])] = &[
    ("pixi.toml", &["workspace", "project"]),
    (
        "pyproject.toml",
        &["tool.pixi.workspace", "tool.pixi.project"],
    ),
    ("mojoproject.toml", &["workspace", "project"]),
];

/// A pixi workspace: its manifest and root folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// `pixi.toml`, `pyproject.toml` or `mojoproject.toml`.
    pub manifest: PathBuf,
    /// The folder holding the manifest (and `.pixi/`).
    pub root: PathBuf,
}

impl Workspace {
    /// The workspace `start` is in: the nearest folder, from `start` up,
    /// whose manifest declares a workspace; else the manifest
    /// `PIXI_PROJECT_MANIFEST` names (set inside `pixi shell`), as pixi
    /// does.
    pub fn find(start: &Path) -> Result<Self, CondaError> {
        for folder in start.ancestors() {
            for (file, tables) in MANIFESTS {
                let manifest = folder.join(file);
                if let Ok(text) = super::input::read_text(&manifest) {
                    if declares_any(&text, tables) {
                        return Ok(Workspace {
                            manifest,
                            root: folder.to_owned(),
                        });
                    }
                    // pixi takes the first manifest kind present in a
                    // folder and keeps climbing if it is not a workspace.
                    break;
                }
            }
        }
        if let Some(manifest) = std::env::var_os("PIXI_PROJECT_MANIFEST").map(PathBuf::from)
            && manifest.is_file()
            && let Some(root) = manifest.parent()
        {
            return Ok(Workspace {
                root: root.to_owned(),
                manifest,
            });
        }
        Err(CondaError::NoPixiWorkspace(start.to_owned()))
    }

    /// The prefix of environment `name` (default: the one the current
    /// `pixi shell` activated, else `default`), which must be installed.
    pub fn environment(&self, name: Option<&str>) -> Result<PathBuf, CondaError> {
        let name = name
            .map(str::to_owned)
            .or_else(|| self.active_environment())
            .unwrap_or_else(|| "default".into());
        let prefix = self.root.join(".pixi").join("envs").join(&name);
        if !prefix.join("conda-meta").is_dir() {
            return Err(CondaError::PixiNotInstalled {
                name,
                manifest: self.manifest.clone(),
            });
        }
        Ok(prefix)
    }

    /// `PIXI_ENVIRONMENT_NAME`, when `pixi shell`/`pixi run` set it for
    /// this very workspace.
    fn active_environment(&self) -> Option<String> {
        let root = PathBuf::from(std::env::var_os("PIXI_PROJECT_ROOT")?);
        let same = match (root.canonicalize(), self.root.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        same.then(|| std::env::var("PIXI_ENVIRONMENT_NAME").ok())
            .flatten()
            .filter(|n| !n.is_empty())
    }
}

/// Whether a TOML text has a table header `[T]` or `[T.…]` for one of
/// `tables`. A header scan, not a TOML parser: pixi manifests declare
/// their workspace with a table header, and this keeps a TOML parser out
/// of the binary.
fn declares_any(text: &str, tables: &[&str]) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        let Some(header) = line
            .strip_prefix('[')
            .filter(|h| !h.starts_with('['))
            .and_then(|h| h.split(']').next())
        else {
            return false;
        };
        let name: String = header
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
            .collect();
        tables.iter().any(|t| {
            name == *t
                || name
                    .strip_prefix(t)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    })
}

/// The PyPI packages the pixi manifest beside `lock` (`pixi.toml`, else
/// `pyproject.toml`) names as direct dependencies, in their normal form:
/// keys of its `pypi-dependencies` tables (of any feature or target) and,
/// in a `pyproject.toml`, the names in `[project]`'s `dependencies`. Empty
/// when there is no manifest. A line scan, like [`declares_any`].
pub fn direct_pypi_dependencies(lock: &Path) -> HashSet<String> {
    let folder = lock.parent().unwrap_or(Path::new("."));
    for (file, prefix) in [("pixi.toml", ""), ("pyproject.toml", "tool.pixi.")] {
        if let Ok(text) = super::input::read_text(&folder.join(file)) {
            return scan_pypi_dependencies(&text, prefix);
        }
    }
    HashSet::new()
}

/// The direct PyPI dependencies in manifest `text`, whose pixi tables
/// start with `prefix`.
fn scan_pypi_dependencies(text: &str, prefix: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut table = String::new();
    let mut in_array = false;
    for line in text.lines().map(str::trim) {
        let starts_array = table == "project" && line.starts_with("dependencies");
        if in_array || starts_array {
            let list = match starts_array {
                true => line.split_once('[').map_or("", |(_, rest)| rest),
                false => line,
            };
            let (strings, closed) = quoted_strings(list);
            in_array = !closed;
            names.extend(strings.iter().filter_map(|s| requirement_name(s)));
            continue;
        }
        if let Some(header) = line.strip_prefix('[').filter(|h| !h.starts_with('[')) {
            table = header
                .split(']')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
                .collect();
            continue;
        }
        let pixi_table = table.strip_prefix(prefix).unwrap_or_default();
        let is_pypi = table.starts_with(prefix)
            && (pixi_table == "pypi-dependencies" || pixi_table.ends_with(".pypi-dependencies"));
        if is_pypi && let Some((key, _)) = line.split_once('=') {
            names.extend(requirement_name(key));
        }
    }
    names
}

/// The double-quoted strings of one line of a TOML array, and whether the
/// array closes on it (a `]` outside quotes).
fn quoted_strings(line: &str) -> (Vec<String>, bool) {
    let mut strings = Vec::new();
    let mut current: Option<String> = None;
    for c in line.chars() {
        current = match (current, c) {
            (Some(text), '"') => {
                strings.push(text);
                None
            }
            (Some(mut text), c) => {
                text.push(c);
                Some(text)
            }
            (None, '"') => Some(String::new()),
            (None, ']') => return (strings, true),
            (None, '#') => break,
            (None, _) => None,
        };
    }
    (strings, false)
}

/// The package name a requirement (`"requests>=2"`) or key starts with,
/// normalised.
fn requirement_name(text: &str) -> Option<String> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    let name: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    (!name.is_empty()).then(|| super::envfile::normalized_name(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_headers() {
        let pixi = ["workspace", "project"];
        assert!(declares_any("[workspace]\nname = 'x'\n", &pixi));
        assert!(declares_any("  [ project ]\n", &pixi));
        assert!(declares_any("[workspace.target.linux-64]\n", &pixi));
        assert!(!declares_any("[package]\n[dependencies]\n", &pixi));
        assert!(!declares_any("[[workspace]]\n", &pixi));
        assert!(!declares_any("[workspaces]\n", &pixi));
        let pyproject = ["tool.pixi.workspace", "tool.pixi.project"];
        assert!(declares_any(
            "[project]\n[tool.pixi.workspace]\n",
            &pyproject
        ));
        assert!(!declares_any(
            "[project]\n[tool.pixi.package]\n",
            &pyproject
        ));
    }

    #[test]
    fn finds_the_nearest_workspace_and_skips_packages() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("pixi.toml"), "[workspace]\nname = 'top'\n").unwrap();
        let package = root.join("pkg");
        std::fs::create_dir_all(package.join("src")).unwrap();
        std::fs::write(package.join("pixi.toml"), "[package]\nname = 'p'\n").unwrap();
        let found = Workspace::find(&package.join("src")).unwrap();
        assert_eq!(found.root, root);
        assert!(matches!(
            found.environment(Some("dev")),
            Err(CondaError::PixiNotInstalled { name, .. }) if name == "dev"
        ));
        std::fs::create_dir_all(root.join(".pixi/envs/dev/conda-meta")).unwrap();
        assert_eq!(
            found.environment(Some("dev")).unwrap(),
            root.join(".pixi/envs/dev")
        );
    }
    #[test]
    fn direct_pypi_dependencies_from_either_manifest() {
        let pixi = "[workspace]\nname = 'x'\n[pypi-dependencies]\nMy_Pkg = \"*\"\n[feature.dev.pypi-dependencies]\nother = { version = \">=1\" }\n[dependencies]\npython = \"3.11\"\n";
        let names = scan_pypi_dependencies(pixi, "");
        assert_eq!(names, HashSet::from(["my-pkg".into(), "other".into()]));
        let pyproject = "[project]\nname = \"app\"\ndependencies = [\n  \"requests>=2\",\n  \"Flask[async]\"\n]\n[tool.pixi.pypi-dependencies]\nrich = \"*\"\n[tool.pixi.dependencies]\npython = \"*\"\n";
        let names = scan_pypi_dependencies(pyproject, "tool.pixi.");
        assert_eq!(
            names,
            HashSet::from(["requests".into(), "flask".into(), "rich".into()])
        );
    }
}
