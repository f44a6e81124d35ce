//! One run of every case, each command timed; the results go to a
//! [`Results`] keyed by case.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::Bench;
use super::env::{remove, tree_size};
use super::report::{Case, Results};
use crate::common::Registry;

/// Runs every case once, in `work` (emptied first and removed after).
pub(super) fn run_once(bench: &Bench, results: &mut Results) {
    let work = bench.dir.join("runs");
    remove(&work);
    fs::create_dir_all(&work).expect("create runs dir");
    gzip_builds(bench, &work, results);
    zstd_build(bench, &work, results);
    baselines(bench, &work, results);
    pushes(bench, &work, results);
    no_cache(bench, &work, results);
    remove(&work);
}

/// Cold builds (an empty layer cache) to a docker-archive and to an OCI
/// layout, then the same again from the cache, and the one-package change.
/// Each output is removed once measured (they are GBs), but the cold
/// layout, which `pushes` copies with skopeo.
fn gzip_builds(bench: &Bench, work: &Path, results: &mut Results) {
    let (prefix, changed) = (&bench.envs.prefix, &bench.envs.changed_prefix);
    let (archives, layouts) = (work.join("cache-archive"), work.join("cache-oci"));
    let mut gzip = |case, prefix: &Path, cache: &Path, out: &str| {
        let out = work.join(out);
        let summary = build(bench, results, case, prefix, cache, Some("gzip:6"), &out);
        if case != Case::ColdOci {
            remove_file_or_dir(&out);
        }
        summary
    };
    let cold = gzip(Case::ColdArchive, prefix, &archives, "cold.tar");
    let warm = gzip(Case::WarmArchive, prefix, &archives, "warm.tar");
    assert_eq!(cold["id"], warm["id"], "a rebuild gives the same image");
    gzip(Case::ChangedArchive, changed, &archives, "changed.tar");
    let cold = gzip(Case::ColdOci, prefix, &layouts, "cold-oci");
    let warm = gzip(Case::WarmOci, prefix, &layouts, "warm-oci");
    assert_eq!(cold["id"], warm["id"], "a rebuild gives the same image");
    remove(&archives);
    remove(&layouts);
}

/// A cold zstd build to an OCI layout (zstd layers cannot go in a
/// docker-archive).
fn zstd_build(bench: &Bench, work: &Path, results: &mut Results) {
    if !bench.flags.compression {
        results.fail(Case::ColdZstd, bench.flags.missing("--compression"));
        return;
    }
    let (out, cache) = (work.join("zstd-oci"), work.join("cache-zstd"));
    let prefix = &bench.envs.prefix;
    build(
        bench,
        results,
        Case::ColdZstd,
        prefix,
        &cache,
        Some("zstd:3"),
        &out,
    );
    remove(&out);
    remove(&cache);
}

/// What the cold builds are compared with: `tar | pigz`, `tar | zstd`,
/// conda-pack (each output removed once measured).
fn baselines(bench: &Bench, work: &Path, results: &mut Results) {
    let prefix = bench.envs.prefix.as_os_str();
    let cores = bench.cores.to_string();
    let pigz = work.join("env.tar.gz");
    let mut cmd = bench.timer.pipeline(
        r#"tar -C "$1" -cf - . | pigz -p "$2" -6 > "$3""#,
        &[prefix, OsStr::new(&cores), pigz.as_os_str()],
    );
    record(bench, results, Case::Pigz, &mut cmd, Some(&pigz));
    remove_file_or_dir(&pigz);
    let zstd = work.join("env.tar.zst");
    let mut cmd = bench.timer.pipeline(
        r#"tar -C "$1" -cf - . | zstd -q -T0 -3 > "$2""#,
        &[prefix, zstd.as_os_str()],
    );
    record(bench, results, Case::TarZstd, &mut cmd, Some(&zstd));
    remove_file_or_dir(&zstd);
    match &bench.conda_pack {
        Ok(conda_pack) => {
            let packed = work.join("conda-pack.tar.gz");
            let mut cmd = bench.timer.command(conda_pack);
            cmd.arg("-p").arg(prefix).arg("-o").arg(&packed).args([
                "--compress-level",
                "6",
                "-j",
                &cores,
                "--force",
                "-q",
            ]);
            record(bench, results, Case::CondaPack, &mut cmd, Some(&packed));
            remove_file_or_dir(&packed);
        }
        Err(why) => results.fail(Case::CondaPack, why.clone()),
    }
}

/// Pushes to a fresh `docker-registry` on loopback: ours cold (empty layer
/// cache, empty registry) then again with everything present; skopeo's
/// copy of the cold OCI layout the same two ways, to another registry.
fn pushes(bench: &Bench, work: &Path, results: &mut Results) {
    let ours = work.join("registry-ours");
    let Some(registry) = Registry::plain(&ours) else {
        results.fail(
            Case::PushCold,
            "no docker-registry (Debian package: docker-registry)".into(),
        );
        return;
    };
    let cache = work.join("cache-push");
    let target = registry.image("bench/env:1");
    for case in [Case::PushCold, Case::PushPresent] {
        let mut cmd = bench.build(&bench.envs.prefix, &cache, Some("gzip:6"));
        cmd.args(["--push", "-i", &target]);
        let summary = record(bench, results, case, &mut cmd, None);
        let uploaded = summary.and_then(|s| s["pushed"]["uploaded"].as_u64());
        results.case(case).uploads.extend(uploaded);
    }
    drop(registry);
    remove(&ours);

    let theirs = work.join("registry-skopeo");
    let registry = Registry::plain(&theirs).expect("docker-registry started before");
    let source = format!("oci:{}:bench", work.join("cold-oci").display());
    let destination = registry.reference("bench/env:1");
    for case in [Case::SkopeoCold, Case::SkopeoPresent] {
        let before = uploads(&registry);
        let mut cmd = bench.timer.command("skopeo");
        cmd.args(["copy", "-q", "--insecure-policy"])
            .args(registry.skopeo_dest_flags())
            .args([&source, &destination]);
        record(bench, results, case, &mut cmd, None);
        let uploaded = (uploads(&registry) - before) as u64;
        results.case(case).uploads.push(uploaded);
    }
    drop(registry);
    remove(&theirs);
}

/// Blobs uploaded, as the registry's access log shows them: an upload
/// ends with a `PUT` (or is a single `POST` with its digest), whatever
/// `PATCH`es it took; cross-repository mounts are not uploads.
fn uploads(registry: &Registry) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.status == 201 && r.path.contains("/blobs/uploads/"))
        .filter(|r| r.method == "PUT" || (r.method == "POST" && r.path.contains("digest=")))
        .filter(|r| !r.path.contains("mount="))
        .count()
}

/// A build with `--no-cache` after the package cache was cleaned: every
/// byte comes from the prefix, relocation undone.
fn no_cache(bench: &Bench, work: &Path, results: &mut Results) {
    let _away = MovedAway::new(&bench.envs.pkgs);
    let out = work.join("no-cache.tar");
    let mut cmd = bench.build(&bench.envs.prefix, &work.join("cache-none"), Some("gzip:6"));
    cmd.arg("--no-cache").arg("-o").arg(&out);
    record(bench, results, Case::NoCache, &mut cmd, Some(&out));
    remove_file_or_dir(&out);
}

/// A directory renamed to `NAME.away` until this is dropped (or, after a
/// crash, until [`MovedAway::restore`] runs at the next start).
pub(super) struct MovedAway(PathBuf);

impl MovedAway {
    fn new(dir: &Path) -> Self {
        fs::rename(dir, Self::away(dir)).expect("move the package cache away");
        MovedAway(dir.to_path_buf())
    }

    fn away(dir: &Path) -> PathBuf {
        dir.with_extension("away")
    }

    /// Puts back a directory an interrupted run left moved away.
    pub(super) fn restore(dir: &Path) {
        if Self::away(dir).exists() && !dir.exists() {
            fs::rename(Self::away(dir), dir).expect("put the package cache back");
        }
    }
}

impl Drop for MovedAway {
    fn drop(&mut self) {
        Self::restore(&self.0);
    }
}

/// A timed build of `prefix` to `out` (an OCI layout when `out` has no
/// extension, else a docker-archive); returns its `--json` summary.
fn build(
    bench: &Bench,
    results: &mut Results,
    case: Case,
    prefix: &Path,
    cache: &Path,
    compression: Option<&str>,
    out: &Path,
) -> Value {
    let mut cmd = bench.build(prefix, cache, compression);
    let target = if out.extension().is_some() {
        out.as_os_str().to_owned()
    } else {
        format!("oci:{}:bench", out.display()).into()
    };
    cmd.arg("-o").arg(target);
    record(bench, results, case, &mut cmd, Some(out)).unwrap_or_else(|| {
        panic!(
            "{case:?} failed: {}",
            results.case(case).failure.clone().unwrap_or_default()
        )
    })
}

/// Runs `cmd`, records its sample and the size of `out`, or why it failed;
/// returns its stdout as JSON when it is.
fn record(
    bench: &Bench,
    results: &mut Results,
    case: Case,
    cmd: &mut Command,
    out: Option<&Path>,
) -> Option<Value> {
    eprintln!("bench: {case:?} ...");
    match bench.timer.run(cmd) {
        Ok((sample, output)) => {
            let entry = results.case(case);
            entry.samples.push(sample);
            entry.size = out.map(|out| tree_size(out).1);
            Some(serde_json::from_slice(&output.stdout).unwrap_or(Value::Null))
        }
        Err(why) => {
            results.fail(case, why);
            None
        }
    }
}

fn remove_file_or_dir(path: &Path) {
    if path.is_dir() {
        remove(path);
    } else {
        let _ = fs::remove_file(path);
    }
}
