//! What a build is asked to do, and the checks made before any work.

use std::path::PathBuf;
use std::sync::Arc;

use crate::conda::cache::PackageCaches;
use crate::conda::env::{EnvSelector, SolveOptions};
use crate::dirs::cache_dir;
use crate::image::{ImageError, ImageSource};
use crate::layer::tar::archive_path;
use crate::layer::{Compression, LayerCache};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{CacheRepo, PushTarget, RegistryOptions};

use super::BuildError;

/// The base used when none is given: conda-forge's Linux binaries need a
/// glibc userland, and this is a small one.
pub const DEFAULT_BASE: &str = "docker.io/library/debian:stable-slim";

/// Everything a build needs; `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The environment to export.
    pub env: EnvSelector,
    /// The base image.
    pub base: ImageSource,
    /// The platform asked for (`--platform`): what a solve is for, and
    /// what an installed environment must be.
    pub platform: Option<Platform>,
    /// How to solve an environment given as specs or an environment file.
    pub solve: SolveOptions,
    /// Where to write the environment as an `@EXPLICIT` spec with sha256,
    /// to build the same image again without a solve.
    pub lock_file: Option<PathBuf>,
    /// How to reach registries, for a base pulled from one.
    pub registry: RegistryOptions,
    /// Where the environment lives inside the image.
    pub image_prefix: String,
    /// `NAME[:TAG]` of the result.
    pub name: String,
    /// The package caches to read.
    pub caches: PackageCaches,
    /// `K=V` variables set in the image.
    pub env_vars: Vec<(String, String)>,
    /// Entrypoint, if set.
    pub entrypoint: Option<Vec<String>>,
    /// Cmd, if set.
    pub cmd: Option<Vec<String>>,
    /// WorkingDir, if set.
    pub workdir: Option<String>,
    /// User, if set.
    pub user: Option<String>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Manifest annotations (`--annotation K=V`), over the standard ones
    /// (`image::annotations::standard`).
    pub annotations: Vec<(String, String)>,
    /// Most layers in the image, the base's included (overlayfs mounts at
    /// most ~125).
    pub max_layers: usize,
    /// All packages in one layer instead of one layer each.
    pub single_layer: bool,
    /// Whether files no package owns go into the image.
    pub untracked: bool,
    /// Whether an installed environment's `activate.d` scripts are run
    /// (in bash, on the build machine) to read what they export.
    pub activation_scripts: bool,
    /// Host files or folders added as a layer each, above the environment:
    /// `(source, destination inside the image)`.
    pub add: Vec<(PathBuf, String)>,
    /// Where built layers are kept and looked up by their identity
    /// (`None`: build every layer, keep none, as `--no-cache` asks).
    pub layer_cache: Option<LayerCache>,
    /// `(uid, gid)` owning the environment's prefix and everything below
    /// it, in every layer this tool writes (`None`: root, like the rest).
    pub owner: Option<(u32, u32)>,
    /// How new layers are compressed (default gzip level 6).
    pub compression: Compression,
    /// How many layers are built at once, and how many threads compress
    /// them (default: one per core). The image's bytes do not depend on it.
    pub jobs: usize,
    /// A registry repository where package layers are looked up by
    /// identity before they are built, and written after (`--cache-repo`).
    pub cache_repo: Option<CacheRepo>,
    /// The repository the image is pushed to, when the push is the only
    /// output (`--push` without `-o`): a package layer found by identity
    /// that this repository has, or can mount, is neither built nor read.
    /// Ignored with `add`, which reads every layer.
    pub push_only: Option<Arc<PushTarget>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            env: EnvSelector::Active,
            base: ImageSource::Registry(
                DEFAULT_BASE
                    .parse()
                    .expect("the default base is a valid reference"),
            ),
            platform: None,
            solve: SolveOptions::default(),
            lock_file: None,
            registry: RegistryOptions::default(),
            image_prefix: "/opt/conda".into(),
            name: "conda-docker:latest".into(),
            caches: PackageCaches::discover(),
            env_vars: Vec::new(),
            entrypoint: None,
            cmd: None,
            workdir: None,
            user: None,
            labels: Vec::new(),
            annotations: Vec::new(),
            max_layers: 100,
            single_layer: false,
            untracked: true,
            activation_scripts: true,
            add: Vec::new(),
            layer_cache: Some(LayerCache::new(cache_dir())),
            owner: None,
            compression: Compression::default(),
            jobs: crate::parallel::cores(),
            cache_repo: None,
            push_only: None,
        }
    }
}

/// The options of a build, checked before any work (a bad prefix or name
/// would otherwise fail only after every layer was built).
pub(crate) struct Checked {
    /// The options, with the image prefix in its normal form (`/opt/conda`).
    pub options: BuildOptions,
    /// The image prefix as a layer names it (`opt/conda`).
    pub prefix_arc: String,
    /// The image name, parsed once.
    pub name: Reference,
}

impl BuildOptions {
    /// Checks the image prefix and the image name, and writes the prefix
    /// in its normal form.
    pub(crate) fn checked(&self) -> Result<Checked, BuildError> {
        let prefix_arc = archive_path(&self.image_prefix)
            .ok()
            .filter(|arc| self.image_prefix.starts_with('/') && !arc.is_empty())
            .ok_or_else(|| BuildError::BadImagePrefix(self.image_prefix.clone()))?;
        let options = BuildOptions {
            image_prefix: format!("/{prefix_arc}"),
            ..self.clone()
        };
        let name = options.name.parse().map_err(ImageError::from)?;
        Ok(Checked {
            options,
            prefix_arc,
            name,
        })
    }
}
