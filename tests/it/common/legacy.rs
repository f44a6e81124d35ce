//! Legacy docker v1 tars written by the original Python conda-docker 0.0.3.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::process::run;
use super::venv::Venv;

/// The release whose tar layout users' old images have.
const CONDA_DOCKER_REQUIREMENT: &str = "conda-docker==0.0.3";

/// Directory under `target/tmp` holding the venv (`.lock` beside it).
const VENV_DIR: &str = "venv-conda-docker-0.0.3";

/// Builds the image exactly as 0.0.3's `build_docker_environment_image`
/// does for a scratch base (`arcpath="/"`), minus its conda-only file filter.
/// Layers are given bottom first; 0.0.3 keeps them top first internally.
const WRITE_TAR_PY: &str = r#"
import sys
from conda_docker.docker.base import Image
out, name, tag, *layer_dirs = sys.argv[1:]
image = Image(name=name, tag=tag)
for layer_dir in layer_dirs:
    image.add_layer_path(layer_dir, arcpath="/")
image.write_file(out)
"#;

/// Writes `out`: a legacy tar named `conda-docker-legacy:latest` with one
/// layer holding the contents of `layer_dir`. `None` when skipped.
#[must_use]
pub fn legacy_conda_docker_tar(out: &Path, layer_dir: &Path) -> Option<()> {
    legacy_conda_docker_tar_layers(out, "conda-docker-legacy", "latest", &[layer_dir])
}

/// Writes `out`: a legacy tar for `name:tag` whose layers (bottom first) hold
/// the contents of `layer_dirs`, each layer's `parent` the one before.
/// `None` (after a skip message) when the 0.0.3 venv cannot be had.
#[must_use]
pub fn legacy_conda_docker_tar_layers(
    out: &Path,
    name: &str,
    tag: &str,
    layer_dirs: &[&Path],
) -> Option<()> {
    let python = legacy_python()?;
    run(Command::new(python)
        .args(["-c", WRITE_TAR_PY])
        .arg(out)
        .args([name, tag])
        .args(layer_dirs));
    Some(())
}

/// The venv's python with conda-docker 0.0.3 installed, built at most once
/// per test process (and once across processes, see [`ensure_venv`]).
fn legacy_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    Venv {
        dir: VENV_DIR,
        requirements: &[CONDA_DOCKER_REQUIREMENT],
        check: "import conda_docker.docker.base",
    }
    .python(&PYTHON)
}
