//! Builds started together, sharing every cache (issue 17, "Concurrency"):
//! rattler's package cache (`RATTLER_CACHE_DIR`), conda's pkgs dirs
//! (`CONDA_PKGS_DIRS`) and ours (`CONDA_DOCKER_CACHE_DIR`: extracted
//! packages, layer cache, staging). Every build succeeds with the bytes a
//! build alone makes, each package is fetched once however many builds
//! want it, and a rattler install (what pixi runs) may use the same cache
//! at the same time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::common::{self, CacheLayout, ChannelServer, CondaChannel, CondaEnv, install_env_at};
use crate::fixtures::{busybox_base, conda_docker};

/// How many builds run at once, and how many rounds.
const BUILDS: usize = 4;
const ROUNDS: usize = 3;

/// What the builds ask for: with their dependencies `cd-text` and `python`.
const NAMES: [&str; 2] = ["cd-leaf", "cd-noarch"];

/// The shared caches of one round, under `root`.
fn cd(root: &Path) -> Command {
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root.join("home"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("CONDA_DOCKER_CACHE_DIR", root.join("cd-cache"))
        .env("CONDA_PKGS_DIRS", root.join("conda-pkgs"))
        .env("RATTLER_CACHE_DIR", root.join("rattler"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

struct Setup {
    dir: tempfile::TempDir,
    channel: CondaChannel,
    server: ChannelServer,
    base: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let base = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&base)
        .unwrap();
    Setup {
        dir,
        channel,
        server,
        base,
    }
}

impl Setup {
    /// `build --json -b BASE ARGS... -o OUT` with the caches of `root`,
    /// started, not waited for.
    fn start(&self, root: &Path, out: &Path, args: &[&str]) -> Child {
        std::fs::create_dir_all(root).unwrap();
        cd(root)
            .args(["build", "-q", "--json", "-b"])
            .arg(format!("docker-archive:{}", self.base.display()))
            .args(args)
            .arg("-o")
            .arg(out)
            .spawn()
            .unwrap()
    }

    /// A spec build of [`NAMES`] (four packages, one `noarch: python`)
    /// from the served channel.
    fn start_specs(&self, root: &Path, out: &Path) -> Child {
        let url = self.server.url();
        let mut args = vec!["--override-channels", "-c", &url];
        args.extend(NAMES);
        self.start(root, out, &args)
    }

    fn downloads(&self) -> usize {
        self.server.downloads(".conda") + self.server.downloads(".tar.bz2")
    }
}

/// Waits for a build; its `--json` report, after checking it succeeded.
fn report(child: Child) -> Value {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "a concurrent build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What identifies the image's bytes: manifest digest and image id.
fn identity(report: &Value) -> (String, String) {
    (
        report["manifest_digest"].as_str().unwrap().to_owned(),
        report["id"].as_str().unwrap().to_owned(),
    )
}

/// Four spec builds started together on empty shared caches, three rounds:
/// every one succeeds with the image a build alone makes, and the round
/// fetches each package once (rattler's cache lock, taken the way
/// rattler's installer takes it; issue 17 saw two of three fail).
#[test]
fn spec_builds_started_together_share_every_cache() {
    let s = setup();
    let alone_root = s.dir.path().join("alone");
    let started = std::time::Instant::now();
    let alone = report(s.start_specs(&alone_root, &alone_root.join("out.tar")));
    println!("one build alone: {:?}", started.elapsed());
    let fetched_alone = s.downloads();
    assert!(fetched_alone >= 3, "{fetched_alone}");
    for round in 0..ROUNDS {
        let root = s.dir.path().join(format!("round-{round}"));
        let before = s.downloads();
        let started = std::time::Instant::now();
        let children: Vec<Child> = (0..BUILDS)
            .map(|i| s.start_specs(&root, &root.join(format!("out-{i}.tar"))))
            .collect();
        for child in children {
            assert_eq!(identity(&report(child)), identity(&alone), "round {round}");
        }
        // A figure for docs/reliability.md, not a check.
        println!("round {round}: {BUILDS} builds in {:?}", started.elapsed());
        assert_eq!(
            s.downloads() - before,
            fetched_alone,
            "round {round}: each package fetched once"
        );
        assert_no_staging(&root.join("cd-cache"));
    }
}

/// A build of an installed environment (linked by rattler from the same
/// cache), two spec builds and a rattler install into another prefix, all
/// at once on one cache: all succeed, each image as a build alone makes it.
#[test]
fn an_installed_build_a_spec_build_and_a_rattler_install_share_a_cache() {
    let s = setup();
    let alone_root = s.dir.path().join("alone");
    let alone_env = install(&s.channel, &alone_root, "env");
    let alone_arg = alone_env.prefix.to_str().unwrap();
    let prefix_alone = report(s.start(&alone_root, &alone_root.join("p.tar"), &["-p", alone_arg]));
    let specs_alone = report(s.start_specs(&alone_root, &alone_root.join("s.tar")));

    for round in 0..ROUNDS {
        let root = s.dir.path().join(format!("round-{round}"));
        let env = install(&s.channel, &root, "env");
        let env_arg = env.prefix.to_str().unwrap();
        let prefix_build = s.start(&root, &root.join("p.tar"), &["-p", env_arg]);
        let spec_builds: Vec<Child> = (0..2)
            .map(|i| s.start_specs(&root, &root.join(format!("s-{i}.tar"))))
            .collect();
        let install = {
            let (channel, root) = (s.channel.records.clone(), root.clone());
            std::thread::spawn(move || {
                let channel = CondaChannel {
                    dir: PathBuf::new(),
                    records: channel,
                };
                install(&channel, &root, "other-env");
            })
        };
        assert_eq!(identity(&report(prefix_build)), identity(&prefix_alone));
        for child in spec_builds {
            assert_eq!(identity(&report(child)), identity(&specs_alone));
        }
        install.join().expect("the rattler install failed");
        assert!(root.join("other-env/conda-meta").is_dir());
    }
}

/// Two builds with one cold layer cache write the same entries at once:
/// both succeed with equal images, the cache holds each entry once and
/// no leftover, and a third build takes every layer from it.
#[test]
fn two_builds_write_the_same_layer_cache_entries() {
    let s = setup();
    let root = s.dir.path().join("shared");
    let both: Vec<Child> = (0..2)
        .map(|i| s.start_specs(&root, &root.join(format!("out-{i}.tar"))))
        .collect();
    let reports: Vec<Value> = both.into_iter().map(report).collect();
    assert_eq!(identity(&reports[0]), identity(&reports[1]));
    let info = common::run(cd(&root).args(["cache", "info", "--json"]));
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    let layers = reports[0]["conda_layers"].as_array().unwrap().len();
    assert_eq!(info["layer_entries"], layers, "{info}");
    assert_eq!(info["leftovers"], 0, "{info}");
    let third = report(s.start_specs(&root, &root.join("out-3.tar")));
    assert_eq!(identity(&third), identity(&reports[0]));
    for layer in third["conda_layers"].as_array().unwrap() {
        assert_eq!(layer["source"], "cache", "{layer}");
    }
}

/// A build waits while another process holds rattler's cache lock (as
/// rattler's installer, and so pixi, does for a whole install), says so
/// once, and finishes with the right image when it is released.
#[test]
fn a_build_waits_while_an_install_holds_rattlers_lock() {
    use std::io::BufRead;
    let s = setup();
    let alone_root = s.dir.path().join("alone");
    let alone = report(s.start_specs(&alone_root, &alone_root.join("out.tar")));
    let root = s.dir.path().join("locked");
    let pkgs = root.join("rattler/pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let install = std::fs::File::create(pkgs.join(".cache.lock")).unwrap();
    install.lock().unwrap();
    let mut child = s.start_specs(&root, &root.join("out.tar"));
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("waiting for another process using the package cache"));
    assert!(waiting.is_some_and(|l| l.contains(&*pkgs.to_string_lossy())));
    assert!(child.try_wait().unwrap().is_none(), "it did not wait");
    drop(install);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().all(|l| !l.contains("waiting for another")),
        "{rest:?}"
    );
    assert_eq!(identity(&report(child)), identity(&alone));
}

/// [`NAMES`] installed by rattler into `root/name`, from the cache the
/// builds with `root` use.
fn install(channel: &CondaChannel, root: &Path, name: &str) -> CondaEnv {
    install_env_at(
        channel,
        &NAMES,
        CacheLayout::Rattler,
        &root.join(name),
        &root.join("rattler/pkgs"),
    )
}

/// No build's staging folder outlives it.
fn assert_no_staging(cache: &Path) {
    let left: Vec<_> = std::fs::read_dir(cache.join("staging"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left: {left:?}");
}
