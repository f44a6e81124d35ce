//! What is inside an image: the conda environments its layers hold, read
//! back from their `conda-meta/` records after the layers are applied in
//! order (whiteouts and opaque directories included), so that any image
//! with a conda prefix can be listed, locked and compared: ours, or one a
//! Dockerfile made with micromamba or conda.
//!
//! A layer of ours says which records it holds (the
//! `org.conda-docker.records` annotation, described in the README's "What
//! is inside an image"): its records come from there and it is not unpacked, unless
//! [`ReadMode::AllLayers`] is asked for. Every other layer (the base, the
//! environment's own layer, `--add` layers, anything another tool made) is
//! read as before, in order, so its whiteouts and opaque folders still
//! hide what an annotated layer below holds: the result is the one a full
//! read gives, for an image whose annotations tell the truth.
//!
//! Records are the image's data, so untrusted: each is bounded in size,
//! parsed without panicking, and one that does not parse is named in a
//! warning and left out (conda itself would refuse the prefix). An
//! annotation that cannot be used (too large, not its JSON) is named in a
//! warning, and its layer is read instead.

mod diff;
mod lock;

use std::collections::BTreeMap;

use rattler_conda_types::PrefixRecord;

use crate::conda::CondaError;
use crate::conda::layer_records::{LayerRecords, RECORDS_ANNOTATION};
use crate::image::{Image, ImageError, KnownFiles};
use crate::layer::Layer;

pub use diff::{Change, PackageDiff, diff};
pub use lock::{LockFormat, write_lock};

/// The largest `conda-meta/*.json` read: a record lists its package's
/// files, and the biggest packages have tens of thousands.
const MAX_RECORD: u64 = 64 << 20;

/// What can go wrong reading an image's environments.
#[derive(Debug, thiserror::Error)]
pub enum ContentsError {
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A lock file could not be written.
    #[error(transparent)]
    Conda(#[from] CondaError),
    /// The image holds no conda environment.
    #[error("{image} holds no conda environment (no PREFIX/conda-meta/*.json in its layers)")]
    NoEnvironment {
        /// The image, as the user named it.
        image: String,
    },
    /// Several environments and none chosen.
    #[error("{image} holds several conda environments ({prefixes}); choose one with --prefix PATH")]
    WhichEnvironment {
        /// The image.
        image: String,
        /// The prefixes found.
        prefixes: String,
    },
    /// `--prefix` names no environment of the image.
    #[error("{image} has no conda environment at {prefix} (it has {prefixes})")]
    NoSuchPrefix {
        /// The image.
        image: String,
        /// The prefix asked for.
        prefix: String,
        /// The prefixes found.
        prefixes: String,
    },
}

/// One conda environment of an image.
#[derive(Clone, Debug)]
pub struct ImageEnvironment {
    /// Where it lives in the image (`/opt/conda`).
    pub prefix: String,
    /// Its packages, sorted by name.
    pub packages: Vec<ImagePackage>,
}

/// One package of an image's environment.
#[derive(Clone, Debug)]
pub struct ImagePackage {
    /// Its `conda-meta` record.
    pub record: PrefixRecord,
    /// The index of the layer its record comes from, bottom first.
    pub layer: usize,
}

impl ImagePackage {
    /// `name`.
    pub fn name(&self) -> &str {
        self.record
            .repodata_record
            .package_record
            .name
            .as_normalized()
    }

    /// `name-version-build`.
    pub fn dist(&self) -> String {
        let p = &self.record.repodata_record.package_record;
        format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build)
    }
}

/// Where the records of a layer that says which it holds come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// From its records annotation: the layer is not read.
    #[default]
    Annotated,
    /// From its files, as for any layer: the annotations, the image's own
    /// claims, are not believed.
    AllLayers,
}

/// Whether reading `layer`'s records as `mode` says needs its bytes: a
/// layer with a usable records annotation does not, unless every layer
/// is read.
pub fn needs_bytes(layer: &Layer, mode: ReadMode) -> bool {
    let usable = || {
        layer
            .annotations()
            .get(RECORDS_ANNOTATION)
            .is_some_and(|value| LayerRecords::parse(value).is_ok())
    };
    mode == ReadMode::AllLayers || !usable()
}

/// The `conda-meta` files `layer`'s records annotation says it holds;
/// `None` for a layer without one, an error saying why for one that
/// cannot be used.
fn claimed(layer: &Layer) -> Result<Option<KnownFiles>, String> {
    let Some(value) = layer.annotations().get(RECORDS_ANNOTATION) else {
        return Ok(None);
    };
    Ok(Some(LayerRecords::parse(value)?.files()))
}

/// The environments of `image`, sorted by prefix: every folder holding a
/// `conda-meta/` with package records in the merged file system. `mode`
/// says whether layers that say which records they hold are believed.
pub fn environments(image: &Image, mode: ReadMode) -> Result<Vec<ImageEnvironment>, ContentsError> {
    let known: Vec<Option<KnownFiles>> = image
        .layers()
        .iter()
        .map(|layer| match mode {
            ReadMode::AllLayers => None,
            ReadMode::Annotated => claimed(layer).unwrap_or_else(|why| {
                tracing::warn!(
                    "{}: its {RECORDS_ANNOTATION} annotation is not used ({why}); reading the layer instead",
                    layer.describe()
                );
                None
            }),
        })
        .collect();
    let files = image.read_files_knowing(&known, &is_record_path, MAX_RECORD)?;
    let mut by_prefix: BTreeMap<String, Vec<ImagePackage>> = BTreeMap::new();
    for file in files {
        let Some((prefix, _)) = file.path.rsplit_once("/conda-meta/") else {
            continue;
        };
        match serde_json::from_slice::<PrefixRecord>(&file.bytes) {
            Ok(record) => by_prefix
                .entry(format!("/{prefix}"))
                .or_default()
                .push(ImagePackage {
                    record,
                    layer: file.layer,
                }),
            Err(e) => tracing::warn!(
                "leaving out /{}: not a conda package record ({e})",
                file.path
            ),
        }
    }
    Ok(by_prefix
        .into_iter()
        .map(|(prefix, mut packages)| {
            packages.sort_by(|a, b| a.name().cmp(b.name()));
            ImageEnvironment { prefix, packages }
        })
        .collect())
}

/// `PREFIX/conda-meta/NAME.json`, where conda keeps a package's record
/// (not deeper: conda reads only those).
fn is_record_path(path: &str) -> bool {
    let Some((dir, file)) = path.rsplit_once('/') else {
        return false;
    };
    (dir == "conda-meta" || dir.ends_with("/conda-meta"))
        && file.ends_with(".json")
        && file.len() > ".json".len()
}

/// The environment at `prefix` of `environments`, or the only one when
/// `prefix` is `None`; `image` names the image in errors.
pub fn choose<'a>(
    environments: &'a [ImageEnvironment],
    prefix: Option<&str>,
    image: &str,
) -> Result<&'a ImageEnvironment, ContentsError> {
    let prefixes = || {
        environments
            .iter()
            .map(|e| e.prefix.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (environments, prefix) {
        ([], _) => Err(ContentsError::NoEnvironment {
            image: image.to_owned(),
        }),
        (_, Some(prefix)) => {
            let wanted = format!("/{}", prefix.trim_matches('/'));
            environments
                .iter()
                .find(|e| e.prefix == wanted)
                .ok_or_else(|| ContentsError::NoSuchPrefix {
                    image: image.to_owned(),
                    prefix: wanted,
                    prefixes: prefixes(),
                })
        }
        ([only], None) => Ok(only),
        (_, None) => Err(ContentsError::WhichEnvironment {
            image: image.to_owned(),
            prefixes: prefixes(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::is_record_path;

    #[test]
    fn records_are_conda_meta_json_files_only() {
        assert!(is_record_path("opt/conda/conda-meta/x-1-0.json"));
        assert!(is_record_path("conda-meta/x-1-0.json"));
        assert!(!is_record_path("opt/conda/conda-meta/history"));
        assert!(!is_record_path("opt/conda/conda-meta/sbom/x.json"));
        assert!(!is_record_path("opt/conda/conda-meta/.json"));
        assert!(!is_record_path("opt/conda/pkgs/x/info/index.json"));
        assert!(!is_record_path("x.json"));
    }
}
