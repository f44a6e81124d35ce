//! Secrets and isolation (issue 17): registry passwords and tokens never
//! show in what we print or write, credentials go only to the registry
//! they belong to (across redirects, upload locations on another host, and
//! base, target and --cache-repo on three registries), `login` keeps its
//! file private and its neighbours' entries, nothing of the build machine
//! (environment, host name, user, paths) reaches an image, and a registry
//! off loopback is spoken to only over verified TLS unless --insecure.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::{
    self, CacheLayout, CondaChannel, RecordingProxy, Registry, Route, base64_encode, install_env,
    isolated_conda_docker, require_tools,
};
use crate::fixtures::{busybox_base, failure};

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

/// Every byte `path` holds, as (name, bytes) pieces: the files of a
/// folder, the members of a tar, and each gzip or zstd piece also
/// uncompressed (so a secret inside a layer's files is found).
fn image_pieces(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut pieces = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            pieces.extend(image_pieces(&entry.unwrap().path()));
        }
        return pieces;
    }
    let bytes = std::fs::read(path).unwrap();
    add_piece(&path.display().to_string(), bytes, &mut pieces);
    pieces
}

fn add_piece(name: &str, bytes: Vec<u8>, pieces: &mut Vec<(String, Vec<u8>)>) {
    let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        Some(out)
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(zstd::decode_all(&bytes[..]).unwrap())
    } else {
        None
    };
    let tar_members = |bytes: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        let Ok(entries) = archive.entries() else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|mut e| {
                let member = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (member, data)
            })
            .collect()
    };
    let source = plain.as_deref().unwrap_or(&bytes);
    let is_tar = source.len() > 262 && &source[257..262] == b"ustar";
    if is_tar {
        for (member, data) in tar_members(source) {
            add_piece(&format!("{name}:{member}"), data, pieces);
        }
    }
    if let Some(plain) = plain {
        pieces.push((format!("{name} (uncompressed)"), plain));
    }
    pieces.push((name.to_owned(), bytes));
}

/// Panics if any of `secrets` occurs in `bytes`.
fn free_of(what: &str, bytes: &[u8], secrets: &[String]) {
    for secret in secrets {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{what} holds the secret {secret}:\n{}",
            String::from_utf8_lossy(bytes)
                .chars()
                .take(4000)
                .collect::<String>()
        );
    }
}

fn free_of_output(what: &str, output: &Output, secrets: &[String]) {
    free_of(&format!("{what} (stdout)"), &output.stdout, secrets);
    free_of(&format!("{what} (stderr)"), &output.stderr, secrets);
}

/// `login HOST -u USER --password-stdin` with `password`, at `-vvv`.
fn login(home: &Path, host: &str, user: &str, password: &str) -> Output {
    let mut child = isolated_conda_docker(home)
        .args(["-vvv", "login", host, "-u", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{password}\n").as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// The base, a small conda environment, and where the image's bytes come
/// from, for the tests that build.
struct Scene {
    dir: tempfile::TempDir,
    base: PathBuf,
    prefix: PathBuf,
    pkgs: PathBuf,
}

impl Scene {
    /// Everything under a temp dir whose path holds `marker` (and the
    /// environment under `root`, a folder named with it too).
    fn new(marker: &str) -> Scene {
        let dir = tempfile::Builder::new()
            .prefix(&format!("secrets-{marker}-"))
            .tempdir()
            .unwrap();
        let base = dir.path().join("base.tar");
        busybox_base(&dir.path().join("base"))
            .write_file(&base)
            .unwrap();
        let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
        let root = dir.path().join(format!("envroot-{marker}"));
        std::fs::create_dir_all(&root).unwrap();
        let env = install_env(&channel, &["cd-text"], CacheLayout::Conda, &root);
        Scene {
            base,
            prefix: env.prefix.clone(),
            pkgs: env.cache_dir.clone(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `build -p ENV` from `home`, with the base as `base` (default: the
    /// docker-archive) and `args`.
    fn build(&self, home: &Path, base: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = isolated_conda_docker(home);
        cmd.env("CONDA_PKGS_DIRS", &self.pkgs)
            .args(["build", "-p"])
            .arg(&self.prefix)
            .arg("-b")
            .arg(base.map_or_else(
                || format!("docker-archive:{}", self.base.display()),
                str::to_owned,
            ))
            .args(args);
        cmd
    }
}

#[test]
fn passwords_and_tokens_never_show_in_output_errors_or_images() {
    require_tools!(
        "docker-registry",
        "skopeo",
        "busybox",
        "htpasswd",
        "openssl"
    );
    let scene = Scene::new("pw");
    let (token_password, basic_password) = ("Tok-Pa55-91c4e7", "Bas-Pa55-5d02a8");
    let Some(tokens) = Registry::token(&scene.path("tok"), "tokuser", token_password) else {
        return;
    };
    let Some(basic_reg) = Registry::basic(&scene.path("bas"), "basuser", basic_password) else {
        return;
    };
    basic_reg.push(
        &format!("docker-archive:{}", scene.base.display()),
        "base/bb:1",
    );
    let home = scene.path("home");
    let mut secrets = vec![
        token_password.to_owned(),
        basic_password.to_owned(),
        base64_encode(format!("tokuser:{token_password}").as_bytes()),
        base64_encode(format!("basuser:{basic_password}").as_bytes()),
    ];
    let mut outputs = Vec::new();
    for (host, user, password) in [
        (tokens.host(), "tokuser", token_password),
        (basic_reg.host(), "basuser", basic_password),
    ] {
        let out = login(&home, host, user, password);
        assert!(out.status.success(), "{}", common::stderr(&out));
        outputs.push((format!("login {host}"), out));
    }
    // Builds at each verbosity and with --json: the base pulled with the
    // basic login, the image pushed with a token, and written to files.
    let base = basic_reg.image("base/bb:1");
    let target = tokens.image("app/env:1");
    let archive = scene.path("out.tar");
    let layout = scene.path("out-oci");
    for (flags, output) in [
        (&["-v"][..], format!("docker-archive:{}", archive.display())),
        (
            &["-vv", "--json"][..],
            format!("oci:{}:t", layout.display()),
        ),
        (
            &["-vvv"][..],
            format!("docker-archive:{}", scene.path("vvv.tar").display()),
        ),
    ] {
        let out = common::run(
            scene
                .build(
                    &home,
                    Some(&base),
                    &["--push", "-i", &target, "-o", &output],
                )
                .args(flags),
        );
        outputs.push((format!("build {flags:?}"), out));
    }
    let pulled = scene.path("pulled.tar");
    let out = common::run(
        isolated_conda_docker(&home)
            .args(["-vvv", "pull", &target, "-o"])
            .arg(&pulled),
    );
    outputs.push(("pull -vvv".into(), out));
    // A login stored as an identity token (docker's OAuth2 refresh token).
    let identity = scene.path("identity");
    std::fs::create_dir_all(&identity).unwrap();
    std::fs::write(
        identity.join("config.json"),
        tokens.docker_config(true).to_string(),
    )
    .unwrap();
    secrets.push(tokens.identity_token().to_owned());
    let out = common::run(
        isolated_conda_docker(&scene.path("home-identity"))
            .env("DOCKER_CONFIG", &identity)
            .args(["-vvv", "pull", &target, "-o"])
            .arg(scene.path("identity.tar")),
    );
    outputs.push(("pull -vvv with an identity token".into(), out));
    assert!(
        tokens.tokens().iter().any(|t| t.grant == "refresh_token"),
        "the identity token was used"
    );
    // Errors, at -vvv: a wrong password (basic and token registries), a
    // login refused, an unreachable registry.
    let wrong = "Wr0ng-Pa55-3e9f11";
    secrets.push(wrong.to_owned());
    secrets.push(base64_encode(format!("basuser:{wrong}").as_bytes()));
    secrets.push(base64_encode(format!("tokuser:{wrong}").as_bytes()));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for (what, registry, user) in [
        (
            "wrong basic password",
            basic_reg.host().to_owned(),
            "basuser",
        ),
        ("wrong token password", tokens.host().to_owned(), "tokuser"),
        ("unreachable", closed.clone(), "basuser"),
    ] {
        let out = common::run_unchecked(
            scene
                .build(&scene.path("nobody"), None, &["-vvv", "--push", "-i"])
                .arg(format!("{registry}/app/err:1"))
                .env("CONDA_DOCKER_REGISTRY_USER", user)
                .env("CONDA_DOCKER_REGISTRY_PASSWORD", wrong),
        );
        assert!(!out.status.success(), "{what}");
        let last = common::stderr(&out).lines().last().unwrap_or("").to_owned();
        assert!(last.starts_with("error: "), "{what}: {last}");
        outputs.push((what.into(), out));
    }
    let refused = login(&scene.path("nobody"), tokens.host(), "tokuser", wrong);
    assert!(!refused.status.success());
    outputs.push(("login with a wrong password".into(), refused));

    // The tokens issued in all of this are secrets too.
    let issued: Vec<String> = tokens.tokens().into_iter().map(|t| t.token).collect();
    assert!(issued.len() >= 2, "tokens were issued");
    secrets.extend(issued);
    for (what, output) in &outputs {
        free_of_output(what, output, &secrets);
    }
    let identity_pulled = scene.path("identity.tar");
    for path in [
        &archive,
        &layout,
        &scene.path("vvv.tar"),
        &pulled,
        &identity_pulled,
    ] {
        for (name, bytes) in image_pieces(path) {
            free_of(&name, &bytes, &secrets);
        }
    }
    let config = tokens.inspect("app/env:1", &["--config", "--raw"]);
    free_of("the pushed config", config.to_string().as_bytes(), &secrets);
}

#[test]
fn login_keeps_its_file_private_and_the_other_entries() {
    require_tools!("docker-registry", "htpasswd");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::basic(&dir.path().join("reg"), "u1", "Login-Pa55-0c1d") else {
        return;
    };
    let home = dir.path().join("home");
    let config = home.join(".docker/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let before = json!({
        "auths": {"ghcr.io": {"auth": base64_encode(b"someone:other-token")}},
        "credHelpers": {"quay.io": "none-such"},
        "psFormat": "table {{.ID}}",
    });
    std::fs::write(&config, before.to_string()).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = login(&home, registry.host(), "u1", "Login-Pa55-0c1d");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the login file is private");
    let after: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(after["auths"]["ghcr.io"], before["auths"]["ghcr.io"]);
    assert_eq!(after["credHelpers"], before["credHelpers"]);
    assert_eq!(after["psFormat"], before["psFormat"]);
    assert_eq!(
        after["auths"][registry.host()]["auth"],
        base64_encode(b"u1:Login-Pa55-0c1d")
    );
    // A file made fresh is private too.
    let fresh = dir.path().join("fresh");
    let out = login(&fresh, registry.host(), "u1", "Login-Pa55-0c1d");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mode = std::fs::metadata(fresh.join(".docker/config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn images_carry_nothing_of_the_build_machine() {
    require_tools!("busybox");
    let marker = "Qx7Marker";
    let scene = Scene::new(marker);
    let home = scene.path(&format!("home-{marker}"));
    let workdir = scene.path(&format!("work-{marker}"));
    std::fs::create_dir_all(&workdir).unwrap();
    let archive = scene.path("host.tar");
    let layout = scene.path("host-oci");
    for output in [
        format!("docker-archive:{}", archive.display()),
        format!("oci:{}:t", layout.display()),
    ] {
        common::run(
            scene
                .build(&home, None, &["-q", "-o", &output])
                .current_dir(&workdir)
                .env("USER", format!("user-{marker}"))
                .env("LOGNAME", format!("user-{marker}"))
                .env("HOSTNAME", format!("host-{marker}"))
                .env("SHELL", format!("/bin/sh-{marker}"))
                .env("TMPDIR", &workdir)
                .env(
                    "CONDA_DOCKER_CACHE_DIR",
                    home.join(format!("cache-{marker}")),
                ),
        );
    }
    let machine = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut markers = vec![marker.to_owned(), scene.dir.path().display().to_string()];
    markers.extend(
        [machine.trim()]
            .into_iter()
            .filter(|h| h.len() >= 6)
            .map(str::to_owned),
    );
    let mut pieces = 0;
    for path in [&archive, &layout] {
        for (name, bytes) in image_pieces(path) {
            free_of(&name, &bytes, &markers);
            pieces += 1;
        }
    }
    assert!(pieces > 10, "the images were read: {pieces} pieces");
}

/// Another host that passes every request on to `upstream` with `login`
/// of its own (storage or an upload service a registry trusts).
fn passing_on(upstream: &str, login: &str) -> RecordingProxy {
    let (upstream, login) = (upstream.to_owned(), login.to_owned());
    RecordingProxy::start(move |_, _| Route::Forward {
        upstream: upstream.clone(),
        authorization: Some(login.clone()),
        location_host: None,
    })
}

/// A registry behind a recording proxy that redirects its blob downloads
/// to another host, or points its upload locations at another host.
struct Fronted {
    registry: Registry,
    front: RecordingProxy,
    elsewhere: RecordingProxy,
    login: String,
}

impl Fronted {
    /// `registry`, with its blob GETs redirected to a storage host (which
    /// fetches them with the registry's login of its own).
    fn redirecting(registry: Registry, user: &str, password: &str) -> Fronted {
        let login = basic(user, password);
        let upstream = registry.host().to_owned();
        let storage = passing_on(&upstream, &login);
        let storage_host = storage.host();
        let front = RecordingProxy::start(move |method, path| {
            if method == "GET" && path.contains("/blobs/sha256:") {
                Route::Redirect(format!("http://{storage_host}{path}"))
            } else {
                Route::Forward {
                    upstream: upstream.clone(),
                    authorization: None,
                    location_host: None,
                }
            }
        });
        Fronted {
            registry,
            front,
            elsewhere: storage,
            login,
        }
    }

    /// `registry`, its upload locations on another host (which passes
    /// them on with the registry's login of its own).
    fn uploading_elsewhere(registry: Registry, user: &str, password: &str) -> Fronted {
        let login = basic(user, password);
        let upstream = registry.host().to_owned();
        let uploads = passing_on(&upstream, &login);
        let uploads_host = uploads.host();
        let front = RecordingProxy::start(move |_, _| Route::Forward {
            upstream: upstream.clone(),
            authorization: None,
            location_host: Some(uploads_host.clone()),
        });
        Fronted {
            registry,
            front,
            elsewhere: uploads,
            login,
        }
    }

    /// Checks that the front saw only this registry's login (and at least
    /// once), and the other host never a login.
    fn saw_only_its_own_login(&self, what: &str) {
        let seen = self.front.seen();
        assert!(
            seen.iter()
                .any(|r| r.authorization.as_deref() == Some(self.login.as_str())),
            "{what}: the login was used: {seen:#?}"
        );
        for request in &seen {
            if let Some(auth) = &request.authorization {
                assert_eq!(auth, &self.login, "{what}: a foreign login: {request:?}");
            }
        }
        let elsewhere = self.elsewhere.seen();
        assert!(!elsewhere.is_empty(), "{what}: the other host was used");
        for request in &elsewhere {
            assert_eq!(
                request.authorization, None,
                "{what}: a login went to another host: {request:?}"
            );
        }
    }
}

#[test]
fn credentials_go_only_to_the_registry_they_belong_to() {
    require_tools!("docker-registry", "skopeo", "busybox", "htpasswd");
    let scene = Scene::new("scope");
    let start =
        |name: &str, user: &str, password: &str| Registry::basic(&scene.path(name), user, password);
    let (Some(a), Some(b), Some(c)) = (
        start("a", "alice", "Pa55-A-1b2c"),
        start("b", "bob", "Pa55-B-3d4e"),
        start("c", "carol", "Pa55-C-5f6a"),
    ) else {
        return;
    };
    a.push(
        &format!("docker-archive:{}", scene.base.display()),
        "base/bb:1",
    );
    // The base's registry redirects blob downloads to a storage host; the
    // target's sends uploads to another host; the cache is plain.
    let base = Fronted::redirecting(a, "alice", "Pa55-A-1b2c");
    let target = Fronted::uploading_elsewhere(b, "bob", "Pa55-B-3d4e");
    let cache_login = basic("carol", "Pa55-C-5f6a");
    let cache_upstream = c.host().to_owned();
    let cache = RecordingProxy::start(move |_, _| Route::Forward {
        upstream: cache_upstream.clone(),
        authorization: None,
        location_host: None,
    });
    let docker = scene.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = |user: &str, password: &str| json!({"auth": base64_encode(format!("{user}:{password}").as_bytes())});
    let config = json!({"auths": {
        base.front.host(): auth("alice", "Pa55-A-1b2c"),
        target.front.host(): auth("bob", "Pa55-B-3d4e"),
        cache.host(): auth("carol", "Pa55-C-5f6a"),
    }});
    std::fs::write(docker.join("config.json"), config.to_string()).unwrap();
    // Once with every login in docker's file, once with the target's from
    // CONDA_DOCKER_REGISTRY_USER/_PASSWORD (and a fresh cache, so the base
    // is pulled again and the layers come from the cache repository).
    let env_config = scene.path("docker-env");
    std::fs::create_dir_all(&env_config).unwrap();
    let mut without_target = config.clone();
    without_target["auths"]
        .as_object_mut()
        .unwrap()
        .remove(&target.front.host());
    std::fs::write(env_config.join("config.json"), without_target.to_string()).unwrap();
    let build = |home: &str, docker: &Path, env: &[(&str, &str)]| {
        common::run(
            scene
                .build(
                    &scene.path(home),
                    Some(&format!("{}/base/bb:1", base.front.host())),
                    &["-q", "--push", "-i"],
                )
                .arg(format!("{}/app/env:1", target.front.host()))
                .arg("--cache-repo")
                .arg(format!("{}/cache/layers", cache.host()))
                .env("DOCKER_CONFIG", docker)
                .envs(env.iter().copied()),
        )
    };
    let out = build("home", &docker, &[]);
    build(
        "home2",
        &env_config,
        &[
            ("CONDA_DOCKER_REGISTRY_USER", "bob"),
            ("CONDA_DOCKER_REGISTRY_PASSWORD", "Pa55-B-3d4e"),
        ],
    );
    assert!(common::stdout(&out).contains("/app/env@sha256:"));
    base.saw_only_its_own_login("base registry");
    target.saw_only_its_own_login("target registry");
    let seen = cache.seen();
    assert!(
        seen.iter().any(|r| r.method == "PUT"),
        "layers were written to the cache repository: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.authorization.as_deref() == Some(cache_login.as_str()))
    );
    for request in &seen {
        if let Some(auth) = &request.authorization {
            assert_eq!(
                auth, &cache_login,
                "the cache registry saw another login: {request:?}"
            );
        }
    }
    // What was pushed through the other host is whole.
    let pushed = target.registry.inspect("app/env:1", &["--raw"]);
    assert!(pushed["layers"].as_array().unwrap().len() >= 3, "{pushed}");
}

/// The layout of a busybox base at `dir/base-oci`, tag `b`.
fn base_layout(dir: &Path) -> String {
    let layout = dir.join("base-oci");
    busybox_base(&dir.join("base"))
        .write(&format!("oci:{}:b", layout.display()))
        .unwrap();
    format!("oci:{}:b", layout.display())
}

/// `skopeo copy SRC docker://HOST/NAME`, without TLS checks (the tests
/// set up the registries; what is checked is our client).
fn seed(source: &str, host: &str, name: &str) {
    common::run(Command::new(common::expect_tool("skopeo")).args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        source,
        &format!("docker://{host}/{name}"),
    ]));
}

#[test]
fn registries_off_loopback_need_verified_tls_or_insecure() {
    require_tools!("docker-registry", "skopeo", "openssl", "busybox");
    let Some(netns) = common::Netns::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plain = common::NetnsRegistry::start(&netns, &dir.path().join("plain"), 5000, false);
    let tls = common::NetnsRegistry::start(&netns, &dir.path().join("tls"), 5443, true);
    let source = base_layout(dir.path());
    seed(&source, plain.host(), "ns/bb:1");
    seed(&source, tls.host(), "ns/bb:1");
    let pull = |home: &str, host: &str, flags: &[&str]| {
        let mut cmd = isolated_conda_docker(&dir.path().join(home));
        cmd.args(["pull", &format!("{host}/ns/bb:1"), "-o"])
            .arg(dir.path().join(format!("{home}.tar")))
            .args(flags);
        cmd
    };
    let seeded = plain.requests().len();

    // Plain HTTP off loopback: not spoken to (HTTPS only, which it does
    // not answer) without --insecure; with it, pulled.
    let error = failure(&mut pull("p1", plain.host(), &[]));
    assert!(error.contains(plain.host()), "{error}");
    assert!(error.contains("--insecure"), "says what to do: {error}");
    assert_eq!(plain.requests().len(), seeded, "no HTTP request reached it");
    assert!(!dir.path().join("p1.tar").exists());
    common::run(&mut pull("p2", plain.host(), &["--insecure"]));
    assert!(plain.requests().len() > seeded);

    // A certificate that does not verify: refused, naming the fix; with
    // its CA (--cert-dir) or --insecure, pulled.
    let error = failure(&mut pull("t1", tls.host(), &[]));
    assert!(
        error.contains(&format!(
            "the TLS certificate of {} is not trusted",
            tls.host()
        )),
        "{error}"
    );
    let cert_dir = tls.cert_dir().unwrap().to_str().unwrap();
    common::run(&mut pull("t2", tls.host(), &["--cert-dir", cert_dir]));
    common::run(&mut pull("t3", tls.host(), &["--insecure"]));

    // A loopback registry that redirects blob downloads to the plain one
    // off loopback: refused without --insecure.
    let Some(lo) = Registry::plain(&dir.path().join("lo")) else {
        return;
    };
    lo.push(&source, "ns/bb:1");
    let upstream = lo.host().to_owned();
    let off = plain.host().to_owned();
    let front = RecordingProxy::start(move |method, path| {
        if method == "GET" && path.contains("/blobs/sha256:") {
            Route::Redirect(format!("http://{off}{path}?X-Amz-Signature=Sig-5ecret-77"))
        } else {
            Route::Forward {
                upstream: upstream.clone(),
                authorization: None,
                location_host: None,
            }
        }
    });
    let before = plain.requests().len();
    let error = failure(&mut pull("r1", &front.host(), &[]));
    assert!(error.contains("a redirect was not followed"), "{error}");
    assert!(error.contains("a redirect to plain HTTP"), "{error}");
    assert!(!error.contains("Sig-5ecret-77"), "no signature: {error}");
    assert!(error.contains("--insecure"), "{error}");
    assert_eq!(plain.requests().len(), before, "not followed");
    common::run(&mut pull("r2", &front.host(), &["--insecure"]));
    assert!(plain.requests().len() > before, "followed with --insecure");
}

#[test]
fn signed_storage_urls_stay_out_of_errors() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("reg")) else {
        return;
    };
    registry.push(&base_layout(dir.path()), "st/bb:1");
    // Blob downloads go to a storage URL whose query is its signature, on
    // a host that is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = registry.host().to_owned();
    let front = RecordingProxy::start(move |method, path| {
        if method == "GET" && path.contains("/blobs/sha256:") {
            Route::Redirect(format!(
                "http://{closed}/bucket/blob?X-Amz-Credential=Cred-5ecret-12&X-Amz-Signature=Sig-5ecret-34"
            ))
        } else {
            Route::Forward {
                upstream: upstream.clone(),
                authorization: None,
                location_host: None,
            }
        }
    });
    let out = common::run_unchecked(
        isolated_conda_docker(&dir.path().join("home"))
            .args(["-vvv", "pull", &format!("{}/st/bb:1", front.host()), "-o"])
            .arg(dir.path().join("out.tar")),
    );
    assert!(!out.status.success());
    let err = common::stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: cannot reach registry"), "{last}");
    free_of_output(
        "a failed download from storage",
        &out,
        &["Cred-5ecret-12".into(), "Sig-5ecret-34".into()],
    );
}
