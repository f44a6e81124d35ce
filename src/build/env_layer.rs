//! The environment's own layer, above its packages': `conda-meta/history`,
//! the image's SBOMs in `conda-meta/sbom/` and, for an installed
//! environment, the files no package owns.

use std::path::Path;

use rattler_conda_types::{PrefixRecord, Subdir};

use crate::conda::cache::dist_name;
use crate::conda::env::{Environment, EnvironmentKind};
use crate::conda::unrelocate::replace;
use crate::conda::untracked::{Untracked, path_of as untracked_path, untracked};
use crate::image::{Image, rfc3339};
use crate::sbom::{Inventory, SbomFormat};

use super::{BuildError, BuildOptions};

/// Adds the environment's last layer: `conda-meta/history`, the SBOMs of
/// `inventory` in both formats under `conda-meta/sbom/` (a folder: conda
/// reads every `conda-meta/*.json` as a package record), and the files no
/// package owns, with the host prefix replaced in text files.
pub(crate) fn add_env_layer(
    image: &mut Image,
    env: &Environment,
    options: &BuildOptions,
    prefix_arc: &str,
    inventory: &Inventory,
) -> Result<(), BuildError> {
    let history = history_file(&env.records, image.epoch());
    let sboms: Vec<(String, Vec<u8>)> = SbomFormat::ALL
        .iter()
        .map(|f| {
            let path = format!("{prefix_arc}/conda-meta/sbom/{}", f.file_name());
            (path, inventory.render(*f))
        })
        .collect();
    let (files, prefix) = match &env.kind {
        EnvironmentKind::Installed { prefix } if options.untracked => {
            (untracked(env, prefix)?, prefix.as_path())
        }
        _ => (Vec::new(), Path::new("")),
    };
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
            for (path, bytes) in &sboms {
                tar.add_file(path, 0o644, bytes.len() as u64, bytes.as_slice())?;
            }
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
