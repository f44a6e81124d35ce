//! py-rattler (PyPI) as an independent conda client: solve and install from
//! a channel by URL (`http://` or `file://`), the way pixi and rattler-build
//! do, to prove a channel the harness serves is valid.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use super::process::{run_unchecked_timeout, stdout};
use super::venv::Venv;

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

/// The venv's python with py-rattler installed, built once (see
/// [`Venv::python`]). `None` (after a skip message) without python3, venv,
/// pip or PyPI.
pub fn py_rattler_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    Venv {
        dir: VENV_DIR,
        requirements: &[PY_RATTLER_REQUIREMENT],
        check: "import rattler; rattler.solve; rattler.install",
    }
    .python(&PYTHON)
}
