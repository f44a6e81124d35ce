//! py-rattler (PyPI) as an independent conda client: solve and install from
//! a channel by URL (`http://` or `file://`), the way pixi and rattler-build
//! do, to prove a channel the harness serves is valid.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use super::process::{run_unchecked_timeout, stdout};
use super::tools::{skip_or_panic, tool};

/// The release the solve script below is written against.
pub const PY_RATTLER_REQUIREMENT: &str = "py-rattler==0.28.0";

/// Directory under `target/tmp` holding the venv (`.lock` beside it).
const VENV_DIR: &str = "venv-py-rattler-0.28.0";

/// Reads a JSON request from the file named by its argument, solves (and installs, when asked), and
/// prints the solved records as JSON. Linux virtual packages are given
/// explicitly so the result does not depend on the machine.
const SOLVE_PY: &str = r#"
import asyncio, json, os, sys, traceback
import rattler

with open(sys.argv[1]) as f:
    req = json.load(f)

def virtual(name, version):
    return rattler.GenericVirtualPackage(
        rattler.PackageName(name), rattler.Version(version),
        rattler.BuildString("0"))

async def main():
    gateway = rattler.Gateway(cache_dir=req["cache_dir"])
    records = await rattler.solve(
        sources=req["channels"],
        specs=req["specs"],
        gateway=gateway,
        platforms=req["platforms"],
        virtual_packages=[virtual("__unix", "0"), virtual("__linux", "6.1"),
                          virtual("__glibc", "2.36")],
    )
    if req.get("prefix"):
        await rattler.install(
            records,
            target_prefix=req["prefix"],
            cache_dir=req["package_cache"],
            platform=rattler.Subdir(req["platforms"][0]),
            show_progress=False,
        )
    out = []
    for r in records:
        out.append({
            "name": r.name.normalized,
            "version": str(r.version),
            "build": str(r.build),
            "subdir": str(r.subdir),
            "file_name": str(r.file_name),
            "url": str(r.url),
            "channel": str(r.channel),
            "sha256": r.sha256.hex() if r.sha256 is not None else None,
            "depends": [str(d) for d in r.depends],
        })
    out.sort(key=lambda r: r["name"])
    print(json.dumps(out))

# py-rattler's runtime threads can abort the interpreter's finalization
# (PyGILState_Release): leave without it once the answer is out.
try:
    asyncio.run(main())
except BaseException:
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(1)
sys.stdout.flush()
os._exit(0)
"#;

/// One record of a py-rattler solve, as py-rattler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolvedRecord {
    pub name: String,
    pub version: String,
    pub build: String,
    pub subdir: String,
    pub file_name: String,
    /// The archive's URL (under the channel URL that was solved against).
    pub url: String,
    pub channel: String,
    /// Lowercase hex, from the repodata.
    pub sha256: String,
    pub depends: Vec<String>,
}

/// A py-rattler solve (and optionally install) request.
pub struct PyRattlerSolve<'a> {
    /// Channel URLs (`http://127.0.0.1:PORT/`, `file:///...`).
    pub channels: &'a [&'a str],
    pub specs: &'a [&'a str],
    /// Subdirs to query, the target platform first (e.g.
    /// `["linux-aarch64", "noarch"]`).
    pub platforms: &'a [&'a str],
    /// py-rattler's repodata cache (use a fresh one per test, so repodata
    /// is really fetched).
    pub cache_dir: &'a Path,
    /// `Some((prefix, package_cache))`: install the solution into `prefix`
    /// for `platforms[0]`, downloading from the records' URLs into
    /// `package_cache` (a fresh one re-downloads everything).
    pub install: Option<(&'a Path, &'a Path)>,
}

impl PyRattlerSolve<'_> {
    /// Runs the solve (and install); `Ok(records sorted by name)`, or
    /// `Err(status, stdout and stderr)` when py-rattler failed (no
    /// solution, a download failing its sha256 check, ...). `None` (after a
    /// skip message) without a py-rattler venv.
    pub fn run(&self) -> Option<Result<Vec<SolvedRecord>, String>> {
        let python = py_rattler_python()?;
        let request = json!({
            "channels": self.channels,
            "specs": self.specs,
            "platforms": self.platforms,
            "cache_dir": self.cache_dir,
            "prefix": self.install.map(|(prefix, _)| prefix),
            "package_cache": self.install.map(|(_, cache)| cache),
        });
        let input = tempfile::NamedTempFile::new().expect("py-rattler request file");
        fs::write(input.path(), request.to_string()).expect("write py-rattler request");
        let output = run_unchecked_timeout(
            Command::new(python)
                .args(["-c", SOLVE_PY])
                .arg(input.path()),
            Duration::from_secs(300),
        );
        if !output.status.success() {
            return Some(Err(format!(
                "py-rattler {}: {}{}",
                output.status,
                stdout(&output),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let text = stdout(&output);
        let records: Vec<Value> = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("py-rattler printed no JSON ({e}): {text}"));
        Some(Ok(records.iter().map(solved_record).collect()))
    }
}

fn solved_record(value: &Value) -> SolvedRecord {
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
    SolvedRecord {
        name: text("name"),
        version: text("version"),
        build: text("build"),
        subdir: text("subdir"),
        file_name: text("file_name"),
        url: text("url"),
        channel: text("channel"),
        sha256: text("sha256"),
        depends: value["depends"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The venv's python with py-rattler installed, built at most once per test
/// process (and once across processes, see [`ensure_venv`]). `None` (after
/// a skip message) without python3/venv/pip or PyPI.
pub fn py_rattler_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    let mut fresh = false;
    let cached = PYTHON.get_or_init(|| {
        fresh = true;
        ensure_venv(&Path::new(env!("CARGO_TARGET_TMPDIR")).join(VENV_DIR))
            .map(|venv| venv.join("bin/python"))
    });
    if cached.is_none() && !fresh {
        // Every test that asks is told why it skips, not just the first.
        skip_or_panic("no venv with py-rattler (see the first failure above)");
    }
    cached.clone()
}

/// Makes sure `venv` holds a working py-rattler, building it under an
/// exclusive lock so parallel `cargo test` processes build it only once. A
/// half-built or stale venv (python moved) fails the import and is rebuilt.
fn ensure_venv(venv: &Path) -> Option<PathBuf> {
    let python3 = tool("python3")?;
    fs::create_dir_all(venv.parent().expect("venv has a parent")).expect("create target/tmp");
    let lock = File::create(venv.with_file_name(format!("{VENV_DIR}.lock"))).expect("venv lock");
    lock.lock().expect("lock venv");
    if imports_rattler(venv) {
        return Some(venv.to_path_buf());
    }
    let _ = fs::remove_dir_all(venv);
    let made = step(Command::new(python3).args(["-m", "venv"]).arg(venv), 120)
        && step(
            Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
                .arg(PY_RATTLER_REQUIREMENT)
                .env("PIP_NO_INPUT", "1"),
            600,
        );
    (made && imports_rattler(venv)).then(|| venv.to_path_buf())
}

fn imports_rattler(venv: &Path) -> bool {
    let python = venv.join("bin/python");
    python.exists()
        && run_unchecked_timeout(
            Command::new(python).args(["-c", "import rattler; rattler.solve; rattler.install"]),
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
            "cannot set up the py-rattler venv: {cmd:?} failed ({}): {}{}",
            output.status,
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    output.status.success()
}
