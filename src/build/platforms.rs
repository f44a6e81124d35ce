//! One build for several platforms: the one-platform pipeline once per
//! platform (each on that platform's image of the base), the images then
//! handed on together, to be written or pushed as one index.
//!
//! Each layer's identity holds its platform, so the layer cache never
//! gives one platform's layer to another; a noarch package's layer is the
//! same bytes on every platform, so an index stores it once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rattler_conda_types::Subdir;

use crate::conda::env::EnvSelector;
use crate::image::Image;
use crate::platform::Platform;
use crate::sbom::Inventory;

use super::{BuildError, BuildOptions, LayerReport, Reporter, build_inventoried, retrying};

/// The images of a build of several platforms, in the order asked for.
#[derive(Debug)]
pub struct PlatformImages {
    /// One image per platform.
    pub images: Vec<Image>,
    /// The conda layers of each image.
    pub layers: Vec<Vec<LayerReport>>,
    /// What each image's SBOMs list.
    pub inventories: Vec<Inventory>,
}

/// Builds one image per platform of `platforms`, in that order, from
/// specs, an environment file or a lock file, and hands them to `output`
/// (as [`super::build_with_output`] does with one). `--lock-file PATH`
/// becomes one file per platform, named by [`lock_file_for`]. An
/// installed environment or an `@EXPLICIT` spec is of one platform and is
/// refused, as is a platform given twice.
pub fn build_platforms_with_output<T, E: From<BuildError>>(
    options: &BuildOptions,
    platforms: &[Platform],
    reporter: &dyn Reporter,
    output: impl FnMut(&mut PlatformImages) -> Result<T, E>,
) -> Result<(PlatformImages, T), E> {
    check(options, platforms)?;
    let build_all = || -> Result<PlatformImages, BuildError> {
        let mut built = PlatformImages {
            images: Vec::new(),
            layers: Vec::new(),
            inventories: Vec::new(),
        };
        for platform in platforms {
            let (image, layers, inventory) =
                build_inventoried(&for_platform(options, platform)?, reporter)?;
            built.images.push(image);
            built.layers.push(layers);
            built.inventories.push(inventory);
        }
        Ok(built)
    };
    retrying(options, build_all, output)
}

/// Where `--lock-file PATH` goes for `subdir` in a build of several
/// platforms: the platform before the extension, as conda-lock names its
/// files (`env.lock` → `env.linux-64.lock`, `spec` → `spec.linux-64`).
pub fn lock_file_for(path: &Path, subdir: Subdir) -> PathBuf {
    file_for_platform(path, subdir, None)
}

/// Where a file asked for as `path` goes for `subdir` in a build of
/// several platforms: the platform before `ending` when the name ends in
/// it (`sbom.spdx.json` → `sbom.linux-64.spdx.json`, so the name still
/// says the format), else before the extension, as [`lock_file_for`].
pub fn file_for_platform(path: &Path, subdir: Subdir, ending: Option<&str>) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let stem = ending
        .and_then(|ending| Some((name.strip_suffix(ending)?, ending)))
        .filter(|(stem, _)| !stem.is_empty());
    let name = match (stem, path.extension()) {
        (Some((stem, ending)), _) => format!("{stem}.{subdir}{ending}"),
        (None, Some(extension)) => {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            format!("{stem}.{subdir}.{}", extension.to_string_lossy())
        }
        (None, None) => format!("{name}.{subdir}"),
    };
    path.with_file_name(name)
}

/// Refuses, before any work, an environment of one platform and a
/// platform asked for twice.
fn check(options: &BuildOptions, platforms: &[Platform]) -> Result<(), BuildError> {
    let one = |what: String| Err(BuildError::OnePlatformOnly { what });
    match &options.env {
        EnvSelector::Prefix(path) => return one(format!("the environment at {}", path.display())),
        EnvSelector::Name(name) => return one(format!("the installed environment `{name}`")),
        EnvSelector::Active => return one("the active environment (CONDA_PREFIX)".into()),
        EnvSelector::Pixi(_) => return one("an installed pixi environment".into()),
        EnvSelector::Explicit(path) => {
            return one(format!("the @EXPLICIT spec {}", path.display()));
        }
        EnvSelector::EnvironmentFile(_) | EnvSelector::LockFile(_) | EnvSelector::Specs(_) => {}
    }
    let mut seen = HashSet::new();
    for platform in platforms {
        let subdir = platform
            .subdir()
            .ok_or_else(|| BuildError::NotLinux(platform.to_string()))?;
        if !seen.insert(subdir) {
            return Err(BuildError::SamePlatformTwice(subdir.to_string()));
        }
    }
    Ok(())
}

/// The options of one platform's build.
fn for_platform(options: &BuildOptions, platform: &Platform) -> Result<BuildOptions, BuildError> {
    let subdir = platform
        .subdir()
        .ok_or_else(|| BuildError::NotLinux(platform.to_string()))?;
    Ok(BuildOptions {
        platform: Some(platform.clone()),
        lock_file: options
            .lock_file
            .as_deref()
            .map(|path| lock_file_for(path, subdir)),
        ..options.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_are_named_by_platform() {
        let named = |path: &str| lock_file_for(Path::new(path), Subdir::LinuxAarch64);
        assert_eq!(
            named("out/env.lock"),
            Path::new("out/env.linux-aarch64.lock")
        );
        assert_eq!(named("spec"), Path::new("spec.linux-aarch64"));
        assert_eq!(
            named("a.b/spec.txt"),
            Path::new("a.b/spec.linux-aarch64.txt")
        );
        let sbom =
            |path: &str| file_for_platform(Path::new(path), Subdir::Linux64, Some(".spdx.json"));
        assert_eq!(
            sbom("out/sbom.spdx.json"),
            Path::new("out/sbom.linux-64.spdx.json")
        );
        assert_eq!(sbom("sbom.json"), Path::new("sbom.linux-64.json"));
        assert_eq!(sbom(".spdx.json"), Path::new(".spdx.linux-64.json"));
    }
}
