//! Two images compared: the packages of their environments (added,
//! removed, changed) and how many bytes of layers they share.

use std::collections::{BTreeMap, BTreeSet};

use crate::image::Image;

use super::ImageEnvironment;

/// What differs between two images' environments.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackageDiff {
    /// Per package, keyed by `PREFIX name`: what changed.
    pub changes: Vec<Change>,
    /// Bytes of layers (as stored) both images have.
    pub shared_bytes: u64,
    /// Layers both images have.
    pub shared_layers: usize,
    /// Bytes of layers only the second image has: what pulling it costs
    /// a machine that has the first.
    pub new_bytes: u64,
}

/// One package that differs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Change {
    /// Only in the second image.
    Added {
        /// Its environment.
        prefix: String,
        /// `name-version-build`.
        dist: String,
    },
    /// Only in the first.
    Removed {
        /// Its environment.
        prefix: String,
        /// `name-version-build`.
        dist: String,
    },
    /// In both, as another build or from another archive.
    Changed {
        /// Its environment.
        prefix: String,
        /// `name-version-build` in the first.
        from: String,
        /// `name-version-build` in the second.
        to: String,
    },
}

/// The packages and layers that differ from `a` (with `a_envs`) to `b`.
pub fn diff(
    a: &Image,
    a_envs: &[ImageEnvironment],
    b: &Image,
    b_envs: &[ImageEnvironment],
) -> PackageDiff {
    let index = |envs: &[ImageEnvironment]| {
        let mut map = BTreeMap::new();
        for env in envs {
            for package in &env.packages {
                let hash = package
                    .record
                    .repodata_record
                    .package_record
                    .sha256
                    .map(hex::encode);
                map.insert(
                    (env.prefix.clone(), package.name().to_owned()),
                    (package.dist(), hash),
                );
            }
        }
        map
    };
    let (before, after) = (index(a_envs), index(b_envs));
    let keys: BTreeSet<_> = before.keys().chain(after.keys()).cloned().collect();
    let changes = keys
        .into_iter()
        .filter_map(|(prefix, name)| {
            let key = (prefix.clone(), name);
            match (before.get(&key), after.get(&key)) {
                (None, Some((dist, _))) => Some(Change::Added {
                    prefix,
                    dist: dist.clone(),
                }),
                (Some((dist, _)), None) => Some(Change::Removed {
                    prefix,
                    dist: dist.clone(),
                }),
                (Some(from), Some(to)) if from != to => Some(Change::Changed {
                    prefix,
                    from: from.0.clone(),
                    to: to.0.clone(),
                }),
                _ => None,
            }
        })
        .collect();
    let in_a: BTreeSet<_> = a.layers().iter().map(|l| l.digest()).collect();
    let mut seen = BTreeSet::new();
    let mut result = PackageDiff {
        changes,
        ..PackageDiff::default()
    };
    for layer in b.layers() {
        if !seen.insert(layer.digest()) {
            continue;
        }
        if in_a.contains(&layer.digest()) {
            result.shared_bytes += layer.size();
            result.shared_layers += 1;
        } else {
            result.new_bytes += layer.size();
        }
    }
    result
}
