//! An image's environment written back as a file to build or create it
//! from: an `@EXPLICIT` spec (what `conda create --file` and `build
//! --file` read, every package pinned by URL and hash) or an
//! environment.yml (pinned by `channel::name=version=build`).

use std::path::Path;

use rattler_conda_types::{RepoDataRecord, Subdir};

use crate::conda::CondaError;
use crate::conda::explicit::write_explicit;

use super::ImageEnvironment;

/// The kind of file `lock` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LockFormat {
    /// `@EXPLICIT` with sha256 hashes.
    Explicit,
    /// An environment.yml with exact pins.
    Environment,
}

/// Writes `env` to `path` as `format` says (a temp file, then renamed).
pub fn write_lock(
    env: &ImageEnvironment,
    path: &Path,
    format: LockFormat,
) -> Result<(), CondaError> {
    let records: Vec<RepoDataRecord> = env
        .packages
        .iter()
        .map(|p| p.record.repodata_record.clone())
        .collect();
    match format {
        LockFormat::Explicit => write_explicit(path, platform(&records), &records),
        LockFormat::Environment => {
            crate::atomic::write(path, environment_yml(env, &records).as_bytes(), 0o644).map_err(
                |source| CondaError::Io {
                    path: path.to_owned(),
                    source,
                },
            )
        }
    }
}

/// The platform of the records: the first that is not noarch (linux-64
/// when all are).
fn platform(records: &[RepoDataRecord]) -> Subdir {
    records
        .iter()
        .filter_map(|r| r.package_record.subdir.parse::<Subdir>().ok())
        .find(|s| *s != Subdir::NoArch)
        .unwrap_or(Subdir::Linux64)
}

/// `name`, `channels` (in the order first used) and every package pinned
/// to its channel, version and build.
fn environment_yml(env: &ImageEnvironment, records: &[RepoDataRecord]) -> String {
    let channel = |r: &RepoDataRecord| {
        r.channel
            .as_deref()
            .map(|c| c.trim_end_matches('/').to_owned())
    };
    let mut channels: Vec<String> = Vec::new();
    for c in records.iter().filter_map(channel) {
        if !channels.contains(&c) {
            channels.push(c);
        }
    }
    let name = env.prefix.rsplit('/').next().unwrap_or("env");
    let mut text = format!(
        "# Written by conda-docker {} from the image's {}\nname: {}\nchannels:\n",
        env!("CARGO_PKG_VERSION"),
        env.prefix,
        yaml_string(name)
    );
    for c in &channels {
        text.push_str(&format!("  - {}\n", yaml_string(c)));
    }
    text.push_str("dependencies:\n");
    for r in records {
        let p = &r.package_record;
        let pin = format!("{}={}={}", p.name.as_normalized(), p.version, p.build);
        let spec = match channel(r) {
            Some(c) => format!("{c}::{pin}"),
            None => pin,
        };
        text.push_str(&format!("  - {}\n", yaml_string(&spec)));
    }
    text
}

/// `text` as a YAML string: quoted (JSON's quoting is YAML's), so nothing
/// from the image's records can change the file's structure.
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}
