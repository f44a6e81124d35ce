//! The benchmark of issue 15 ("Speed"), run by `scripts/bench.sh`: not a
//! test (it is ignored, and asserts nothing about time), but it lives
//! here to reuse the harness (channels, rattler installs, the loopback
//! registry).
//!
//! It assembles a big realistic environment from this machine's files
//! (see `bench/env.rs`), then measures in one run, on that environment,
//! medians of `BENCH_RUNS` runs (default 3): cold and unchanged builds to
//! a docker-archive and an OCI layout, a zstd build, a rebuild with one
//! small package changed, pushes to a `docker-registry` on loopback, a
//! `--no-cache` build with the package cache moved away; against
//! `tar | pigz`, `tar | zstd`, conda-pack and `skopeo copy`. Then one small
//! build under callgrind (an instruction count is steady on a busy
//! machine). It writes `docs/benchmarks.md`.
//!
//! ```text
//! scripts/bench.sh                     # the benchmark (~2 GB environment)
//! BENCH_SCALE=0.05 scripts/bench.sh    # a quick run on 5 % of the files
//! ```
//!
//! - `BENCH_DIR` keeps the channel, environments and the conda-pack venv
//!   between runs (`scripts/bench.sh`: `target/bench`); without it, a temp
//!   dir removed at the end.
//! - `BENCH_SCALE` (0-1, default 1): the share of host files packaged.
//! - `BENCH_RUNS` (default 3).
//! - `BENCH_BIN`: the binary measured (default `target/release/conda-docker`).

mod cases;
mod env;
mod measure;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, CacheLayout, CondaChannel, PACKAGES_WITHOUT_BINARY, Venv};
use env::walk;
use measure::{TIME, Timer, last_lines};
use report::Results;

/// conda-pack from PyPI, in a venv under `BENCH_DIR`.
const CONDA_PACK: Venv = Venv {
    dir: "conda-pack-venv",
    requirements: &["conda-pack"],
    check: "import conda_pack",
};

#[test]
#[ignore = "the benchmark: run scripts/bench.sh (writes ~10 GB, runs for many minutes)"]
fn benchmark() {
    if !Path::new(TIME).exists() {
        common::skip_or_panic(&format!("{TIME} not found (Debian package: time)"));
        return;
    }
    common::require_tools!("pigz", "zstd", "tar", "skopeo", "docker-registry");
    let (dir, _temp) = bench_dir();
    let bench = Bench::new(dir);
    let mut results = Results::default();
    for run in 1..=bench.runs {
        eprintln!("bench: run {run} of {}", bench.runs);
        cases::run_once(&bench, &mut results);
    }
    let instructions = instruction_count(&bench);
    let doc = report::markdown(&bench, &results, &instructions);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
    fs::write(&path, &doc).expect("write docs/benchmarks.md");
    println!("{doc}");
    eprintln!("bench: wrote {}", path.display());
}

/// What every case needs.
struct Bench {
    dir: PathBuf,
    bin: PathBuf,
    envs: env::Environments,
    cores: usize,
    runs: usize,
    scale: f64,
    flags: Flags,
    /// `-b scratch`, and the host's glibc as a virtual package: the
    /// packages' files come from this host, and the build refuses a base
    /// without glibc otherwise.
    base: Vec<String>,
    /// The `conda-pack` script, or why there is none.
    conda_pack: Result<PathBuf, String>,
    timer: Timer,
}

impl Bench {
    fn new(dir: PathBuf) -> Self {
        let number = |name: &str, default: f64| -> f64 {
            std::env::var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?}: give a number"))
            })
        };
        let scale = number("BENCH_SCALE", 1.0);
        assert!(scale > 0.0 && scale <= 1.0, "BENCH_SCALE is in (0, 1]");
        let runs = number("BENCH_RUNS", 3.0) as usize;
        assert!(runs >= 1, "BENCH_RUNS is at least 1");
        let bin = product_binary();
        eprintln!("bench: dir {}, binary {}", dir.display(), bin.display());
        cases::MovedAway::restore(&dir.join("pkgs"));
        let envs = env::prepare(&dir, scale);
        let conda_pack = CONDA_PACK
            .python_at(&dir.join(CONDA_PACK.dir))
            .map(|python| python.with_file_name("conda-pack"))
            .ok_or_else(|| "no venv with conda-pack (python3, venv, pip or PyPI missing)".into());
        let glibc = common::stdout(&common::run(
            Command::new("getconf").arg("GNU_LIBC_VERSION"),
        ));
        let glibc = glibc.trim().trim_start_matches("glibc ");
        let base = [
            "-b",
            "scratch",
            "--virtual-package",
            &format!("__glibc={glibc}"),
        ];
        Bench {
            base: base.map(str::to_owned).to_vec(),
            timer: Timer::new(&dir),
            flags: Flags::of(&bin),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            dir,
            bin,
            envs,
            runs,
            scale,
            conda_pack,
        }
    }

    /// `conda-docker build -q --json -b scratch -p PREFIX`, timed, with
    /// `cache` as its layer cache and nothing of the host's caches and
    /// config; `--compression` when given and the binary has it.
    fn build(&self, prefix: &Path, cache: &Path, compression: Option<&str>) -> Command {
        let mut cmd = self.timer.command(&self.bin);
        cmd.args(["build", "-q", "--json", "-p"])
            .arg(prefix)
            .args(&self.base);
        if let Some(compression) = compression.filter(|_| self.flags.compression) {
            cmd.args(["--compression", compression]);
        }
        self.isolate(&mut cmd, cache, &self.envs.pkgs);
        cmd
    }

    fn isolate(&self, cmd: &mut Command, cache: &Path, pkgs: &Path) {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.join("home"))
            .env("CONDA_DOCKER_CACHE_DIR", cache)
            .env("CONDA_PKGS_DIRS", pkgs);
    }

    /// The command that reproduces this run.
    fn command(&self) -> String {
        let mut vars = String::new();
        if self.scale < 1.0 {
            vars.push_str(&format!("BENCH_SCALE={} ", self.scale));
        }
        if self.runs != 3 {
            vars.push_str(&format!("BENCH_RUNS={} ", self.runs));
        }
        format!("{vars}scripts/bench.sh")
    }

    /// The machine, the date, the commit and the tools' versions.
    fn machine(&self) -> Vec<String> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown CPU".into(), |(_, model)| model.trim().to_owned());
        let version = |program: &Path, arg: &str| {
            let out = common::run_unchecked(Command::new(program).arg(arg));
            let text = format!(
                "{}{}",
                common::stdout(&out),
                String::from_utf8_lossy(&out.stderr)
            );
            let line = text.lines().next().unwrap_or_default();
            line.trim_matches(|c: char| c == '*' || c.is_whitespace())
                .to_owned()
        };
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let git = |args: &[&str]| {
            common::stdout(&common::run(
                Command::new("git").arg("-C").arg(manifest).args(args),
            ))
            .trim()
            .to_owned()
        };
        let dirty = if git(&["status", "--porcelain", "src"]).is_empty() {
            ""
        } else {
            " (src/ has uncommitted changes)"
        };
        let tools: Vec<String> = ["pigz", "zstd", "skopeo", "docker-registry"]
            .iter()
            .map(|t| version(Path::new(t), "--version"))
            .chain(self.conda_pack.iter().map(|c| version(c, "--version")))
            .collect();
        vec![
            format!("machine: {} cores (nproc), {cpu}", self.cores),
            format!("date: {}", utc_now()),
            format!("commit: {}{dirty}", git(&["rev-parse", "HEAD"])),
            format!(
                "binary: {} ({})",
                version(&self.bin, "--version"),
                self.bin.display()
            ),
            format!("flags: {}", self.flags.describe()),
            format!("tools: {}", tools.join("; ")),
            format!(
                "load average at the end: {}",
                fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim()
            ),
        ]
    }
}

/// Whether the binary has the flags that other work on issue 15 adds.
struct Flags {
    compression: bool,
    jobs: bool,
}

impl Flags {
    fn of(bin: &Path) -> Self {
        let help = common::stdout(&common::run(Command::new(bin).args(["build", "--help"])));
        Flags {
            compression: help.contains("--compression"),
            jobs: help.contains("--jobs"),
        }
    }

    fn missing(&self, flag: &str) -> String {
        format!(
            "this conda-docker has no `build {flag}` flag (issue 15 adds it): rebuild it once it has"
        )
    }

    fn describe(&self) -> String {
        let has = |yes: bool, flag: &str| {
            format!(
                "{flag} {}",
                if yes {
                    "present"
                } else {
                    "MISSING (default used)"
                }
            )
        };
        format!(
            "{}, {}",
            has(self.compression, "--compression"),
            has(self.jobs, "--jobs")
        )
    }
}

/// `date -u`.
fn utc_now() -> String {
    common::stdout(&common::run(
        Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]),
    ))
    .trim()
    .to_owned()
}

/// The instructions (callgrind's total Ir) of one small build: the test
/// fixtures' packages, `--no-cache`, one job when `--jobs` exists.
fn instruction_count(bench: &Bench) -> String {
    if common::tool("valgrind").is_none() {
        return "not measured: no valgrind (Debian package: valgrind)".into();
    }
    let dir = bench.dir.join("callgrind");
    env::remove(&dir);
    let channel = CondaChannel::build_without_binary(&dir.join("channel"));
    let env = common::install_env(&channel, &PACKAGES_WITHOUT_BINARY, CacheLayout::Conda, &dir);
    let profile = dir.join("callgrind.out");
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", profile.display()))
        .arg(&bench.bin)
        .args(["build", "-q", "--no-cache", "-p"])
        .arg(&env.prefix)
        .args(&bench.base)
        .arg("-o")
        .arg(dir.join("image.tar"));
    if bench.flags.jobs {
        cmd.args(["--jobs", "1"]);
    }
    bench.isolate(&mut cmd, &dir.join("cache"), &env.cache_dir);
    eprintln!("bench: callgrind ...");
    let output = common::run_unchecked_timeout(&mut cmd, Duration::from_secs(1800));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let collected = stderr.lines().find_map(|l| {
        l.split_once("Collected :")
            .map(|(_, n)| n.trim().to_owned())
    });
    let text = match collected {
        Some(ir) if output.status.success() => format!(
            "**{ir} instructions** (callgrind's total Ir, every thread) for \
             `valgrind --tool=callgrind conda-docker build --no-cache -b scratch -p ENV -o image.tar{}` \
             of the test fixtures' {} small packages ({}).",
            if bench.flags.jobs { " --jobs 1" } else { "" },
            env.records.len(),
            PACKAGES_WITHOUT_BINARY.join(", ")
        ),
        _ => format!(
            "not measured: callgrind failed ({}): {}",
            output.status,
            last_lines(&stderr, 6)
        ),
    };
    env::remove(&dir);
    text
}

/// `BENCH_DIR`, or a temp dir removed at the end.
fn bench_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("BENCH_DIR") {
        Some(dir) => {
            let dir = std::path::absolute(dir).expect("absolute BENCH_DIR");
            fs::create_dir_all(&dir).expect("create BENCH_DIR");
            (dir, None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("conda-docker-bench-")
                .tempdir_in("/tmp")
                .expect("bench temp dir");
            (temp.path().to_path_buf(), Some(temp))
        }
    }
}

/// `BENCH_BIN`, else the release binary, else the one built for the tests.
fn product_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BENCH_BIN") {
        return bin.into();
    }
    // The test runs as `<target>/<profile>/deps/it-<hash>`.
    let exe = std::env::current_exe().expect("test executable");
    let target = exe.ancestors().nth(3).expect("target dir");
    let release = target.join("release/conda-docker");
    let bin = if release.exists() {
        release
    } else {
        eprintln!(
            "bench: no {}: run `cargo build --release`",
            release.display()
        );
        PathBuf::from(env!("CARGO_BIN_EXE_conda-docker"))
    };
    let built = fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    if newest_mtime(&src) > built {
        eprintln!(
            "bench: WARNING {} is older than src/: rebuild it",
            bin.display()
        );
    }
    bin
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    walk(dir)
        .iter()
        .filter_map(|p| p.symlink_metadata().and_then(|m| m.modified()).ok())
        .max()
}
