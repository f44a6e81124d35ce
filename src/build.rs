//! The pipeline: an environment → one layer per package (dependencies
//! first) on a base image → an image ready to write.
//!
//! Only this module knows both conda and images; the CLI calls it.

use std::path::{Path, PathBuf};

use rattler::install::PythonInfo;
use rattler_conda_types::package::{IndexJson, PackageFile};
use rattler_conda_types::{PrefixRecord, Subdir};

use crate::conda::CondaError;
use crate::conda::activation::{activation, package_activation};
use crate::conda::cache::{PackageCaches, dist_folder, dist_name};
use crate::conda::env::{EnvSelector, Environment, SolveOptions};
use crate::conda::explicit::write_explicit;
use crate::conda::glibc_needs::GlibcNeeds;
use crate::conda::order::{dependency_order, fit_budget};
use crate::conda::relocate::{Target, relocate};
use crate::conda::solve::{self, SolveError};
use crate::conda::unrelocate::replace;
use crate::conda::untracked::{Untracked, path_of as untracked_path, untracked};
use crate::digest::Digest;
use crate::dirs::cache_dir;
use crate::image::glibc_version;
use crate::image::{Image, ImageError, ImageSource, OpenOptions, rfc3339};
use crate::layer::Layer;
use crate::layer::tar::archive_path;
use crate::parallel::{cores, in_parallel};
use crate::platform::Platform;
use crate::registry::RegistryOptions;

/// The PATH of an image whose base sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The base used when none is given: conda-forge's Linux binaries need a
/// glibc userland, and this is a small one.
pub const DEFAULT_BASE: &str = "docker.io/library/debian:stable-slim";

/// What went wrong building.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading the environment or its packages.
    #[error(transparent)]
    Conda(#[from] CondaError),
    /// Reading the base or building layers.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A base image for another platform.
    #[error(
        "the base image is {base}, but the environment is {env} (needs {wanted}); pick a base for {wanted}"
    )]
    PlatformMismatch {
        /// The base's os/architecture.
        base: String,
        /// The environment's conda platform.
        env: String,
        /// The matching os/architecture.
        wanted: String,
    },
    /// A `--platform` that is not the environment's.
    #[error(
        "--platform {asked} does not match the environment, which is {env} ({platform}); drop --platform or build from an environment for {asked}"
    )]
    WrongPlatform {
        /// What was asked for.
        asked: String,
        /// The environment's conda platform.
        env: String,
        /// Its image platform.
        platform: String,
    },
    /// A conda platform images cannot have.
    #[error("the environment is for {0}; images hold linux environments only")]
    NotLinux(String),
    /// A layer budget the base alone uses up.
    #[error(
        "--max-layers {max} leaves no room for the environment: the base has {base} layers and {extra} more are needed"
    )]
    NoLayerBudget {
        /// The budget.
        max: usize,
        /// The base's layers.
        base: usize,
        /// Layers besides the packages'.
        extra: usize,
    },
    /// An environment that needs a glibc the base does not have.
    #[error(
        "the base image {base} {has}, but the environment needs {needs} ({why}); build on a base with glibc such as {DEFAULT_BASE}, or pass --virtual-package __glibc=VERSION to build anyway"
    )]
    Glibc {
        /// The base, as given.
        base: String,
        /// `has no glibc` or `has glibc X`.
        has: String,
        /// `glibc` or `a newer glibc`.
        needs: String,
        /// Which package or file needs it.
        why: String,
    },
    /// A bad `--prefix-in-image`.
    #[error("--prefix-in-image `{0}` must be an absolute path such as /opt/conda")]
    BadImagePrefix(String),
    /// Staging or layer I/O.
    #[error("cannot build the layer of {what}")]
    Layer {
        /// The packages in the layer.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

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
            max_layers: 100,
            single_layer: false,
            untracked: true,
            activation_scripts: true,
            add: Vec::new(),
        }
    }
}

/// One conda layer of a built image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    /// The blob digest.
    pub digest: Digest,
    /// The blob size.
    pub size: u64,
    /// `name-version-build` of each package in it.
    pub packages: Vec<String>,
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

fn python_info(records: &[PrefixRecord], platform: Subdir) -> Option<PythonInfo> {
    records
        .iter()
        .map(|r| &r.repodata_record.package_record)
        .find(|p| p.name.as_normalized() == "python")
        .and_then(|p| PythonInfo::from_python_record(p, platform).ok())
}

/// The channel name written in `conda-meta/history` (`conda-forge` for
/// `https://conda.anaconda.org/conda-forge`), never a host path. conda
/// records an installed package's channel with its subdir on the end
/// (`.../conda-forge/linux-64`), a solve without: both name the channel.
fn channel_name(channel: Option<&str>) -> String {
    let mut parts = channel
        .unwrap_or_default()
        .trim_end_matches('/')
        .rsplit('/');
    let last = parts.next().unwrap_or_default();
    let name = match last.parse::<Subdir>() {
        Ok(_) => parts.next().unwrap_or_default(),
        Err(_) => last,
    };
    match name {
        "" => "<unknown>".into(),
        name => name.to_owned(),
    }
}

/// Hears how a build goes, so a front end can show progress; the library
/// itself never prints.
pub trait Reporter: Sync {
    /// `packages` packages are about to be downloaded.
    fn fetching(&self, _packages: usize) {}
    /// One package was downloaded (called from worker threads).
    fn fetched(&self, _package: &str) {}
    /// The build is about to relocate `packages` packages.
    fn start(&self, _packages: usize) {}
    /// One package layer is ready (called from worker threads).
    fn layer_built(&self, _layer: &LayerReport) {}
    /// All package layers are ready.
    fn finish(&self) {}
}

/// A reporter that ignores everything.
pub struct Silent;

impl Reporter for Silent {}

/// The extracted folder of each package of an environment that is not
/// installed (an explicit spec, a solve): from the caches, else downloaded
/// from its URL into rattler's package cache, where the fetch checks it.
fn locate_or_fetch(
    records: &[PrefixRecord],
    caches: &PackageCaches,
    reporter: &dyn Reporter,
) -> Result<Vec<PathBuf>, BuildError> {
    let indices: Vec<usize> = (0..records.len()).collect();
    let mut folders = in_parallel(&indices, cores(), |&i| match caches.locate(&records[i]) {
        Ok(folder) => Ok(Some(folder)),
        // A cached archive with the wrong bytes stays an error: it is
        // worth knowing about, and is not silently replaced.
        Err(CondaError::NotCached { .. }) => Ok(None),
        Err(other) => Err(BuildError::from(other)),
    })
    .into_iter()
    .collect::<Result<Vec<Option<PathBuf>>, BuildError>>()?;
    let missing: Vec<usize> = indices
        .into_iter()
        .filter(|&i| folders[i].is_none())
        .collect();
    if !missing.is_empty() {
        reporter.fetching(missing.len());
        let pkgs_dir = caches.rattler.first().cloned().unwrap_or_else(|| {
            rattler_cache::default_cache_dir()
                .map(|d| d.join(rattler_cache::PACKAGE_CACHE_DIR))
                .unwrap_or_else(|_| cache_dir().join("rattler-pkgs"))
        });
        let wanted: Vec<_> = missing
            .iter()
            .map(|&i| records[i].repodata_record.clone())
            .collect();
        let fetched = solve::fetch(&wanted, pkgs_dir, &|record| {
            reporter.fetched(&dist_name(record));
        })
        .map_err(CondaError::from)?;
        for (i, folder) in missing.into_iter().zip(fetched) {
            folders[i] = Some(folder);
        }
    }
    Ok(folders.into_iter().flatten().collect())
}

/// Builds the image of an environment.
pub fn build(
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<(Image, Vec<LayerReport>), BuildError> {
    // Checked before any work: a bad prefix or name would otherwise fail
    // only after every layer was built.
    let prefix_arc = archive_path(&options.image_prefix)
        .ok()
        .filter(|arc| options.image_prefix.starts_with('/') && !arc.is_empty())
        .ok_or_else(|| BuildError::BadImagePrefix(options.image_prefix.clone()))?;
    let options = &BuildOptions {
        image_prefix: format!("/{prefix_arc}"),
        ..options.clone()
    };
    options
        .name
        .parse::<crate::reference::Reference>()
        .map_err(ImageError::from)?;
    let mut solve = SolveOptions {
        platform: match &options.platform {
            Some(p) => Some(
                p.subdir()
                    .ok_or_else(|| BuildError::NotLinux(p.to_string()))?,
            ),
            None => options.solve.platform,
        },
        ..options.solve.clone()
    };
    let open_base = |platform: &Platform| {
        options.base.open_with(&OpenOptions {
            platform: platform.clone(),
            registry: options.registry.clone(),
        })
    };
    // A solve needs the base's glibc, so its base is opened first; an
    // installed environment's platform is known only once it is read.
    let early_base = if options.env.solves() {
        let subdir = solve.subdir();
        let platform = Platform::from_subdir(subdir)
            .ok_or_else(|| BuildError::NotLinux(subdir.to_string()))?;
        let base = open_base(&platform)?;
        if solve.glibc.is_none() && !solve.glibc_given() {
            solve.glibc = glibc_version(&base, &options.base)?;
            match &solve.glibc {
                Some(v) => tracing::info!("the base image has glibc {v}"),
                None => tracing::info!("the base image has no glibc; solving without __glibc"),
            }
        }
        Some(base)
    } else {
        None
    };
    let mut env = Environment::load(&options.env, &solve).map_err(|e| match e {
        // Without glibc in the base, packages built against it cannot be
        // solved: say why in the base's terms, not the solver's.
        CondaError::Solve(SolveError::Unsolvable(text))
            if solve.glibc.is_none() && !solve.glibc_given() && text.contains("__glibc") =>
        {
            BuildError::Glibc {
                base: options.base.to_string(),
                has: "has no glibc".into(),
                needs: "glibc".into(),
                why: "packages it asks for depend on __glibc".into(),
            }
        }
        other => other.into(),
    })?;
    if let Some(path) = &options.lock_file {
        let records: Vec<_> = env
            .records
            .iter()
            .map(|r| r.repodata_record.clone())
            .collect();
        write_explicit(path, env.platform, &records)?;
    }
    let platform = Platform::from_subdir(env.platform)
        .ok_or_else(|| BuildError::NotLinux(env.platform.to_string()))?;
    if let Some(asked) = &options.platform
        && *asked != platform
    {
        return Err(BuildError::WrongPlatform {
            asked: asked.to_string(),
            env: env.platform.to_string(),
            platform: platform.to_string(),
        });
    }
    let (os, arch) = (platform.os(), platform.architecture());

    let mut image = match early_base {
        Some(base) => base,
        None => open_base(&platform)?,
    };
    if image.layers().is_empty() {
        image
            .config_mut()
            .set_platform(os, arch, platform.variant());
    } else if image.config().os() != Some(os) || image.config().architecture() != Some(arch) {
        return Err(BuildError::PlatformMismatch {
            base: format!(
                "{}/{}",
                image.config().os().unwrap_or("?"),
                image.config().architecture().unwrap_or("?")
            ),
            env: env.platform.to_string(),
            wanted: format!("{os}/{arch}"),
        });
    }

    let python = python_info(&env.records, env.platform);
    let target = Target {
        image_prefix: &options.image_prefix,
        platform: env.platform,
        python: python.as_ref(),
    };
    let staging_root = staging_root()?;
    // Every package is found first: an explicit spec says nothing about
    // dependencies, so the plan needs the packages' own index.json.
    let package_dirs = if env.prefix.is_none() {
        locate_or_fetch(&env.records, &options.caches, reporter)?
    } else {
        let indices: Vec<usize> = (0..env.records.len()).collect();
        in_parallel(&indices, cores(), |&i| {
            Ok(options.caches.locate_or_rebuild(
                &env.records[i],
                env.prefix.as_deref(),
                python.as_ref(),
                staging_root.path(),
            )?)
        })
        .into_iter()
        .collect::<Result<Vec<PathBuf>, BuildError>>()?
    };
    if env.prefix.is_none() {
        for (record, dir) in env.records.iter_mut().zip(&package_dirs) {
            if let Ok(index) = IndexJson::from_package_directory(dir) {
                record.repodata_record.package_record.depends = index.depends;
            }
        }
    }
    let env = env;
    check_glibc(&env.records, &package_dirs, &image, options, &solve)?;
    let names: Vec<&str> = env
        .records
        .iter()
        .map(|r| r.repodata_record.package_record.name.as_normalized())
        .collect();
    let index: std::collections::HashMap<&str, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let depends: Vec<Vec<usize>> = env
        .records
        .iter()
        .map(|r| {
            depends_names(r)
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();

    for record in &env.records {
        let name = record.repodata_record.package_record.name.as_normalized();
        let script = PathBuf::from(format!("bin/.{name}-post-link.sh"));
        if record.files.contains(&script) {
            tracing::warn!(
                "not running the post-link script of {}: what it does at install time is not in the image",
                dist_name(&record.repodata_record)
            );
        }
    }
    let extra = 1 + options.add.len();
    let base_layers = image.layers().len();
    let budget = options
        .max_layers
        .checked_sub(base_layers + extra)
        .filter(|b| *b > 0)
        .ok_or(BuildError::NoLayerBudget {
            max: options.max_layers,
            base: base_layers,
            extra,
        })?;
    let ordered = dependency_order(&names, &depends);
    let groups = if options.single_layer {
        vec![ordered.concat()]
    } else {
        let size = |i: usize| {
            env.records[i]
                .repodata_record
                .package_record
                .size
                .unwrap_or(0)
        };
        fit_budget(ordered, size, budget)
    };

    let factory = image.layer_factory().map_err(|source| BuildError::Layer {
        what: "the scratch folder".into(),
        source,
    })?;
    let package_layer = |group: &Vec<usize>| -> Result<(Layer, LayerReport), BuildError> {
        let mut staged: Vec<PathBuf> = Vec::new();
        let mut packages = Vec::new();
        for &i in group {
            let record = &env.records[i];
            let dist = dist_folder(record)?;
            tracing::info!("relocating {dist}");
            let staging = staging_root.path().join(&dist);
            relocate(&package_dirs[i], &record.repodata_record, &staging, &target)?;
            staged.push(staging);
            packages.push(dist.to_string());
        }
        let what = packages.join(" ");
        let mut layer = factory
            .build(|tar| {
                tar.normalize_modes();
                staged
                    .iter()
                    .try_for_each(|dir| tar.add_tree(dir, &prefix_arc, None))
            })
            .map_err(|source| BuildError::Layer {
                what: what.clone(),
                source,
            })?;
        for dir in staged {
            let _ = std::fs::remove_dir_all(dir);
        }
        layer.set_annotation("org.conda-docker.packages", &what);
        let report = LayerReport {
            digest: layer.digest(),
            size: layer.size(),
            packages,
        };
        reporter.layer_built(&report);
        Ok((layer, report))
    };
    reporter.start(env.records.len());
    let built = in_parallel(&groups, cores(), package_layer);
    reporter.finish();
    let mut reports = Vec::new();
    for result in built {
        let (layer, report) = result?;
        image.push_layer(
            layer,
            &format!("conda-docker: {}", report.packages.join(" ")),
        );
        reports.push(report);
    }

    add_env_layer(&mut image, &env, options, &prefix_arc)?;
    for (source, destination) in &options.add {
        image.add_layer_path(source, destination, None)?;
    }
    let activation = match env.prefix.as_deref() {
        Some(prefix) => activation(
            prefix,
            &options.image_prefix,
            env.platform,
            options.activation_scripts,
        ),
        None => package_activation(&package_dirs),
    };
    for warning in &activation.warnings {
        tracing::warn!("{warning}");
    }
    configure(&mut image, options, &activation.vars)?;
    Ok((image, reports))
}

/// Refuses a base whose glibc the environment cannot run on (none, or too
/// old), unless `--virtual-package __glibc=X` says to go on. The base is
/// scanned only when something needs glibc, and not again after a solve.
fn check_glibc(
    records: &[PrefixRecord],
    package_dirs: &[PathBuf],
    base: &Image,
    options: &BuildOptions,
    solve: &SolveOptions,
) -> Result<(), BuildError> {
    if solve.glibc_given() {
        return Ok(());
    }
    let needs = GlibcNeeds::of(records, package_dirs);
    if !needs.any() {
        return Ok(());
    }
    let have = match options.env.solves() {
        true => solve.glibc.clone(),
        false => glibc_version(base, &options.base)?,
    };
    let Some(why) = needs.unmet(have.as_deref()) else {
        return Ok(());
    };
    Err(BuildError::Glibc {
        base: options.base.to_string(),
        needs: match have {
            Some(_) => "a newer glibc".into(),
            None => "glibc".into(),
        },
        has: match &have {
            Some(version) => format!("has glibc {version}"),
            None => "has no glibc".into(),
        },
        why,
    })
}

/// The environment's last layer: `conda-meta/history` and the files no
/// package owns, with the host prefix replaced in text files.
fn add_env_layer(
    image: &mut Image,
    env: &Environment,
    options: &BuildOptions,
    prefix_arc: &str,
) -> Result<(), BuildError> {
    let history = history_file(&env.records, image.epoch());
    let files = match (&env.prefix, options.untracked) {
        (Some(prefix), true) => untracked(env, prefix)?,
        _ => Vec::new(),
    };
    let prefix = env.prefix.clone().unwrap_or_default();
    let host = prefix.to_string_lossy().into_owned();
    let fail = |source| BuildError::Layer {
        what: "the environment's own files".into(),
        source,
    };
    let layer = image
        .build_layer(|tar| {
            tar.normalize_modes();
            let history_path = format!("{prefix_arc}/conda-meta/history");
            tar.add_file(&history_path, 0o644, history.len() as u64, history.as_bytes())?;
            for entry in &files {
                let rel = untracked_path(entry);
                let arc = format!("{prefix_arc}/{}", rel.display());
                let path = prefix.join(rel);
                match entry {
                    Untracked::Copy(_) => {
                        let meta = std::fs::metadata(&path)?;
                        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
                        tar.add_file(&arc, mode, meta.len(), std::fs::File::open(&path)?)?;
                    }
                    Untracked::Relocate(_) => {
                        let meta = std::fs::metadata(&path)?;
                        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
                        let bytes = std::fs::read(&path)?;
                        let bytes = replace(&bytes, host.as_bytes(), options.image_prefix.as_bytes());
                        tar.add_file(&arc, mode, bytes.len() as u64, bytes.as_slice())?;
                    }
                    Untracked::Symlink(_) => {
                        let target = std::fs::read_link(&path)?;
                        let target = target.to_string_lossy().replace(&host, &options.image_prefix);
                        tar.add_symlink(&arc, Path::new(&target))?;
                    }
                    Untracked::Unrelocatable(_) => {
                        tracing::warn!(
                            "leaving out {}: a binary file no package owns that contains the host prefix",
                            path.display()
                        );
                    }
                }
            }
            Ok(())
        })
        .map_err(fail)?;
    image.push_layer(
        layer,
        "conda-docker: conda-meta/history and files no package owns",
    );
    Ok(())
}

/// A staging folder beside our package cache (same file system, so
/// extraction and staging stay cheap), removed when dropped.
fn staging_root() -> Result<tempfile::TempDir, BuildError> {
    let dir = cache_dir().join("staging");
    let io = |source| CondaError::Io {
        path: dir.clone(),
        source,
    };
    fs_err::create_dir_all(&dir).map_err(io)?;
    Ok(tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&dir)
        .map_err(io)?)
}

/// `conda-meta/history` as conda writes it: a header stamped with the
/// build's epoch, then a `+channel::dist` line per package.
fn history_file(records: &[PrefixRecord], epoch: u64) -> String {
    let stamp = rfc3339(epoch)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned();
    let mut text = format!("==> {stamp} <==\n# cmd: conda-docker build\n");
    for record in records {
        let r = &record.repodata_record;
        text.push_str(&format!(
            "+{}::{}\n",
            channel_name(r.channel.as_deref()),
            dist_name(r)
        ));
    }
    text
}

/// The config of the environment image: merged onto the base's, then the
/// activation variables, then the user's.
fn configure(
    image: &mut Image,
    options: &BuildOptions,
    activation: &[(String, String)],
) -> Result<(), ImageError> {
    let prefix = &options.image_prefix;
    let config = image.config_mut();
    let path = config
        .env_var("PATH")
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let bin = format!("{prefix}/bin");
    let rest: Vec<&str> = path.split(':').filter(|p| *p != bin).collect();
    config.set_env("PATH", &format!("{bin}:{}", rest.join(":")));
    config.set_env("CONDA_PREFIX", prefix);
    for (key, value) in activation.iter().chain(&options.env_vars) {
        config.set_env(key, value);
    }
    if let Some(entrypoint) = &options.entrypoint {
        config.set_entrypoint(Some(entrypoint.clone()));
    }
    if let Some(cmd) = &options.cmd {
        config.set_cmd(Some(cmd.clone()));
    }
    if let Some(dir) = &options.workdir {
        config.set_working_dir(dir);
    }
    if let Some(user) = &options.user {
        config.set_user(user);
    }
    for (key, value) in &options.labels {
        config.set_label(key, value);
    }
    image.set_name(&options.name)
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
    let (image, _) = build(&options, &Silent)?;
    image.write_file(output_filename)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::channel_name;

    #[test]
    fn channel_names_leave_out_the_subdir_and_the_host() {
        for (channel, name) in [
            (
                Some("https://conda.anaconda.org/conda-forge"),
                "conda-forge",
            ),
            (
                Some("https://conda.anaconda.org/conda-forge/linux-64"),
                "conda-forge",
            ),
            (Some("file:///tmp/e2e/channel/noarch/"), "channel"),
            (Some("bioconda"), "bioconda"),
            (None, "<unknown>"),
        ] {
            assert_eq!(channel_name(channel), name, "{channel:?}");
        }
    }
}
