//! The parts of conda's configuration this tool needs: `pkgs_dirs`,
//! `envs_dirs`, `channels`, `channel_alias` and `custom_channels`, from the
//! `.condarc` files conda reads, in conda's order, and from the `CONDA_*`
//! variables that override them (which the conda plugin sets from conda's
//! own resolved configuration).

use crate::dirs::home;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::conda_root;

/// Settings merged from every `.condarc` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CondaRc {
    /// Package cache folders, highest priority first.
    pub pkgs_dirs: Vec<PathBuf>,
    /// Folders holding named environments, highest priority first.
    pub envs_dirs: Vec<PathBuf>,
    /// Default channels, highest priority first.
    pub channels: Vec<String>,
    /// The URL channel names are resolved against.
    pub channel_alias: Option<String>,
    /// Channel names served from somewhere other than the alias:
    /// name → base URL (the channel is `URL/name`).
    pub custom_channels: std::collections::BTreeMap<String, String>,
    /// `override_virtual_packages` (conda ≥ 25.11): virtual package name
    /// (`cuda`) → value; an empty value removes it, `null` says nothing.
    pub override_virtual_packages: std::collections::BTreeMap<String, Option<String>>,
    /// `remote_read_timeout_secs`: how long a server may send nothing
    /// before the transfer counts as broken; `None`: conda's default, 60 s.
    pub remote_read_timeout: Option<Duration>,
}

#[derive(serde::Deserialize, Default)]
struct File {
    #[serde(default)]
    pkgs_dirs: Vec<String>,
    #[serde(default)]
    envs_dirs: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    channel_alias: Option<String>,
    #[serde(default)]
    custom_channels: std::collections::BTreeMap<String, String>,
    #[serde(default, alias = "virtual_packages")]
    override_virtual_packages: std::collections::BTreeMap<String, Option<serde_yaml::Value>>,
    // Any YAML, so a wrong type is a warning about this setting rather
    // than the whole file ignored.
    #[serde(default)]
    remote_read_timeout_secs: Option<serde_yaml::Value>,
}

/// conda's search path: system, root, user, then the active environment
/// and `$CONDARC`; later files take precedence.
fn search_path() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = vec!["/etc/conda".into(), "/var/lib/conda".into()];
    bases.extend(conda_root());
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")));
    bases.extend(xdg.map(|x| x.join("conda")));
    bases.extend(home().map(|h| h.join(".conda")));
    let mut files = Vec::new();
    for base in &bases {
        files.extend(rc_files_in(base));
    }
    files.extend(home().map(|h| h.join(".condarc")));
    if let Some(prefix) = std::env::var_os("CONDA_PREFIX") {
        files.extend(rc_files_in(Path::new(&prefix)));
    }
    files.extend(std::env::var_os("CONDARC").map(PathBuf::from));
    files
}

fn rc_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join(".condarc"), dir.join("condarc")];
    if let Ok(entries) = std::fs::read_dir(dir.join("condarc.d")) {
        let mut extra: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    files
}

/// `~` and `$VAR` / `${VAR}` expanded, as conda does for paths.
fn expand(text: &str) -> PathBuf {
    let mut out = String::new();
    let mut rest = text;
    if let Some(after) = rest.strip_prefix('~') {
        out.push_str(&home().unwrap_or_default().to_string_lossy());
        rest = after;
    }
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let (name, next) = match tail.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => (braced, ""),
            },
            None => {
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                (&tail[..end], &tail[end..])
            }
        };
        out.push_str(&std::env::var(name).unwrap_or_default());
        rest = next;
    }
    out.push_str(rest);
    PathBuf::from(out)
}

impl CondaRc {
    /// Reads every `.condarc` conda would, then the variables conda lets
    /// override them: `CONDA_PKGS_DIRS` and `CONDA_CHANNELS` (`,`-separated),
    /// `CONDA_ENVS_DIRS` (or the older `CONDA_ENVS_PATH`, `:`-separated),
    /// `CONDA_CHANNEL_ALIAS`, `CONDA_REMOTE_READ_TIMEOUT_SECS`. As in conda, a variable's entries come first
    /// and the files' follow. A file that is not valid YAML is named in a
    /// warning and skipped.
    pub fn load() -> Self {
        let mut rc = CondaRc::default();
        for path in search_path().iter().rev() {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            match serde_yaml::from_str::<Option<File>>(&text) {
                Ok(file) => {
                    let file = file.unwrap_or_default();
                    rc.pkgs_dirs
                        .extend(file.pkgs_dirs.iter().map(|p| expand(p)));
                    rc.envs_dirs
                        .extend(file.envs_dirs.iter().map(|p| expand(p)));
                    rc.channels.extend(file.channels);
                    if rc.channel_alias.is_none() {
                        rc.channel_alias = file.channel_alias;
                    }
                    for (name, url) in file.custom_channels {
                        rc.custom_channels.entry(name).or_insert(url);
                    }
                    for (name, value) in file.override_virtual_packages {
                        rc.override_virtual_packages
                            .entry(name)
                            .or_insert_with(|| value.as_ref().and_then(scalar));
                    }
                    if rc.remote_read_timeout.is_none()
                        && let Some(value) = file.remote_read_timeout_secs.as_ref()
                    {
                        let text = scalar(value).unwrap_or_default();
                        let what = format!("remote_read_timeout_secs in {}", path.display());
                        rc.remote_read_timeout = seconds(&text, &what);
                    }
                }
                Err(e) => tracing::warn!("ignoring {}: not a valid condarc ({e})", path.display()),
            }
        }
        rc.apply_variables(|name| std::env::var(name).ok());
        rc.pkgs_dirs = unique(rc.pkgs_dirs);
        rc.envs_dirs = unique(rc.envs_dirs);
        rc.channels = unique(rc.channels);
        rc
    }

    /// Puts the `CONDA_*` overrides in front of what the files said.
    fn apply_variables(&mut self, var: impl Fn(&str) -> Option<String>) {
        let list = |value: Option<String>, separators: &[char]| -> Vec<String> {
            value
                .unwrap_or_default()
                .split(separators)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        // conda splits pkgs_dirs on `,`; a `:`-separated value is
        // accepted too, as people write it like PATH.
        let pkgs = list(var("CONDA_PKGS_DIRS"), &[',', ':']);
        self.pkgs_dirs.splice(0..0, pkgs.iter().map(|p| expand(p)));
        let envs = var("CONDA_ENVS_DIRS").or_else(|| var("CONDA_ENVS_PATH"));
        self.envs_dirs
            .splice(0..0, list(envs, &[':']).iter().map(|p| expand(p)));
        self.channels
            .splice(0..0, list(var("CONDA_CHANNELS"), &[',']));
        if let Some(alias) = var("CONDA_CHANNEL_ALIAS").filter(|a| !a.is_empty()) {
            self.channel_alias = Some(alias);
        }
        if let Some(text) = var("CONDA_REMOTE_READ_TIMEOUT_SECS").filter(|t| !t.is_empty()) {
            let what = "CONDA_REMOTE_READ_TIMEOUT_SECS";
            self.remote_read_timeout = seconds(&text, what).or(self.remote_read_timeout);
        }
    }

    /// How long a server may send nothing before a transfer counts as
    /// broken (and is tried again): `remote_read_timeout_secs`, 60 s
    /// unless set.
    pub fn read_timeout(&self) -> Duration {
        self.remote_read_timeout
            .unwrap_or(crate::http::DEFAULT_READ_TIMEOUT)
    }
}

/// What a transfer that stalled is told: how long nothing came, and the
/// setting that allows longer.
pub(crate) fn stalled(after: Duration) -> String {
    format!(
        "nothing arrived for {} s; if the server is only slow, allow it longer with remote_read_timeout_secs in .condarc or CONDA_REMOTE_READ_TIMEOUT_SECS",
        after.as_secs_f64()
    )
}

/// A positive number of seconds (conda takes fractions too); anything
/// else is named in a warning and ignored.
fn seconds(text: &str, what: &str) -> Option<Duration> {
    let parsed = text
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    if parsed.is_none() {
        tracing::warn!("ignoring {what}: {text:?} is not a positive number of seconds");
    }
    parsed
}

/// A YAML scalar as the string conda makes of it (`cuda: 12.4` is a
/// number to YAML); `None` for anything else.
fn scalar(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The list with later repeats removed, order kept.
pub(crate) fn unique<T: Clone + Eq + std::hash::Hash>(items: Vec<T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{CondaRc, expand};
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn variables_come_before_files() {
        let mut rc = CondaRc {
            pkgs_dirs: vec!["/rc/pkgs".into()],
            envs_dirs: vec!["/rc/envs".into()],
            channels: vec!["bioconda".into()],
            channel_alias: Some("https://rc.example/".into()),
            ..CondaRc::default()
        };
        rc.apply_variables(|name| {
            Some(match name {
                "CONDA_PKGS_DIRS" => "/a/pkgs,/b/pkgs".into(),
                "CONDA_ENVS_PATH" => "/a/envs:/b/envs".into(),
                "CONDA_CHANNELS" => "conda-forge, bioconda".into(),
                "CONDA_CHANNEL_ALIAS" => "https://mirror.example/".into(),
                _ => return None,
            })
        });
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(rc.pkgs_dirs, paths(&["/a/pkgs", "/b/pkgs", "/rc/pkgs"]));
        assert_eq!(rc.envs_dirs, paths(&["/a/envs", "/b/envs", "/rc/envs"]));
        assert_eq!(rc.channels, ["conda-forge", "bioconda", "bioconda"]);
        assert_eq!(rc.channel_alias.as_deref(), Some("https://mirror.example/"));
    }

    #[test]
    fn the_read_timeout_variable_wins_and_bad_values_are_ignored() {
        let rc = |file: Option<u64>, var: &str| {
            let mut rc = CondaRc {
                remote_read_timeout: file.map(Duration::from_secs),
                ..CondaRc::default()
            };
            rc.apply_variables(|name| {
                (name == "CONDA_REMOTE_READ_TIMEOUT_SECS").then(|| var.to_owned())
            });
            rc.read_timeout()
        };
        assert_eq!(rc(None, ""), Duration::from_secs(60));
        assert_eq!(rc(Some(9), ""), Duration::from_secs(9));
        assert_eq!(rc(Some(9), "2.5"), Duration::from_millis(2500));
        assert_eq!(rc(Some(9), "soon"), Duration::from_secs(9));
        assert_eq!(rc(None, "-1"), Duration::from_secs(60));
    }

    #[test]
    fn expands_variables() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand("~/pkgs").to_string_lossy(), format!("{home}/pkgs"));
        assert_eq!(expand("${HOME}/x").to_string_lossy(), format!("{home}/x"));
        assert_eq!(expand("/plain").to_string_lossy(), "/plain");
    }
}
