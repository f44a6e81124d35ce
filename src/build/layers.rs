//! Stage 4, *the layers*: each planned layer's packages relocated to the
//! image prefix and written as one deterministic tar, compressed; layers
//! are built in parallel.

use std::path::{Path, PathBuf};

use rattler_conda_types::PrefixRecord;

use crate::conda::cache::dist_folder;
use crate::conda::envfile::LockedWheel;
use crate::conda::layer_records::{
    LayerRecord, LayerRecords, MAX_RECORDS_ANNOTATION, RECORDS_ANNOTATION,
};
use crate::conda::relocate::{Target, image_record, relocate};
use crate::image::Image;
use crate::layer::Layer;
use crate::layer::{LayerCache, LayerFactory};
use crate::parallel::in_parallel;
use crate::pypi::{self, Layout};
use crate::registry::SharedLayers;

use super::identity::LayerIdentity;
use super::plan::{LayerPlan, PlannedLayer};

/// The layer annotation naming the packages a layer holds.
const PACKAGES_ANNOTATION: &str = "org.conda-docker.packages";

/// The most bytes of records annotations one image's layers carry, so
/// that its manifest stays well below the 4 MiB registries accept; the
/// layers above are read when the image is read back.
const MAX_RECORDS_ANNOTATIONS: usize = 2 << 20;

use super::{BuildError, LayerReport, LayerSource, Reporter};

/// The PyPI wheels of the environment and their fetched files, in the
/// same order.
#[derive(Clone, Copy)]
pub(crate) struct Wheels<'a> {
    /// What the lock says of each.
    pub locked: &'a [LockedWheel],
    /// Each one's file in our cache.
    pub files: &'a [PathBuf],
}

/// The package layers of `plan`, in its order, each with its report.
/// `records` and `package_dirs` are the environment's, in the same order,
/// as are `wheels`;
/// `image` (the base) gives the layers their compression, time stamp and
/// threads (`--jobs`, which also bounds the layers built at once);
/// packages are staged under `staging` while their layer is written. A
/// layer the local cache of `caches` has (by the plan's identity) is taken
/// from it unbuilt, else one the shared cache finds; a layer built is kept
/// in the local cache.
pub(crate) fn build_layers(
    plan: &LayerPlan,
    (records, package_dirs, wheels): (&[PrefixRecord], &[PathBuf], Wheels),
    image: &mut Image,
    staging: &Path,
    (cache, shared): (Option<&LayerCache>, &SharedLayers),
    reporter: &dyn Reporter,
) -> Result<Vec<(Layer, LayerReport)>, BuildError> {
    let factory = image.layer_factory().map_err(|source| BuildError::Layer {
        what: "the scratch folder".into(),
        source,
    })?;
    let target = Target {
        image_prefix: &plan.image_prefix,
        platform: plan.platform,
        python: plan.python.as_ref(),
    };
    let package_layer = |planned: &PlannedLayer| {
        let identity = planned.identity.as_ref().map(LayerIdentity::digest);
        let layer = PackageLayer {
            packages: &planned.packages,
            wheels: &planned.wheels,
            records,
            package_dirs,
            wheel_files: wheels,
        };
        let cached = cache.zip(identity.as_ref()).and_then(|(c, id)| c.get(id));
        if let Some(cached) = cached {
            return layer.cached(cached, LayerSource::Cache, reporter);
        }
        if let Some(found) = identity.as_ref().and_then(|id| shared.find(id)) {
            return layer.cached(found, LayerSource::Registry, reporter);
        }
        let built = layer.build(&factory, &target, &plan.prefix_arc, staging, reporter)?;
        if let (Some(cache), Some(identity)) = (cache, identity)
            && let Err(e) = cache.put(&identity, &built.0)
        {
            tracing::warn!(
                "cannot keep layer {} in the layer cache: {e}",
                built.0.digest()
            );
        }
        Ok(built)
    };
    reporter.start(records.len() + wheels.locked.len());
    let order = largest_first(&plan.layers, records);
    let built = in_parallel(&order, image.jobs(), |&i| {
        package_layer(&plan.layers[i]).map(|layer| (i, layer))
    });
    reporter.finish();
    let mut built = built.into_iter().collect::<Result<Vec<_>, _>>()?;
    built.sort_by_key(|&(i, _)| i);
    Ok(built.into_iter().map(|(_, layer)| layer).collect())
}

/// Sets on each of `layers` (`plan`'s, in its order) the records
/// annotation: the conda records it holds, known from the plan and each
/// package's own metadata (in `package_dirs`), never from the layer's
/// bytes, so a layer built and one taken from a cache say the same. Set
/// after the shared cache has stored its entries, which stay small. A
/// value over [`MAX_RECORDS_ANNOTATION`], and those past
/// [`MAX_RECORDS_ANNOTATIONS`] in all, are left out.
pub(crate) fn annotate_records(
    plan: &LayerPlan,
    (records, package_dirs): (&[PrefixRecord], &[PathBuf]),
    layers: &mut [(Layer, LayerReport)],
) -> Result<(), BuildError> {
    let mut total = 0;
    for (planned, (layer, _)) in plan.layers.iter().zip(layers) {
        let packages = planned
            .packages
            .iter()
            .map(|&i| {
                let (conda_meta, record) =
                    image_record(&package_dirs[i], &records[i].repodata_record)?;
                Ok(LayerRecord { conda_meta, record })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let value = LayerRecords {
            prefix: format!("/{}", plan.prefix_arc),
            packages,
        }
        .to_annotation();
        if value.len() > MAX_RECORDS_ANNOTATION || total + value.len() > MAX_RECORDS_ANNOTATIONS {
            tracing::debug!(
                "layer {}: its records are not annotated (too large)",
                layer.digest()
            );
            continue;
        }
        total += value.len();
        layer.set_annotation(RECORDS_ANNOTATION, value);
    }
    Ok(())
}

/// The indices of `layers`, the biggest first (by their packages' archive
/// sizes, where records know them): the biggest layer is the longest job,
/// and started last it would run alone while the other workers idle.
fn largest_first(layers: &[PlannedLayer], records: &[PrefixRecord]) -> Vec<usize> {
    let size = |layer: &PlannedLayer| -> u64 {
        layer
            .packages
            .iter()
            .filter_map(|&i| records[i].repodata_record.package_record.size)
            .sum()
    };
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&layers[i])));
    order
}

/// The packages (or wheels) of one layer.
struct PackageLayer<'a> {
    /// Indices into `records` and `package_dirs`, in layer order.
    packages: &'a [usize],
    /// Indices into `wheel_files`, in layer order.
    wheels: &'a [usize],
    records: &'a [PrefixRecord],
    package_dirs: &'a [PathBuf],
    wheel_files: Wheels<'a>,
}

impl PackageLayer<'_> {
    /// The layer as a cache keeps it, named like a built one.
    fn cached(
        &self,
        layer: Layer,
        source: LayerSource,
        reporter: &dyn Reporter,
    ) -> Result<(Layer, LayerReport), BuildError> {
        let mut packages = self
            .packages
            .iter()
            .map(|&i| dist_folder(&self.records[i]).map(|d| d.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        packages.extend(self.wheel_names());
        let from = match source {
            LayerSource::Registry => "from the cache repository",
            _ => "from the layer cache",
        };
        tracing::info!("{from}: {}", packages.join(" "));
        Ok(finish(layer, packages, source, reporter))
    }

    /// Relocates the packages into `staging`, writes them under
    /// `prefix_arc` into a layer, and removes what was staged.
    fn build(
        &self,
        factory: &LayerFactory,
        target: &Target,
        prefix_arc: &str,
        staging: &Path,
        reporter: &dyn Reporter,
    ) -> Result<(Layer, LayerReport), BuildError> {
        let mut staged: Vec<PathBuf> = Vec::new();
        let mut packages = Vec::new();
        for &i in self.packages {
            let record = &self.records[i];
            let dist = dist_folder(record)?;
            tracing::info!("relocating {dist}");
            let staging = staging.join(&dist);
            relocate(
                &self.package_dirs[i],
                &record.repodata_record,
                &staging,
                target,
            )?;
            staged.push(staging);
            packages.push(dist.to_string());
        }
        if !self.wheels.is_empty() {
            staged.push(self.install_wheels(target, staging)?);
            packages.extend(self.wheel_names());
        }
        let what = packages.join(" ");
        let layer = factory
            .build(|tar| {
                tar.normalize_modes();
                tar.links_as_copies();
                staged
                    .iter()
                    .try_for_each(|dir| tar.add_tree(dir, prefix_arc, None))
            })
            .map_err(|source| BuildError::Layer {
                what: what.clone(),
                source,
            })?;
        for dir in staged {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(finish(layer, packages, LayerSource::Built, reporter))
    }
}

impl PackageLayer<'_> {
    /// The wheels' file names, as the report and annotation name them.
    fn wheel_names(&self) -> impl Iterator<Item = String> + '_ {
        self.wheels
            .iter()
            .map(|&i| self.wheel_files.locked[i].file_name.clone())
    }

    /// Installs the layer's wheels into one staging folder standing for
    /// the prefix, and returns it.
    fn install_wheels(&self, target: &Target, staging: &Path) -> Result<PathBuf, BuildError> {
        let first = &self.wheel_files.locked[self.wheels[0]];
        let staging = staging.join(format!("pypi-{}", hex::encode(first.sha256)));
        let python = target.python.ok_or_else(|| {
            pypi::PypiError::NoPython(self.wheel_names().collect::<Vec<_>>().join(", "))
        })?;
        let layout = Layout {
            python,
            image_prefix: target.image_prefix,
        };
        for &i in self.wheels {
            let locked = &self.wheel_files.locked[i];
            tracing::info!("installing {}", locked.file_name);
            pypi::install(&self.wheel_files.files[i], locked, &layout, &staging)?;
        }
        Ok(staging)
    }
}

/// A package layer, built or from the cache, named by its packages (an
/// annotation) and reported.
fn finish(
    mut layer: Layer,
    packages: Vec<String>,
    source: LayerSource,
    reporter: &dyn Reporter,
) -> (Layer, LayerReport) {
    layer.set_annotation(PACKAGES_ANNOTATION, packages.join(" "));
    let report = LayerReport {
        digest: layer.digest(),
        size: layer.size(),
        packages,
        source,
    };
    reporter.layer_built(&report);
    (layer, report)
}
