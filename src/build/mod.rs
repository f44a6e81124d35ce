//! The pipeline: an environment → one layer per package (dependencies
//! first) on a base image → an image ready to write.
//!
//! Only this module knows both conda and images; the CLI calls it. A build
//! is five stages, a module each, handing typed values on:
//!
//! ```text
//! checked options      options      Checked: the image prefix, the name parsed once
//!   → what to build    environment  Subject: the environment (Installed | Resolved),
//!                                   its one platform (decided here), base, python
//!   → where bytes are  locate       Located: each package's folder (cache | prefix | fetched)
//!   → layer plan       plan         LayerPlan: groups in dependency order, each with
//!                                   its LayerIdentity (identity), before any byte
//!   → layers           layers       relocate + tar + compress, in parallel
//!   → image            assemble     base + layers + env layer (env_layer) + --add + config
//! ```
//!
//! The output (a file, a layout, a registry) is the caller's.

mod assemble;
mod env_layer;
mod environment;
mod error;
mod identity;
mod layers;
mod locate;
mod options;
mod plan;
mod platforms;
mod report;
mod wheels;

use std::path::Path;
use std::time::Duration;

use crate::atomic::OwnedDir;
use crate::conda::env::{EnvSelector, SolveOptions};
use crate::dirs::cache_dir;
use crate::image::Image;
use crate::layer::cache::CacheLock;
use crate::layer::cache::prune::remove_leftovers;
use crate::layer::tar::Owner;
use crate::registry::SharedLayers;
use crate::sbom::Inventory;

pub use error::BuildError;
pub use identity::{LAYER_FORMAT, LayerIdentity};
pub use options::{BuildOptions, DEFAULT_BASE};
pub use platforms::{
    PlatformImages, build_platforms_with_output, file_for_platform, lock_file_for,
};
pub use report::{LayerReport, LayerSource, Reporter, Silent};

/// Builds the image of an environment. The layers may be files in the
/// cache directory: to write or push the image while a `cache prune` may
/// run, use [`build_with_output`], which keeps them there until it is done.
pub fn build(
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<(Image, Vec<LayerReport>), BuildError> {
    build_inventoried(options, reporter).map(|(image, layers, _)| (image, layers))
}

/// [`build`], with the inventory of the image's packages its SBOMs list.
fn build_inventoried(
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<(Image, Vec<LayerReport>, Inventory), BuildError> {
    let _locks = lock_caches(options)?;
    let checked = options.checked()?;
    let (options, prefix_arc) = (&checked.options, checked.prefix_arc.as_str());
    // What to build.
    let mut subject = environment::resolve(options)?;
    subject.base.set_compression(options.compression);
    subject.base.set_jobs(options.jobs);
    subject
        .base
        .set_owner(options.owner.map(|(uid, gid)| Owner {
            uid,
            gid,
            below: prefix_arc.to_owned(),
        }));
    let staging = staging_root()?;
    // Where the bytes are.
    let located = locate::locate(
        &mut subject.env,
        &options.caches,
        subject.python.as_ref(),
        staging.path(),
        reporter,
    )?;
    environment::check_glibc(&subject, &located.dirs, options)?;
    let wheel_files = wheels::fetch_wheels(&subject, options)?;
    // The layer plan.
    let plan = plan::plan(&subject, &located, options, prefix_arc)?;
    // The layers.
    let shared = SharedLayers::new(
        options.cache_repo.as_ref(),
        options
            .push_only
            .as_deref()
            .filter(|_| options.add.is_empty()),
        options.layer_cache.as_ref(),
        &options.registry,
    );
    let wheels = layers::Wheels {
        locked: &subject.env.wheels,
        files: &wheel_files,
    };
    let mut layers = layers::build_layers(
        &plan,
        (&subject.env.records, &located.dirs, wheels),
        &mut subject.base,
        staging.path(),
        (options.layer_cache.as_ref(), &shared),
        reporter,
    )?;
    shared.store(
        plan.layers
            .iter()
            .zip(&mut layers)
            .filter_map(|(planned, (layer, _))| Some((planned.identity.as_ref()?.digest(), layer)))
            .collect(),
    );
    layers::annotate_records(&plan, (&subject.env.records, &located.dirs), &mut layers)?;
    // The image.
    assemble::assemble(subject, layers, &located.dirs, &checked)
}

/// Builds the image of an environment and hands it to `output` (to write
/// or push it), holding the cache's shared lock throughout, so a `cache
/// prune` waits for the whole run. When `output` fails and a layer taken
/// from the layer cache turns out to be damaged (its blob no longer has
/// its digest), that entry is evicted and the build runs once more: it
/// builds those layers again and takes the others from the cache.
/// `output` is also handed the inventory the image's SBOMs list.
pub fn build_with_output<T, E: From<BuildError>>(
    options: &BuildOptions,
    reporter: &dyn Reporter,
    mut output: impl FnMut(&mut Image, &[LayerReport], &Inventory) -> Result<T, E>,
) -> Result<(Image, Vec<LayerReport>, T), E> {
    let ((image, layers, _), done) = retrying(
        options,
        || build_inventoried(options, reporter),
        |(image, layers, inventory)| output(image, layers, inventory),
    )?;
    Ok((image, layers, done))
}

/// Runs `build` and hands what it built to `output`, under the caches'
/// shared lock; when `output` fails on a damaged layer from the layer
/// cache, evicts it and runs both once more (see [`build_with_output`]).
fn retrying<B, T, E: From<BuildError>>(
    options: &BuildOptions,
    mut build: impl FnMut() -> Result<B, BuildError>,
    mut output: impl FnMut(&mut B) -> Result<T, E>,
) -> Result<(B, T), E> {
    let _locks = lock_caches(options)?;
    let mut retried = false;
    loop {
        let mut built = build()?;
        let error = match output(&mut built) {
            Ok(done) => return Ok((built, done)),
            Err(error) => error,
        };
        let damaged = match (&options.layer_cache, retried) {
            (Some(cache), false) => cache.evict_damaged(),
            _ => 0,
        };
        if damaged == 0 {
            return Err(error);
        }
        tracing::warn!(
            "{damaged} layer(s) taken from the layer cache were damaged; building the image again"
        );
        retried = true;
    }
}

/// Shares the lock of our cache directory (and of the layer cache's, when
/// elsewhere) with other builds, waiting while a prune holds it. A cache
/// no other run holds has no live run's temp files in it: those it has
/// are a killed run's, and are removed first.
fn lock_caches(options: &BuildOptions) -> Result<Vec<CacheLock>, BuildError> {
    let mut dirs = vec![cache_dir()];
    if let Some(cache) = &options.layer_cache
        && cache.dir() != dirs[0]
    {
        dirs.push(cache.dir().to_owned());
    }
    dirs.iter()
        .map(|dir| {
            if let Ok(_alone) = CacheLock::exclusive(dir, Duration::ZERO, || {}) {
                remove_leftovers(dir);
            }
            CacheLock::shared(dir, || {
                tracing::warn!("waiting for `cache prune` to finish with {}", dir.display());
            })
            .map_err(BuildError::from)
        })
        .collect()
}

/// This build's staging folder beside our package cache (same file
/// system, so extraction and staging stay cheap): `<cache>/staging/build-*`,
/// locked while the build lives and removed when dropped; what killed
/// builds left there is removed first, never a live build's.
fn staging_root() -> Result<OwnedDir, BuildError> {
    let dir = cache_dir().join("staging");
    OwnedDir::create(&dir, "build-").map_err(|source| BuildError::Staging { dir, source })
}

/// The original conda-docker's one call: solves `packages` (from
/// `channels`, else `.condarc`'s, else conda-forge) for linux-64, builds
/// them on `base_image` (a reference or any image source), names the image
/// `output_image` and writes a `docker load`-able archive to
/// `output_filename`.
pub fn build_docker_environment(
    base_image: &str,
    output_image: &str,
    packages: &[&str],
    output_filename: impl AsRef<Path>,
    channels: &[&str],
) -> Result<Image, BuildError> {
    let options = BuildOptions {
        env: EnvSelector::Specs(packages.iter().map(|p| p.to_string()).collect()),
        base: base_image.parse()?,
        name: output_image.to_owned(),
        solve: SolveOptions {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            ..SolveOptions::default()
        },
        ..BuildOptions::default()
    };
    let (image, _, ()) = build_with_output(&options, &Silent, |image, _, _| {
        image
            .write_file(output_filename.as_ref())
            .map_err(BuildError::from)
    })?;
    Ok(image)
}
