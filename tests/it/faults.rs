//! Faults between us and registries and channels (issue 17, "Faults"): a
//! [`FaultProxy`] of the tests' own in front of a real `docker-registry`
//! and a real channel server on 127.0.0.1 resets connections mid-blob,
//! answers 500/502/503 and 429 with `Retry-After`, truncates bodies, flips
//! bytes, stalls, and redirects to a blob store that fails.
//!
//! A fault that passes (once) must be retried to a correct result; a
//! lasting one must stop the command with one line, and in both cases no
//! blob or package with wrong bytes may enter a cache, and a failed push
//! must leave the tag where it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use conda_docker::digest::Digest;
use conda_docker::reference::Reference;
use conda_docker::registry::{Direction, LayerOutcome, PushTarget, RegistryOptions, Transfers};

use crate::common::{
    self, CacheLayout, ChannelServer, CondaChannel, FailingStore, Fault, FaultProxy, PypiEntry,
    Registry, WheelFile, install_env, require_tools, sha256_hex, write_pixi_lock_v6, write_wheel,
};
use crate::fixtures::{busybox_base, busybox_in_registry, failure};
use crate::interrupts::stop_during_the_stall;
use crate::security_images::cd;

/// Every file under `dir` named by a sha256 hex holds bytes of that hash:
/// no blob with wrong bytes was kept.
fn assert_blobs_verify(dir: &Path) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(
                    sha256_hex(&bytes),
                    name,
                    "{} has wrong bytes",
                    path.display()
                );
            }
        }
    }
}

/// The manifest digest of `oci:DIR`'s only image.
fn layout_manifest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

const TRANSIENT: [(&str, Fault); 7] = [
    ("reset", Fault::Reset),
    ("truncated", Fault::Truncate),
    ("flipped", Fault::Flip),
    ("500", Fault::Status(500)),
    ("502", Fault::Status(502)),
    ("503", Fault::Status(503)),
    ("429", Fault::TooMany(1)),
];

/// Pulls through the proxy: each fault once on the layer blob (and on the
/// manifest) gives the same image as a clean pull; a lasting one stops
/// with one line and no output; the blob cache only ever holds verified
/// bytes.
#[test]
fn pulls_retry_passing_faults_and_stop_on_lasting_ones() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    busybox_in_registry(dir.path(), &registry);
    let proxy = FaultProxy::start(registry.host());
    let reference = format!("{}/base/busybox:1", proxy.host());
    let pull = |name: &str| {
        let home = dir.path().join(format!("home-{name}"));
        let out = dir.path().join(format!("pull-{name}"));
        let mut cmd = cd(&home);
        cmd.args(["pull", &reference, "-o"])
            .arg(format!("oci:{}", out.display()));
        (cmd, home, out)
    };
    let (mut clean, _, clean_out) = pull("clean");
    common::run(&mut clean);
    let want = layout_manifest(&clean_out);

    let mut faults: Vec<(String, &str, Fault)> = TRANSIENT
        .iter()
        .map(|(name, fault)| (format!("blob-{name}"), "/blobs/sha256:", fault.clone()))
        .collect();
    faults.push(("manifest-503".into(), "/manifests/", Fault::Status(503)));
    faults.push(("manifest-reset".into(), "/manifests/", Fault::Reset));
    faults.push((
        "blob-stall".into(),
        "/blobs/sha256:",
        Fault::Stall(Duration::from_secs(3)),
    ));
    let store = FailingStore::start(500);
    faults.push((
        "blob-redirect".into(),
        "/blobs/sha256:",
        Fault::Redirect(store.base()),
    ));
    for (name, path, fault) in faults {
        proxy.inject("GET", path, fault, 1);
        let before = proxy.injected().len();
        let (mut cmd, home, out) = pull(&name);
        common::run(&mut cmd);
        assert_eq!(
            proxy.injected().len(),
            before + 1,
            "{name}: the fault was applied"
        );
        assert_eq!(layout_manifest(&out), want, "{name}: the same image");
        assert_blobs_verify(&home.join("cache"));
        assert_blobs_verify(&out.join("blobs"));
        proxy.clear();
    }

    for (name, fault) in [
        ("lasting-flip", Fault::Flip),
        ("lasting-reset", Fault::Reset),
        ("lasting-503", Fault::Status(503)),
        ("lasting-redirect", Fault::Redirect(store.base())),
    ] {
        proxy.inject("GET", "/blobs/sha256:", fault, usize::MAX);
        let (mut cmd, home, out) = pull(name);
        let line = failure(&mut cmd);
        assert!(line.contains(&proxy.host()), "{name}: {line}");
        assert!(!out.exists(), "{name}: no output");
        assert_blobs_verify(&home.join("cache"));
        proxy.clear();
    }
}

/// The busybox base as a docker-archive, and an installed environment of
/// `cd-text` to build on it.
fn build_inputs(dir: &Path) -> (PathBuf, common::CondaEnv) {
    let archive = dir.join("base.tar");
    busybox_base(&dir.join("base"))
        .write_file(&archive)
        .unwrap();
    let channel = CondaChannel::build_without_binary(&dir.join("channel"));
    let env = install_env(&channel, &["cd-text"], CacheLayout::Rattler, dir);
    (archive, env)
}

/// A build of `inputs` (see [`build_inputs`]) with label `which=LABEL`,
/// pushed as `HOST/app/REPO:1`, with a home of its own.
fn push_through(
    dir: &Path,
    (archive, env): (&Path, &common::CondaEnv),
    host: &str,
    repo: &str,
    label: &str,
) -> std::process::Command {
    let mut cmd = cd(&dir.join(format!("home-{repo}-{label}")));
    cmd.env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
        .args(["build", "-q", "-p"])
        .arg(&env.prefix)
        .arg("-b")
        .arg(format!("docker-archive:{}", archive.display()))
        .args(["--label", &format!("which={label}"), "--push", "-i"])
        .arg(format!("{host}/app/{repo}:1"));
    cmd
}

/// Pushes through the proxy: a blob upload or manifest PUT failing once is
/// retried and the registry ends with the image a clean push gives; when
/// they keep failing the push stops with one line, and the tag still
/// names the image it named before.
#[test]
fn pushes_retry_passing_faults_and_a_failed_push_never_moves_the_tag() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let (archive, env) = build_inputs(dir.path());
    let proxy = FaultProxy::start(registry.host());
    // Each case pushes to a repository of its own, so its blobs are not
    // there yet and are uploaded.
    let push = |repo: &str, label: &str| {
        push_through(dir.path(), (&archive, &env), &proxy.host(), repo, label)
    };
    common::run(&mut push("clean", "a"));
    let clean = registry.inspect("app/clean:1", &[])["Digest"].clone();

    for (name, method, path, fault) in [
        ("put-503", "PUT", "/blobs/uploads/", Fault::Status(503)),
        ("put-reset", "PUT", "/blobs/uploads/", Fault::Reset),
        ("post-429", "POST", "/blobs/uploads/", Fault::TooMany(1)),
        ("manifest-502", "PUT", "/manifests/", Fault::Status(502)),
        ("head-500", "HEAD", "/blobs/", Fault::Status(500)),
    ] {
        proxy.inject(method, path, fault, 1);
        let before = proxy.injected().len();
        common::run(&mut push(name, "a"));
        assert_eq!(
            proxy.injected().len(),
            before + 1,
            "{name}: the fault was applied"
        );
        assert_eq!(
            registry.inspect(&format!("app/{name}:1"), &[])["Digest"],
            clean,
            "{name}"
        );
        proxy.clear();
    }

    // The tag names image A; pushes of image B that keep failing leave it.
    common::run(&mut push("stays", "a"));
    for (name, method, path) in [
        ("blobs", "PUT", "/blobs/uploads/"),
        ("manifest", "PUT", "/manifests/"),
    ] {
        proxy.inject(method, path, Fault::Status(500), usize::MAX);
        let line = failure(&mut push("stays", &format!("b-{name}")));
        assert!(line.contains(&proxy.host()), "{name}: {line}");
        assert_eq!(
            registry.inspect("app/stays:1", &[])["Digest"],
            clean,
            "{name}: the tag did not move"
        );
        proxy.clear();
    }
}

/// What a push tells its [`Transfers`] adds up to the bytes it said would
/// move, also when an upload's answer is lost after its blob arrived (the
/// failed try takes its bytes back; the blob is found there after all) and
/// when an upload is refused once and sent again.
#[test]
fn push_progress_adds_up_when_uploads_are_tried_again() {
    require_tools!("docker-registry");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let proxy = FaultProxy::start(registry.host());
    let mut image = conda_docker::Image::scratch().unwrap();
    for (name, size) in [("a", 300_000), ("b", 5_000), ("c", 70_000)] {
        let bytes: Vec<u8> = (0..size)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        image
            .add_layer_contents([(name, bytes.as_slice())])
            .unwrap();
    }
    /// Counts as the progress bar does: bytes moved, less those taken
    /// back, plus the size of each layer that needed no transfer.
    #[derive(Default)]
    struct Tally {
        said: AtomicU64,
        counted: AtomicI64,
    }
    impl Transfers for Tally {
        fn begin(&self, _: Direction, _: usize, bytes: u64) {
            self.said.fetch_add(bytes, Ordering::SeqCst);
        }
        fn moved(&self, bytes: u64) {
            self.counted.fetch_add(bytes as i64, Ordering::SeqCst);
        }
        fn rewound(&self, bytes: u64) {
            self.counted.fetch_sub(bytes as i64, Ordering::SeqCst);
        }
        fn layer_done(&self, _: &Digest, size: u64, outcome: LayerOutcome) {
            if !outcome.moved_bytes() {
                self.counted.fetch_add(size as i64, Ordering::SeqCst);
            }
        }
    }
    // Four faults: each blob's first PUT (three layers, the config) meets
    // one, whatever their order.
    for (repo, fault) in [("reset", Fault::Reset), ("refused", Fault::Status(503))] {
        proxy.inject("PUT", "/blobs/uploads/", fault, 4);
        let before = proxy.injected().len();
        let reference: Reference = format!("{}/app/{repo}:1", proxy.host()).parse().unwrap();
        let target = PushTarget::check(&reference, &RegistryOptions::default(), None).unwrap();
        let tally = Tally::default();
        target.push_with(&image, &tally).unwrap();
        assert_eq!(
            proxy.injected().len(),
            before + 4,
            "{repo}: the faults were applied"
        );
        let said = tally.said.load(Ordering::SeqCst);
        assert_eq!(said, image.layers().iter().map(|l| l.size()).sum::<u64>());
        assert_eq!(tally.counted.load(Ordering::SeqCst), said as i64, "{repo}");
        proxy.clear();
    }
}

/// A registry that stalls while we push: one that stops reading a blob's
/// bytes and never answers, one that takes them and loses its answer (the
/// blob arrived; the next try finds the upload session closed), and one
/// that holds the manifest's answer. With the read timeout at 2 s each is
/// cut and tried again, and the push ends with the image a clean push
/// gives while the proxy still stalls; a lasting stall stops the push
/// with one line naming the registry and the setting, and the tag does
/// not move.
#[test]
fn a_stalled_push_is_cut_at_the_read_timeout_and_the_tag_stays() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let (archive, env) = build_inputs(dir.path());
    let push = |proxy: &FaultProxy, repo: &str, label: &str| {
        let mut cmd = push_through(dir.path(), (&archive, &env), &proxy.host(), repo, label);
        cmd.env("CONDA_REMOTE_READ_TIMEOUT_SECS", READ_TIMEOUT);
        cmd
    };
    // The clean push also makes the tag that a lasting stall must not move.
    let clean_proxy = FaultProxy::start(registry.host());
    common::run(&mut push(&clean_proxy, "stays", "a"));
    let clean = registry.inspect("app/stays:1", &[])["Digest"].clone();

    for (name, path, fault) in [
        ("blob-deaf", "/blobs/uploads/", Fault::Deaf(LONG_STALL)),
        ("blob-answer", "/blobs/uploads/", Fault::Stall(LONG_STALL)),
        ("manifest-answer", "/manifests/", Fault::Stall(LONG_STALL)),
    ] {
        let proxy = FaultProxy::start(registry.host());
        proxy.inject("PUT", path, fault, 1);
        let started = std::time::Instant::now();
        common::run(&mut push(&proxy, name, "a"));
        // A figure for docs/reliability.md, not a check.
        println!("{name} stall of 30 s: pushed in {:?}", started.elapsed());
        assert_eq!(proxy.injected().len(), 1, "{name}: the stall was applied");
        assert_eq!(
            proxy.stalling(),
            1,
            "{name}: the push was done while the proxy still stalled"
        );
        assert_eq!(
            registry.inspect(&format!("app/{name}:1"), &[])["Digest"],
            clean,
            "{name}"
        );
    }

    let proxy = FaultProxy::start(registry.host());
    proxy.inject(
        "PUT",
        "/blobs/uploads/",
        Fault::Deaf(LONG_STALL),
        usize::MAX,
    );
    let line = failure(&mut push(&proxy, "stays", "b"));
    println!("a lasting stall: {line}");
    says_it_stalled(&line, &[proxy.host().as_str()]);
    assert_eq!(
        registry.inspect("app/stays:1", &[])["Digest"],
        clean,
        "the tag did not move"
    );
}

/// Repodata and package downloads through the proxy: each fault once gives
/// the image a clean build gives; a package that keeps arriving with
/// flipped bytes stops the build with one line, and a later clean build
/// from the same caches gives the right image (nothing wrong was kept).
#[test]
fn channel_downloads_retry_passing_faults_and_keep_no_wrong_package() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let proxy = FaultProxy::start(&server.host());
    let archive = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&archive)
        .unwrap();
    let build = |home: &str, out: &Path| {
        let mut cmd = cd(&dir.path().join(home));
        cmd.args(["build", "-q", "--override-channels", "-c"])
            .arg(format!("http://{}/", proxy.host()))
            .arg("-b")
            .arg(format!("docker-archive:{}", archive.display()))
            .args(["--virtual-package", "__glibc=2.36", "cd-text", "-o"])
            .arg(format!("oci:{}", out.display()));
        cmd
    };
    let clean_out = dir.path().join("clean");
    common::run(&mut build("home-clean", &clean_out));
    let want = layout_manifest(&clean_out);

    let mut faults: Vec<(String, &str, Fault)> = Vec::new();
    for (name, fault) in &TRANSIENT {
        // repodata.json has no digest to check: flipped bytes there are
        // either a parse error or undetectable, so they are not tried.
        if *name != "flipped" {
            faults.push((format!("repodata-{name}"), "repodata.json", fault.clone()));
        }
        faults.push((format!("package-{name}"), "/cd-text-", fault.clone()));
    }
    for (name, path, fault) in faults {
        proxy.inject("GET", path, fault, 1);
        let before = proxy.injected().len();
        let out = dir.path().join(&name);
        common::run(&mut build(&format!("home-{name}"), &out));
        assert_eq!(
            proxy.injected().len(),
            before + 1,
            "{name}: the fault was applied"
        );
        assert_eq!(layout_manifest(&out), want, "{name}: the same image");
        proxy.clear();
    }

    proxy.inject("GET", "/cd-text-", Fault::Flip, usize::MAX);
    let out = dir.path().join("lasting");
    let line = failure(&mut build("home-lasting", &out));
    assert!(line.contains("cd-text"), "{line}");
    assert!(!out.exists());
    proxy.clear();
    common::run(&mut build("home-lasting", &out));
    assert_eq!(layout_manifest(&out), want, "nothing wrong was kept");
}

/// The read timeout the stall tests set, and a stall far longer.
/// Checks that `line`, the one error line of a stall that lasted, names
/// `parts` (the server, the package), the read timeout and its setting.
fn says_it_stalled(line: &str, parts: &[&str]) {
    let always = ["nothing arrived for 2 s", "CONDA_REMOTE_READ_TIMEOUT_SECS"];
    for part in parts.iter().chain(&always) {
        assert!(line.contains(part), "{part}: {line}");
    }
}

const READ_TIMEOUT: &str = "2";
const LONG_STALL: Duration = Duration::from_secs(30);

/// A registry that sends half a blob (or manifest) and then nothing: with
/// `CONDA_REMOTE_READ_TIMEOUT_SECS=2` the pull gives up on that transfer
/// while the stall is still going and gets the image by a retry; a stall
/// on every try stops the pull with one line naming the registry and the
/// setting, and nothing wrong is kept. Each case has a proxy of its own,
/// so the stall it counts is that case's.
#[test]
fn a_stalled_pull_is_cut_at_the_read_timeout() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    busybox_in_registry(dir.path(), &registry);
    let pull = |name: &str, proxy: &FaultProxy| {
        let home = dir.path().join(format!("home-{name}"));
        let out = dir.path().join(format!("pull-{name}"));
        let mut cmd = cd(&home);
        cmd.env("CONDA_REMOTE_READ_TIMEOUT_SECS", READ_TIMEOUT)
            .args(["pull", &format!("{}/base/busybox:1", proxy.host()), "-o"])
            .arg(format!("oci:{}", out.display()));
        (cmd, home, out)
    };
    let clean_proxy = FaultProxy::start(registry.host());
    let (mut clean, _, clean_out) = pull("clean", &clean_proxy);
    common::run(&mut clean);
    let want = layout_manifest(&clean_out);

    for (name, path) in [("blob", "/blobs/sha256:"), ("manifest", "/manifests/")] {
        let proxy = FaultProxy::start(registry.host());
        proxy.inject("GET", path, Fault::Stall(LONG_STALL), 1);
        let (mut cmd, home, out) = pull(name, &proxy);
        let started = std::time::Instant::now();
        common::run(&mut cmd);
        // A figure for docs/reliability.md, not a check.
        println!("{name} stall of 30 s: pulled in {:?}", started.elapsed());
        assert_eq!(proxy.injected().len(), 1, "{name}: the stall was applied");
        assert_eq!(
            proxy.stalling(),
            1,
            "{name}: the pull was done while the proxy still stalled"
        );
        assert_eq!(layout_manifest(&out), want, "{name}: the same image");
        assert_blobs_verify(&home.join("cache"));
    }

    let proxy = FaultProxy::start(registry.host());
    proxy.inject(
        "GET",
        "/blobs/sha256:",
        Fault::Stall(LONG_STALL),
        usize::MAX,
    );
    let (mut cmd, home, out) = pull("lasting", &proxy);
    let line = failure(&mut cmd);
    println!("a lasting stall: {line}");
    says_it_stalled(&line, &[proxy.host().as_str()]);
    assert!(!out.exists(), "no output");
    assert_blobs_verify(&home.join("cache"));
}

/// A channel that sends half a package (or repodata) and then nothing:
/// the build gets past it by a retry with the read timeout at 2 s; a
/// package that always stalls stops the build with one line naming the
/// package, the server and the setting. A proxy per case, as above.
#[test]
fn a_stalled_channel_download_is_cut_at_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let archive = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&archive)
        .unwrap();
    let build = |name: &str, proxy: &FaultProxy| {
        let out = dir.path().join(name);
        let mut cmd = cd(&dir.path().join(format!("home-{name}")));
        cmd.env("CONDA_REMOTE_READ_TIMEOUT_SECS", READ_TIMEOUT)
            .args(["build", "-q", "--override-channels", "-c"])
            .arg(format!("http://{}/", proxy.host()))
            .arg("-b")
            .arg(format!("docker-archive:{}", archive.display()))
            .args(["--virtual-package", "__glibc=2.36", "cd-text", "-o"])
            .arg(format!("oci:{}", out.display()));
        (cmd, out)
    };
    for (name, path) in [("package", "/cd-text-"), ("repodata", "repodata.json")] {
        // The channel's URL is in the image: the image to expect is a
        // clean build's through the same proxy.
        let proxy = FaultProxy::start(&server.host());
        let (mut clean, clean_out) = build(&format!("{name}-clean"), &proxy);
        common::run(&mut clean);
        let want = layout_manifest(&clean_out);
        proxy.inject("GET", path, Fault::Stall(LONG_STALL), 1);
        let (mut cmd, out) = build(name, &proxy);
        let started = std::time::Instant::now();
        common::run(&mut cmd);
        println!("{name} stall of 30 s: built in {:?}", started.elapsed());
        assert_eq!(proxy.injected().len(), 1, "{name}: the stall was applied");
        assert_eq!(proxy.stalling(), 1, "{name}: done while the proxy stalled");
        assert_eq!(layout_manifest(&out), want, "{name}: the same image");
    }

    let proxy = FaultProxy::start(&server.host());
    proxy.inject("GET", "/cd-text-", Fault::Stall(LONG_STALL), usize::MAX);
    let (mut cmd, out) = build("lasting", &proxy);
    let line = failure(&mut cmd);
    println!("a lasting stall: {line}");
    says_it_stalled(&line, &["cd-text", proxy.host().as_str()]);
    assert!(!out.exists());
}

/// A wheel server that sends half a wheel and then nothing (for two
/// minutes): with the read timeout at 2 s, a stall once is cut and the
/// wheel fetched again while it goes on (as after a reset, a truncated
/// body, a flipped byte or a 503); a stall on every try stops the
/// build with one line naming the wheel, the server and the setting. With
/// the timeout at an hour, one SIGTERM during the stall ends the build
/// with 143 while the stall goes on (no try after it), with no output and
/// nothing left in the cache.
#[test]
fn a_stalled_wheel_download_is_tried_again_and_a_signal_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let channel = CondaChannel::build_without_binary(&d.join("channel"));
    let records = channel.with_dependencies(&["python"]);
    let (_, sha256) = write_wheel(
        &d.join("served"),
        ("good", "1.0", "py3-none-any"),
        &[WheelFile {
            path: "good/__init__.py",
            bytes: &[b'#'; 4096],
            executable: false,
        }],
        None,
    );
    let server = ChannelServer::serve(&d.join("served"));
    let stall = || Fault::Stall(Duration::from_secs(120));
    let build = |name: &str, timeout: &str, fault: Fault, times: usize| {
        let proxy = FaultProxy::start(&server.host());
        proxy.inject("GET", ".whl", fault, times);
        let lock = d.join(format!("{name}.lock"));
        let wheel = PypiEntry {
            name: "good".into(),
            version: "1.0".into(),
            location: format!("http://{}/good-1.0-py3-none-any.whl", proxy.host()),
            sha256: Some(sha256.clone()),
        };
        write_pixi_lock_v6(&lock, &channel.url(), &records, &[wheel]);
        let out = d.join(format!("{name}.tar"));
        let mut cmd = cd(&d.join(format!("home-{name}")));
        cmd.env("CONDA_REMOTE_READ_TIMEOUT_SECS", timeout)
            .args(["build", "-q", "-b", "scratch", "--file"])
            .arg(&lock)
            .arg("-o")
            .arg(&out);
        (cmd, proxy, out)
    };

    let (mut cmd, proxy, out) = build("once", "2", stall(), 1);
    common::run(&mut cmd);
    assert!(out.exists(), "the second try fetched the wheel");
    assert_eq!(proxy.stalling(), 1, "while the first still stalled");
    for (name, fault) in [
        ("reset", Fault::Reset),
        ("truncated", Fault::Truncate),
        ("flipped", Fault::Flip),
        ("503", Fault::Status(503)),
    ] {
        let (mut cmd, proxy, out) = build(name, "2", fault, 1);
        common::run(&mut cmd);
        assert_eq!(proxy.injected().len(), 1, "{name}: the fault was applied");
        assert!(out.exists(), "{name}: the second try fetched the wheel");
    }

    let (mut cmd, proxy, out) = build("lasting", "2", stall(), usize::MAX);
    let line = failure(&mut cmd);
    println!("a stalled wheel: {line}");
    says_it_stalled(&line, &["good-1.0-py3-none-any.whl", proxy.host().as_str()]);
    assert!(!out.exists());

    let (mut cmd, proxy, out) = build("signalled", "3600", stall(), 1);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    stop_during_the_stall(child, &proxy, "stalled wheel");
    assert!(!out.exists());
    let info = common::run(cd(&d.join("home-signalled")).args(["cache", "info", "--json"]));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["leftovers"], 0, "{info}");
}
