//! `@EXPLICIT` specs, as `conda list --explicit --md5` writes them: one
//! package URL per line, with an optional `#<md5>` or `#sha256:<hex>`.

use std::path::Path;
use std::str::FromStr;

use rattler_conda_types::package::{BuildString, CondaArchiveIdentifier, DistArchiveIdentifier};
use rattler_conda_types::{
    ExplicitEnvironmentEntry, PackageArchiveHash, PackageName, PackageRecord, PrefixRecord,
    RepoDataRecord, Subdir, Version,
};
use url::Url;

use super::CondaError;
use super::contained::cut;
use super::input::read_text;

/// A line of an explicit file that cannot be used.
pub(crate) fn bad_line(path: &Path, line: usize, reason: impl Into<String>) -> CondaError {
    CondaError::BadExplicit {
        path: path.to_owned(),
        line,
        // A reason may quote the line, and a line may be megabytes long.
        reason: cut(&reason.into(), 400),
    }
}

/// Reads an explicit file into records: what the spec says about each
/// package (name, version, build, url, channel, hash); the rest comes from
/// the package itself when it is linked. Returns the records and the
/// platform named in a `# platform:` line, if any.
pub fn read_explicit(path: &Path) -> Result<(Vec<PrefixRecord>, Option<Subdir>), CondaError> {
    let text = read_text(path)?;
    let mut platform = None;
    let mut explicit = false;
    let mut records = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(name) = comment.trim().strip_prefix("platform:") {
                let name = name.trim();
                platform =
                    Some(name.parse::<Subdir>().map_err(|_| {
                        bad_line(path, number, format!("unknown platform `{name}`"))
                    })?);
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if line == "@EXPLICIT" {
            explicit = true;
            continue;
        }
        if !explicit {
            return Err(bad_line(
                path,
                number,
                "package lines must follow an `@EXPLICIT` line",
            ));
        }
        records.push(record(line).map_err(|reason| bad_line(path, number, reason))?);
    }
    if !explicit {
        return Err(bad_line(
            path,
            1,
            "not an explicit spec: it has no `@EXPLICIT` line",
        ));
    }
    Ok((records, platform))
}

/// The record one package line stands for.
fn record(line: &str) -> Result<PrefixRecord, String> {
    let url = Url::parse(line).map_err(|e| format!("`{line}` is not a URL ({e})"))?;
    let entry = ExplicitEnvironmentEntry { url: url.clone() };
    let hash = entry
        .package_archive_hash()
        .map_err(|e| format!("bad hash in `{line}` ({e})"))?;
    let mut bare = url.clone();
    bare.set_fragment(None);
    let archive = CondaArchiveIdentifier::try_from_url(&bare)
        .ok_or_else(|| format!("`{line}` does not end in a .conda or .tar.bz2 file name"))?;
    let id = &archive.identifier;
    let name = PackageName::from_str(&id.name).map_err(|e| format!("bad package name ({e})"))?;
    let version = Version::from_str(&id.version).map_err(|e| format!("bad version ({e})"))?;
    let build =
        BuildString::from_str(&id.build_string).map_err(|e| format!("bad build ({e:?})"))?;
    let mut package = PackageRecord::new(name, version, build);
    let mut segments: Vec<&str> = bare
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    segments.pop();
    package.subdir = segments.pop().unwrap_or("noarch").to_owned();
    match hash {
        Some(PackageArchiveHash::Md5(md5)) => package.md5 = Some(md5),
        Some(PackageArchiveHash::Sha256(sha)) => package.sha256 = Some(sha),
        None => {
            return Err(format!(
                "`{line}` has no #md5 or #sha256: hash to identify the package by"
            ));
        }
    }
    let mut channel = bare.clone();
    channel.set_path(&format!("{}/", segments.join("/")));
    let repodata = RepoDataRecord {
        package_record: package,
        identifier: DistArchiveIdentifier::from(archive),
        url: bare,
        channel: Some(channel.to_string()),
    };
    Ok(PrefixRecord::from_repodata_record(repodata, Vec::new()))
}

/// Writes `records` as an `@EXPLICIT` spec with sha256 hashes (md5 where a
/// record has no sha256), so the same environment can be built again
/// without a solve. Written to a temp file and renamed.
pub fn write_explicit(
    path: &Path,
    platform: Subdir,
    records: &[RepoDataRecord],
) -> Result<(), CondaError> {
    let mut text = format!(
        "# This file may be used to create an environment using:\n\
         # $ conda create --name <env> --file <this file>\n\
         # Written by conda-docker {}\n\
         # platform: {platform}\n@EXPLICIT\n",
        env!("CARGO_PKG_VERSION")
    );
    for record in records {
        let package = &record.package_record;
        let hash = match (&package.sha256, &package.md5) {
            (Some(sha), _) => format!("sha256:{}", hex::encode(sha)),
            (None, Some(md5)) => hex::encode(md5),
            (None, None) => String::new(),
        };
        text.push_str(&format!("{}#{hash}\n", record.url));
    }
    crate::atomic::write(path, text.as_bytes(), 0o644).map_err(|source| CondaError::Io {
        path: path.to_owned(),
        source,
    })
}
