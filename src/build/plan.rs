//! Stage 3, *the layer plan*: the packages grouped into layers, dependencies
//! first and within the layer budget, each layer with its identity, all
//! before any byte of a layer is written.

use std::collections::HashMap;
use std::path::PathBuf;

use rattler::install::PythonInfo;
use rattler_conda_types::{PrefixRecord, Subdir};

use crate::conda::cache::dist_name;
use crate::conda::order::{dependency_order, fit_budget};

use super::environment::Subject;
use super::identity::{LayerIdentity, LayerSettings};
use super::locate::{Found, Located};
use super::{BuildError, BuildOptions};

/// The package layers to build, and what they are built with.
pub(crate) struct LayerPlan {
    /// The layers, bottom first.
    pub layers: Vec<PlannedLayer>,
    /// The packages' platform.
    pub platform: Subdir,
    /// The image prefix, in its normal form (`/opt/conda`).
    pub image_prefix: String,
    /// The image prefix as a layer names it (`opt/conda`).
    pub prefix_arc: String,
    /// The environment's python, for noarch python packages.
    pub python: Option<PythonInfo>,
}

/// One package layer: conda packages, or PyPI wheels.
pub(crate) struct PlannedLayer {
    /// The packages (indices into the environment's records), in the order
    /// they are written.
    pub packages: Vec<usize>,
    /// The wheels (indices into the environment's wheels), in the order
    /// they are installed; a layer holds packages or wheels, not both.
    pub wheels: Vec<usize>,
    /// What decides the layer's bytes; `None` when something the identity
    /// cannot name does: a package rebuilt from the host's prefix, or one
    /// whose record has no hash.
    pub identity: Option<LayerIdentity>,
}

/// Plans the package layers of `subject`, whose packages are `located`.
/// The base's layers, the environment's own layer and the `--add` layers
/// count against `--max-layers`.
pub(crate) fn plan(
    subject: &Subject,
    located: &Located,
    options: &BuildOptions,
    prefix_arc: &str,
) -> Result<LayerPlan, BuildError> {
    let records = &subject.env.records;
    warn_post_link(records);
    let extra = 1 + options.add.len();
    let base_layers = subject.base.layers().len();
    let budget = options
        .max_layers
        .checked_sub(base_layers + extra)
        .filter(|b| *b > 0)
        .ok_or(BuildError::NoLayerBudget {
            max: options.max_layers,
            base: base_layers,
            extra,
        })?;
    let wheels = &subject.env.wheels;
    let wheel_layers = match (wheels.len(), options.single_layer) {
        (0, _) => 0,
        (_, true) => 1,
        (n, false) => n.min((budget / 2).max(1)),
    };
    let budget =
        budget
            .checked_sub(wheel_layers)
            .filter(|b| *b > 0)
            .ok_or(BuildError::NoLayerBudget {
                max: options.max_layers,
                base: base_layers,
                extra: extra + wheel_layers,
            })?;
    let groups = groups(records, options.single_layer, budget);
    let settings = LayerSettings {
        platform: subject.platform.subdir,
        image_prefix: &options.image_prefix,
        python: subject.python.as_ref(),
        compression: subject.base.compression(),
        epoch: subject.base.epoch(),
        owner: options.owner,
    };
    let mut layers: Vec<PlannedLayer> = groups
        .into_iter()
        .map(|packages| {
            let identity = identity(&packages, records, located, &settings);
            PlannedLayer {
                packages,
                wheels: Vec::new(),
                identity,
            }
        })
        .collect();
    layers.extend(wheel_groups(wheels.len(), wheel_layers).map(|group| {
        let locked: Vec<_> = group.iter().map(|&i| &wheels[i]).collect();
        PlannedLayer {
            packages: Vec::new(),
            identity: LayerIdentity::of_wheels(&locked, &settings),
            wheels: group,
        }
    }));
    Ok(LayerPlan {
        layers,
        platform: subject.platform.subdir,
        image_prefix: options.image_prefix.clone(),
        prefix_arc: prefix_arc.to_owned(),
        python: subject.python.clone(),
    })
}

/// The wheels `0..count` (in name order) in `layers` groups of
/// consecutive wheels, as even as can be: one wheel each when the budget
/// allows, so changing one wheel rebuilds one layer.
fn wheel_groups(count: usize, layers: usize) -> impl Iterator<Item = Vec<usize>> {
    (0..layers).map(move |layer| (layer * count / layers..(layer + 1) * count / layers).collect())
}

/// A post-link script is not run: say so, since what it would do at install
/// time is missing from the image.
fn warn_post_link(records: &[PrefixRecord]) {
    for record in records {
        let name = record.repodata_record.package_record.name.as_normalized();
        let script = PathBuf::from(format!("bin/.{name}-post-link.sh"));
        if record.files.contains(&script) {
            tracing::warn!(
                "not running the post-link script of {}: what it does at install time is not in the image",
                dist_name(&record.repodata_record)
            );
        }
    }
}

/// The packages in layers: dependencies first, one layer per package (or
/// group of packages that depend on each other), then merged down to
/// `budget` layers; or all in one.
fn groups(records: &[PrefixRecord], single_layer: bool, budget: usize) -> Vec<Vec<usize>> {
    let names: Vec<&str> = records
        .iter()
        .map(|r| r.repodata_record.package_record.name.as_normalized())
        .collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let depends: Vec<Vec<usize>> = records
        .iter()
        .map(|r| {
            depends_names(r)
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let ordered = dependency_order(&names, &depends);
    if single_layer {
        return vec![ordered.concat()];
    }
    let size = |i: usize| records[i].repodata_record.package_record.size.unwrap_or(0);
    fit_budget(ordered, size, budget)
}

/// The package names a record depends on, as conda's match spec grammar
/// reads them (a spec that does not parse names nothing).
fn depends_names(record: &PrefixRecord) -> Vec<String> {
    record
        .repodata_record
        .package_record
        .depends
        .iter()
        .filter_map(|spec| {
            let spec = rattler_conda_types::MatchSpec::from_str(
                spec,
                rattler_conda_types::ParseStrictness::Lenient,
            )
            .ok()?;
            Some(spec.name.as_exact()?.as_normalized().to_owned())
        })
        .collect()
}

/// The identity of the layer of `packages`, unless one of them was rebuilt
/// from the prefix: its bytes are the host's files, which no hash names.
fn identity(
    packages: &[usize],
    records: &[PrefixRecord],
    located: &Located,
    settings: &LayerSettings,
) -> Option<LayerIdentity> {
    if packages.iter().any(|&i| located.found[i] == Found::Prefix) {
        return None;
    }
    let noarch_python = packages.iter().any(|&i| located.noarch_python[i]);
    let records: Vec<&PrefixRecord> = packages.iter().map(|&i| &records[i]).collect();
    LayerIdentity::of(&records, noarch_python, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheels_fill_their_layers_evenly() {
        let groups: Vec<Vec<usize>> = wheel_groups(5, 2).collect();
        assert_eq!(groups, [vec![0, 1], vec![2, 3, 4]]);
        let groups: Vec<Vec<usize>> = wheel_groups(3, 3).collect();
        assert_eq!(groups, [vec![0], vec![1], vec![2]]);
        assert_eq!(wheel_groups(0, 0).count(), 0);
    }
}
