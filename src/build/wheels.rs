//! Between stages 2 and 3: the PyPI wheels a lock file pins, their tags
//! checked against the image (the environment's python, the base's glibc,
//! the platform), then fetched into our cache, all before any layer is
//! built, so a wheel that cannot be installed leaves no output.

use std::path::PathBuf;

use crate::conda::virtual_packages::Overrides;
use crate::dirs::cache_dir;
use crate::image::glibc_version;
use crate::parallel::in_parallel;
use crate::pypi::{PypiError, Target, check_tags, fetch};

use super::environment::Subject;
use super::{BuildError, BuildOptions};

/// The cached file of each of the environment's wheels, in its order.
pub(crate) fn fetch_wheels(
    subject: &Subject,
    options: &BuildOptions,
) -> Result<Vec<PathBuf>, BuildError> {
    let wheels = &subject.env.wheels;
    if wheels.is_empty() {
        return Ok(Vec::new());
    }
    let Some(python) = &subject.python else {
        let names: Vec<&str> = wheels.iter().map(|w| w.name.as_str()).collect();
        return Err(PypiError::NoPython(names.join(", ")).into());
    };
    let image = &subject.platform.image;
    let glibc = match wheels.iter().any(|w| w.file_name.contains("manylinux")) {
        true => glibc(subject, options)?,
        false => None,
    };
    let target = Target {
        python: python.short_version,
        glibc: glibc.as_deref().and_then(crate::pypi::parse_glibc),
        arch: Target::wheel_arch(image.architecture(), image.variant()),
    };
    for wheel in wheels {
        check_tags(&wheel.file_name, &target).map_err(|why| PypiError::Tags {
            wheel: wheel.file_name.clone(),
            why,
        })?;
    }
    let dir = cache_dir().join("wheels");
    let fetched = in_parallel(wheels, options.jobs, |wheel| {
        tracing::info!("fetching {}", wheel.file_name);
        fetch(wheel, &dir)
    });
    Ok(fetched.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// The glibc `manylinux` wheels must suit: the one the user states
/// (`--virtual-package __glibc=X`, `CONDA_OVERRIDE_GLIBC`, `.condarc`), as
/// for the conda packages, else the base's.
fn glibc(subject: &Subject, options: &BuildOptions) -> Result<Option<String>, BuildError> {
    let stated = Overrides::from_config(&subject.solve.virtual_packages)
        .ok()
        .and_then(|o| o.glibc().map(|g| g.map(str::to_owned)));
    match stated {
        Some(glibc) => Ok(glibc),
        None => Ok(glibc_version(&subject.base, &options.base)?),
    }
}
