//! Progress on stderr, one design for every command: bars on a terminal,
//! a line per layer otherwise, nothing with `-q`. It hears the build
//! ([`Reporter`]) and the registry's pulls and pushes ([`Transfers`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use indicatif::{ProgressBar, ProgressStyle};

use crate::build::{LayerReport, Reporter};
use crate::digest::Digest;
use crate::registry::{Direction, LayerOutcome, Transfers};

/// Progress on stderr: a bar on a terminal, a line per layer otherwise,
/// nothing with `-q`.
pub(super) struct Progress {
    quiet: bool,
    bar: OnceLock<ProgressBar>,
    fetch_bar: OnceLock<ProgressBar>,
    /// The pull or push under way, and its bar on a terminal.
    transfer: Mutex<Option<(Direction, Option<ProgressBar>)>>,
    total: AtomicUsize,
    done: AtomicUsize,
}

impl Progress {
    pub(super) fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            bar: OnceLock::new(),
            fetch_bar: OnceLock::new(),
            transfer: Mutex::new(None),
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    /// Starts counting to `total`; on a terminal (and not `-q`), also a
    /// bar of `length` drawn by `template`.
    fn begin(&self, total: usize, length: u64, template: &str) -> Option<ProgressBar> {
        self.done.store(0, Ordering::SeqCst);
        self.total.store(total, Ordering::SeqCst);
        if self.quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new(length);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Some(bar)
    }

    /// A bar counting packages, labelled `verb`.
    fn begin_packages(&self, packages: usize, verb: &str) -> Option<ProgressBar> {
        self.begin(
            packages,
            packages as u64,
            &format!(
                "{{spinner}} {verb}{{pos}}/{{len}} packages [{{bar:30}}] {{elapsed}} {{wide_msg}}"
            ),
        )
    }

    /// One more of `total` done: the count after it.
    fn count(&self, n: usize) -> (usize, usize) {
        let done = self.done.fetch_add(n, Ordering::SeqCst) + n;
        (done, self.total.load(Ordering::SeqCst))
    }

    /// The bar of the transfer under way, if one is drawn.
    fn transfer_bar(&self) -> Option<ProgressBar> {
        let transfer = self.transfer.lock().ok()?;
        transfer.as_ref()?.1.clone()
    }
}

impl Reporter for Progress {
    fn fetching(&self, packages: usize) {
        if let Some(bar) = self.begin_packages(packages, "downloading ") {
            let _ = self.fetch_bar.set(bar);
        }
    }

    fn fetched(&self, package: &str) {
        let (done, total) = self.count(1);
        match self.fetch_bar.get() {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(package.to_owned());
                if done == total {
                    bar.finish_and_clear();
                }
            }
            None if !self.quiet => eprintln!("[fetched {done}/{total}] {package}"),
            None => {}
        }
    }

    fn start(&self, packages: usize) {
        if let Some(bar) = self.begin_packages(packages, "") {
            let _ = self.bar.set(bar);
        }
    }

    fn layer_built(&self, layer: &LayerReport) {
        let n = layer.packages.len();
        let (done, total) = self.count(n);
        let what = layer.packages.join(" ");
        match self.bar.get() {
            Some(bar) => {
                bar.inc(n as u64);
                bar.set_message(what);
            }
            None if !self.quiet => eprintln!(
                "[{done}/{total}] {what} ({:.1} MB)",
                layer.size as f64 / 1e6
            ),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

/// `pull` or `push`, for the labels.
fn verb(direction: Direction) -> &'static str {
    match direction {
        Direction::Pull => "pull",
        Direction::Push => "push",
    }
}

impl Transfers for Progress {
    fn begin(&self, direction: Direction, layers: usize, bytes: u64) {
        let bar = self.begin(
            layers,
            bytes,
            "{spinner} {prefix} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
        );
        if let Some(bar) = &bar {
            bar.set_prefix(format!("{}ing 0/{layers} layers", verb(direction)));
        }
        if let Ok(mut transfer) = self.transfer.lock() {
            *transfer = Some((direction, bar));
        }
    }

    fn moved(&self, bytes: u64) {
        if let Some(bar) = self.transfer_bar() {
            bar.inc(bytes);
        }
    }

    fn rewound(&self, bytes: u64) {
        if let Some(bar) = self.transfer_bar() {
            bar.set_position(bar.position().saturating_sub(bytes));
        }
    }

    fn layer_done(&self, digest: &Digest, size: u64, outcome: LayerOutcome) {
        let (done, total) = self.count(1);
        let Some((direction, bar)) = self.transfer.lock().ok().and_then(|t| t.clone()) else {
            return;
        };
        let how = match outcome {
            LayerOutcome::Downloaded => "downloaded",
            LayerOutcome::Stored => "already in the cache",
            LayerOutcome::Uploaded => "uploaded",
            LayerOutcome::Mounted => "mounted from another repository",
            LayerOutcome::Existing => "already there",
        };
        match bar {
            Some(bar) => {
                if !outcome.moved_bytes() {
                    bar.inc(size);
                }
                bar.set_prefix(format!("{}ing {done}/{total} layers", verb(direction)));
                let hex = digest.to_string();
                let short = hex.get(..19).unwrap_or(&hex);
                bar.set_message(format!("{short} {how}"));
            }
            None if !self.quiet => eprintln!(
                "[{} {done}/{total}] {digest} ({:.1} MB) {how}",
                verb(direction),
                size as f64 / 1e6
            ),
            None => {}
        }
    }

    fn end(&self) {
        if let Some(bar) = self.transfer_bar() {
            bar.finish_and_clear();
        }
    }
}
