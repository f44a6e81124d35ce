//! The layer cache: a rebuild takes every package layer from
//! `CONDA_DOCKER_CACHE_DIR/layers` by its identity, with the same bytes;
//! `--no-cache` builds everything; a damaged entry is built again, never
//! published; an OCI layout links the cached blobs; `cache info` and
//! `cache prune` (least recently used first, pulled images too) and the
//! lock that keeps a prune from removing what a running build uses.

use std::fs::{self, File, FileTimes};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{
    self, CacheLayout, CondaChannel, Registry, install_env, require_tools, sha256_file_hex,
};
use crate::fixtures::{conda_docker, failure};

/// `conda-docker` with its home, cache and package dirs under `dir`.
fn cd(dir: &Path) -> Command {
    let mut cmd: Command = conda_docker();
    cmd.env("HOME", dir.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", dir.join("cache"))
        .env("CONDA_PKGS_DIRS", dir.join("pkgs"));
    cmd
}

fn build_command(dir: &Path, env: &Path, out: &str, extra: &[&str]) -> Command {
    let mut cmd = cd(dir);
    cmd.args(["build", "-v", "-b", "scratch", "-p"])
        .arg(env)
        .arg("-o")
        .arg(match out.strip_prefix("oci:") {
            Some(layout) => format!("oci:{}", dir.join(layout).display()),
            None => dir.join(out).display().to_string(),
        })
        .args(extra);
    cmd
}

fn build(dir: &Path, env: &Path, out: &str, extra: &[&str]) -> String {
    let output = common::run(&mut build_command(dir, env, out, extra));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn from_cache(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("from the layer cache"))
        .count()
}

/// `cache ARGS --json`, parsed.
fn cache_json(dir: &Path, args: &[&str]) -> Value {
    let output = common::run(cd(dir).arg("cache").args(args).arg("--json"));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The layer entries: `(entry file, blob file)`.
fn entries(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut entries: Vec<(PathBuf, PathBuf)> = fs::read_dir(dir.join("cache/layers"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let entry: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            let hex = entry["digest"].as_str().unwrap().strip_prefix("sha256:");
            (path, dir.join("cache/blobs/sha256").join(hex.unwrap()))
        })
        .collect();
    entries.sort();
    entries
}

/// Other bytes of the same length in a read-only cached blob.
fn corrupt(blob: &Path) {
    let mut bytes = fs::read(blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::set_permissions(blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(blob, &bytes).unwrap();
    fs::set_permissions(blob, fs::Permissions::from_mode(0o444)).unwrap();
}

/// Every blob of an OCI layout hashes to its name, and skopeo reads its
/// image (the one tagged `tag`).
fn assert_sound_layout(layout: &Path, tag: Option<&str>) {
    for blob in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        assert_eq!(
            sha256_file_hex(&blob.path()),
            blob.file_name().to_string_lossy(),
            "{}",
            blob.path().display()
        );
    }
    if common::tool("skopeo").is_some() {
        let reference = format!("oci:{}:{}", layout.display(), tag.unwrap_or_default());
        let inspected = common::skopeo_inspect(reference.trim_end_matches(':'), &["--raw"]);
        assert!(inspected["layers"].as_array().is_some(), "{inspected}");
    }
}

/// The manifest digest an OCI layout's index.json names.
fn layout_manifest(layout: &Path) -> String {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn rebuilds_take_layers_from_the_cache_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, d);
    let packages = env.records.len();

    let cold = build(d, &env.prefix, "cold.tar", &[]);
    assert_eq!(from_cache(&cold), 0, "{cold}");
    let warm = build(d, &env.prefix, "warm.tar", &[]);
    assert_eq!(from_cache(&warm), packages, "{warm}");
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("warm.tar"))
    );
    // Entries and blobs are read-only: a hard link shares their inode.
    let layers = fs::read_dir(d.join("cache/layers")).unwrap().count();
    assert_eq!(layers, packages);
    for blob in fs::read_dir(d.join("cache/blobs/sha256")).unwrap() {
        let mode = blob.unwrap().metadata().unwrap().permissions();
        assert!(mode.readonly(), "{mode:?}");
    }

    // --no-cache builds every layer, to the same bytes.
    let fresh = build(d, &env.prefix, "fresh.tar", &["--no-cache"]);
    assert_eq!(from_cache(&fresh), 0, "{fresh}");
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("fresh.tar"))
    );

    // A blob of the wrong size is a miss: built again, and replaced.
    let (_, blob) = entries(d).remove(0);
    let bytes = fs::read(&blob).unwrap();
    fs::remove_file(&blob).unwrap();
    fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();
    let repaired = build(d, &env.prefix, "repaired.tar", &[]);
    assert!(
        repaired.contains("has the wrong size; building it again"),
        "{repaired}"
    );
    assert_eq!(from_cache(&repaired), packages - 1, "{repaired}");
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("repaired.tar"))
    );
    assert_eq!(fs::read(&blob).unwrap(), bytes);
}

#[test]
fn a_damaged_cached_blob_is_built_again_and_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, d);
    let packages = env.records.len();
    build(d, &env.prefix, "cold.tar", &[]);
    build(d, &env.prefix, "oci:cold", &[]);
    let (entry, blob) = entries(d).remove(0);
    let good = fs::read(&blob).unwrap();

    // Streamed to a docker-archive, the damage fails the write; the entry
    // is evicted and the build runs again, building that one layer.
    corrupt(&blob);
    let log = build(d, &env.prefix, "warm.tar", &[]);
    assert!(log.contains("is damaged"), "{log}");
    assert!(
        log.contains("layer(s) taken from the layer cache were damaged; building the image again"),
        "{log}"
    );
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("warm.tar"))
    );
    assert_eq!(fs::read(&blob).unwrap(), good, "the entry is built again");
    assert!(entry.exists());
    assert_eq!(entries(d).len(), packages);

    // An OCI layout only links blobs: --verify checks them when taken.
    corrupt(&blob);
    let log = build(d, &env.prefix, "oci:verified", &["--verify"]);
    assert!(log.contains("is damaged"), "{log}");
    assert_eq!(from_cache(&log), packages - 1, "{log}");
    assert_sound_layout(&d.join("verified"), None);
    assert_eq!(
        layout_manifest(&d.join("verified")),
        layout_manifest(&d.join("cold"))
    );
    assert_eq!(fs::read(&blob).unwrap(), good);
    // Nothing wrong: --verify takes every layer.
    let log = build(d, &env.prefix, "oci:again", &["--verify"]);
    assert_eq!(from_cache(&log), packages, "{log}");
}

#[test]
fn an_oci_layout_links_the_cached_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, d);
    build(d, &env.prefix, "oci:layout", &[]);
    let warm = build(d, &env.prefix, "oci:warm", &[]);
    assert_eq!(from_cache(&warm), env.records.len(), "{warm}");
    let cached = entries(d);
    for layout in ["layout", "warm"] {
        for (_, blob) in &cached {
            let linked = d
                .join(layout)
                .join("blobs/sha256")
                .join(blob.file_name().unwrap());
            let (a, b) = (fs::metadata(blob).unwrap(), fs::metadata(&linked).unwrap());
            assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{layout}");
            assert!(b.permissions().readonly());
        }
        assert_sound_layout(&d.join(layout), None);
    }
    // Writing into the layout again (another tag, a new index.json)
    // renames files into place: the linked blobs keep their bytes.
    build(d, &env.prefix, "oci:layout:other", &["-i", "other:tag"]);
    for (_, blob) in &cached {
        assert_eq!(
            sha256_file_hex(blob),
            blob.file_name().unwrap().to_string_lossy()
        );
    }
    assert_sound_layout(&d.join("layout"), Some("other"));
}

/// Sets a file's access and modification times to `days` ago.
fn used_days_ago(path: &Path, days: u64) {
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    File::open(path)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(when).set_modified(when))
        .unwrap();
}

#[test]
fn cache_prune_removes_the_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let env = install_env(
        &channel,
        &["cd-leaf", "cd-text", "cd-link"],
        CacheLayout::Conda,
        d,
    );
    let packages = env.records.len();
    assert!(packages >= 3, "{packages}");
    let empty = cache_json(d, &["info"]);
    assert_eq!(empty["layer_entries"], 0, "{empty}");
    build(d, &env.prefix, "cold.tar", &[]);

    let info = cache_json(d, &["info"]);
    assert_eq!(info["layer_entries"], packages, "{info}");
    assert_eq!(info["blobs"], packages, "{info}");
    assert_eq!(info["unreferenced_blobs"], 0, "{info}");
    assert_eq!(info["dir"], d.join("cache").display().to_string());
    let text = common::stdout(&common::run(cd(d).args(["cache", "info"])));
    assert!(
        text.contains(&format!("layer entries: {packages}")),
        "{text}"
    );

    // Leftovers of a killed run and a blob nothing refers to go at once;
    // what builds use stays.
    let blobs = d.join("cache/blobs/sha256");
    fs::write(blobs.join(".partial-x"), "half").unwrap();
    fs::write(blobs.join("ab".repeat(32)), "orphan").unwrap();
    fs::create_dir_all(d.join("cache/staging/build-x/pkg")).unwrap();
    let report = cache_json(d, &["prune"]);
    assert_eq!(report["layer_entries"], 0, "{report}");
    assert_eq!(report["blobs"], 1, "{report}");
    assert_eq!(report["leftovers"], 2, "{report}");
    assert!(!blobs.join("ab".repeat(32)).exists());
    assert_eq!(entries(d).len(), packages);

    // --older-than: an entry not used for 10 days goes, with its blob.
    let mut all = entries(d);
    let (oldest, oldest_blob) = all.remove(0);
    let (older, older_blob) = all.remove(0);
    used_days_ago(&oldest, 10);
    used_days_ago(&older, 5);
    let report = cache_json(d, &["prune", "--older-than", "7"]);
    assert_eq!(report["layer_entries"], 1, "{report}");
    assert!(!oldest.exists() && !oldest_blob.exists());
    assert!(older.exists() && older_blob.exists());

    // --max-size: the least recently used go until the rest fits.
    let size = cache_json(d, &["info"])["size"].as_u64().unwrap();
    let report = cache_json(d, &["prune", "--max-size", &(size - 1).to_string()]);
    assert_eq!(report["layer_entries"], 1, "{report}");
    assert!(!older.exists() && !older_blob.exists());
    assert_eq!(entries(d).len(), packages - 2);

    // A hit marks an entry used: the next build takes every other layer
    // from the cache and makes those entries newer than the rebuilt ones'.
    let warm = build(d, &env.prefix, "warm.tar", &[]);
    assert_eq!(from_cache(&warm), packages - 2, "{warm}");
    assert_eq!(
        sha256_file_hex(&d.join("cold.tar")),
        sha256_file_hex(&d.join("warm.tar"))
    );
    let report = cache_json(d, &["prune", "--max-size", "0"]);
    assert_eq!(report["layer_entries"], packages, "{report}");
    assert_eq!(report["size"], 0, "{report}");
    assert_eq!(cache_json(d, &["info"])["blobs"], 0);

    let output = common::run_unchecked(cd(d).args(["cache", "prune", "--max-size", "10 parsecs"]));
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{error}");
    assert!(
        error.contains("invalid value '10 parsecs' for '--max-size <SIZE>': not a size"),
        "{error}"
    );
}

#[test]
fn cache_prune_removes_pulled_images_with_their_blobs() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(registry) = Registry::plain(&d.join("registry")) else {
        return;
    };
    let mut image = conda_docker::Image::scratch().unwrap();
    image
        .add_layer_contents([("etc/motd", b"pulled\n".as_slice())])
        .unwrap();
    image.write_file(d.join("base.tar")).unwrap();
    registry.push(
        &format!("docker-archive:{}", d.join("base.tar").display()),
        "base/x:1",
    );
    common::run(
        cd(d)
            .args(["pull", &registry.image("base/x:1"), "--insecure", "-o"])
            .arg(d.join("pulled.tar")),
    );
    let info = cache_json(d, &["info"]);
    // The manifest, its config and its layer.
    assert_eq!(info["pulled_manifests"], 1, "{info}");
    assert_eq!(info["blobs"], 3, "{info}");
    assert_eq!(info["unreferenced_blobs"], 0, "{info}");
    let report = cache_json(d, &["prune", "--older-than", "1"]);
    assert_eq!(report["blobs"], 0, "{report}");

    for blob in fs::read_dir(d.join("cache/blobs/sha256")).unwrap() {
        used_days_ago(&blob.unwrap().path(), 3);
    }
    let report = cache_json(d, &["prune", "--older-than", "1"]);
    assert_eq!(report["pulled_manifests"], 1, "{report}");
    assert_eq!(report["blobs"], 3, "{report}");
    assert_eq!(cache_json(d, &["info"])["blobs"], 0);
}

/// Lets a build waiting on the FIFO `.0` go, if it still waits, when the
/// test ends (also by a failed assertion).
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.0)
            .and_then(|mut f| f.write_all(b"go\n"));
    }
}

/// A FIFO at `path`.
fn fifo(path: &Path) {
    common::run(Command::new("mkfifo").arg(path));
}

#[test]
fn a_prune_waits_for_running_builds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, d);
    let packages = env.records.len();
    // The environment's activation script (run in bash while the build
    // holds the cache) says it started and waits to be let go.
    let (started, go) = (d.join("started"), d.join("go"));
    fifo(&started);
    fifo(&go);
    let activate = env.prefix.join("etc/conda/activate.d");
    fs::create_dir_all(&activate).unwrap();
    fs::write(
        activate.join("wait.sh"),
        format!(
            "echo started > '{}'\nread line < '{}'\n",
            started.display(),
            go.display()
        ),
    )
    .unwrap();
    let _release = Release(go.clone());
    let running = build_command(d, &env.prefix, "oci:layout", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = started.clone();
    let running = std::thread::spawn(move || {
        let output = running.wait_with_output().unwrap();
        // A build that ended before its script ran must not leave the
        // test waiting for it.
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&ended)
            .and_then(|mut f| f.write_all(b"ended\n"));
        output
    });
    assert_eq!(fs::read_to_string(&started).unwrap(), "started\n");

    // Mid-build: a prune that may not wait fails and removes nothing.
    let line = failure(cd(d).args(["cache", "prune", "--max-size", "0", "--timeout", "0"]));
    assert!(
        line.contains("is still in use by a running build after 0 s"),
        "{line}"
    );
    assert_eq!(entries(d).len(), packages);
    // One that waits says so, and prunes once the build is done.
    let mut prune = cd(d)
        .args(["cache", "prune", "--max-size", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiting = String::new();
    BufReader::new(prune.stderr.take().unwrap())
        .read_line(&mut waiting)
        .unwrap();
    assert!(
        waiting.contains("waiting for running builds to finish"),
        "{waiting}"
    );
    fs::write(&go, "go\n").unwrap();
    let built = running.join().unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let pruned = prune.wait_with_output().unwrap();
    assert!(pruned.status.success(), "{pruned:?}");
    let report: Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(report["layer_entries"], packages, "{report}");
    // The layout's hard links outlive the cache's names, and the report
    // says that their bytes stay on disk.
    assert!(report["still_linked"].as_u64().unwrap() > 0, "{report}");
    assert_sound_layout(&d.join("layout"), None);
}
