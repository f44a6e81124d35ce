//! Stage 1, *what to build*: the environment (an installed prefix, or
//! records resolved from specs or files), its one platform, and the base
//! image it goes on, checked against each other.
//!
//! A solve needs the base's glibc, so for specs and environment files the
//! base is opened first; an installed environment's platform is known only
//! once it is read, so its base is opened after.

use std::path::PathBuf;

use rattler::install::PythonInfo;
use rattler_conda_types::{PrefixRecord, Subdir};

use crate::conda::CondaError;
use crate::conda::env::{Environment, SolveOptions};
use crate::conda::explicit::write_explicit;
use crate::conda::glibc_needs::GlibcNeeds;
use crate::conda::solve::SolveError;
use crate::image::Image;
use crate::image::glibc_version;
use crate::platform::Platform;
use crate::registry::OpenOptions;

use super::{BuildError, BuildOptions};

/// What to build: the environment and the base it goes on.
pub(crate) struct Subject {
    /// The environment, its records sorted by name.
    pub env: Environment,
    /// The platform of the build, decided once here.
    pub platform: BuildPlatform,
    /// The base image, of the environment's platform.
    pub base: Image,
    /// How the environment was solved (with the base's glibc, if read).
    pub solve: SolveOptions,
    /// The environment's python, for noarch python packages.
    pub python: Option<PythonInfo>,
}

/// The platform of a build: the conda subdir of its packages and the
/// image platform they make, one value handed to every later stage.
#[derive(Clone, Debug)]
pub(crate) struct BuildPlatform {
    /// The packages' conda platform (`linux-64`).
    pub subdir: Subdir,
    /// The image's platform (`linux/amd64`).
    pub image: Platform,
}

/// Reads (or solves) the environment and opens the base for its platform.
/// A solve is for the platform asked (or linux-64), decided before it; an
/// installed or listed environment's platform is its records' (the host's
/// if every package is noarch, as conda would install them).
pub(crate) fn resolve(options: &BuildOptions) -> Result<Subject, BuildError> {
    let mut solve = solve_options(options)?;
    let (env, platform, mut base) = match options.env.solves() {
        true => {
            let subdir = solve.subdir();
            let platform = decide_platform(subdir, options)?;
            let base = base_for_solve(options, &platform, &mut solve)?;
            let env = load(options, &solve)?;
            write_lock(options, &env, subdir)?;
            (env, platform, base)
        }
        false => {
            let env = load(options, &solve)?;
            let subdir = env
                .platform
                .or_else(Subdir::current)
                .unwrap_or(Subdir::Linux64);
            write_lock(options, &env, subdir)?;
            let platform = decide_platform(subdir, options)?;
            let base = open_base(options, &platform.image)?;
            (env, platform, base)
        }
    };
    fit_base(&mut base, &platform)?;
    let python = python_info(&env.records, platform.subdir);
    Ok(Subject {
        env,
        platform,
        base,
        solve,
        python,
    })
}

/// The solve options, for `--platform` if one was asked for, else the
/// caller's, else linux-64 (an image's default, whatever the host).
fn solve_options(options: &BuildOptions) -> Result<SolveOptions, BuildError> {
    Ok(SolveOptions {
        platform: Some(match &options.platform {
            Some(p) => p
                .subdir()
                .ok_or_else(|| BuildError::NotLinux(p.to_string()))?,
            None => options.solve.platform.unwrap_or(Subdir::Linux64),
        }),
        ..options.solve.clone()
    })
}

fn open_base(options: &BuildOptions, platform: &Platform) -> Result<Image, BuildError> {
    let open = OpenOptions {
        platform: platform.clone(),
        registry: options.registry.clone(),
    };
    Ok(crate::registry::open(&options.base, &open)?)
}

/// The base of an environment still to solve, opened for the solve's
/// platform; its glibc goes into `solve` unless the user fixed one.
fn base_for_solve(
    options: &BuildOptions,
    platform: &BuildPlatform,
    solve: &mut SolveOptions,
) -> Result<Image, BuildError> {
    let base = open_base(options, &platform.image)?;
    if solve.glibc.is_none() && !solve.glibc_given() {
        solve.glibc = glibc_version(&base, &options.base)?;
        match &solve.glibc {
            Some(v) => tracing::info!("the base image has glibc {v}"),
            None => tracing::info!("the base image has no glibc; solving without __glibc"),
        }
    }
    Ok(base)
}

/// Reads or solves the environment.
fn load(options: &BuildOptions, solve: &SolveOptions) -> Result<Environment, BuildError> {
    let env = Environment::load(&options.env, solve).map_err(|e| match e {
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
    Ok(env)
}

/// Writes the environment to `--lock-file`, if asked, for `subdir`.
fn write_lock(options: &BuildOptions, env: &Environment, subdir: Subdir) -> Result<(), BuildError> {
    if let Some(path) = &options.lock_file {
        let records: Vec<_> = env
            .records
            .iter()
            .map(|r| r.repodata_record.clone())
            .collect();
        write_explicit(path, subdir, &records)?;
        if !env.wheels.is_empty() {
            tracing::warn!(
                "{} holds the conda packages only: an @EXPLICIT spec has no place for the {} PyPI wheels",
                path.display(),
                env.wheels.len()
            );
        }
    }
    Ok(())
}

/// The one place a build's platform is decided: the image platform of the
/// packages' `subdir`, which must be the one asked for.
fn decide_platform(subdir: Subdir, options: &BuildOptions) -> Result<BuildPlatform, BuildError> {
    let image =
        Platform::from_subdir(subdir).ok_or_else(|| BuildError::NotLinux(subdir.to_string()))?;
    if let Some(asked) = &options.platform
        && *asked != image
    {
        return Err(BuildError::WrongPlatform {
            asked: asked.to_string(),
            env: subdir.to_string(),
            platform: image.to_string(),
        });
    }
    Ok(BuildPlatform { subdir, image })
}

/// Gives an empty base (`scratch`) the build's platform, and refuses a
/// base of another.
fn fit_base(image: &mut Image, platform: &BuildPlatform) -> Result<(), BuildError> {
    let BuildPlatform {
        subdir,
        image: platform,
    } = platform;
    let (os, arch) = (platform.os(), platform.architecture());
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
            env: subdir.to_string(),
            wanted: format!("{os}/{arch}"),
        });
    }
    Ok(())
}

fn python_info(records: &[PrefixRecord], platform: Subdir) -> Option<PythonInfo> {
    records
        .iter()
        .map(|r| &r.repodata_record.package_record)
        .find(|p| p.name.as_normalized() == "python")
        .and_then(|p| PythonInfo::from_python_record(p, platform).ok())
}

/// Refuses a base whose glibc the environment cannot run on (none, or too
/// old), unless `--virtual-package __glibc=X` says to go on. The base is
/// scanned only when something needs glibc, and not again after a solve.
/// Runs once the packages are found: their executables tell too.
pub(crate) fn check_glibc(
    subject: &Subject,
    package_dirs: &[PathBuf],
    options: &BuildOptions,
) -> Result<(), BuildError> {
    let solve = &subject.solve;
    if solve.glibc_given() {
        return Ok(());
    }
    let needs = GlibcNeeds::of(&subject.env.records, package_dirs);
    if !needs.any() {
        return Ok(());
    }
    let have = match options.env.solves() {
        true => solve.glibc.clone(),
        false => glibc_version(&subject.base, &options.base)?,
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
