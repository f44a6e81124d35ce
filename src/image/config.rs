//! The image configuration (the blob whose digest is the image id).
//!
//! Kept as JSON rather than `oci_spec::image::ImageConfiguration` because
//! base images carry fields that type does not know (Docker's
//! `Healthcheck`, `Shell`, `OnBuild`, ...): dropping them would silently
//! change the base. An untouched config keeps its exact bytes, so reading
//! and rewriting an image keeps its id.

use serde_json::{Map, Value, json};

use crate::digest::{DiffId, Digest};

/// A config blob that is not a usable image configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, or not an object.
    #[error("the image config is not a JSON object")]
    NotJson(#[source] serde_json::Error),
    /// `rootfs.diff_ids` missing or malformed.
    #[error("the image config has no valid `rootfs.diff_ids` list")]
    NoDiffIds,
    /// An `Env` entry without `=`.
    #[error("environment entry `{0}` is not of the form NAME=VALUE")]
    BadEnv(String),
}

/// An image configuration.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    json: Map<String, Value>,
    /// The bytes it was read from, until the first edit.
    raw: Option<Vec<u8>>,
}

/// Formats a Unix time the way image configs write `created`.
pub fn rfc3339(epoch: u64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl ImageConfig {
    /// The config of an empty image for `os`/`architecture`.
    pub fn scratch(os: &str, architecture: &str, epoch: u64) -> Self {
        let json = json!({
            "architecture": architecture,
            "os": os,
            "created": rfc3339(epoch),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        ImageConfig {
            json: json.as_object().cloned().unwrap_or_default(),
            raw: None,
        }
    }

    /// Parses config bytes, keeping them for an unchanged rewrite.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let json: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(ConfigError::NotJson)?;
        let config = ImageConfig {
            json,
            raw: Some(bytes.to_vec()),
        };
        config.diff_ids()?;
        Ok(config)
    }

    /// Builds a config from a JSON object (e.g. converted from another
    /// format); serialised compactly, keys in their order, when written.
    pub fn from_json(json: Map<String, Value>) -> Result<Self, ConfigError> {
        let config = ImageConfig { json, raw: None };
        config.diff_ids()?;
        Ok(config)
    }

    /// The blob bytes: the original ones if nothing changed, otherwise
    /// compact JSON with the keys in the order they were set (serde_json's
    /// `preserve_order` is on), so the same edits give the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.raw {
            Some(raw) => raw.clone(),
            // A JSON value's Display is its compact serialisation, and
            // cannot fail.
            None => Value::Object(self.json.clone()).to_string().into_bytes(),
        }
    }

    /// The config digest, which is the image id.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    /// The whole config as JSON, to read fields this type has no accessor for.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.json
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }

    /// `architecture` (e.g. `amd64`).
    pub fn architecture(&self) -> Option<&str> {
        self.str_field("architecture")
    }

    /// `os` (e.g. `linux`).
    pub fn os(&self) -> Option<&str> {
        self.str_field("os")
    }

    /// `variant` (e.g. `v8` for arm64).
    pub fn variant(&self) -> Option<&str> {
        self.str_field("variant")
    }

    /// The layers' diff ids, bottom first.
    pub fn diff_ids(&self) -> Result<Vec<DiffId>, ConfigError> {
        self.json
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .ok_or(ConfigError::NoDiffIds)?
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .map(DiffId)
                    .ok_or(ConfigError::NoDiffIds)
            })
            .collect()
    }

    fn edit(&mut self) -> &mut Map<String, Value> {
        self.raw = None;
        &mut self.json
    }

    /// The container settings object (`config`), created if missing.
    fn container(&mut self) -> &mut Map<String, Value> {
        let value = self
            .edit()
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if !value.is_object() {
            *value = Value::Object(Map::new());
        }
        value.as_object_mut().expect("just made an object")
    }

    fn container_value(&self, key: &str) -> Option<&Value> {
        self.json.get("config").and_then(|c| c.get(key))
    }

    /// Records a new top layer and its history entry.
    pub(crate) fn push_layer(&mut self, diff_id: DiffId, epoch: u64, created_by: &str) {
        let created = rfc3339(epoch);
        let json = self.edit();
        json.insert("created".into(), Value::String(created.clone()));
        if let Some(ids) = json
            .get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
            .and_then(Value::as_array_mut)
        {
            ids.push(Value::String(diff_id.to_string()));
        }
        let history = json
            .entry("history")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(history) = history.as_array_mut() {
            history.push(json!({"created": created, "created_by": created_by}));
        }
    }

    /// Forgets the top layer and, when the history matches the layers, the
    /// history entries that belong to it.
    pub(crate) fn pop_layer(&mut self, epoch: u64) {
        let layers_before = self.diff_ids().map(|ids| ids.len()).unwrap_or(0);
        let json = self.edit();
        json.insert("created".into(), Value::String(rfc3339(epoch)));
        if let Some(ids) = json
            .get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
            .and_then(Value::as_array_mut)
        {
            ids.pop();
        }
        let Some(history) = json.get_mut("history").and_then(Value::as_array_mut) else {
            return;
        };
        let is_empty_layer =
            |h: &Value| h.get("empty_layer").and_then(Value::as_bool) == Some(true);
        if history.iter().filter(|h| !is_empty_layer(h)).count() != layers_before {
            return;
        }
        while let Some(last) = history.pop() {
            if !is_empty_layer(&last) {
                break;
            }
        }
    }

    /// Sets `os`, `architecture` and (if given) `variant`.
    pub fn set_platform(&mut self, os: &str, architecture: &str, variant: Option<&str>) {
        let json = self.edit();
        json.insert("os".into(), os.into());
        json.insert("architecture".into(), architecture.into());
        match variant {
            Some(v) => json.insert("variant".into(), v.into()),
            None => json.remove("variant"),
        };
    }

    /// `Env` entries (`NAME=VALUE`).
    pub fn env(&self) -> Vec<String> {
        string_list(self.container_value("Env"))
    }

    /// Appends an `Env` entry as given, like appending to `Env` by hand.
    pub fn append_env(&mut self, entry: &str) -> Result<(), ConfigError> {
        if !entry.contains('=') {
            return Err(ConfigError::BadEnv(entry.to_owned()));
        }
        self.list_push("Env", entry);
        Ok(())
    }

    /// Sets variable `name` to `value`, replacing an existing entry in place
    /// (as Docker's `ENV` does) or appending.
    pub fn set_env(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        let prefix = format!("{name}=");
        let mut env = self.env();
        match env.iter_mut().find(|e| e.starts_with(&prefix)) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
        self.container().insert("Env".into(), json!(env));
    }

    /// The value of variable `name`, if set.
    pub fn env_var(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.env()
            .into_iter()
            .find_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
    }

    fn list_push(&mut self, key: &str, item: &str) {
        let mut list = string_list(self.container_value(key));
        list.push(item.to_owned());
        self.container().insert(key.into(), json!(list));
    }

    fn set_or_remove(&mut self, key: &str, value: Option<Value>) {
        match value {
            Some(v) => self.container().insert(key.into(), v),
            None => self.container().remove(key),
        };
    }

    /// `Entrypoint`; `None` removes it.
    pub fn set_entrypoint(&mut self, args: Option<Vec<String>>) {
        self.set_or_remove("Entrypoint", args.map(|a| json!(a)));
    }

    /// `Cmd`; `None` removes it.
    pub fn set_cmd(&mut self, args: Option<Vec<String>>) {
        self.set_or_remove("Cmd", args.map(|a| json!(a)));
    }

    /// `Entrypoint` as set.
    pub fn entrypoint(&self) -> Vec<String> {
        string_list(self.container_value("Entrypoint"))
    }

    /// `Cmd` as set.
    pub fn cmd(&self) -> Vec<String> {
        string_list(self.container_value("Cmd"))
    }

    /// `WorkingDir`.
    pub fn set_working_dir(&mut self, dir: &str) {
        self.set_or_remove("WorkingDir", Some(dir.into()));
    }

    /// `User` (`name`, `uid`, `uid:gid`, ...).
    pub fn set_user(&mut self, user: &str) {
        self.set_or_remove("User", Some(user.into()));
    }

    /// `StopSignal` (e.g. `SIGTERM`).
    pub fn set_stop_signal(&mut self, signal: &str) {
        self.set_or_remove("StopSignal", Some(signal.into()));
    }

    /// Adds or replaces a label.
    pub fn set_label(&mut self, key: &str, value: &str) {
        self.object_insert("Labels", key, value.into());
    }

    /// Labels as set.
    pub fn labels(&self) -> Map<String, Value> {
        self.container_value("Labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Exposes a port, written `80`, `80/tcp` or `53/udp` (tcp if omitted).
    pub fn add_exposed_port(&mut self, port: &str) {
        let port = if port.contains('/') {
            port.to_owned()
        } else {
            format!("{port}/tcp")
        };
        self.object_insert("ExposedPorts", &port, json!({}));
    }

    /// Declares a volume mount point.
    pub fn add_volume(&mut self, path: &str) {
        self.object_insert("Volumes", path, json!({}));
    }

    fn object_insert(&mut self, key: &str, item: &str, value: Value) {
        let container = self.container();
        let object = container
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !object.is_object() {
            *object = Value::Object(Map::new());
        }
        if let Some(object) = object.as_object_mut() {
            object.insert(item.to_owned(), value);
        }
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_config_keeps_its_bytes() {
        let raw = br#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]},"config":{"Healthcheck":{"Test":["NONE"]}}}"#;
        let mut config = ImageConfig::parse(raw).unwrap();
        assert_eq!(config.to_bytes(), raw);
        config.set_env("A", "1");
        let edited = String::from_utf8(config.to_bytes()).unwrap();
        assert!(edited.contains("Healthcheck"), "{edited}");
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut config = ImageConfig::scratch("linux", "amd64", 0);
        config.append_env("PATH=/bin").unwrap();
        config.append_env("FOO=1").unwrap();
        config.set_env("PATH", "/opt/conda/bin:/bin");
        config.set_env("BAR", "2");
        assert_eq!(config.env(), ["PATH=/opt/conda/bin:/bin", "FOO=1", "BAR=2"]);
        assert!(config.append_env("NOEQUALS").is_err());
    }

    #[test]
    fn pop_layer_drops_its_history() {
        let mut config = ImageConfig::scratch("linux", "amd64", 0);
        let id = DiffId(Digest::of(b"x"));
        config.push_layer(id, 0, "one");
        config.push_layer(id, 0, "two");
        config.pop_layer(0);
        let history = config.as_json()["history"].as_array().unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0]["created_by"], "one");
        assert_eq!(config.diff_ids().unwrap().len(), 1);
    }

    #[test]
    fn created_is_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
