//! What an SBOM lists: the image, its base and its packages, taken from
//! the records and wheels the build installs.

use rattler_conda_types::RepoDataRecord;
use url::Url;

use super::purl::{purl, pypi_name};
use crate::conda::envfile::LockedWheel;
use crate::conda::relocate::image_origin;

/// Everything an SBOM says of one image.
#[derive(Clone, Debug)]
pub struct Inventory {
    /// What the documents are named: the environment (`conda environment
    /// /opt/conda`), not the image, whose name does not change its bytes.
    pub name: String,
    /// When it was made: the build's epoch, RFC 3339.
    pub created: String,
    /// The image it was built on, unless `scratch`.
    pub base: Option<BaseImage>,
    /// Its conda packages, then its PyPI wheels, each sorted by name.
    pub packages: Vec<Package>,
}

/// The base image, by reference and manifest digest.
#[derive(Clone, Debug)]
pub struct BaseImage {
    /// The reference it was pulled by (`docker.io/library/debian:12`);
    /// `None` for a base read from a file.
    pub reference: Option<String>,
    /// Its manifest digest (`sha256:...`), when known.
    pub digest: Option<String>,
}

/// Where a package comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ecosystem {
    /// A conda package.
    Conda,
    /// A PyPI wheel.
    Pypi,
}

/// One package of the image.
#[derive(Clone, Debug)]
pub struct Package {
    /// Conda or PyPI.
    pub ecosystem: Ecosystem,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The conda build string (empty for a wheel).
    pub build: String,
    /// The download URL, without credentials.
    pub url: Option<String>,
    /// The archive's sha256, hex.
    pub sha256: Option<String>,
    /// The archive's md5, hex.
    pub md5: Option<String>,
    /// The license string as the package states it.
    pub license: Option<String>,
    /// The names of the image's packages it depends on.
    pub depends: Vec<String>,
    /// Its package URL.
    pub purl: String,
}

impl Inventory {
    /// The inventory of an image `name` made at `created` on `base`, with
    /// the conda packages of `records` (as the image's `conda-meta/`
    /// records them) and the PyPI `wheels`.
    pub fn new(
        name: String,
        created: String,
        base: Option<BaseImage>,
        records: &[RepoDataRecord],
        wheels: &[LockedWheel],
    ) -> Self {
        let present: std::collections::BTreeSet<&str> = records
            .iter()
            .map(|r| r.package_record.name.as_normalized())
            .collect();
        let mut packages: Vec<Package> = records
            .iter()
            .map(|record| conda_package(record, &present))
            .collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        let mut pypi: Vec<Package> = wheels.iter().map(pypi_package).collect();
        pypi.sort_by(|a, b| a.name.cmp(&b.name));
        packages.extend(pypi);
        Inventory {
            name,
            created,
            base,
            packages,
        }
    }
}

fn conda_package(r: &RepoDataRecord, present: &std::collections::BTreeSet<&str>) -> Package {
    let p = &r.package_record;
    let file = r.identifier.to_string();
    let kind = if file.ends_with(".conda") {
        "conda"
    } else if file.ends_with(".tar.bz2") {
        "tar.bz2"
    } else {
        ""
    };
    // Named as the image's own records name it: a `file://` channel by its
    // folder's name, never a host path.
    let (url, channel) = image_origin(r);
    let channel = channel_qualifier(channel.as_deref());
    let name = p.name.as_normalized().to_owned();
    let version = p.version.to_string();
    let mut depends: Vec<String> = p
        .depends
        .iter()
        .map(|spec| spec_name(spec).to_owned())
        .filter(|dep| *dep != name && present.contains(dep.as_str()))
        .collect();
    depends.sort();
    depends.dedup();
    Package {
        ecosystem: Ecosystem::Conda,
        purl: purl(
            "conda",
            &name,
            &version,
            &[
                ("build", p.build.as_str()),
                ("channel", &channel),
                ("subdir", &p.subdir),
                ("type", kind),
            ],
        ),
        name,
        version,
        build: p.build.to_string(),
        url: Some(without_credentials(url)),
        sha256: p.sha256.map(hex::encode),
        md5: p.md5.map(hex::encode),
        license: p.license.clone().filter(|l| !l.trim().is_empty()),
        depends,
    }
}

fn pypi_package(wheel: &LockedWheel) -> Package {
    let name = pypi_name(&wheel.name);
    Package {
        ecosystem: Ecosystem::Pypi,
        purl: purl("pypi", &name, &wheel.version, &[]),
        name,
        version: wheel.version.clone(),
        build: String::new(),
        url: Some(without_credentials(wheel.url.clone())),
        sha256: Some(hex::encode(wheel.sha256)),
        md5: None,
        license: None,
        depends: Vec::new(),
    }
}

/// The package name a match spec names (`python >=3.8`, `conda-forge::numpy`,
/// `libgcc-ng>=12`, `pkg[version='>=1']`).
fn spec_name(spec: &str) -> &str {
    let spec = spec.trim();
    let spec = spec.rsplit_once("::").map_or(spec, |(_, name)| name);
    let end = spec
        .find(|c: char| c.is_whitespace() || "=<>!~[;".contains(c))
        .unwrap_or(spec.len());
    &spec[..end]
}

/// The purl `channel` qualifier: the channel's name for an anaconda.org
/// channel (`conda-forge`), else the channel's URL without credentials,
/// token or subdir (`https://example.com/channel`); a recorded bare name
/// as it is.
fn channel_qualifier(channel: Option<&str>) -> String {
    let Some(channel) = channel.map(|c| c.trim_end_matches('/')) else {
        return String::new();
    };
    let Ok(url) = Url::parse(channel) else {
        return channel.to_owned();
    };
    let mut url = Url::parse(&without_credentials(url)).expect("a URL stays one");
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let mut segments = segments;
    if segments
        .last()
        .is_some_and(|last| last.parse::<rattler_conda_types::Subdir>().is_ok())
    {
        segments.pop();
    }
    let anaconda = matches!(
        url.host_str(),
        Some("conda.anaconda.org" | "repo.anaconda.com" | "anaconda.org")
    );
    if anaconda && let Some(last) = segments.last() {
        return last.clone();
    }
    url.set_path(&segments.join("/"));
    url.to_string().trim_end_matches('/').to_owned()
}

/// `url` without a user, password, anaconda.org `/t/<token>` segment,
/// query or fragment: what may be written into an image.
fn without_credentials(mut url: Url) -> String {
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_owned).collect())
        .unwrap_or_default();
    if segments.first().is_some_and(|s| s == "t") && segments.len() > 2 {
        url.set_path(&segments[2..].join("/"));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_specs_name_their_package() {
        for (spec, name) in [
            ("python >=3.8", "python"),
            ("libgcc-ng>=12", "libgcc-ng"),
            ("conda-forge::numpy 1.26.*", "numpy"),
            ("pkg[version='>=1']", "pkg"),
            ("zlib", "zlib"),
        ] {
            assert_eq!(spec_name(spec), name);
        }
    }

    #[test]
    fn channels_keep_no_credentials_nor_subdir() {
        for (channel, want) in [
            ("https://conda.anaconda.org/conda-forge", "conda-forge"),
            (
                "https://conda.anaconda.org/conda-forge/linux-64/",
                "conda-forge",
            ),
            (
                "https://user:secret@example.com/t/tk-123/chan/noarch?x=1",
                "https://example.com/chan",
            ),
            ("bioconda", "bioconda"),
        ] {
            assert_eq!(channel_qualifier(Some(channel)), want, "{channel}");
        }
        assert_eq!(channel_qualifier(None), "");
    }
}
