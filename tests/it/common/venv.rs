//! Python venvs with one PyPI package each (the Python conda-docker 0.0.3,
//! py-rattler), built once under `target/tmp` and shared by every test.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{run_unchecked_timeout, stdout};
use super::tools::{skip_or_panic, tool};

/// A venv: its folder under `target/tmp`, what pip installs, and a Python
/// statement that succeeds only when the install works.
pub struct Venv {
    /// Folder name under `target/tmp` (`.lock` beside it).
    pub dir: &'static str,
    /// The pip requirements.
    pub requirements: &'static [&'static str],
    /// Run with `python -c` to check the venv.
    pub check: &'static str,
}

impl Venv {
    /// The venv's python, built at most once per test process (and once
    /// across processes, under a file lock). `None` (after a skip message)
    /// without python3, venv, pip or PyPI; every caller is told why.
    pub fn python(&self, cell: &'static OnceLock<Option<PathBuf>>) -> Option<PathBuf> {
        let mut fresh = false;
        let cached = cell.get_or_init(|| {
            fresh = true;
            self.ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join(self.dir))
                .map(|venv| venv.join("bin/python"))
        });
        if cached.is_none() && !fresh {
            skip_or_panic(&format!(
                "no venv with {} (see the first failure above)",
                self.requirements.join(" ")
            ));
        }
        cached.clone()
    }

    /// The python of a venv kept at `venv` instead of under `target/tmp`
    /// (the benchmark keeps its own with its data), built unless it works.
    pub fn python_at(&self, venv: &Path) -> Option<PathBuf> {
        self.ensure(venv).map(|venv| venv.join("bin/python"))
    }

    /// Makes sure `venv` works, building it under an exclusive lock. A
    /// half-built or stale venv (python moved) fails the check and is
    /// rebuilt.
    fn ensure(&self, venv: &Path) -> Option<PathBuf> {
        let python3 = tool("python3")?;
        fs::create_dir_all(venv.parent().expect("venv has a parent")).expect("create target/tmp");
        let lock =
            File::create(venv.with_file_name(format!("{}.lock", self.dir))).expect("venv lock");
        lock.lock().expect("lock venv");
        if self.works(venv) {
            return Some(venv.to_path_buf());
        }
        let _ = fs::remove_dir_all(venv);
        let made = self.step(Command::new(python3).args(["-m", "venv"]).arg(venv), 120)
            && self.step(
                Command::new(venv.join("bin/python"))
                    .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
                    .args(self.requirements)
                    .env("PIP_NO_INPUT", "1"),
                600,
            );
        (made && self.works(venv)).then(|| venv.to_path_buf())
    }

    fn works(&self, venv: &Path) -> bool {
        let python = venv.join("bin/python");
        python.exists()
            && run_unchecked_timeout(
                Command::new(python).args(["-c", self.check]),
                Duration::from_secs(60),
            )
            .status
            .success()
    }

    /// Runs one set-up step; on failure reports it through the skip policy.
    fn step(&self, cmd: &mut Command, timeout_secs: u64) -> bool {
        let output = run_unchecked_timeout(cmd, Duration::from_secs(timeout_secs));
        if !output.status.success() {
            skip_or_panic(&format!(
                "cannot set up the {} venv: {cmd:?} failed ({}): {}{}",
                self.requirements.join(" "),
                output.status,
                stdout(&output),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        output.status.success()
    }
}
