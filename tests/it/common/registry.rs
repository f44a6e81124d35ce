//! Real `docker-registry` servers on loopback: plain HTTP, htpasswd basic
//! auth, TLS, and the bearer-token flow with a token service of our own.
//!
//! Each [`Registry`] keeps its config, storage, logs, keys and certificates
//! in a fresh directory under the caller's temp dir, listens on a free port
//! of 127.0.0.1 (never any other address) and is killed by its PID on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::process::{run, run_unchecked, run_unchecked_timeout, unique_name};
use super::tools::{expect_tool, tool};

/// The `service` of token registries: the `aud` claim of their tokens.
pub const TOKEN_SERVICE: &str = "conda-docker-test";
/// The `issuer` token registries accept: the `iss` claim of their tokens.
pub const TOKEN_ISSUER: &str = "conda-docker-test-issuer";
/// The refresh token the token service accepts in an OAuth2
/// `grant_type=refresh_token` request (what `docker login` stores as
/// `identitytoken`).
pub const IDENTITY_TOKEN: &str = "conda-docker-test-identity-token";
/// How long an issued token is valid (`expires_in`, seconds).
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// The User-Agent of the harness's own readiness probes: their lines are
/// left out of [`Registry::requests`].
const PROBE_USER_AGENT: &str = "conda-docker-test-harness-probe";
/// The User-Agent of [`http_request`].
pub const HTTP_CLIENT_USER_AGENT: &str = "conda-docker-test-client";
/// How long a registry may take to answer on `/v2/` after starting.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// Tries at binding a free port (another process may take a probed one).
const START_ATTEMPTS: usize = 5;
/// Read/write timeout for every harness socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of a registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRequest {
    /// `GET`, `HEAD`, `PUT`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// The request target as sent, query included, e.g.
    /// `/v2/r/blobs/uploads/?digest=sha256%3A...`.
    pub path: String,
    /// The HTTP status the registry answered.
    pub status: u16,
    /// The client's User-Agent (empty when it sent none).
    pub user_agent: String,
}

/// A token the token service issued (see [`Registry::tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// How the client authenticated: `anonymous` or `basic` (GET), or the
    /// OAuth2 `grant_type` of a POST: `password` or `refresh_token`.
    pub grant: String,
    /// The `sub` claim: the user name, empty for anonymous tokens.
    pub subject: String,
    /// What the token grants, as `TYPE:NAME:ACTION,ACTION` scopes, e.g.
    /// `repository:selftest/img:pull,push`.
    pub scopes: Vec<String>,
    /// The token itself (a signed JWT): a secret that must never show.
    pub token: String,
}

/// A running `docker-registry`; killed by PID (and its token service
/// stopped) on drop.
pub struct Registry {
    child: Child,
    dir: PathBuf,
    host: String,
    tls: bool,
    credentials: Option<(String, String)>,
    cert_dir: Option<PathBuf>,
    token: Option<TokenService>,
}

/// How a registry authenticates clients.
enum Auth<'a> {
    None,
    Htpasswd { user: &'a str, password: &'a str },
    Token { user: &'a str, password: &'a str },
}

impl Registry {
    /// Plain HTTP, no auth. `None` (after a skip message) without
    /// `docker-registry`.
    pub fn plain(dir: &Path) -> Option<Registry> {
        Registry::start(dir, Auth::None, false)
    }

    /// Plain HTTP with htpasswd basic auth (bcrypt, `htpasswd -Bbn`).
    /// `None` (skip printed) without `docker-registry` or `htpasswd`.
    pub fn basic(dir: &Path, user: &str, password: &str) -> Option<Registry> {
        Registry::start(dir, Auth::Htpasswd { user, password }, false)
    }

    /// HTTPS with a self-signed certificate (CN=127.0.0.1, SAN IP:127.0.0.1
    /// and DNS:localhost; see [`Registry::cert_dir`]) and htpasswd basic
    /// auth. `None` (skip printed) without `docker-registry`, `htpasswd` or
    /// `openssl`.
    pub fn tls_basic(dir: &Path, user: &str, password: &str) -> Option<Registry> {
        Registry::start(dir, Auth::Htpasswd { user, password }, true)
    }

    /// Plain HTTP with the bearer-token flow (Docker Hub, ghcr): `/v2/`
    /// answers 401 with a `Bearer realm=...` challenge pointing at a token
    /// service the harness runs on another 127.0.0.1 port. Valid
    /// credentials get the requested actions, anonymous clients `pull`
    /// only, wrong credentials a 401. `None` (skip printed) without
    /// `docker-registry` or `openssl`.
    pub fn token(dir: &Path, user: &str, password: &str) -> Option<Registry> {
        Registry::start(dir, Auth::Token { user, password }, false)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `HOST/NAME`, e.g. `image("r/x:1")` = `127.0.0.1:PORT/r/x:1` (for
    /// podman and for conda-docker's own registry references).
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    /// `docker://HOST/NAME`: a skopeo reference.
    pub fn reference(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.host)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The registry's own directory (config, `data/`, logs, keys).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// For TLS registries: a directory holding only `ca.crt` (the registry's
    /// certificate; skopeo's and podman's `--cert-dir` convention).
    pub fn cert_dir(&self) -> Option<&Path> {
        self.cert_dir.as_deref()
    }

    /// The user and password the registry accepts (`None` for
    /// [`Registry::plain`]).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `user:password`, as skopeo's `--creds` takes it.
    pub fn creds(&self) -> Option<String> {
        self.credentials().map(|(u, p)| format!("{u}:{p}"))
    }

    /// The refresh token the token service accepts ([`IDENTITY_TOKEN`]).
    pub fn identity_token(&self) -> &str {
        IDENTITY_TOKEN
    }

    /// The token service's `127.0.0.1:PORT` (token registries only).
    pub fn token_host(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("127.0.0.1:{}", t.port))
    }

    /// The realm, `http://127.0.0.1:PORT/token` (token registries only).
    pub fn token_realm(&self) -> Option<String> {
        self.token_host().map(|h| format!("http://{h}/token"))
    }

    /// Every request the registry answered so far, oldest first, from its
    /// access log (the harness's own readiness probes left out). A line is
    /// written when the handler finishes, i.e. by the time a client has
    /// read the whole response.
    pub fn requests(&self) -> Vec<RegistryRequest> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(parse_access_log_line)
            .filter(|r| r.user_agent != PROBE_USER_AGENT)
            .collect()
    }

    /// Whether the access log shows `method` on exactly `path` answered
    /// with `status`.
    pub fn served(&self, method: &str, path: &str, status: u16) -> bool {
        self.requests()
            .iter()
            .any(|r| r.method == method && r.path == path && r.status == status)
    }

    /// The registry's own log (stderr: start-up, errors, one line per
    /// response), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// How many tokens the token service has issued (0 for other variants).
    pub fn tokens_issued(&self) -> usize {
        self.tokens().len()
    }

    /// Every token issued so far, oldest first (empty for other variants).
    pub fn tokens(&self) -> Vec<IssuedToken> {
        self.token
            .as_ref()
            .map(|t| t.state.issued.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// `--{prefix}tls-verify=false` for plain HTTP, `--{prefix}cert-dir DIR`
    /// for TLS; `prefix` is `""`, `"src-"` or `"dest-"`.
    pub fn tls_flags(&self, prefix: &str) -> Vec<String> {
        match &self.cert_dir {
            Some(dir) => vec![format!("--{prefix}cert-dir"), dir.display().to_string()],
            None => vec![format!("--{prefix}tls-verify=false")],
        }
    }

    /// [`Registry::tls_flags`] plus `--{prefix}creds USER:PASSWORD` when the
    /// registry has credentials.
    pub fn flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = self.tls_flags(prefix);
        if let Some(creds) = self.creds() {
            flags.extend([format!("--{prefix}creds"), creds]);
        }
        flags
    }

    /// Flags for `skopeo copy` to this registry: [`Registry::flags`]`("dest-")`.
    pub fn skopeo_dest_flags(&self) -> Vec<String> {
        self.flags("dest-")
    }

    /// Flags for `skopeo copy` from this registry: [`Registry::flags`]`("src-")`.
    pub fn skopeo_src_flags(&self) -> Vec<String> {
        self.flags("src-")
    }

    /// Flags for `skopeo inspect|delete|list-tags` and `podman pull|push`:
    /// [`Registry::flags`]`("")`.
    pub fn client_flags(&self) -> Vec<String> {
        self.flags("")
    }

    /// `skopeo copy SRC docker://HOST/NAME` with credentials and TLS flags,
    /// e.g. `push(&format!("oci:{}:t", layout.display()), "r/x:1")`.
    pub fn push(&self, src: &str, name: &str) {
        run(&mut self.skopeo_copy_command(src, name, &self.skopeo_dest_flags()));
    }

    /// `skopeo copy` to `docker://HOST/NAME` with exactly `flags`, unchecked:
    /// for pushes expected to fail (no credentials, no certificate).
    pub fn try_push(&self, src: &str, name: &str, flags: &[String]) -> std::process::Output {
        run_unchecked(&mut self.skopeo_copy_command(src, name, flags))
    }

    /// `skopeo inspect [--raw|--config...] docker://HOST/NAME` with
    /// credentials and TLS flags, parsed as JSON.
    pub fn inspect(&self, name: &str, extra: &[&str]) -> Value {
        let output = run(Command::new(expect_tool("skopeo"))
            .arg("inspect")
            .args(self.client_flags())
            .args(extra)
            .arg(self.reference(name)));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "skopeo inspect {name} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// A docker `config.json` for this registry, as `docker login` writes
    /// it: `{"auths": {HOST: {"auth": base64(user:password)}}}`, or with
    /// `identity` `{"auth": base64(user:), "identitytoken": ...}` (an OAuth2
    /// login; only token registries honour the identity token). Without
    /// credentials `auths` is empty. Works as skopeo's `--authfile` too.
    pub fn docker_config(&self, identity: bool) -> Value {
        let mut auths = serde_json::Map::new();
        if let Some((user, password)) = self.credentials() {
            let entry = if identity {
                json!({
                    "auth": base64_encode(format!("{user}:").as_bytes()),
                    "identitytoken": IDENTITY_TOKEN,
                })
            } else {
                json!({"auth": base64_encode(format!("{user}:{password}").as_bytes())})
            };
            auths.insert(self.host.clone(), entry);
        }
        json!({ "auths": auths })
    }

    fn skopeo_copy_command(&self, src: &str, name: &str, flags: &[String]) -> Command {
        let mut cmd = Command::new(expect_tool("skopeo"));
        cmd.args(["--insecure-policy", "copy", "--quiet"])
            .args(flags)
            .arg(src)
            .arg(self.reference(name));
        cmd
    }

    fn start(dir: &Path, auth: Auth, tls: bool) -> Option<Registry> {
        let registry = tool("docker-registry")?;
        if matches!(auth, Auth::Htpasswd { .. }) {
            tool("htpasswd")?;
        }
        if tls || matches!(auth, Auth::Token { .. }) {
            tool("openssl")?;
        }
        let root = dir.join(unique_name("registry"));
        std::fs::create_dir_all(root.join("data")).expect("registry data dir");

        let mut config = json!({
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": false}},
            "storage": {
                "filesystem": {"rootdirectory": root.join("data")},
                "delete": {"enabled": true},
                "maintenance": {"uploadpurging": {"enabled": false}},
            },
            "http": {"secret": "any"},
        });
        let mut credentials = None;
        let mut token = None;
        match auth {
            Auth::None => {}
            Auth::Htpasswd { user, password } => {
                let output =
                    run(Command::new(expect_tool("htpasswd")).args(["-Bbn", user, password]));
                let htpasswd = root.join("htpasswd");
                std::fs::write(&htpasswd, &output.stdout).expect("write htpasswd");
                config["auth"] =
                    json!({"htpasswd": {"realm": "conda-docker-test", "path": htpasswd}});
                credentials = Some((user.to_string(), password.to_string()));
            }
            Auth::Token { user, password } => {
                let service = TokenService::start(&root.join("token"), user, password);
                config["auth"] = json!({"token": {
                    "realm": format!("http://127.0.0.1:{}/token", service.port),
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": service.cert,
                }});
                credentials = Some((user.to_string(), password.to_string()));
                token = Some(service);
            }
        }
        let mut cert_dir = None;
        if tls {
            let (key, cert) = (root.join("tls-key.pem"), root.join("tls-cert.pem"));
            self_signed_cert(
                &key,
                &cert,
                "/CN=127.0.0.1",
                Some("subjectAltName=IP:127.0.0.1,DNS:localhost"),
            );
            let certs = root.join("certs");
            std::fs::create_dir_all(&certs).expect("cert dir");
            std::fs::copy(&cert, certs.join("ca.crt")).expect("copy ca.crt");
            config["http"]["tls"] = json!({"certificate": cert, "key": key});
            cert_dir = Some(certs);
        }

        for attempt in 1..=START_ATTEMPTS {
            let host = format!("127.0.0.1:{}", free_port());
            config["http"]["addr"] = json!(host);
            let config_path = root.join("config.yml");
            std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap())
                .expect("write registry config");
            let child = spawn_registry(&registry, &config_path, &root);
            let mut started = Registry {
                child,
                dir: root.clone(),
                host,
                tls,
                credentials: credentials.clone(),
                cert_dir: cert_dir.clone(),
                token: None,
            };
            match started.wait_ready() {
                Ok(()) => {
                    started.token = token;
                    return Some(started);
                }
                // Someone took the probed port in between: try another.
                Err(log) if log.contains("address already in use") && attempt < START_ATTEMPTS => {
                    continue;
                }
                Err(log) => panic!("docker-registry did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until the registry logs `listening on HOST` (so the port is
    /// ours, not another server's) and answers a request on `/v2/`. `Err`
    /// with its log when it exits first; panics at the deadline.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        let listening = format!("listening on {}", self.host);
        loop {
            if self.child.try_wait().expect("poll registry").is_some() {
                return Err(self.log());
            }
            if self.log().contains(&listening) && self.probe() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "docker-registry on {} not ready after {READY_DEADLINE:?}:\n{}",
                    self.host,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /v2/` in plain HTTP: a plain registry answers 200 or 401, a TLS
    /// one `HTTP/1.0 400` ("client sent an HTTP request to an HTTPS
    /// server"), which proves it serves just as well and stays out of its
    /// access log.
    fn probe(&self) -> bool {
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nUser-Agent: {PROBE_USER_AGENT}\r\n\
             Connection: close\r\n\r\n",
            self.host
        );
        exchange(&self.host, request.as_bytes(), Duration::from_secs(2))
            .is_ok_and(|reply| reply.starts_with(b"HTTP/1."))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill signals exactly our child's PID; never kill by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The token service (if any) stops when `self.token` drops.
    }
}

/// Starts `docker-registry serve CONFIG` with stdout (the access log) in
/// `root/access.log` and stderr in `root/registry.log`.
fn spawn_registry(registry: &Path, config: &Path, root: &Path) -> Child {
    let access = File::create(root.join("access.log")).expect("access log");
    let log = File::create(root.join("registry.log")).expect("registry log");
    let mut cmd = Command::new(registry);
    cmd.arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(access)
        .stderr(log);
    // REGISTRY_* variables override the config file (e.g. a developer's
    // REGISTRY_HTTP_ADDR): keep them out.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            cmd.env_remove(key);
        }
    }
    cmd.spawn().expect("start docker-registry")
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

/// `openssl req -x509`: an RSA-2048 key and a self-signed certificate.
pub(super) fn self_signed_cert(key: &Path, cert: &Path, subject: &str, extension: Option<&str>) {
    let mut cmd = Command::new(expect_tool("openssl"));
    cmd.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    ])
    .arg("-keyout")
    .arg(key)
    .arg("-out")
    .arg(cert)
    .args(["-subj", subject]);
    if let Some(extension) = extension {
        cmd.args(["-addext", extension]);
    }
    run(&mut cmd);
}

/// Parses one access-log line (gorilla's combined format), e.g.
/// `127.0.0.1 - - [28/Nov/2026:07:49:22 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
/// `None` for anything else.
pub fn parse_access_log_line(line: &str) -> Option<RegistryRequest> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut parts = request.split(' ');
    let (method, path, protocol) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !protocol.starts_with("HTTP/") {
        return None;
    }
    let status = rest.split(' ').next()?.parse().ok()?;
    // The rest is `SIZE "REFERER" "USER-AGENT"`; the agent is last.
    let user_agent = rest
        .strip_suffix('"')
        .and_then(|r| r.rsplit_once('"'))
        .map(|(_, agent)| agent.to_string())
        .unwrap_or_default();
    Some(RegistryRequest {
        method: method.to_string(),
        path: path.to_string(),
        status,
        user_agent,
    })
}

/// Writes `request` to `host` and reads until the server closes.
fn exchange(host: &str, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let address = host.parse().expect("a 127.0.0.1:PORT address");
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

/// A response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One plain-HTTP/1.1 request (`Connection: close`) to `host`
/// (`127.0.0.1:PORT`), e.g. to a plain registry or the token service.
/// Sends `Content-Length` when `body` is not empty. Panics on I/O errors.
pub fn http_request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {HTTP_CLIENT_USER_AGENT}\r\n\
         Connection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let reply = exchange(host, &bytes, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} http://{host}{path}: {e}"));
    parse_response(&reply)
        .unwrap_or_else(|| panic!("bad HTTP reply: {}", String::from_utf8_lossy(&reply)))
}

fn parse_response(reply: &[u8]) -> Option<HttpResponse> {
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&reply[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = reply[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------
// The token service.

/// A tiny Docker token service (the spec at
/// distribution/docs/spec/auth/token.md and its OAuth2 variant): one thread
/// serving `127.0.0.1:PORT/token`, one connection at a time, stopped and
/// joined on drop.
struct TokenService {
    port: u16,
    /// The PEM certificate whose key signs tokens (the registry's
    /// `rootcertbundle`).
    cert: PathBuf,
    state: Arc<TokenState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct TokenState {
    user: String,
    password: String,
    key: PathBuf,
    /// Base64 (standard, padded) DER of the certificate: the `x5c` entry.
    x5c: String,
    scratch: PathBuf,
    issued: Mutex<Vec<IssuedToken>>,
    serial: AtomicUsize,
}

impl TokenService {
    fn start(dir: &Path, user: &str, password: &str) -> TokenService {
        std::fs::create_dir_all(dir).expect("token dir");
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        self_signed_cert(&key, &cert, "/CN=conda-docker-test-token-issuer", None);
        let der = run(Command::new(expect_tool("openssl"))
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert));
        let state = Arc::new(TokenState {
            user: user.to_string(),
            password: password.to_string(),
            key,
            x5c: base64_encode(&der.stdout),
            scratch: dir.to_path_buf(),
            issued: Mutex::new(Vec::new()),
            serial: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token service");
        let port = listener.local_addr().expect("token service address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // A client that hangs up early is its own problem.
                        let _ = serve_token_request(&state, stream);
                    }
                }
            })
        };
        TokenService {
            port,
            cert,
            state,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept(); the thread then sees the flag.
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request, answers it, closes the connection.
fn serve_token_request(state: &TokenState, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    // Go clients send a body of unknown length chunked (c/image's OAuth2
    // POST does).
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut reader)?
    } else {
        let length = header("content-length").and_then(|v| v.parse().ok());
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body)?;
        body
    };

    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let answer = match (method, path) {
        ("GET", "/token") => {
            issue_token(state, None, form(query.as_bytes()), header("authorization"))
        }
        ("POST", "/token") => {
            let params = form(&body);
            let grant = param(&params, "grant_type").unwrap_or_default().to_string();
            issue_token(state, Some(&grant), params, None)
        }
        _ => Err((404, "not found".to_string())),
    };
    let (status, reason, body, extra) = match answer {
        Ok(json) => (200, "OK", json.to_string(), ""),
        Err((401, message)) => (
            401,
            "Unauthorized",
            json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}).to_string(),
            "WWW-Authenticate: Basic realm=\"conda-docker-test\"\r\n",
        ),
        Err((status, message)) => (
            status,
            "Error",
            json!({"errors": [{"code": "ERROR", "message": message}]}).to_string(),
            "",
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A chunked request body (trailers skipped).
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

/// The token response for a GET (`oauth_grant` = `None`, credentials from
/// the `Authorization` header, if any) or an OAuth2 POST (`Some(grant_type)`,
/// credentials in the form); `Err((status, message))` otherwise.
fn issue_token(
    state: &TokenState,
    oauth_grant: Option<&str>,
    params: Vec<(String, String)>,
    authorization: Option<&str>,
) -> Result<Value, (u16, String)> {
    let denied = |why: &str| Err((401, why.to_string()));
    let (grant, subject) = match oauth_grant {
        None => match authorization {
            None => ("anonymous", ""),
            Some(value) => match basic_credentials(value) {
                Some((u, p)) if u == state.user && p == state.password => {
                    ("basic", state.user.as_str())
                }
                _ => return denied("wrong credentials"),
            },
        },
        Some("password") => {
            let user = param(&params, "username").unwrap_or_default();
            if user != state.user || param(&params, "password") != Some(&state.password) {
                return denied("wrong credentials");
            }
            ("password", state.user.as_str())
        }
        Some("refresh_token") => {
            if param(&params, "refresh_token") != Some(IDENTITY_TOKEN) {
                return denied("unknown refresh token");
            }
            ("refresh_token", state.user.as_str())
        }
        Some(other) => return Err((400, format!("unsupported grant_type {other:?}"))),
    };
    let service = param(&params, "service").unwrap_or(TOKEN_SERVICE);
    // `scope` may repeat, and one value may hold space-separated scopes;
    // clients repeat resources, whose actions are merged here.
    let requested = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace());
    let mut granted: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for scope in requested {
        // `TYPE:NAME:ACTIONS`; a NAME may hold a `:` (`host:port/repo`).
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let index = match granted
            .iter()
            .position(|(k, n, _)| *k == kind && *n == name)
        {
            Some(index) => index,
            None => {
                granted.push((kind, name, Vec::new()));
                granted.len() - 1
            }
        };
        let allowed = actions
            .split(',')
            .filter(|a| !a.is_empty() && (grant != "anonymous" || *a == "pull"));
        for action in allowed {
            if !granted[index].2.contains(&action) {
                granted[index].2.push(action);
            }
        }
    }
    granted.retain(|(_, _, actions)| !actions.is_empty());
    let access: Vec<Value> = granted
        .iter()
        .map(|(kind, name, actions)| json!({"type": kind, "name": name, "actions": actions}))
        .collect();
    let scopes = granted
        .iter()
        .map(|(kind, name, actions)| format!("{kind}:{name}:{}", actions.join(",")))
        .collect();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let serial = state.serial.fetch_add(1, Ordering::SeqCst);
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [state.x5c]});
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": subject,
        "aud": service,
        "exp": now + TOKEN_LIFETIME_SECS,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{}-{serial}", unique_name("jti")),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = sign(state, signing_input.as_bytes()).map_err(|e| (500, e))?;
    let token = format!("{signing_input}.{}", base64url(&signature));
    let issued_at = chrono::DateTime::from_timestamp(now as i64, 0)
        .expect("a valid timestamp")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut response = json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_LIFETIME_SECS,
        "issued_at": issued_at,
    });
    if grant == "password" && param(&params, "access_type") == Some("offline") {
        response["refresh_token"] = json!(IDENTITY_TOKEN);
    }
    state.issued.lock().unwrap().push(IssuedToken {
        grant: grant.to_string(),
        subject: subject.to_string(),
        scopes,
        token,
    });
    Ok(response)
}

/// RS256: `openssl dgst -sha256 -sign KEY` (PKCS#1 v1.5) over `input`.
fn sign(state: &TokenState, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut file = tempfile::NamedTempFile::new_in(&state.scratch).map_err(|e| e.to_string())?;
    file.write_all(input).map_err(|e| e.to_string())?;
    let output = run_unchecked_timeout(
        Command::new(expect_tool("openssl"))
            .args(["dgst", "-sha256", "-sign"])
            .arg(&state.key)
            .arg(file.path()),
        Duration::from_secs(30),
    );
    if !output.status.success() || output.stdout.is_empty() {
        return Err(format!(
            "openssl dgst failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}

/// `application/x-www-form-urlencoded` pairs (also a query string).
fn form(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `Basic BASE64(user:password)` -> (user, password).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

// ---------------------------------------------------------------------------
// Base64 (no base64 crate among our dependencies).

const BASE64_STANDARD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard base64 with `=` padding (HTTP Basic, `x5c`, docker's `auth`).
pub fn base64_encode(bytes: &[u8]) -> String {
    encode(bytes, BASE64_STANDARD, true)
}

/// base64url without padding (JWT segments).
pub fn base64url(bytes: &[u8]) -> String {
    encode(bytes, BASE64_URL, false)
}

/// Decodes standard or URL-safe base64, padded or not; `None` if invalid.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

fn encode(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}
