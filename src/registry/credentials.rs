//! Finding the user's registry logins where docker and podman keep them, so
//! that an existing `docker login` or `podman login` just works.
//!
//! Files, in podman's order (containers-auth.json(5)), first match wins:
//! `$REGISTRY_AUTH_FILE` alone when it is set; else podman's
//! `$XDG_RUNTIME_DIR/containers/auth.json` (`/run/containers/$UID/auth.json`
//! when that variable is unset, where `podman login` as root writes),
//! `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/...`), then docker's
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`). In each,
//! docker's order: `credHelpers[registry]`, then `auths` (podman's most
//! specific key first: `registry/org/app`, `registry/org`, `registry`),
//! then `credsStore`. Helpers are the `docker-credential-NAME` executables
//! on `PATH`.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::client::Client;
use super::{RegistryError, RegistryOptions};
use crate::dirs::home;
use crate::reference::DOCKER_HUB;

/// A login for one registry. Its `Debug` form hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or access token used as one).
    Basic {
        /// The user.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the
    /// registry's token service.
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

/// Where a login came from, so that a refusal names what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `CONDA_DOCKER_REGISTRY_USER` and `CONDA_DOCKER_REGISTRY_PASSWORD`.
    Environment,
    /// The `auths` of a docker or podman login file.
    File(PathBuf),
    /// A `docker-credential-NAME` helper (the program's name).
    Helper(String),
    /// Given by the caller: to `login`, to be checked and stored, or to
    /// `push`.
    Given,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Environment => write!(
                f,
                "from CONDA_DOCKER_REGISTRY_USER and CONDA_DOCKER_REGISTRY_PASSWORD"
            ),
            Origin::File(path) => write!(f, "stored in {}", path.display()),
            Origin::Helper(program) => write!(f, "from the credential helper {program}"),
            Origin::Given => write!(f, "given"),
        }
    }
}

/// A login and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The secret.
    pub credentials: Credentials,
    /// Where it came from.
    pub origin: Origin,
}

impl Login {
    /// The login CI gives in `CONDA_DOCKER_REGISTRY_USER` and
    /// `CONDA_DOCKER_REGISTRY_PASSWORD`, if both are set (for the registry
    /// pushed to, and only that one: its repositories pushed to and read
    /// as a cache).
    pub fn from_environment() -> Option<Login> {
        let username = std::env::var("CONDA_DOCKER_REGISTRY_USER").ok()?;
        let password = std::env::var("CONDA_DOCKER_REGISTRY_PASSWORD").ok()?;
        (!username.is_empty()).then_some(Login {
            credentials: Credentials::Basic { username, password },
            origin: Origin::Environment,
        })
    }
}

/// The key docker files a registry's login under (Docker Hub keeps its
/// historical v1 URL).
pub(crate) fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_owned()
    }
}

/// A key of `auths`/`credHelpers` reduced to the registry it is for:
/// without scheme or path, Docker Hub's aliases made one.
pub(crate) fn normalise_registry(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.into(),
        _ => host.to_owned(),
    }
}

/// docker's config file: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub(crate) fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        _ => home().map(|h| h.join(".docker/config.json")),
    }
}

/// podman's primary login file: `$XDG_RUNTIME_DIR/containers/auth.json`,
/// or `/run/containers/$UID/auth.json` when `XDG_RUNTIME_DIR` is unset
/// (where `podman login` as root puts it).
fn podman_runtime_auth_file() -> Option<PathBuf> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("containers/auth.json")),
        // `/proc/self` belongs to the process's user (proc(5)).
        _ => std::fs::metadata("/proc/self")
            .ok()
            .map(|proc| PathBuf::from(format!("/run/containers/{}/auth.json", proc.uid()))),
    }
}

/// The login files in podman's search order (containers-auth.json(5)):
/// `REGISTRY_AUTH_FILE` alone when set, else podman's two files, then
/// docker's.
pub(crate) fn auth_files() -> Vec<PathBuf> {
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        return vec![PathBuf::from(file)];
    }
    let mut files: Vec<PathBuf> = podman_runtime_auth_file().into_iter().collect();
    files.extend(
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".config")))
            .map(|d| d.join("containers/auth.json")),
    );
    files.extend(docker_config_path());
    files
}

fn read_json(path: &Path) -> Result<Option<Value>, RegistryError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistryError::Credentials {
                what: format!("cannot read {}", path.display()),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RegistryError::Credentials {
            what: format!("{} is not valid JSON; fix or remove it", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
}

/// The entry of `map` (an object keyed by registry) for `registry`.
fn entry_for<'a>(map: &'a Value, registry: &str) -> Option<&'a Value> {
    map.as_object()?
        .iter()
        .find(|(key, _)| normalise_registry(key) == registry)
        .map(|(_, v)| v)
}

/// A key of `auths` reduced to what it is for, as containers/image reads
/// it: a key with a scheme (docker's) names a registry; one without may
/// name a namespace or a repository, as `podman login quay.io/org` writes
/// it. Docker Hub's aliases made one.
fn normalise_auths_key(key: &str) -> String {
    if key.starts_with("https://") || key.starts_with("http://") {
        return normalise_registry(key);
    }
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = normalise_registry(host);
    match path.trim_end_matches('/') {
        "" => host,
        path => format!("{host}/{path}"),
    }
}

/// The entry of `auths` for `repository` on `registry`, the most specific
/// key first (`registry/a/b`, `registry/a`, then `registry`), as podman
/// looks it up (containers-auth.json(5)).
fn auths_entry_for<'a>(auths: &'a Value, registry: &str, repository: &str) -> Option<&'a Value> {
    let keys: Vec<(String, &Value)> = auths
        .as_object()?
        .iter()
        .map(|(key, entry)| (normalise_auths_key(key), entry))
        .collect();
    let mut wanted = match repository.trim_matches('/') {
        "" => registry.to_owned(),
        repository => format!("{registry}/{repository}"),
    };
    loop {
        if let Some((_, entry)) = keys.iter().find(|(key, _)| *key == wanted) {
            return Some(entry);
        }
        if wanted.len() <= registry.len() {
            return None;
        }
        match wanted.rsplit_once('/') {
            Some((shorter, _)) => wanted = shorter.to_owned(),
            None => return None,
        }
    }
}

/// The login for `repository` on `registry` from the user's files and
/// helpers, or `None`.
pub(crate) fn lookup(registry: &str, repository: &str) -> Result<Option<Login>, RegistryError> {
    for file in auth_files() {
        let Some(config) = read_json(&file)? else {
            continue;
        };
        let from_helper = |helper: &str| -> Result<Option<Login>, RegistryError> {
            Ok(helper_get(helper, registry)?.map(|credentials| Login {
                credentials,
                origin: Origin::Helper(format!("docker-credential-{helper}")),
            }))
        };
        if let Some(helper) = entry_for(&config["credHelpers"], registry).and_then(Value::as_str)
            && let Some(found) = from_helper(helper)?
        {
            return Ok(Some(found));
        }
        if let Some(entry) = auths_entry_for(&config["auths"], registry, repository)
            && let Some(credentials) = from_auths_entry(entry, &file)?
        {
            tracing::debug!("the login for {registry} is in {}", file.display());
            return Ok(Some(Login {
                credentials,
                origin: Origin::File(file),
            }));
        }
        if let Some(helper) = config["credsStore"].as_str().filter(|h| !h.is_empty())
            && let Some(found) = from_helper(helper)?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn from_auths_entry(entry: &Value, file: &Path) -> Result<Option<Credentials>, RegistryError> {
    if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken(token.to_owned())));
    }
    if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = BASE64
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        return match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((username, password)) => Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            })),
            None => Err(RegistryError::Credentials {
                what: format!(
                    "{}: an `auth` entry is not base64 of USER:PASSWORD; log in again",
                    file.display()
                ),
                source: io::Error::new(io::ErrorKind::InvalidData, "bad auth entry"),
            }),
        };
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        })),
        _ => Ok(None),
    }
}

/// Asks `docker-credential-NAME get` for `registry`. A helper that is not
/// installed or has nothing stored yields `None`, as with docker.
fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let output = match run_helper(&program, "get", config_key(registry).as_bytes()) {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!("credential helper {program} is not installed; going on without it");
            return Ok(None);
        }
        Err(source) => {
            return Err(RegistryError::Credentials {
                what: format!("cannot run credential helper {program}"),
                source,
            });
        }
    };
    if !output.status.success() {
        tracing::debug!("{program} has no credentials for {registry}");
        return Ok(None);
    }
    let reply: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| RegistryError::Credentials {
            what: format!("credential helper {program} did not answer with JSON"),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
    let username = reply["Username"].as_str().unwrap_or_default();
    let secret = reply["Secret"].as_str().unwrap_or_default().to_owned();
    Ok(Some(if username == "<token>" {
        Credentials::IdentityToken(secret)
    } else {
        Credentials::Basic {
            username: username.to_owned(),
            password: secret,
        }
    }))
}

fn run_helper(program: &str, verb: &str, input: &[u8]) -> io::Result<std::process::Output> {
    let mut child = Command::new(program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    child.wait_with_output()
}

/// Checks `username`/`password` against `registry` (as `docker login`
/// does), then stores them where docker keeps logins: the credential
/// helper configured for it, else `auths` in docker's config file.
/// Returns where they went.
pub fn login(
    registry: &str,
    username: &str,
    password: &str,
    options: &RegistryOptions,
) -> Result<String, RegistryError> {
    let registry = normalise_registry(registry);
    let login = Login {
        credentials: Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        },
        origin: Origin::Given,
    };
    Client::connect(&registry, options, Some(login))?.check_login()?;
    let path = docker_config_path().ok_or_else(|| RegistryError::Credentials {
        what: "cannot tell where docker's config is: set HOME or DOCKER_CONFIG".into(),
        source: io::Error::new(io::ErrorKind::NotFound, "no home directory"),
    })?;
    let mut config = read_json(&path)?.unwrap_or_else(|| json!({}));
    let key = config_key(&registry);
    if let Some(helper) = helper_for(&config, &registry) {
        let program = format!("docker-credential-{helper}");
        let input = json!({"ServerURL": key, "Username": username, "Secret": password});
        let output =
            run_helper(&program, "store", input.to_string().as_bytes()).map_err(|source| {
                RegistryError::Credentials {
                    what: format!("cannot run credential helper {program}"),
                    source,
                }
            })?;
        if !output.status.success() {
            return Err(RegistryError::Credentials {
                what: format!("credential helper {program} could not store the login"),
                source: io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
            });
        }
        return Ok(program);
    }
    let object = config
        .as_object_mut()
        .ok_or_else(|| RegistryError::Credentials {
            what: format!("{} is not a JSON object; fix or remove it", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, "not an object"),
        })?;
    let auths = object.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    // Drop aliases of the same registry so the new login is the one found.
    if let Some(auths) = auths.as_object_mut() {
        auths.retain(|k, _| normalise_registry(k) != registry);
        auths.insert(
            key,
            json!({"auth": BASE64.encode(format!("{username}:{password}"))}),
        );
    }
    write_private(
        &path,
        // `{:#}` is serde_json's pretty form, and cannot fail.
        format!("{config:#}").as_bytes(),
    )
    .map_err(|source| RegistryError::Credentials {
        what: format!("cannot write {}", path.display()),
        source,
    })?;
    Ok(path.display().to_string())
}

/// The credential helper docker's `config` names for `registry`
/// (`credHelpers`, else `credsStore`), if any.
fn helper_for(config: &Value, registry: &str) -> Option<String> {
    entry_for(&config["credHelpers"], registry)
        .and_then(Value::as_str)
        .or_else(|| config["credsStore"].as_str())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// Removes the login of `registry` from where docker keeps it (as `docker
/// logout` does): the credential helper configured for it, else `auths`
/// in docker's config file (every alias of the registry; the other
/// entries are kept). Returns where it was removed from, or `None` when
/// there was no login to remove.
pub fn logout(registry: &str) -> Result<Option<String>, RegistryError> {
    let registry = normalise_registry(registry);
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let Some(mut config) = read_json(&path)? else {
        return Ok(None);
    };
    if let Some(helper) = helper_for(&config, &registry) {
        let program = format!("docker-credential-{helper}");
        let key = config_key(&registry);
        let output = run_helper(&program, "erase", key.as_bytes()).map_err(|source| {
            RegistryError::Credentials {
                what: format!("cannot run credential helper {program}"),
                source,
            }
        })?;
        // Helpers answer a missing login with an error of their own words.
        return Ok(output.status.success().then_some(program));
    }
    let Some(auths) = config["auths"].as_object_mut() else {
        return Ok(None);
    };
    let before = auths.len();
    auths.retain(|k, _| normalise_registry(k) != registry);
    if auths.len() == before {
        return Ok(None);
    }
    write_private(&path, format!("{config:#}").as_bytes()).map_err(|source| {
        RegistryError::Credentials {
            what: format!("cannot write {}", path.display()),
            source,
        }
    })?;
    Ok(Some(path.display().to_string()))
}

/// Writes a file only its owner can read, atomically, creating its
/// folder (also private) if needed.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut text = bytes.to_vec();
    text.push(b'\n');
    crate::atomic::write(path, &text, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_like_docker() {
        assert_eq!(
            normalise_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalise_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(
            normalise_registry("http://127.0.0.1:5000"),
            "127.0.0.1:5000"
        );
        assert_eq!(normalise_registry("ghcr.io"), "ghcr.io");
        assert_eq!(config_key("docker.io"), "https://index.docker.io/v1/");
    }

    #[test]
    fn auths_keys_match_the_most_specific_namespace_first() {
        let auths = json!({
            "quay.io": 1,
            "quay.io/org": 2,
            "quay.io/org/app/": 3,
            "https://index.docker.io/v1/": 4,
            "http://127.0.0.1:5000/ignored/path": 5,
        });
        let found = |registry: &str, repository: &str| {
            auths_entry_for(&auths, registry, repository).and_then(Value::as_u64)
        };
        assert_eq!(found("quay.io", "org/app"), Some(3));
        assert_eq!(found("quay.io", "org/app/sub"), Some(3));
        assert_eq!(found("quay.io", "org/other"), Some(2));
        assert_eq!(found("quay.io", "else/x"), Some(1));
        assert_eq!(found("docker.io", "library/debian"), Some(4));
        assert_eq!(
            found("127.0.0.1:5000", "a/b"),
            Some(5),
            "a URL names a registry"
        );
        assert_eq!(found("ghcr.io", "quay.io/org"), None);
        assert_eq!(found("quay.i", "o/org"), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::IdentityToken("tok".into())).contains("tok"));
    }

    #[test]
    fn auths_entries_decode() {
        let entry = json!({"auth": BASE64.encode("me:p:w")});
        assert_eq!(
            from_auths_entry(&entry, Path::new("x")).unwrap(),
            Some(Credentials::Basic {
                username: "me".into(),
                password: "p:w".into()
            })
        );
        let entry = json!({"auth": "", "identitytoken": "t"});
        assert_eq!(
            from_auths_entry(&entry, Path::new("x")).unwrap(),
            Some(Credentials::IdentityToken("t".into()))
        );
        assert!(from_auths_entry(&json!({"auth": "!!"}), Path::new("x")).is_err());
    }
}
