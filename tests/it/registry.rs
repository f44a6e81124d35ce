//! Pulling bases from and pushing images to real `docker-registry` servers
//! on 127.0.0.1: plain HTTP, basic auth, TLS and the bearer-token flow.
//! What we push is read back by skopeo and run by podman.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use conda_docker::Image;
use serde_json::{Value, json};

use crate::common::{
    self, CacheLayout, CondaChannel, Registry, cd_show_output, install_env, require_tools,
};
use crate::fixtures::{busybox_base, conda_docker, failure};

/// `conda-docker` with nothing from the host's logins or caches: `HOME`
/// and our cache are under `home`.
pub(crate) fn cd(home: &Path) -> Command {
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cache"));
    cmd
}

/// The busybox base as a docker-archive and as an OCI layout.
fn bases(dir: &Path) -> (PathBuf, PathBuf) {
    let image = busybox_base(&dir.join("base"));
    let archive = dir.join("base.tar");
    image.write_file(&archive).unwrap();
    let layout = dir.join("base-oci");
    image
        .write(&format!("oci:{}:base", layout.display()))
        .unwrap();
    (archive, layout)
}

pub(crate) fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            common::stdout(output),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Requests that send blob bytes. (Every push also opens and cancels one
/// upload, before anything is built, to check that its login may push.)
pub(crate) fn uploads(registry: &Registry) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| {
            r.user_agent.starts_with("conda-docker/")
                && (r.method == "PATCH"
                    || (r.method == "PUT" && r.path.contains("/blobs/uploads/")))
        })
        .count()
}

#[test]
fn build_pulls_a_registry_base_and_pushes_the_result() {
    require_tools!("docker-registry", "skopeo", "podman", "runc", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let (archive, layout) = bases(dir.path());
    // skopeo sends Docker v2 schema 2 from a docker-archive, OCI from a layout.
    registry.push(
        &format!("docker-archive:{}", archive.display()),
        "base/busybox:v2s2",
    );
    registry.push(
        &format!("oci:{}:base", layout.display()),
        "base/busybox:oci",
    );
    assert!(
        registry.inspect("base/busybox:v2s2", &["--raw"])["mediaType"]
            .as_str()
            .unwrap()
            .contains("docker")
    );

    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-text"], CacheLayout::Rattler, dir.path());
    let home = dir.path().join("home");
    let target = registry.image("app/env:1");
    let build = |base: &str, extra: &[&str]| {
        common::run(
            cd(&home)
                .env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
                .args(["build", "-q", "--json", "-p"])
                .arg(&env.prefix)
                .args(["-b", &registry.image(base)])
                .args(extra),
        )
    };

    // A base from an OCI manifest, written to a file.
    let out = dir.path().join("from-oci.tar");
    build(
        "base/busybox:oci",
        &["-o", out.to_str().unwrap(), "-i", "from-oci:1"],
    );
    let from_oci = Image::open(out.to_str().unwrap()).unwrap();
    let base_digest = registry.inspect("base/busybox:oci", &[])["Layers"][0].clone();
    assert_eq!(
        json!(from_oci.layers()[0].digest().to_string()),
        base_digest,
        "the base layer is taken as the registry has it"
    );

    // A base from a Docker v2s2 manifest, pushed: the base layer is mounted
    // from its repository, the rest uploaded.
    let first = json_of(&build("base/busybox:v2s2", &["--push", "-i", &target]));
    let pushed = &first["pushed"];
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    assert_eq!(pushed["mounted"], 1, "{first}");
    assert_eq!(pushed["existing"], 0, "{first}");
    assert!(pushed["uploaded"].as_u64().unwrap() >= 2, "{first}");
    assert!(
        registry.requests().iter().any(|r| r.method == "POST"
            && r.path.contains("mount=")
            && r.path.contains("from=base%2Fbusybox")
            && r.status == 201),
        "a cross-repository mount"
    );
    let inspected = registry.inspect("app/env:1", &[]);
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");

    // The same image again: every blob is there, nothing is uploaded.
    let before = uploads(&registry);
    let second = json_of(&build("base/busybox:v2s2", &["--push", "-i", &target]));
    assert_eq!(second["pushed"]["digest"], digest.as_str(), "reproducible");
    assert_eq!(second["pushed"]["uploaded"], 0, "{second}");
    assert_eq!(
        uploads(&registry),
        before,
        "no upload requests the second time"
    );

    // Without --json, the digest is printed for scripts.
    let plain = common::run(
        cd(&home)
            .env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
            .args(["build", "-p"])
            .arg(&env.prefix)
            .args(["-b", &registry.image("base/busybox:v2s2")])
            .args(["--push", "-i", &target]),
    );
    assert_eq!(
        common::stdout(&plain).trim(),
        format!("{}@{digest}", registry.image("app/env"))
    );

    let Some(podman) = common::Podman::new() else {
        return;
    };
    let flags = registry.client_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    podman.pull(&target, &flags);
    assert_eq!(
        podman.run(&target, &["cd-show"]),
        cd_show_output("/opt/conda")
    );
}

/// An OCI layout whose tag `multi` is an index of an amd64 and an arm64
/// image, plus an attestation entry (`unknown/unknown`) as buildkit adds.
pub(crate) fn two_platform_layout(dir: &Path) -> PathBuf {
    platform_layout(dir, &[("amd64", None), ("arm64", Some("v8"))])
}

/// [`two_platform_layout`] with an image per `(architecture, variant)` of
/// `platforms` (amd64, the busybox default, first), each a busybox base whose `ARCH` names its
/// architecture; the arm64 one, if any, also as the docker-archive
/// `arm.tar`.
pub(crate) fn platform_layout(dir: &Path, platforms: &[(&str, Option<&str>)]) -> PathBuf {
    let layout = dir.join("multi");
    for (arch, variant) in platforms {
        let mut image = busybox_base(&dir.join(arch));
        if *arch != "amd64" {
            image.config_mut().set_platform("linux", arch, *variant);
        }
        image.config_mut().set_env("ARCH", arch);
        image
            .write(&format!("oci:{}:{arch}", layout.display()))
            .unwrap();
        if *arch == "arm64" {
            image.write_file(dir.join("arm.tar")).unwrap();
        }
    }
    let index_path = layout.join("index.json");
    let index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = |tag: &str| -> Value {
        let mut e = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone();
        e.as_object_mut().unwrap().remove("annotations");
        e
    };
    let mut entries: Vec<Value> = platforms
        .iter()
        .map(|(arch, variant)| {
            let mut e = entry(arch);
            e["platform"] = json!({"os": "linux", "architecture": arch});
            if let Some(variant) = variant {
                e["platform"]["variant"] = json!(variant);
            }
            e
        })
        .collect();
    let mut attestation = entry(platforms[0].0);
    attestation["platform"] = json!({"os": "unknown", "architecture": "unknown"});
    entries.push(attestation);
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let digest = conda_docker::digest::Digest::of(&nested);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), &nested).unwrap();
    let top = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest.to_string(),
            "size": nested.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(&index_path, serde_json::to_vec(&top).unwrap()).unwrap();
    layout
}

#[test]
fn platforms_are_picked_from_an_index_and_a_wrong_one_is_refused() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let layout = two_platform_layout(dir.path());
    let pushed = common::run_unchecked(
        Command::new("skopeo")
            .args([
                "copy",
                "--insecure-policy",
                "--all",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:multi", layout.display()))
            .arg(registry.reference("multi/img:1")),
    );
    assert!(pushed.status.success(), "{pushed:?}");
    registry.push(
        &format!("docker-archive:{}", dir.path().join("arm.tar").display()),
        "arm/only:1",
    );
    let home = dir.path().join("home");
    let inspect = |reference: &str, platform: Option<&str>| {
        let mut cmd = cd(&home);
        cmd.args(["inspect", reference]);
        if let Some(p) = platform {
            cmd.args(["--platform", p]);
        }
        cmd
    };
    let multi = registry.image("multi/img:1");
    assert_eq!(
        json_of(&common::run(&mut inspect(&multi, None)))["architecture"],
        "amd64"
    );
    assert_eq!(
        json_of(&common::run(&mut inspect(&multi, Some("linux-aarch64"))))["architecture"],
        "arm64"
    );
    assert_eq!(
        json_of(&common::run(&mut inspect(&multi, Some("linux/arm64"))))["architecture"],
        "arm64"
    );
    let err = failure(&mut inspect(&multi, Some("linux-ppc64le")));
    assert!(err.contains("has no image for linux/ppc64le"), "{err}");
    assert!(err.contains("linux/amd64, linux/arm64/v8"), "{err}");
    assert!(
        !err.contains("unknown"),
        "attestations are not offered: {err}"
    );

    // A single-platform base for another architecture.
    let err = failure(&mut inspect(
        &registry.image("arm/only:1"),
        Some("linux-64"),
    ));
    assert!(err.contains("has no image for linux/amd64"), "{err}");
    assert!(err.contains("linux/arm64"), "{err}");
    let err = failure(
        cd(&home)
            .args(["pull", &registry.image("arm/only:1"), "-o"])
            .arg(dir.path().join("x.tar")),
    );
    assert!(err.contains("--platform"), "{err}");
    assert!(!dir.path().join("x.tar").exists());

    // The build takes the environment's platform and refuses the arm base.
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-text"], CacheLayout::Rattler, dir.path());
    let mut build = cd(&home);
    build
        .env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
        .args(["build", "-q", "-p"])
        .arg(&env.prefix)
        .args(["-b", &registry.image("arm/only:1"), "-o"])
        .arg(dir.path().join("y.tar"));
    let err = failure(&mut build);
    assert!(err.contains("linux/amd64"), "{err}");
    assert!(!dir.path().join("y.tar").exists());
    let err = failure(
        cd(&home)
            .env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
            .args(["build", "-q", "-p"])
            .arg(&env.prefix)
            .args(["-b", &multi, "--platform", "linux-aarch64", "-o"])
            .arg(dir.path().join("z.tar")),
    );
    assert!(
        err.contains("--platform linux/arm64/v8 does not match"),
        "{err}"
    );
    // The multi-platform base gives the amd64 image for this environment.
    common::run(
        cd(&home)
            .env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
            .args(["build", "-q", "-p"])
            .arg(&env.prefix)
            .args(["-b", &multi, "-o"])
            .arg(dir.path().join("ok.tar")),
    );
    let built = Image::open(dir.path().join("ok.tar").to_str().unwrap()).unwrap();
    assert!(
        built.config().env().iter().any(|e| e == "ARCH=amd64"),
        "{:?}",
        built.config().env()
    );
}

#[test]
fn pinned_pulls_work_offline_and_corrupt_blobs_are_not_cached() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (archive, _) = bases(dir.path());
    let pinned;
    {
        let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
            return;
        };
        registry.push(&format!("docker-archive:{}", archive.display()), "pin/me:1");
        let digest = registry.inspect("pin/me:1", &[])["Digest"]
            .as_str()
            .unwrap()
            .to_owned();
        pinned = format!("{}@{digest}", registry.image("pin/me"));
        common::run(
            cd(&home)
                .args(["pull", &pinned, "-o"])
                .arg(dir.path().join("first.tar")),
        );

        // The registry's copy of the layer goes bad: the pull must fail and
        // leave nothing in the blob store or at the output.
        let fresh = dir.path().join("fresh-home");
        let layer: conda_docker::digest::Digest = registry.inspect("pin/me:1", &[])["Layers"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let stored = registry
            .dir()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&layer.hex()[..2])
            .join(layer.hex())
            .join("data");
        let mut bytes = std::fs::read(&stored).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&stored, &bytes).unwrap();
        let err = failure(
            cd(&fresh)
                .args(["pull", &registry.image("pin/me:1"), "-o"])
                .arg(dir.path().join("bad.tar")),
        );
        assert!(err.contains("does not match its digest"), "{err}");
        assert!(!dir.path().join("bad.tar").exists());
        let blob_dir = fresh.join("cache/blobs/sha256");
        assert!(!blob_dir.join(layer.hex()).exists(), "bad blob cached");
        let leftovers: Vec<_> = std::fs::read_dir(&blob_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    // The registry is gone; the pinned image comes from the blob store.
    let again = dir.path().join("again.tar");
    common::run(cd(&home).args(["pull", &pinned, "-o"]).arg(&again));
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(dir.path().join("first.tar")).unwrap()
    );
    // A registry that is not there: one line naming it.
    let err = failure(
        cd(&home)
            .args(["pull", "127.0.0.1:9/nothing/here:1", "-o"])
            .arg(dir.path().join("none.tar")),
    );
    assert!(err.contains("cannot reach registry 127.0.0.1:9"), "{err}");
}

fn login(home: &Path, registry: &Registry, password: &str) -> std::process::Output {
    let mut child = cd(home)
        .args(["login", registry.host(), "-u", "tester", "--password-stdin"])
        .args(registry.cert_dir().map_or(Vec::new(), |d| {
            vec!["--cert-dir".to_owned(), d.display().to_string()]
        }))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn basic_auth_logins_come_from_login_files_and_env_and_never_leak() {
    require_tools!("docker-registry", "htpasswd", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let password = "s3cret-Pa55";
    let Some(registry) = Registry::basic(&dir.path().join("registry"), "tester", password) else {
        return;
    };
    let (archive, _) = bases(dir.path());
    registry.push(
        &format!("docker-archive:{}", archive.display()),
        "private/base:1",
    );
    let home = dir.path().join("home");
    let base = registry.image("private/base:1");
    let pull = |home: &Path, out: &str| {
        let mut cmd = cd(home);
        cmd.args(["pull", &base, "-o"]).arg(dir.path().join(out));
        cmd
    };

    let err = failure(&mut pull(&home, "anon.tar"));
    assert!(
        err.contains(&format!(
            "not authorised to pull from {}/private/base",
            registry.host()
        )),
        "{err}"
    );
    assert!(err.contains("conda-docker login"), "{err}");

    // A wrong password is refused and stores nothing.
    let wrong = login(&home, &registry, "nope");
    assert!(!wrong.status.success());
    assert!(!home.join(".docker/config.json").exists());
    // `login` checks the password, then writes docker's file (0600).
    let ok = login(&home, &registry, password);
    assert!(ok.status.success(), "{ok:?}");
    let config_path = home.join(".docker/config.json");
    let mode = std::fs::metadata(&config_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert!(
        config["auths"][registry.host()]["auth"].is_string(),
        "{config}"
    );
    common::run(&mut pull(&home, "logged-in.tar"));

    // podman's auth.json (REGISTRY_AUTH_FILE) works the same way.
    let other = dir.path().join("other-home");
    let auth_file = dir.path().join("auth.json");
    std::fs::write(&auth_file, registry.docker_config(false).to_string()).unwrap();
    common::run(pull(&other, "auth-file.tar").env("REGISTRY_AUTH_FILE", &auth_file));

    // CONDA_DOCKER_REGISTRY_USER/_PASSWORD: for the push target only.
    let mut copy = cd(&other);
    copy.args(["copy", "-vv"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(registry.reference("pushed/by-env:1"))
        .env("CONDA_DOCKER_REGISTRY_USER", "tester")
        .env("CONDA_DOCKER_REGISTRY_PASSWORD", password)
        .env("RUST_LOG", "trace");
    let output = common::run(&mut copy);
    let everything = format!(
        "{}{}",
        common::stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(everything.contains("pushed"), "{everything}");
    let encoded = common::base64_encode(format!("tester:{password}").as_bytes());
    for secret in [password, encoded.as_str()] {
        assert!(
            !everything.contains(secret),
            "a secret in the output at -vv"
        );
    }
    let err = failure(
        pull(&other, "env-is-not-for-pulls.tar")
            .env("CONDA_DOCKER_REGISTRY_USER", "tester")
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", password),
    );
    assert!(err.contains("not authorised"), "{err}");
    assert!(!err.contains(password));
}

#[test]
fn tls_registries_need_their_ca_or_insecure() {
    require_tools!(
        "docker-registry",
        "htpasswd",
        "openssl",
        "skopeo",
        "busybox"
    );
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::tls_basic(&dir.path().join("registry"), "tester", "pw") else {
        return;
    };
    let (archive, _) = bases(dir.path());
    registry.push(
        &format!("docker-archive:{}", archive.display()),
        "tls/base:1",
    );
    let home = dir.path().join("home");
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, registry.docker_config(false).to_string()).unwrap();
    let pull = |extra: &[&str], out: &str| {
        let mut cmd = cd(&home);
        cmd.env("REGISTRY_AUTH_FILE", &auth)
            .args(["pull", &registry.image("tls/base:1"), "-o"])
            .arg(dir.path().join(out))
            .args(extra);
        cmd
    };
    let err = failure(&mut pull(&[], "untrusted.tar"));
    assert!(err.contains("is not trusted"), "{err}");
    assert!(err.contains("--cert-dir"), "{err}");
    let cert_dir = registry.cert_dir().unwrap().to_str().unwrap().to_owned();
    common::run(&mut pull(&["--cert-dir", &cert_dir], "trusted.tar"));
    common::run(&mut pull(&["--insecure"], "insecure.tar"));
    // A self-signed registry is never downgraded to plain HTTP.
    assert!(registry.requests().iter().all(|r| r.status != 400));
}

/// A `docker-credential-NAME` helper that answers from a file and logs
/// each call, as a real keychain helper would.
fn credential_helper(bin: &Path, name: &str, registry: &Registry) -> PathBuf {
    std::fs::create_dir_all(bin).unwrap();
    let log = bin.join(format!("{name}.log"));
    let (user, password) = registry.credentials().unwrap();
    let script = format!(
        "#!/bin/sh\nread server\necho \"$1 $server\" >> {log}\ncase \"$1\" in\n get) if [ \"$server\" = \"{host}\" ]; then printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n *) exit 1 ;;\nesac\n",
        log = log.display(),
        host = registry.host(),
    );
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn token_registries_use_scoped_tokens_helpers_and_identity_tokens() {
    require_tools!("docker-registry", "openssl", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::token(&dir.path().join("registry"), "tester", "tpw") else {
        return;
    };
    let (archive, _) = bases(dir.path());
    registry.push(
        &format!("docker-archive:{}", archive.display()),
        "tok/base:1",
    );
    let source = format!("docker-archive:{}", archive.display());
    let home = dir.path().join("home");

    // Anonymous: pulls work (the token service grants pull), pushes do not.
    common::run(
        cd(&home)
            .args(["pull", &registry.image("tok/base:1"), "-o"])
            .arg(dir.path().join("anon.tar")),
    );
    let err = failure(cd(&home).args(["copy", &source, &registry.reference("tok/anon:1")]));
    assert!(
        err.contains(&format!(
            "not authorised to push to {}/tok/anon",
            registry.host()
        )),
        "{err}"
    );

    // A credential helper named in docker's config.
    let bin = dir.path().join("bin");
    let log = credential_helper(&bin, "cdtest", &registry);
    let docker_dir = dir.path().join("docker");
    std::fs::create_dir_all(&docker_dir).unwrap();
    std::fs::write(
        docker_dir.join("config.json"),
        json!({"credHelpers": {registry.host(): "cdtest"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tokens_before = registry.tokens_issued();
    let pushed = common::run(
        cd(&home)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", &docker_dir)
            .args(["copy", &source, &registry.reference("tok/helper:1")]),
    );
    assert!(common::stdout(&pushed).contains("@sha256:"));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains(&format!("get {}", registry.host())),
        "{calls}"
    );
    let issued = registry.tokens_issued() - tokens_before;
    let requests = registry
        .requests()
        .iter()
        .filter(|r| r.path.contains("tok/helper"))
        .count();
    assert!(
        issued <= 2 && requests > issued,
        "a token is reused for the whole push: {issued} tokens for {requests} requests"
    );
    assert!(registry.tokens().iter().any(|t| {
        t.grant == "basic"
            && t.subject == "tester"
            && t.scopes
                .contains(&"repository:tok/helper:pull,push".to_owned())
    }));

    // An identity token (docker's `identitytoken`) goes through the OAuth2
    // refresh-token grant.
    let id_dir = dir.path().join("docker-id");
    std::fs::create_dir_all(&id_dir).unwrap();
    std::fs::write(
        id_dir.join("config.json"),
        registry.docker_config(true).to_string(),
    )
    .unwrap();
    common::run(cd(&home).env("DOCKER_CONFIG", &id_dir).args([
        "copy",
        &source,
        &registry.reference("tok/identity:1"),
    ]));
    assert!(registry.tokens().iter().any(|t| {
        t.grant == "refresh_token"
            && t.scopes
                .contains(&"repository:tok/identity:pull,push".to_owned())
    }));
    // Mounting from another repository asks one token for both scopes.
    common::run(cd(&home).env("DOCKER_CONFIG", &id_dir).args([
        "copy",
        &registry.image("tok/base:1"),
        &registry.reference("tok/mounted:1"),
    ]));
    assert!(registry.tokens().iter().any(|t| {
        t.scopes
            .contains(&"repository:tok/mounted:pull,push".to_owned())
            && t.scopes.contains(&"repository:tok/base:pull".to_owned())
    }));
    assert!(registry.requests().iter().any(|r| r.method == "POST"
        && r.path.starts_with("/v2/tok/mounted/blobs/uploads/?mount=")
        && r.status == 201));
}

/// `len` bytes that gzip cannot shrink (xorshift), so the blob stays large.
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn large_layers_go_up_in_chunks_and_the_example_pulls_them_back() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let mut image = busybox_base(&dir.path().join("base"));
    image
        .add_layer_contents([("data/big.bin", noise(40 << 20))])
        .unwrap();
    let archive = dir.path().join("big.tar");
    image.write_file(&archive).unwrap();
    let home = dir.path().join("home");
    let pushed = common::run(
        cd(&home)
            .args(["copy"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(registry.reference("big/img:1")),
    );
    let digest = image.manifest_digest().to_string();
    assert_eq!(
        common::stdout(&pushed).trim(),
        format!("{}@{digest}", registry.image("big/img"))
    );
    let patches = registry
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == 202)
        .count();
    assert!(patches >= 3, "40 MiB in 16 MiB chunks: {patches} PATCHes");
    assert_eq!(
        registry.inspect("big/img:1", &[])["Digest"],
        digest.as_str()
    );

    let out = dir.path().join("pulled.tar");
    let output = common::run(
        crate::fixtures::example("pull_image")
            .env("CONDA_DOCKER_CACHE_DIR", home.join("example-cache"))
            .env("HOME", &home)
            .args([&registry.image("big/img"), "1"])
            .arg(&out),
    );
    assert!(common::stdout(&output).contains(&image.config_digest().to_string()));
    let pulled = Image::open(out.to_str().unwrap()).unwrap();
    let digests = |i: &Image| i.layers().iter().map(|l| l.digest()).collect::<Vec<_>>();
    assert_eq!(digests(&pulled), digests(&image));
}
