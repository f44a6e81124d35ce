//! The results of every run, and `docs/benchmarks.md` made from them: the
//! issue's targets with the ratios measured beside them, then every
//! command's figures.

use std::fmt::Write;

use super::Bench;
use super::env::human;
use super::measure::{Sample, median};

/// What is measured; each run adds one sample to each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Case {
    ColdArchive,
    WarmArchive,
    ChangedArchive,
    ColdOci,
    WarmOci,
    ColdZstd,
    Pigz,
    TarZstd,
    CondaPack,
    PushCold,
    PushPresent,
    SkopeoCold,
    SkopeoPresent,
    NoCache,
}

impl Case {
    const ALL: [Case; 14] = [
        Case::ColdArchive,
        Case::WarmArchive,
        Case::ChangedArchive,
        Case::ColdOci,
        Case::WarmOci,
        Case::ColdZstd,
        Case::Pigz,
        Case::TarZstd,
        Case::CondaPack,
        Case::PushCold,
        Case::PushPresent,
        Case::SkopeoCold,
        Case::SkopeoPresent,
        Case::NoCache,
    ];

    /// What runs, for the table (`N` = the cores).
    fn describe(self) -> &'static str {
        match self {
            Case::ColdArchive => "`build -o image.tar` (docker-archive, gzip 6), empty layer cache",
            Case::WarmArchive => "the same again: nothing changed, layers from the cache",
            Case::ChangedArchive => "the same, for the prefix with one small package changed",
            Case::ColdOci => "`build -o oci:DIR` (gzip 6), empty layer cache",
            Case::WarmOci => "the same again to a new DIR: nothing changed",
            Case::ColdZstd => "`build --compression zstd:3 -o oci:DIR`, empty layer cache",
            Case::Pigz => "`tar -c ENV | pigz -p N -6`",
            Case::TarZstd => "`tar -c ENV | zstd -T0 -3`",
            Case::CondaPack => "`conda-pack -p ENV --compress-level 6 -j N`",
            Case::PushCold => "`build --push` to an empty registry, empty layer cache",
            Case::PushPresent => "the same again: every blob present",
            Case::SkopeoCold => {
                "`skopeo copy oci:LAYOUT docker://…` of the cold OCI layout, empty registry"
            }
            Case::SkopeoPresent => "the same again: every blob present",
            Case::NoCache => "`build --no-cache -o image.tar`, the package cache moved away",
        }
    }
}

/// The samples of one case.
pub(super) struct Entry {
    case: Case,
    pub(super) samples: Vec<Sample>,
    /// The output's size (a file, or every file of a layout).
    pub(super) size: Option<u64>,
    /// Blobs uploaded, for pushes.
    pub(super) uploads: Vec<u64>,
    /// Why it could not run (the first reason).
    pub(super) failure: Option<String>,
}

/// Every case's samples.
#[derive(Default)]
pub(super) struct Results {
    entries: Vec<Entry>,
}

impl Results {
    pub(super) fn case(&mut self, case: Case) -> &mut Entry {
        if let Some(i) = self.entries.iter().position(|e| e.case == case) {
            return &mut self.entries[i];
        }
        self.entries.push(Entry {
            case,
            samples: Vec::new(),
            size: None,
            uploads: Vec::new(),
            failure: None,
        });
        self.entries.last_mut().expect("just pushed")
    }

    /// Notes why `case` did not run; it stays empty in the report.
    pub(super) fn fail(&mut self, case: Case, why: String) {
        eprintln!("bench: {case:?} not measured: {why}");
        self.case(case).failure.get_or_insert(why);
    }

    fn get(&self, case: Case) -> Option<&Entry> {
        self.entries.iter().find(|e| e.case == case)
    }

    fn wall(&self, case: Case) -> Option<f64> {
        median(self.get(case)?.samples.iter().map(|s| s.wall))
    }

    fn rss_mib(&self, case: Case) -> Option<f64> {
        median(
            self.get(case)?
                .samples
                .iter()
                .map(|s| s.rss_kib as f64 / 1024.0),
        )
    }

    fn size(&self, case: Case) -> Option<f64> {
        self.get(case)?.size.map(|s| s as f64)
    }

    fn uploads(&self, case: Case) -> Option<f64> {
        median(self.get(case)?.uploads.iter().map(|&u| u as f64))
    }
}

/// A compared quantity: ours, theirs, and the bound on their ratio.
struct Target {
    what: &'static str,
    ours: Option<f64>,
    theirs: Option<f64>,
    unit: Unit,
    /// `≤ bound × theirs` (or `< bound` when `theirs` is `None`).
    bound: Option<f64>,
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Bytes,
    MiB,
    Count,
}

fn show(value: Option<f64>, unit: Unit) -> String {
    match (value, unit) {
        (None, _) => String::new(),
        (Some(v), Unit::Seconds) => format!("{v:.2} s"),
        (Some(v), Unit::Bytes) => human(v as u64),
        (Some(v), Unit::MiB) => format!("{v:.0} MiB"),
        (Some(v), Unit::Count) => format!("{v:.0}"),
    }
}

/// The targets, each with what is measured for it.
fn targets(r: &Results) -> Vec<Target> {
    use Case::*;
    let t = |what, ours, theirs, unit, bound| Target {
        what,
        ours,
        theirs,
        unit,
        bound,
    };
    let (s, b, m) = (Unit::Seconds, Unit::Bytes, Unit::MiB);
    vec![
        t(
            "cold build, docker-archive, gzip: time vs conda-pack",
            r.wall(ColdArchive),
            r.wall(CondaPack),
            s,
            Some(0.4),
        ),
        t(
            "cold build, docker-archive, gzip: time vs `tar | pigz`",
            r.wall(ColdArchive),
            r.wall(Pigz),
            s,
            Some(0.6),
        ),
        t(
            "cold build, docker-archive, gzip: size vs `tar | pigz`",
            r.size(ColdArchive),
            r.size(Pigz),
            b,
            Some(1.05),
        ),
        t(
            "cold build, docker-archive, gzip: size vs conda-pack",
            r.size(ColdArchive),
            r.size(CondaPack),
            b,
            None,
        ),
        t(
            "cold build, OCI, zstd: time vs `tar | zstd`",
            r.wall(ColdZstd),
            r.wall(TarZstd),
            s,
            Some(1.3),
        ),
        t(
            "cold build, OCI, zstd: size vs `tar | zstd`",
            r.size(ColdZstd),
            r.size(TarZstd),
            b,
            None,
        ),
        t(
            "rebuild, nothing changed, OCI layout: time vs cold",
            r.wall(WarmOci),
            r.wall(ColdOci),
            s,
            Some(0.05),
        ),
        t(
            "rebuild, nothing changed, docker-archive: time vs cold",
            r.wall(WarmArchive),
            r.wall(ColdArchive),
            s,
            Some(0.15),
        ),
        t(
            "rebuild, one small package changed: time vs cold",
            r.wall(ChangedArchive),
            r.wall(ColdArchive),
            s,
            Some(0.1),
        ),
        t(
            "push, cold (the build included): time vs `skopeo copy` of the layout (upload only)",
            r.wall(PushCold),
            r.wall(SkopeoCold),
            s,
            None,
        ),
        t(
            "push, everything present: time vs `skopeo copy`",
            r.wall(PushPresent),
            r.wall(SkopeoPresent),
            s,
            None,
        ),
        t(
            "push, everything present: blobs uploaded",
            r.uploads(PushPresent),
            None,
            Unit::Count,
            Some(0.0),
        ),
        t(
            "peak RSS, cold build (bytes from the package cache) vs conda-pack",
            r.rss_mib(ColdArchive),
            r.rss_mib(CondaPack),
            m,
            None,
        ),
        t(
            "peak RSS, rebuild (layers from the layer cache)",
            r.rss_mib(WarmArchive),
            None,
            m,
            Some(128.0),
        ),
        t(
            "peak RSS, cold build (target < 128 MiB)",
            r.rss_mib(ColdArchive),
            None,
            m,
            Some(128.0),
        ),
        t(
            "peak RSS, `--no-cache`, package cache cleaned (bytes from the prefix)",
            r.rss_mib(NoCache),
            None,
            m,
            Some(128.0),
        ),
    ]
}

fn target_row(t: &Target) -> String {
    let ratio = match (t.ours, t.theirs) {
        (Some(ours), Some(theirs)) if theirs > 0.0 => Some(ours / theirs),
        _ => None,
    };
    let (bound, met) = match (t.bound, t.theirs.is_some()) {
        (None, _) => (String::new(), String::new()),
        (Some(bound), true) => (format!("≤ {bound}×"), verdict(ratio.map(|r| r <= bound))),
        (Some(_), false) if matches!(t.unit, Unit::Count) => {
            ("0".into(), verdict(t.ours.map(|o| o == 0.0)))
        }
        (Some(bound), false) => (
            format!("< {}", show(Some(bound), t.unit)),
            verdict(t.ours.map(|o| o < bound)),
        ),
    };
    format!(
        "| {} | {} | {} | {} | {bound} | {met} |\n",
        cell(t.what),
        show(t.ours, t.unit),
        show(t.theirs, t.unit),
        ratio.map(|r| format!("{r:.3}×")).unwrap_or_default(),
    )
}

/// `text` in a markdown table cell: its pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn verdict(met: Option<bool>) -> String {
    match met {
        Some(true) => "yes".into(),
        Some(false) => "**no**".into(),
        None => String::new(),
    }
}

fn command_row(e: &Entry, cores: usize) -> String {
    let runs: Vec<String> = e.samples.iter().map(|s| format!("{:.2}", s.wall)).collect();
    let cpu = median(e.samples.iter().map(|s| s.cpu));
    let rss = median(e.samples.iter().map(|s| s.rss_kib as f64 / 1024.0));
    let uploads: Vec<String> = e.uploads.iter().map(u64::to_string).collect();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        cell(&e.case.describe().replace(" N ", &format!(" {cores} "))),
        show(median(e.samples.iter().map(|s| s.wall)), Unit::Seconds),
        runs.join(", "),
        show(cpu, Unit::Seconds),
        show(rss, Unit::MiB),
        e.size.map(human).unwrap_or_default(),
        uploads.join(", "),
    )
}

/// `docs/benchmarks.md`.
pub(super) fn markdown(bench: &Bench, results: &Results, instructions: &str) -> String {
    let mut doc = String::from("# Benchmarks\n\n");
    if bench.scale < 1.0 {
        let _ = writeln!(
            doc,
            "**A small-scale run (`BENCH_SCALE={}`): not the benchmark's figures; \
             rerun at full scale before quoting them.**\n",
            bench.scale
        );
    }
    let _ = writeln!(doc, "Made by `{}`.\n", bench.command());
    for line in bench.machine() {
        let _ = writeln!(doc, "- {line}");
    }
    for line in &bench.envs.description {
        let _ = writeln!(doc, "- environment: {line}");
    }
    let runs = match bench.runs {
        1 => "one run (no median)".to_owned(),
        n => format!("medians of {n} runs"),
    };
    let _ = writeln!(
        doc,
        "- {runs}; \"cold\" = an empty `CONDA_DOCKER_CACHE_DIR`; base `-b scratch`; \
         every case on the same environment in the same run\n"
    );
    doc.push_str("## Targets (issue 15)\n\n");
    doc.push_str("| | conda-docker | compared with | ratio | target | met |\n");
    doc.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for target in targets(results) {
        doc.push_str(&target_row(&target));
    }
    doc.push_str("\n## Every command\n\n");
    doc.push_str("| command | median wall | each run (s) | CPU (user + sys) | peak RSS | output | blobs uploaded |\n");
    doc.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for case in Case::ALL {
        if let Some(entry) = results.get(case) {
            doc.push_str(&command_row(entry, bench.cores));
        }
    }
    let failures: Vec<String> = Case::ALL
        .iter()
        .filter_map(|&c| {
            Some(format!(
                "- {}: {}",
                c.describe(),
                results.get(c)?.failure.as_ref()?
            ))
        })
        .collect();
    if !failures.is_empty() {
        doc.push_str("\n## Not measured\n\n");
        doc.push_str(&failures.join("\n"));
        doc.push('\n');
    }
    let _ = writeln!(doc, "\n## Instruction count\n\n{instructions}");
    doc
}
