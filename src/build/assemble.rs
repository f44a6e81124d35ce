//! Stage 5, *the image*: the base (passed through), the package layers,
//! the environment's own layer, one layer per `--add`, and the config.

use rattler_conda_types::RepoDataRecord;
use rattler_conda_types::package::{IndexJson, PackageFile};

use crate::conda::activation::{activation, package_activation};
use crate::conda::env::EnvironmentKind;
use crate::image::{Image, ImageSource, annotations};
use crate::layer::Layer;
use crate::reference::Reference;
use crate::sbom::{BaseImage, Inventory};

use super::env_layer::add_env_layer;
use super::environment::Subject;
use super::options::Checked;
use super::{BuildError, BuildOptions, LayerReport};

/// The PATH of an image whose base sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image: `subject`'s base with the package `layers` on top, then the
/// environment's layer and the `--add` layers, and the config set.
/// `package_dirs` are the environment's packages, whose activation
/// scripts a not-installed environment's variables are read from. The
/// inventory of the image (for its SBOMs) comes back with it.
pub(crate) fn assemble(
    subject: Subject,
    layers: Vec<(Layer, LayerReport)>,
    package_dirs: &[std::path::PathBuf],
    checked: &Checked,
) -> Result<(Image, Vec<LayerReport>, Inventory), BuildError> {
    let (options, prefix_arc) = (&checked.options, checked.prefix_arc.as_str());
    let Subject {
        env,
        platform,
        mut base,
        ..
    } = subject;
    let image = &mut base;
    let mut reports = Vec::new();
    for (layer, report) in layers {
        image.push_layer(
            layer,
            &format!("conda-docker: {}", report.packages.join(" ")),
        );
        reports.push(report);
    }
    let base_name = match &options.base {
        ImageSource::Registry(reference) => Some(reference),
        _ => None,
    };
    let inventory = inventory(image, &env, package_dirs, base_name, &options.image_prefix);
    add_env_layer(image, &env, options, prefix_arc, &inventory)?;
    for (source, destination) in &options.add {
        image.add_layer_path(source, destination, None)?;
    }
    let activation = match &env.kind {
        EnvironmentKind::Installed { prefix } => activation(
            prefix,
            &options.image_prefix,
            platform.subdir,
            options.activation_scripts,
        ),
        EnvironmentKind::Resolved { .. } => package_activation(package_dirs),
    };
    for warning in &activation.warnings {
        tracing::warn!("{warning}");
    }
    configure(image, options, &activation.vars);
    let annotated = annotations::standard(
        image.epoch(),
        base_name,
        image.source_digest(),
        &options.annotations,
    );
    image.set_annotations(annotated);
    image.set_reference(checked.name.clone());
    Ok((base, reports, inventory))
}

/// What the SBOMs of the image name: `env`'s packages and wheels on
/// `base` (pulled as `base_name`), stamped with the image's epoch. A base
/// with no layers is `scratch`, and is no component. Each package's
/// license and dependencies come from its `info/index.json` in
/// `package_dirs` (in `env.records`' order), as its record in the image
/// does: a record from an `@EXPLICIT` file has neither.
fn inventory(
    base: &Image,
    env: &crate::conda::env::Environment,
    package_dirs: &[std::path::PathBuf],
    base_name: Option<&Reference>,
    image_prefix: &str,
) -> Inventory {
    let records: Vec<RepoDataRecord> = env
        .records
        .iter()
        .zip(package_dirs)
        .map(|(record, dir)| {
            let mut record = record.repodata_record.clone();
            if let Ok(index) = IndexJson::from_package_directory(dir) {
                record.package_record.license = index.license;
                record.package_record.depends = index.depends;
            }
            record
        })
        .collect();
    let base_image = (base_name.is_some() || base.source_digest().is_some()).then(|| BaseImage {
        reference: base_name.map(ToString::to_string),
        digest: base.source_digest().map(|d| d.to_string()),
    });
    // Named after the environment, not the image: the environment's layer
    // (which holds the SBOMs) is the same whatever name or registry the
    // image is written or pushed under.
    Inventory::new(
        format!("conda environment {image_prefix}"),
        crate::image::rfc3339(base.epoch()),
        base_image,
        &records,
        &env.wheels,
    )
}

/// The config of the environment image: merged onto the base's, then the
/// activation variables, then the user's.
fn configure(image: &mut Image, options: &BuildOptions, activation: &[(String, String)]) {
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
}
