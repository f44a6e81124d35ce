//! Timing commands: wall clock here, CPU time and peak RSS from
//! `/usr/bin/time`, and the medians the report shows.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;

/// GNU time: `%M` is the peak RSS of the command (for a pipeline run by a
/// shell, of its largest process).
pub(super) const TIME: &str = "/usr/bin/time";
/// Longest any single command may take.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// One timed run.
#[derive(Clone, Copy)]
pub(super) struct Sample {
    pub(super) wall: f64,
    pub(super) cpu: f64,
    pub(super) rss_kib: u64,
}

/// Runs commands under `/usr/bin/time`, its report in a scratch file.
pub(super) struct Timer {
    report: PathBuf,
}

impl Timer {
    pub(super) fn new(scratch: &Path) -> Self {
        Timer {
            report: scratch.join("time.txt"),
        }
    }

    /// `program` under `/usr/bin/time`; add its arguments to the result.
    pub(super) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(TIME);
        cmd.args(["-f", "%U %S %M", "-o"])
            .arg(&self.report)
            .arg(program);
        cmd
    }

    /// A shell pipeline (bash, `pipefail`) under `/usr/bin/time`; `args`
    /// are `$1`, `$2`, ... so no path needs quoting.
    pub(super) fn pipeline(&self, script: &str, args: &[&OsStr]) -> Command {
        let mut cmd = self.command("bash");
        cmd.args(["-c", &format!("set -euo pipefail; {script}"), "bench"])
            .args(args);
        cmd
    }

    /// Runs `cmd` (made by [`Timer::command`]); `Err` carries what it
    /// printed when it failed.
    pub(super) fn run(&self, cmd: &mut Command) -> Result<(Sample, Output), String> {
        let _ = fs::remove_file(&self.report);
        let started = Instant::now();
        let output = common::run_unchecked_timeout(cmd, TIMEOUT);
        let wall = started.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(format!(
                "{} ({}): {}",
                describe(cmd),
                output.status,
                last_lines(&String::from_utf8_lossy(&output.stderr), 6)
            ));
        }
        let report = fs::read_to_string(&self.report).expect("read /usr/bin/time report");
        // The last line: a command that exits non-zero makes time add one
        // before it, and so may a command writing to the same file.
        let fields: Vec<f64> = report
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [user, sys, rss] = fields[..] else {
            panic!("unexpected /usr/bin/time report: {report:?}");
        };
        let sample = Sample {
            wall,
            cpu: user + sys,
            rss_kib: rss as u64,
        };
        Ok((sample, output))
    }
}

/// The command line without the `/usr/bin/time` part, for messages.
fn describe(cmd: &Command) -> String {
    cmd.get_args()
        .skip(4)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` non-empty lines of `text`, joined by ` | `.
pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The median of `values` (the mean of the middle two for an even count).
pub(super) fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}
