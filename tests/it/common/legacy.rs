//! Legacy docker v1 tars written by the original Python conda-docker 0.0.3.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{run, run_unchecked_timeout, stdout};
use super::tools::{skip_or_panic, tool};

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
    let mut fresh = false;
    let cached = PYTHON.get_or_init(|| {
        fresh = true;
        ensure_venv(&Path::new(env!("CARGO_TARGET_TMPDIR")).join(VENV_DIR))
            .map(|venv| venv.join("bin/python"))
    });
    if cached.is_none() && !fresh {
        // Every test that asks is told why it skips, not just the first.
        skip_or_panic("no venv with conda-docker 0.0.3 (see the first failure above)");
    }
    cached.clone()
}

/// Makes sure `venv` holds a working conda-docker 0.0.3, building it under
/// an exclusive lock so parallel `cargo test` processes build it only once.
/// A half-built or stale venv (python moved) fails the import and is rebuilt.
fn ensure_venv(venv: &Path) -> Option<PathBuf> {
    let python3 = tool("python3")?;
    let lock = File::create(venv.with_file_name(format!("{VENV_DIR}.lock"))).expect("venv lock");
    lock.lock().expect("lock venv");
    if imports_conda_docker(venv) {
        return Some(venv.to_path_buf());
    }
    let _ = fs::remove_dir_all(venv);
    let made = step(Command::new(python3).args(["-m", "venv"]).arg(venv), 120)
        && step(
            Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
                .arg(CONDA_DOCKER_REQUIREMENT)
                .env("PIP_NO_INPUT", "1"),
            600,
        );
    made.then(|| venv.to_path_buf())
}

fn imports_conda_docker(venv: &Path) -> bool {
    let python = venv.join("bin/python");
    python.exists()
        && run_unchecked_timeout(
            Command::new(python).args(["-c", "import conda_docker.docker.base"]),
            Duration::from_secs(60),
        )
        .status
        .success()
}

/// Runs one set-up step; on failure reports it through the skip policy.
fn step(cmd: &mut Command, timeout_secs: u64) -> bool {
    let output = run_unchecked_timeout(cmd, Duration::from_secs(timeout_secs));
    if !output.status.success() {
        skip_or_panic(&format!(
            "cannot set up the conda-docker 0.0.3 venv: {cmd:?} failed ({}): {}{}",
            output.status,
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    output.status.success()
}
