//! Logins and trust for registries (issue 13, items 4 to 6): a push checks
//! its login before any work; docker's and podman's login files and
//! `certs.d` directories are found where those tools put them; `login`
//! asks on a terminal and never echoes the password.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    self, CacheLayout, CondaChannel, Registry, RegistryRequest, install_env, require_tools,
};
use crate::fixtures::{busybox_base, conda_docker, failure};

const PASSWORD: &str = "s3cret-Pa55";
/// How long a pseudo-terminal session may take before the test gives up:
/// a bound for a hang, not a measure of speed.
const PTY_DEADLINE: Duration = Duration::from_secs(60);

/// `conda-docker` with nothing from the host: only `PATH`, and `HOME` and
/// our cache under `home` (so no XDG_RUNTIME_DIR, REGISTRY_AUTH_FILE or
/// DOCKER_CONFIG unless a test sets them).
fn cd(home: &Path) -> Command {
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cache"));
    cmd
}

/// The busybox base as a docker-archive.
fn base_archive(dir: &Path) -> PathBuf {
    let archive = dir.join("base.tar");
    busybox_base(&dir.join("base"))
        .write_file(&archive)
        .unwrap();
    archive
}

/// Pushes `archive` to `name` on `registry` with our own `copy`, logged in
/// through the CI variables.
fn seed(registry: &Registry, archive: &Path, name: &str, extra: &[&str]) {
    let (user, password) = registry.credentials().unwrap();
    common::run(
        cd(&archive.with_extension("home"))
            .env("CONDA_DOCKER_REGISTRY_USER", user)
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", password)
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(registry.reference(name))
            .args(extra),
    );
}

/// An `auths` entry for `registry`'s user with `password`.
fn auth_entry(registry: &Registry, password: &str) -> Value {
    let (user, _) = registry.credentials().unwrap();
    json!({"auth": common::base64_encode(format!("{user}:{password}").as_bytes())})
}

/// A docker/podman login file for `registry` with `password`.
fn auth_json(registry: &Registry, password: &str) -> String {
    json!({"auths": {registry.host(): auth_entry(registry, password)}}).to_string()
}

/// What conda-docker asked of `registry` (the harness's own requests left
/// out).
fn our_requests(registry: &Registry) -> Vec<RegistryRequest> {
    registry
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("conda-docker/"))
        .collect()
}

/// Asserts that conda-docker did nothing but ping the registry and be
/// refused the start of an upload (to `repository`, among others): no
/// blob was looked at, opened or sent, and no manifest.
fn only_the_check(registry: &Registry, repository: &str) {
    let check = format!("/v2/{repository}/blobs/uploads/");
    let requests = our_requests(registry);
    for request in &requests {
        let ping = request.method == "GET" && request.path == "/v2/";
        let refused_check = request.method == "POST"
            && request.path.ends_with("/blobs/uploads/")
            && request.status == 401;
        assert!(
            ping || refused_check,
            "only the push check may reach the registry: {request:?}"
        );
    }
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path == check),
        "the check asked {check}: {requests:?}"
    );
}

/// Asserts a build failed with one error line `expected` and built nothing:
/// no progress line, no output file, no layer cache.
fn refused_before_building(output: &Output, expected: &str, out: &Path, home: &Path) {
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, no progress: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(expected), "{stderr}");
    assert!(!out.exists(), "nothing written");
    assert!(!home.join("cache").exists(), "no layer was built");
}

#[test]
fn a_push_checks_its_login_before_building() {
    // Issue 13, item 4: a 1.6 GB environment was built for 48 s before
    // `--push` found it had no login.
    require_tools!("docker-registry", "htpasswd", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::basic(&dir.path().join("registry"), "tester", PASSWORD) else {
        return;
    };
    let archive = base_archive(dir.path());
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-text"], CacheLayout::Rattler, dir.path());
    let host = registry.host().to_owned();
    let build = |home: &Path, target: &str, out: &Path| {
        let mut cmd = cd(home);
        cmd.env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
            .args(["build", "-p"])
            .arg(&env.prefix)
            .arg("-b")
            .arg(format!("docker-archive:{}", archive.display()))
            .args(["--push", "-i", target, "-o"])
            .arg(out);
        cmd
    };
    let target = registry.image("app/env:1");
    let out = dir.path().join("out.tar");

    // No login anywhere.
    let home = dir.path().join("no-login");
    let output = common::run_unchecked(&mut build(&home, &target, &out));
    refused_before_building(
        &output,
        &format!(
            "not authorised to push to {host}/app/env: no login found for {host}; log in with `conda-docker login {host}` or set CONDA_DOCKER_REGISTRY_USER and CONDA_DOCKER_REGISTRY_PASSWORD"
        ),
        &out,
        &home,
    );
    only_the_check(&registry, "app/env");

    // A wrong password from the CI variables says where it came from.
    let home = dir.path().join("env-login");
    let output = common::run_unchecked(
        build(&home, &target, &out)
            .env("CONDA_DOCKER_REGISTRY_USER", "tester")
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", "wrong"),
    );
    refused_before_building(
        &output,
        &format!(
            "not authorised to push to {host}/app/env: the login from CONDA_DOCKER_REGISTRY_USER and CONDA_DOCKER_REGISTRY_PASSWORD was refused (wrong user name or password)"
        ),
        &out,
        &home,
    );
    only_the_check(&registry, "app/env");

    // A stale stored login names its file.
    let home = dir.path().join("file-login");
    let auth_file = dir.path().join("stale-auth.json");
    std::fs::write(&auth_file, auth_json(&registry, "old-password")).unwrap();
    let output =
        common::run_unchecked(build(&home, &target, &out).env("REGISTRY_AUTH_FILE", &auth_file));
    refused_before_building(
        &output,
        &format!(
            "the login stored in {} was refused (wrong user name or password); log in again with `conda-docker login {host}`",
            auth_file.display()
        ),
        &out,
        &home,
    );
    only_the_check(&registry, "app/env");

    // A registry that does not answer.
    let home = dir.path().join("unreachable");
    let output = common::run_unchecked(&mut build(&home, "127.0.0.1:9/app/env:1", &out));
    refused_before_building(&output, "cannot reach registry 127.0.0.1:9", &out, &home);

    // `copy ... docker://REF` checks before it reads its source: the
    // missing source file is never reached.
    let home = dir.path().join("copy");
    let err = failure(
        cd(&home)
            .env("CONDA_DOCKER_REGISTRY_USER", "tester")
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", "wrong")
            .arg("copy")
            .arg(format!(
                "docker-archive:{}",
                dir.path().join("missing.tar").display()
            ))
            .arg(registry.reference("app/copy:1")),
    );
    assert!(
        err.contains(&format!(
            "not authorised to push to {host}/app/copy: the login from CONDA_DOCKER_REGISTRY_USER"
        )),
        "{err}"
    );
    only_the_check(&registry, "app/copy");

    // With the right login the build runs and pushes; the upload the check
    // opened is cancelled.
    let home = dir.path().join("right");
    let output = common::run(
        build(&home, &target, &out)
            .env("CONDA_DOCKER_REGISTRY_USER", "tester")
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", PASSWORD),
    );
    assert!(
        common::stdout(&output).starts_with(&format!("{host}/app/env@sha256:")),
        "{output:?}"
    );
    assert!(out.exists());
    let requests = our_requests(&registry);
    let opened = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/app/env/blobs/uploads/")
        .filter(|r| r.status == 202)
        .count();
    let cancelled = requests
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/v2/app/env/blobs/uploads/"))
        .filter(|r| r.status == 204)
        .count();
    assert!(
        opened >= 2,
        "the check's upload and the push's: {requests:?}"
    );
    assert_eq!(
        cancelled, 1,
        "the check's upload is cancelled: {requests:?}"
    );
}

#[test]
fn token_registries_check_the_login_before_building() {
    require_tools!("docker-registry", "openssl", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::token(&dir.path().join("registry"), "tester", PASSWORD) else {
        return;
    };
    let host = registry.host().to_owned();
    let missing = format!(
        "docker-archive:{}",
        dir.path().join("missing.tar").display()
    );
    let copy = |home: &Path| {
        let mut cmd = cd(home);
        cmd.args(["copy", &missing, &registry.reference("tok/app:1")]);
        cmd
    };
    // The token service refuses a wrong password: no token, nothing read.
    let err = failure(
        copy(&dir.path().join("a"))
            .env("CONDA_DOCKER_REGISTRY_USER", "tester")
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", "wrong"),
    );
    assert!(
        err.contains(&format!(
            "not authorised to push to {host}/tok/app: the login from CONDA_DOCKER_REGISTRY_USER and CONDA_DOCKER_REGISTRY_PASSWORD was refused (wrong user name or password)"
        )),
        "{err}"
    );
    assert!(registry.tokens().is_empty(), "{:?}", registry.tokens());
    // Anonymous: a pull-only token, and the start of an upload refused.
    let err = failure(&mut copy(&dir.path().join("b")));
    assert!(err.contains("no login found"), "{err}");
    assert!(our_requests(&registry).iter().all(|r| r.status != 202));
    // The right login passes the check (a push token, an upload opened,
    // and its cancel tried); only then is the source read, and found
    // missing.
    let err = failure(
        copy(&dir.path().join("c"))
            .env("CONDA_DOCKER_REGISTRY_USER", "tester")
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", PASSWORD),
    );
    assert!(!err.contains("not authorised"), "{err}");
    assert!(err.contains("missing.tar"), "{err}");
    assert!(
        registry
            .tokens()
            .iter()
            .any(|t| t.subject == "tester"
                && t.scopes == ["repository:tok/app:pull,push".to_owned()])
    );
    assert!(registry.served("POST", "/v2/tok/app/blobs/uploads/", 202));
    // docker-registry wants the `delete` action to cancel an upload under
    // token auth, which the push token lacks: one try, refused, no harm.
    let cancels: Vec<_> = our_requests(&registry)
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(cancels.len(), 1, "{cancels:?}");
}

#[test]
fn login_files_are_searched_in_podmans_order() {
    // containers-auth.json(5): REGISTRY_AUTH_FILE alone when set; else
    // $XDG_RUNTIME_DIR/containers/auth.json, $XDG_CONFIG_HOME (or
    // ~/.config)/containers/auth.json, then docker's config.json.
    require_tools!("docker-registry", "htpasswd", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::basic(&dir.path().join("registry"), "tester", PASSWORD) else {
        return;
    };
    let archive = base_archive(dir.path());
    seed(&registry, &archive, "private/base:1", &[]);
    let host = registry.host().to_owned();
    let right = auth_json(&registry, PASSWORD);
    let wrong = auth_json(&registry, "wrong");
    let put = |path: &Path, text: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let pull = |home: &Path| {
        let name = home.file_name().unwrap().to_string_lossy();
        let mut cmd = cd(home);
        cmd.args(["pull", &registry.image("private/base:1"), "-o"])
            .arg(dir.path().join(format!("{name}.tar")));
        cmd
    };

    // podman's per-user file, ~/.config/containers/auth.json.
    let home = dir.path().join("config-home");
    put(&home.join(".config/containers/auth.json"), &right);
    common::run(&mut pull(&home));
    // ... or under XDG_CONFIG_HOME.
    let home = dir.path().join("xdg-config");
    let xdg = dir.path().join("xdg");
    put(&xdg.join("containers/auth.json"), &right);
    common::run(pull(&home).env("XDG_CONFIG_HOME", &xdg));

    // `podman login HOST/private` keeps a login for that namespace, which
    // wins over the registry's.
    let home = dir.path().join("namespaced");
    let namespaced = json!({"auths": {
        host.clone(): auth_entry(&registry, "wrong"),
        format!("{host}/private"): auth_entry(&registry, PASSWORD),
    }});
    put(
        &home.join(".config/containers/auth.json"),
        &namespaced.to_string(),
    );
    common::run(&mut pull(&home));

    // The runtime file comes before docker's: its stale login is the one
    // used, and named.
    let home = dir.path().join("runtime-first");
    let runtime = dir.path().join("runtime");
    put(&runtime.join("containers/auth.json"), &wrong);
    put(&home.join(".docker/config.json"), &right);
    let err = failure(pull(&home).env("XDG_RUNTIME_DIR", &runtime));
    assert!(
        err.contains(&format!(
            "not authorised to pull from {host}/private/base: the login stored in {} was refused (wrong user name or password)",
            runtime.join("containers/auth.json").display()
        )),
        "{err}"
    );
    // Without it, docker's login is found.
    common::run(&mut pull(&home));

    // REGISTRY_AUTH_FILE is the only file read when set, as with podman.
    let only = dir.path().join("only-auth.json");
    std::fs::write(&only, r#"{"auths": {}}"#).unwrap();
    let err = failure(pull(&home).env("REGISTRY_AUTH_FILE", &only));
    assert!(err.contains("no login found"), "{err}");
    std::fs::write(&only, &right).unwrap();
    common::run(
        pull(&home)
            .env("REGISTRY_AUTH_FILE", &only)
            .env("XDG_RUNTIME_DIR", &runtime),
    );
}

/// A file put at a real system path (`/run`, `/etc`) for one test, and
/// removed with the folders made for it when dropped, even on panic.
struct Planted {
    file: PathBuf,
    made: Vec<PathBuf>,
}

impl Planted {
    /// Makes the missing folders of `file`; `None` (after a skip message)
    /// when `file` exists already (not ours to touch) or its folders cannot
    /// be made (not root).
    fn reserve(file: &Path) -> Option<Planted> {
        if file.symlink_metadata().is_ok() {
            eprintln!(
                "skipping: {} exists already, and is not ours to touch",
                file.display()
            );
            return None;
        }
        let mut missing = Vec::new();
        let mut folder = file.parent();
        while let Some(f) = folder.filter(|f| f.symlink_metadata().is_err()) {
            missing.push(f.to_path_buf());
            folder = f.parent();
        }
        let mut planted = Planted {
            file: file.to_path_buf(),
            made: Vec::new(),
        };
        for folder in missing.into_iter().rev() {
            if let Err(e) = std::fs::create_dir(&folder) {
                eprintln!("skipping: cannot create {}: {e}", folder.display());
                return None;
            }
            planted.made.push(folder);
        }
        Some(planted)
    }

    /// Writes the file whole at once (a rename), so that other tests
    /// reading it meanwhile never see half of it.
    fn write(&self, bytes: &[u8]) {
        let partial = self.file.with_extension("partial");
        std::fs::write(&partial, bytes).unwrap();
        std::fs::rename(&partial, &self.file).unwrap();
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        for folder in self.made.iter().rev() {
            if let Err(e) = std::fs::remove_dir(folder) {
                eprintln!("could not remove {}: {e}", folder.display());
            }
        }
    }
}

#[test]
fn podmans_root_login_is_found_in_run_containers() {
    // Issue 13, item 5: with XDG_RUNTIME_DIR unset, `podman login` keeps
    // the login in /run/containers/$UID/auth.json.
    require_tools!("docker-registry", "htpasswd", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::basic(&dir.path().join("registry"), "tester", PASSWORD) else {
        return;
    };
    let archive = base_archive(dir.path());
    seed(&registry, &archive, "private/base:1", &[]);
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let auth_file = PathBuf::from(format!("/run/containers/{uid}/auth.json"));
    let Some(planted) = Planted::reserve(&auth_file) else {
        return;
    };
    match common::Podman::new() {
        Some(podman) => {
            let mut login = podman.command();
            login
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("REGISTRY_AUTH_FILE")
                .args([
                    "login",
                    "--tls-verify=false",
                    "-u",
                    "tester",
                    "-p",
                    PASSWORD,
                ])
                .arg(registry.host());
            common::run(&mut login);
            assert!(
                auth_file.exists(),
                "podman login wrote {}",
                auth_file.display()
            );
        }
        None => planted.write(auth_json(&registry, PASSWORD).as_bytes()),
    }
    let home = dir.path().join("home");
    let pull = || {
        let mut cmd = cd(&home);
        cmd.args(["pull", &registry.image("private/base:1"), "-o"])
            .arg(dir.path().join("pulled.tar"));
        cmd
    };
    common::run(&mut pull());
    // podman reads it only when XDG_RUNTIME_DIR is unset; so do we.
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let err = failure(pull().env("XDG_RUNTIME_DIR", &runtime));
    assert!(err.contains("no login found"), "{err}");
    drop(planted);
    assert!(!auth_file.exists());
}

#[test]
fn docker_and_podman_certs_d_folders_are_trusted() {
    // Issue 13, item 5: a registry's CA in docker's or podman's certs.d
    // works without --cert-dir.
    require_tools!("docker-registry", "htpasswd", "openssl", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::tls_basic(&dir.path().join("registry"), "tester", PASSWORD)
    else {
        return;
    };
    let cert_dir = registry.cert_dir().unwrap().display().to_string();
    let archive = base_archive(dir.path());
    seed(
        &registry,
        &archive,
        "tls/base:1",
        &["--cert-dir", &cert_dir],
    );
    let ca = std::fs::read(registry.cert_dir().unwrap().join("ca.crt")).unwrap();
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, auth_json(&registry, PASSWORD)).unwrap();
    let host = registry.host().to_owned();
    let pull = |home: &Path| {
        let mut cmd = cd(home);
        let name = home.file_name().unwrap().to_string_lossy();
        cmd.env("REGISTRY_AUTH_FILE", &auth)
            .args(["pull", &registry.image("tls/base:1"), "-o"])
            .arg(dir.path().join(format!("{name}.tar")));
        cmd
    };
    let home = dir.path().join("home");
    let err = failure(&mut pull(&home));
    assert!(err.contains("is not trusted"), "{err}");
    assert!(
        err.contains(&format!("/etc/containers/certs.d/{host}/ca.crt")),
        "{err}"
    );

    // The user's own, ~/.config/containers/certs.d/HOST/*.crt.
    let mine = home.join(".config/containers/certs.d").join(&host);
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("registry.crt"), &ca).unwrap();
    common::run(&mut pull(&home));

    // The system's: podman's, then docker's.
    for root in ["/etc/containers/certs.d", "/etc/docker/certs.d"] {
        let file = Path::new(root).join(&host).join("ca.crt");
        let Some(planted) = Planted::reserve(&file) else {
            continue;
        };
        planted.write(&ca);
        let home = dir.path().join(root.replace('/', "_"));
        common::run(&mut pull(&home));
        drop(planted);
        assert!(!file.exists());
        let err = failure(&mut pull(&home));
        assert!(err.contains("is not trusted"), "{err}");
    }
}

/// A command run in a pseudo-terminal (`script`), typed into as a person
/// would.
struct Terminal {
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    /// Runs `words` (a program and its arguments, with `cmd`'s environment)
    /// under `script`, which gives it a pseudo-terminal as stdin, stdout and
    /// stderr.
    fn start(mut cmd: Command, words: &[String]) -> Terminal {
        let quoted: Vec<String> = words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect();
        cmd.env("SHELL", "/bin/sh")
            .args(["-qec", &format!("exec {}", quoted.join(" ")), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start script");
        let mut stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Terminal {
            child,
            seen,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal shows `what`.
    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + PTY_DEADLINE;
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} on the terminal: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The terminal device of the program `script` runs (its child).
    fn device(&self) -> PathBuf {
        let parent = self.child.id().to_string();
        let deadline = Instant::now() + PTY_DEADLINE;
        loop {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // `PID (COMM) STATE PPID ...`: COMM may hold spaces.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
                if fields.get(1) == Some(&parent.as_str())
                    && let Ok(device) = std::fs::read_link(entry.path().join("fd/0"))
                {
                    return device;
                }
            }
            assert!(Instant::now() < deadline, "no child of script found");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the terminal no longer echoes what is typed.
    fn wait_for_no_echo(&self) {
        let device = self.device();
        let deadline = Instant::now() + PTY_DEADLINE;
        loop {
            let settings = common::run(Command::new("stty").arg("-F").arg(&device).arg("-a"));
            if common::stdout(&settings)
                .split_whitespace()
                .any(|s| s == "-echo")
            {
                return;
            }
            assert!(Instant::now() < deadline, "echo never turned off");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the program to end; its exit status and everything the
    /// terminal showed.
    fn finish(mut self) -> (bool, String) {
        let deadline = Instant::now() + PTY_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status.success(), self.text())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Child::kill signals exactly our child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `conda-docker login HOST` on a terminal, typing `user` and `password`
/// when asked.
fn login_on_terminal(
    home: &Path,
    registry: &Registry,
    user: &str,
    password: &str,
) -> (bool, String) {
    let mut script = Command::new("script");
    script
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TERM", "dumb");
    let words = vec![
        env!("CARGO_BIN_EXE_conda-docker").to_owned(),
        "login".to_owned(),
        registry.host().to_owned(),
    ];
    let mut terminal = Terminal::start(script, &words);
    terminal.wait_for("Username: ");
    terminal.type_line(user);
    terminal.wait_for("Password: ");
    terminal.wait_for_no_echo();
    terminal.type_line(password);
    terminal.finish()
}

#[test]
fn login_asks_on_a_terminal_and_never_echoes_the_password() {
    // Issue 13, item 6.
    require_tools!("docker-registry", "htpasswd", "script", "stty");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::basic(&dir.path().join("registry"), "tester", PASSWORD) else {
        return;
    };
    let host = registry.host().to_owned();
    let home = dir.path().join("home");

    let (ok, shown) = login_on_terminal(&home, &registry, "tester", "not-the-Pa55word");
    assert!(!ok, "{shown}");
    assert!(
        shown.contains("Username: tester"),
        "the name is echoed: {shown:?}"
    );
    assert!(!shown.contains("not-the-Pa55word"), "{shown:?}");
    assert!(
        shown.contains(&format!(
            "error: login failed for {host}: wrong user name or password"
        )),
        "{shown:?}"
    );
    assert!(!home.join(".docker/config.json").exists());

    let (ok, shown) = login_on_terminal(&home, &registry, "tester", PASSWORD);
    assert!(ok, "{shown:?}");
    assert!(!shown.contains(PASSWORD), "{shown:?}");
    assert!(shown.contains(&format!("logged in to {host}")), "{shown:?}");
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.join(".docker/config.json")).unwrap()).unwrap();
    assert_eq!(
        config["auths"][&host]["auth"],
        common::base64_encode(format!("tester:{PASSWORD}").as_bytes())
    );
}

/// `conda-docker login HOST ARGS...` with `stdin` piped in.
fn login_piped(home: &Path, registry: &Registry, args: &[&str], stdin: &str) -> Output {
    let mut child = cd(home)
        .args(["login", registry.host()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn scripted_logins_read_stdin_and_say_why_they_fail() {
    require_tools!("docker-registry", "htpasswd", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let Some(basic) = Registry::basic(&dir.path().join("basic"), "tester", PASSWORD) else {
        return;
    };
    let Some(token) = Registry::token(&dir.path().join("token"), "tester", PASSWORD) else {
        return;
    };
    for registry in [&basic, &token] {
        let host = registry.host();
        let output = login_piped(
            &home,
            registry,
            &["-u", "tester", "--password-stdin"],
            "wrong\n",
        );
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.trim(),
            format!("error: login failed for {host}: wrong user name or password")
        );
        let output = login_piped(
            &home,
            registry,
            &["-u", "tester", "--password-stdin"],
            &format!("{PASSWORD}\n"),
        );
        assert!(output.status.success(), "{output:?}");
    }
    // logout removes one login and keeps the other, privately.
    let config = home.join(".docker/config.json");
    let logins = || -> Vec<String> {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        json["auths"].as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(logins().len(), 2);
    let output = common::run(cd(&home).args(["logout", basic.host()]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("logged out of {}", basic.host())),
        "{stderr}"
    );
    assert_eq!(logins(), [token.host().to_owned()]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let output = common::run(cd(&home).args(["logout", basic.host()]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not logged in to"), "{stderr}");

    // No terminal to ask on: the user name must be given.
    let output = login_piped(&home, &basic, &["--password-stdin"], "x\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("give the user name with -u: there is no terminal to ask on"),
        "{stderr}"
    );
}
