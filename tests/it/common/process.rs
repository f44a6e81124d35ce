//! Running external commands with a timeout and readable failures.

use std::fs::File;
use std::io::{Read, Seek};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Generous enough for a podman load of a small image on a busy 2-core CI
/// machine, short enough that a hung tool fails the test instead of CI.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` (timeout [`DEFAULT_TIMEOUT`]) and panics unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, DEFAULT_TIMEOUT)
}

/// Runs `cmd` (timeout [`DEFAULT_TIMEOUT`]); the caller judges the status.
pub fn run_unchecked(cmd: &mut Command) -> Output {
    run_unchecked_timeout(cmd, DEFAULT_TIMEOUT)
}

/// Runs `cmd` with `timeout` and panics unless it succeeds.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let output = run_unchecked_timeout(cmd, timeout);
    if !output.status.success() {
        panic!("{}", describe(cmd, &output, "failed"));
    }
    output
}

/// Runs `cmd` with `timeout`, stdin closed; panics only if it cannot start or
/// times out (then it is killed by PID first).
///
/// Output goes to anonymous temp files rather than pipes: a grandchild that
/// inherits the pipe (conmon, a server) would otherwise keep a reader thread
/// blocked long after the command itself exited.
pub fn run_unchecked_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let (mut out, mut err) = (capture_file(), capture_file());
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone stdout file"))
        .stderr(err.try_clone().expect("clone stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let status = wait_with_deadline(&mut child, timeout);
    let output = Output {
        status: status.unwrap_or_else(|| child.wait().expect("wait for killed child")),
        stdout: read_back(&mut out),
        stderr: read_back(&mut err),
    };
    if status.is_none() {
        panic!(
            "{}",
            describe(cmd, &output, &format!("timed out after {timeout:?}"))
        );
    }
    output
}

/// Lossy UTF-8 stdout, for assertions and messages.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Lossy UTF-8 stderr, for assertions and messages.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `conda-docker` with nothing of the host's but `PATH`: `HOME` (so
/// docker's and podman's logins) and our cache under `home`.
pub fn isolated_conda_docker(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conda-docker"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cache"));
    cmd
}

/// A lowercase name unique within this test run, e.g. `bb-4242-3`: image
/// names and tags must not collide between tests that share a registry.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id()).to_lowercase()
}

/// Waits for `child` until `timeout`; on expiry kills it (by its PID) and
/// returns `None`. Polls with a short backoff: std has no timed wait.
fn wait_with_deadline(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn capture_file() -> File {
    tempfile::tempfile().expect("create capture file")
}

fn read_back(file: &mut File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.rewind().expect("rewind capture file");
    file.read_to_end(&mut bytes).expect("read capture file");
    bytes
}

/// A failure report with everything needed to reproduce and diagnose it.
fn describe(cmd: &Command, output: &Output, what: &str) -> String {
    format!(
        "command {what}: {cmd:?}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        tail(&output.stdout),
        tail(&output.stderr)
    )
}

/// The last 16 KiB of a stream: enough to diagnose, short enough to read.
fn tail(bytes: &[u8]) -> String {
    const KEEP: usize = 16 * 1024;
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().rev().nth(KEEP) {
        Some((cut, _)) => format!("[... {cut} bytes cut ...]{}", &text[cut..]),
        None => text.into_owned(),
    }
}
