//! A package layer's identity: everything that decides its bytes, known
//! before any of them is written, so a layer can be looked up (in a cache,
//! in a registry) instead of built.

use rattler::install::PythonInfo;
use rattler_conda_types::{PrefixRecord, Subdir};

use crate::conda::cache::dist_name;
use crate::conda::envfile::LockedWheel;
use crate::conda::relocate::image_origin;
use crate::digest::Digest;
use crate::layer::Compression;
use crate::layer::compress::{GZIP_CHUNK_SIZE, GZIP_IMPLEMENTATION, ZSTD_JOB_SIZE};

/// The version of what a package layer holds and how it is written (the
/// tar entries, their order and metadata, the relocation, the fresh
/// `conda-meta` record, the compressors' output). Bump it in any commit
/// that changes a layer's bytes for the same inputs: one that changes a
/// pin of `tests/it/golden.rs`, a dependency upgrade included.
pub const LAYER_FORMAT: u32 = 3;

/// Everything that decides the bytes of one package layer; two layers with
/// the same identity have the same blob. Its [`LayerIdentity::digest`] is
/// stable across runs, hosts and releases of the same [`LAYER_FORMAT`].
///
/// The image annotations of a layer (the package names) are not part of
/// the blob, and so not of its identity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerIdentity {
    /// [`LAYER_FORMAT`].
    format: u32,
    /// The packages, in the order they are written into the layer.
    packages: Vec<PackageIdentity>,
    /// The conda platform the packages are linked for (`linux-64`).
    platform: String,
    /// The environment's prefix inside the image (`/opt/conda`).
    image_prefix: String,
    /// The environment's python, when the layer holds a noarch python
    /// package (its files go to that python's site-packages).
    python: Option<PythonIdentity>,
    /// How the layer is compressed.
    compression: CompressionIdentity,
    /// The time stamp of every entry, in seconds since 1970.
    epoch: u64,
    /// `[uid, gid]` of the prefix's entries (`--owner`); left out for root,
    /// so the identities of layers owned by root stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<[u32; 2]>,
    /// The PyPI wheels of a wheel layer (whose `packages` is empty), in
    /// the order they are installed; left out of a conda layer's identity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    wheels: Vec<WheelIdentity>,
}

/// One wheel of a layer, as it decides the layer's bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
struct WheelIdentity {
    /// The wheel's file name (name, version, tags).
    file: String,
    /// The wheel's sha256, hex: its files.
    sha256: String,
    /// Whether `REQUESTED` is written.
    requested: bool,
    /// [`crate::pypi::INSTALL_FORMAT`]: how the wheel is installed.
    install_format: u32,
}

/// One package of a layer, as it decides the layer's bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
struct PackageIdentity {
    /// `name-version-build`.
    dist: String,
    /// The archive's file name, written into its `conda-meta` record.
    file: String,
    /// The archive's hashes as its record carries them, `sha256:HEX`
    /// first, then `md5:HEX`: the first names the files, and each is
    /// written into the record, so a hash learnt later (an archive that
    /// turned up) is another layer.
    hashes: Vec<String>,
    /// The URL written into the record (a `file://` channel's host path
    /// left out, see `conda::relocate::image_origin`).
    url: String,
    /// The channel written into the record.
    channel: Option<String>,
}

/// What of the environment's python decides where noarch python files go.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
struct PythonIdentity {
    /// `major.minor`.
    version: String,
    /// The interpreter, relative to the prefix.
    path: String,
    /// site-packages, relative to the prefix.
    site_packages: String,
    /// The folder of entry points, relative to the prefix.
    bin_dir: String,
}

/// The compressor: its algorithm, the implementation (whose output for one
/// input and level may differ from another's), the level and how the
/// stream is cut (gzip members, zstd jobs), so that a layer compressed
/// otherwise is never taken for this one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
struct CompressionIdentity {
    algorithm: &'static str,
    implementation: String,
    level: i64,
    /// The uncompressed bytes of a gzip member or a zstd job (0: none).
    chunk_size: u64,
}

/// What is the same for every package layer of one build.
pub(crate) struct LayerSettings<'a> {
    /// The packages' platform.
    pub platform: Subdir,
    /// The image prefix, in its normal form (`/opt/conda`).
    pub image_prefix: &'a str,
    /// The environment's python.
    pub python: Option<&'a PythonInfo>,
    /// The compression of new layers.
    pub compression: Compression,
    /// The time stamp of new layers.
    pub epoch: u64,
    /// Who owns the prefix's entries (`None`: root).
    pub owner: Option<(u32, u32)>,
}

impl LayerIdentity {
    /// The identity of a layer holding `records`, in that order, of which
    /// some are `noarch: python` by their own `index.json` (a record may
    /// not know); `None` when a package's bytes are not named by a hash (a
    /// record with neither sha256 nor md5).
    pub(crate) fn of(
        records: &[&PrefixRecord],
        noarch_python: bool,
        settings: &LayerSettings,
    ) -> Option<Self> {
        let packages = records
            .iter()
            .map(|record| PackageIdentity::of(record))
            .collect::<Option<Vec<_>>>()?;
        Some(LayerIdentity {
            format: LAYER_FORMAT,
            packages,
            platform: settings.platform.to_string(),
            image_prefix: settings.image_prefix.to_owned(),
            python: settings
                .python
                .filter(|_| noarch_python)
                .map(PythonIdentity::of),
            compression: CompressionIdentity::of(settings.compression),
            epoch: settings.epoch,
            owner: owner(settings),
            wheels: Vec::new(),
        })
    }

    /// The identity of a layer holding the PyPI `wheels`, in that order,
    /// installed for the environment's python (`None` when there is no
    /// python: then nothing can be installed).
    pub(crate) fn of_wheels(wheels: &[&LockedWheel], settings: &LayerSettings) -> Option<Self> {
        Some(LayerIdentity {
            format: LAYER_FORMAT,
            packages: Vec::new(),
            platform: settings.platform.to_string(),
            image_prefix: settings.image_prefix.to_owned(),
            python: Some(PythonIdentity::of(settings.python?)),
            compression: CompressionIdentity::of(settings.compression),
            epoch: settings.epoch,
            owner: owner(settings),
            wheels: wheels
                .iter()
                .map(|wheel| WheelIdentity {
                    file: wheel.file_name.clone(),
                    sha256: hex::encode(wheel.sha256),
                    requested: wheel.requested,
                    install_format: crate::pypi::INSTALL_FORMAT,
                })
                .collect(),
        })
    }

    /// The sha256 of the identity's canonical JSON form (fields in a fixed
    /// order, no white space): the key to look the layer up by.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.canonical())
    }

    fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .expect("an identity is strings and numbers, which always serialise")
    }
}

/// `[uid, gid]` of the prefix's entries, unless root's.
fn owner(settings: &LayerSettings) -> Option<[u32; 2]> {
    settings
        .owner
        .filter(|&owner| owner != (0, 0))
        .map(|(uid, gid)| [uid, gid])
}

impl PackageIdentity {
    fn of(record: &PrefixRecord) -> Option<Self> {
        let r = &record.repodata_record;
        let p = &r.package_record;
        let hashes: Vec<String> = p
            .sha256
            .map(|sha256| format!("sha256:{}", hex::encode(sha256)))
            .into_iter()
            .chain(p.md5.map(|md5| format!("md5:{}", hex::encode(md5))))
            .collect();
        if hashes.is_empty() {
            return None;
        }
        let (url, channel) = image_origin(r);
        Some(PackageIdentity {
            dist: dist_name(r),
            file: r.identifier.to_string(),
            hashes,
            url: url.to_string(),
            channel,
        })
    }
}

impl PythonIdentity {
    fn of(python: &PythonInfo) -> Self {
        let (major, minor) = python.short_version;
        PythonIdentity {
            version: format!("{major}.{minor}"),
            path: python.path.to_string_lossy().into_owned(),
            site_packages: python.site_packages_path.to_string_lossy().into_owned(),
            bin_dir: python.bin_dir.to_string_lossy().into_owned(),
        }
    }
}

impl CompressionIdentity {
    fn of(compression: Compression) -> Self {
        let (algorithm, implementation, level, chunk_size) = match compression {
            Compression::None => ("none", String::new(), 0, 0),
            Compression::Gzip(level) => (
                "gzip",
                GZIP_IMPLEMENTATION.to_owned(),
                i64::from(level),
                GZIP_CHUNK_SIZE as u64,
            ),
            Compression::Zstd(level) => (
                "zstd",
                format!(
                    "libzstd {} multithreaded",
                    zstd::zstd_safe::version_string()
                ),
                i64::from(level),
                u64::from(ZSTD_JOB_SIZE),
            ),
        };
        CompressionIdentity {
            algorithm,
            implementation,
            level,
            chunk_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> LayerIdentity {
        LayerIdentity {
            format: 1,
            packages: vec![PackageIdentity {
                dist: "zlib-1.3.1-hb9d3cd8_2".into(),
                file: "zlib-1.3.1-hb9d3cd8_2.conda".into(),
                hashes: vec![
                    format!("sha256:{}", "ab".repeat(32)),
                    format!("md5:{}", "cd".repeat(16)),
                ],
                url: "https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3.1-hb9d3cd8_2.conda"
                    .into(),
                channel: Some("https://conda.anaconda.org/conda-forge".into()),
            }],
            platform: "linux-64".into(),
            image_prefix: "/opt/conda".into(),
            python: None,
            compression: CompressionIdentity::of(Compression::Gzip(6)),
            epoch: 0,
            owner: None,
            wheels: Vec::new(),
        }
    }

    /// The digest is a cache key across releases: its form must not change
    /// by accident (a new field, a renamed one, another serialiser).
    #[test]
    fn digest_is_pinned() {
        let id = identity();
        assert_eq!(
            String::from_utf8(id.canonical()).unwrap(),
            concat!(
                r#"{"format":1,"packages":[{"dist":"zlib-1.3.1-hb9d3cd8_2","#,
                r#""file":"zlib-1.3.1-hb9d3cd8_2.conda","hashes":["sha256:"#,
                "abababababababababababababababababababababababababababababababab",
                r#"","md5:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"],"url":"https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3.1-hb9d3cd8_2.conda","#,
                r#""channel":"https://conda.anaconda.org/conda-forge"}],"platform":"linux-64","#,
                r#""image_prefix":"/opt/conda","python":null,"#,
                r#""compression":{"algorithm":"gzip","implementation":"libdeflate 1.26","level":6,"chunk_size":1048576},"#,
                r#""epoch":0}"#
            )
        );
        assert_eq!(id.digest(), Digest::of(&id.canonical()));
    }

    /// A record of `name` 1.0 build 0 from conda-forge, with `sha256`.
    fn record(name: &str, sha256: Option<[u8; 32]>) -> PrefixRecord {
        use rattler_conda_types::package::{CondaArchiveIdentifier, DistArchiveIdentifier};
        use rattler_conda_types::{PackageRecord, RepoDataRecord};
        let url: url::Url =
            format!("https://conda.anaconda.org/conda-forge/noarch/{name}-1.0-0.conda")
                .parse()
                .unwrap();
        let archive = CondaArchiveIdentifier::try_from_url(&url).unwrap();
        let mut package = PackageRecord::new(
            name.parse().unwrap(),
            "1.0".parse::<rattler_conda_types::Version>().unwrap(),
            "0".parse().unwrap(),
        );
        package.sha256 = sha256.map(Into::into);
        let repodata = RepoDataRecord {
            package_record: package,
            identifier: DistArchiveIdentifier::from(archive),
            url,
            channel: Some("https://conda.anaconda.org/conda-forge/".into()),
        };
        PrefixRecord::from_repodata_record(repodata, Vec::new())
    }

    /// linux-64, `/opt/conda`, gzip 6, epoch 0, with `python` and `owner`.
    fn settings(python: &PythonInfo, owner: Option<(u32, u32)>) -> LayerSettings<'_> {
        LayerSettings {
            platform: Subdir::Linux64,
            image_prefix: "/opt/conda",
            python: Some(python),
            compression: Compression::Gzip(6),
            epoch: 0,
            owner,
        }
    }

    #[test]
    fn a_layer_is_named_by_its_records_and_the_settings() {
        let python =
            PythonInfo::from_version(&"3.12.0".parse().unwrap(), None, Subdir::Linux64).unwrap();
        let settings = settings(&python, Some((0, 0)));
        let (a, b) = (record("a", Some([1; 32])), record("b", Some([2; 32])));
        let plain = LayerIdentity::of(&[&a], false, &settings).unwrap();
        assert_eq!(
            plain.packages[0].hashes,
            [format!("sha256:{}", "01".repeat(32))]
        );
        assert_eq!(plain.packages[0].file, "a-1.0-0.conda");
        // The channel as the image's record writes it: no trailing slash.
        assert_eq!(
            plain.packages[0].channel.as_deref(),
            Some("https://conda.anaconda.org/conda-forge")
        );
        // Only a layer with a noarch python package depends on the python.
        assert_eq!(plain.python, None);
        let with_python = LayerIdentity::of(&[&a, &b], true, &settings).unwrap();
        assert_eq!(with_python.python.as_ref().unwrap().version, "3.12");
        // The order of the packages is part of the identity.
        assert_ne!(
            LayerIdentity::of(&[&b, &a], true, &settings)
                .unwrap()
                .digest(),
            with_python.digest()
        );
        // Root's ownership leaves the identity as it was; another's is in it.
        assert_eq!(plain.owner, None);
        let owned = LayerSettings {
            owner: Some((1000, 100)),
            ..settings
        };
        let owned = LayerIdentity::of(&[&a], false, &owned).unwrap();
        assert_eq!(owned.owner, Some([1000, 100]));
        assert_ne!(owned.digest(), plain.digest());
        // A package no hash names gives a layer no identity.
        assert_eq!(
            LayerIdentity::of(&[&a, &record("c", None)], false, &settings),
            None
        );
    }

    #[test]
    fn a_wheel_layer_is_named_by_its_wheels_and_the_python() {
        let python =
            PythonInfo::from_version(&"3.11.7".parse().unwrap(), None, Subdir::Linux64).unwrap();
        let settings = settings(&python, None);
        let wheel = LockedWheel {
            name: "demo".into(),
            version: "1.0".into(),
            url: "https://example.com/demo-1.0-py3-none-any.whl"
                .parse()
                .unwrap(),
            file_name: "demo-1.0-py3-none-any.whl".into(),
            sha256: [3; 32],
            requested: false,
        };
        let id = LayerIdentity::of_wheels(&[&wheel], &settings).unwrap();
        assert_eq!(id.python.as_ref().unwrap().version, "3.11");
        let requested = LockedWheel {
            requested: true,
            ..wheel.clone()
        };
        let other = LockedWheel {
            sha256: [4; 32],
            ..wheel.clone()
        };
        for changed in [requested, other] {
            let changed = LayerIdentity::of_wheels(&[&changed], &settings).unwrap();
            assert_ne!(changed.digest(), id.digest());
        }
        let no_python = LayerSettings {
            python: None,
            ..settings
        };
        assert_eq!(LayerIdentity::of_wheels(&[&wheel], &no_python), None);
    }

    #[test]
    fn every_part_changes_the_digest() {
        let base = identity().digest();
        let mut changed = Vec::new();
        let mut id = identity();
        id.epoch = 1;
        changed.push(id);
        let mut id = identity();
        id.image_prefix = "/opt/env".into();
        changed.push(id);
        let mut id = identity();
        id.compression = CompressionIdentity::of(Compression::Gzip(9));
        changed.push(id);
        let mut id = identity();
        id.packages[0].url = "https://example.com/x.conda".into();
        changed.push(id);
        let mut id = identity();
        id.format = 2;
        changed.push(id);
        let mut id = identity();
        id.packages[0].hashes.pop();
        changed.push(id);
        let mut id = identity();
        id.owner = Some([1000, 1000]);
        changed.push(id);
        for id in changed {
            assert_ne!(id.digest(), base, "{id:?}");
        }
    }
}
