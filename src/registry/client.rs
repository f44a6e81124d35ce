//! HTTP to one registry: which scheme, which CAs, retries, and the auth
//! challenge (none, HTTP basic, or bearer tokens per scope).
//!
//! Written on reqwest rather than taken from oci-client: we need retries
//! with `Retry-After`, tokens for two repositories at once (cross-repository
//! mounts), the identity-token exchange and a fresh token after a 401,
//! none of which oci-client offers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use url::Url;

use super::credentials::{Credentials, Login, Origin};
use super::{RegistryError, RegistryOptions};
use crate::http::{DEFAULT_READ_TIMEOUT, is_certificate_error, is_plain_http_answer};
use crate::reference::DOCKER_HUB;

/// How often a request is tried before its failure is reported.
const ATTEMPTS: u32 = 5;
/// The longest wait between tries, even if the registry asks for more.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The slowest upload still taken for a moving one, in bytes a second
/// (512 kbit/s): see [`Client::upload`].
const SLOWEST_UPLOAD: u64 = 64 << 10;

/// The most of an error answer or a token answer read: both are small
/// JSON documents, and a hostile server must not make us hold more
/// (containers/image uses the same bound).
const MAX_SMALL_ANSWER: u64 = 1 << 20;

/// The JSON of a small answer, read up to [`MAX_SMALL_ANSWER`] bytes:
/// `None` when it is longer or not JSON.
fn small_json(response: Response) -> Option<serde_json::Value> {
    let bytes = crate::blob::read_capped(response, MAX_SMALL_ANSWER).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// What a request does to a repository; decides the token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read.
    Pull,
    /// Read and write.
    Push,
}

/// The repositories a request touches, for the bearer-token scope.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope(Vec<(String, Action)>);

impl Scope {
    /// One repository.
    pub(crate) fn new(repository: &str, action: Action) -> Self {
        Scope(vec![(repository.to_owned(), action)])
    }

    /// Also `repository`, e.g. the source of a cross-repository mount.
    pub(crate) fn and(mut self, repository: &str, action: Action) -> Self {
        self.0.push((repository.to_owned(), action));
        self
    }

    fn strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(repo, action)| match action {
                Action::Pull => format!("repository:{repo}:pull"),
                Action::Push => format!("repository:{repo}:pull,push"),
            })
            .collect()
    }

    fn main(&self) -> (&str, Action) {
        self.0
            .first()
            .map_or(("", Action::Pull), |(r, a)| (r.as_str(), *a))
    }
}

/// What `/v2/` asked for.
#[derive(Clone, Debug)]
enum Challenge {
    None,
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

/// Why a registry said no.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// The user name and password (or token) themselves.
    Login,
    /// The login is valid but may not do this.
    Rights,
}

/// A connection to one registry with one login.
pub(crate) struct Client {
    registry: String,
    base: Url,
    http: reqwest::blocking::Client,
    /// Like `http`, but every wait for the answer or for its next bytes
    /// ends after `read_timeout`: for downloads, whose bodies are read
    /// as they come. (Uploads use `http`: there the same limit would bound
    /// the whole upload.)
    downloads: reqwest::blocking::Client,
    /// How long a registry may send nothing.
    read_timeout: Duration,
    login: Option<Login>,
    challenge: Challenge,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// `--insecure`: plain HTTP allowed beyond loopback.
    insecure: bool,
}

/// Whether `host[:port]` is this machine, where plain HTTP is allowed.
fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// 0.25 s after the first try, doubling: 3.75 s in all before giving up.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.saturating_sub(1).min(6))
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries and
/// falls back to our own backoff).
fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// How long to wait before try `attempt + 1`: what the registry asked
/// for, else our backoff; never more than [`MAX_WAIT`], so a registry
/// cannot park a build for an hour.
fn wait_before_retry(asked: Option<Duration>, attempt: u32) -> Duration {
    asked.unwrap_or_else(|| backoff(attempt)).min(MAX_WAIT)
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The `Docker-Content-Digest` a registry sent, if it is a sha256 digest.
pub(crate) fn content_digest(response: &Response) -> Option<crate::digest::Digest> {
    response
        .headers()
        .get("docker-content-digest")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Parses `Bearer realm="…",service="…",scope="…"` into its scheme and
/// parameters (values may be quoted and contain commas).
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            value = quoted[..end].to_owned();
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        params.insert(key, value);
    }
    (scheme.to_lowercase(), params)
}

/// Redirects are followed (blob storage often lives elsewhere) up to ten
/// deep, but never to plain HTTP beyond loopback unless `insecure`.
/// reqwest itself drops the `Authorization` header when a redirect leaves
/// the scheme, host or port, so the login stays with its registry.
fn redirects(insecure: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let url = attempt.url();
        if attempt.previous().len() >= 10 {
            let error = format!("more than 10 redirects, the last to {}", origin(url));
            attempt.error(error)
        } else if url.scheme() != "https" && !insecure && !is_loopback_url(url) {
            let error = format!(
                "a redirect to plain HTTP ({}) was refused; use --insecure to allow it",
                origin(url)
            );
            attempt.error(error)
        } else {
            attempt.follow()
        }
    })
}

/// `scheme://host:port` of `url`, for messages: never its path or query,
/// which may carry a signature.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// `error` with its URL cut to scheme, host and path: a query can carry
/// a signature (a storage URL a registry redirects to) or upload state,
/// and error messages and logs must not.
fn redacted(mut error: reqwest::Error) -> reqwest::Error {
    if let Some(url) = error.url_mut() {
        url.set_query(None);
        url.set_fragment(None);
        let _ = url.set_password(None);
        let _ = url.set_username("");
    }
    error
}

/// Whether `url` points at this machine.
fn is_loopback_url(url: &Url) -> bool {
    url.host_str().is_some_and(is_loopback)
}

/// The clients for `registry`: without a timeout of their own (requests
/// set theirs), and with `read_timeout` on every wait (the blocking
/// client's timeout bounds each read of a body, not the whole of it).
fn http_clients(
    registry: &str,
    options: &RegistryOptions,
    read_timeout: Duration,
) -> Result<[reqwest::blocking::Client; 2], RegistryError> {
    let tls = match options.insecure {
        true => None,
        false => super::tls::config_for(registry, options.cert_dir.as_deref())?,
    };
    let client = |timeout: Option<Duration>| {
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(concat!("conda-docker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(timeout)
            .redirect(redirects(options.insecure))
            .tls_danger_accept_invalid_certs(options.insecure);
        if let Some(config) = tls.clone() {
            builder = builder.tls_backend_preconfigured(config);
        }
        builder.build().map_err(|e| RegistryError::Tls {
            what: "cannot set up HTTPS".into(),
            source: std::io::Error::other(e),
        })
    };
    Ok([client(None)?, client(Some(read_timeout))?])
}

impl Client {
    /// Connects to `registry` (`docker.io`, `ghcr.io`, `host:port`): finds
    /// its scheme and what auth it asks for. HTTPS is verified; plain HTTP
    /// is used only for a loopback registry or with `--insecure`, and only
    /// when it does not speak TLS at all.
    pub(crate) fn connect(
        registry: &str,
        options: &RegistryOptions,
        login: Option<Login>,
    ) -> Result<Self, RegistryError> {
        let api_host = if registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        let url = |scheme: &str| {
            Url::parse(&format!("{scheme}://{api_host}/")).map_err(|_| RegistryError::Status {
                host: registry.to_owned(),
                what: "not a valid registry host".into(),
                status: 0,
                detail: String::new(),
            })
        };
        let read_timeout = options.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
        let [http, downloads] = http_clients(registry, options, read_timeout)?;
        let mut client = Client {
            registry: registry.to_owned(),
            base: url("https")?,
            http,
            downloads,
            read_timeout,
            login,
            challenge: Challenge::None,
            tokens: Mutex::new(HashMap::new()),
            insecure: options.insecure,
        };
        let ping = if is_loopback(api_host) || options.insecure {
            let probe = client.small(client.http.get(client.url("/v2/"))).send();
            match probe {
                Ok(response) => response,
                Err(e) if is_certificate_error(&e) => {
                    return Err(RegistryError::Untrusted {
                        host: registry.to_owned(),
                        source: e,
                    });
                }
                Err(e) => {
                    tracing::debug!("{registry} does not answer HTTPS ({e}); trying plain HTTP");
                    client.base = url("http")?;
                    client.retrying("connecting", &|| Ok(client.http.get(client.url("/v2/"))))?
                }
            }
        } else {
            client.retrying("connecting", &|| Ok(client.http.get(client.url("/v2/"))))?
        };
        client.challenge = match ping.status() {
            StatusCode::UNAUTHORIZED => {
                let header = ping
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let (scheme, params) = parse_challenge(header);
                match (scheme.as_str(), params.get("realm")) {
                    ("bearer", Some(realm)) => Challenge::Bearer {
                        realm: Url::parse(realm).map_err(|_| RegistryError::Status {
                            host: registry.to_owned(),
                            what: format!("token realm `{realm}` is not a URL"),
                            status: 401,
                            detail: String::new(),
                        })?,
                        service: params.get("service").cloned(),
                    },
                    _ => Challenge::Basic,
                }
            }
            status if status.is_success() => Challenge::None,
            _ => return Err(client.status_error("checking the registry API (/v2/)", ping)),
        };
        tracing::debug!(
            "{registry}: API at {}, auth {:?}",
            client.base,
            match &client.challenge {
                Challenge::None => "none",
                Challenge::Basic => "basic",
                Challenge::Bearer { .. } => "bearer token",
            }
        );
        Ok(client)
    }

    /// The registry as named in references.
    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// The API URL of `path` (which starts with `/v2/`).
    pub(crate) fn url(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone())
    }

    /// A location the registry sent (an upload URL), made absolute.
    pub(crate) fn resolve(&self, location: &str) -> Result<Url, RegistryError> {
        self.base.join(location).map_err(|_| RegistryError::Status {
            host: self.registry.clone(),
            what: format!("bad upload location `{location}`"),
            status: 0,
            detail: String::new(),
        })
    }

    /// The HTTP client, to build requests for [`Client::send`].
    pub(crate) fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// The HTTP client for a download: a wait for the answer or its next
    /// bytes that passes the read timeout fails, and is retried as a
    /// broken transfer.
    pub(crate) fn downloads(&self) -> &reqwest::blocking::Client {
        &self.downloads
    }

    /// Sends the request `make` builds, retrying connection failures, 429
    /// and 5xx answers with backoff (and `Retry-After`). `make` is called
    /// again for each try, so bodies are rebuilt from their source.
    fn retrying(
        &self,
        what: &str,
        make: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A stopping run sends nothing more, nor waits for an answer.
            let sent =
                crate::interrupt::send(make()?).map_err(|source| RegistryError::Transfer {
                    host: self.registry.clone(),
                    what: what.to_owned(),
                    source,
                })?;
            match sent.map_err(redacted) {
                Ok(response) if retryable(response.status()) && attempt < ATTEMPTS => {
                    let wait = wait_before_retry(retry_after(&response), attempt);
                    tracing::info!(
                        "{}: {what}: HTTP {}; trying again in {:.1} s",
                        self.registry,
                        response.status().as_u16(),
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                }
                Ok(response) => return Ok(response),
                Err(e) if is_certificate_error(&e) => {
                    return Err(RegistryError::Untrusted {
                        host: self.registry.clone(),
                        source: e,
                    });
                }
                Err(e) if e.is_redirect() => {
                    return Err(RegistryError::Redirect {
                        host: self.registry.clone(),
                        source: e,
                    });
                }
                Err(e) if is_plain_http_answer(&e) => {
                    return Err(RegistryError::PlainHttp {
                        host: self.registry.clone(),
                        what: "it does not speak HTTPS".into(),
                    });
                }
                Err(e) if e.is_timeout() && attempt == ATTEMPTS => {
                    return Err(self.stalled(what, attempt));
                }
                Err(e) if attempt < ATTEMPTS && !e.is_builder() => {
                    let wait = backoff(attempt);
                    tracing::info!(
                        "{}: {what}: {e}; trying again in {:.1} s",
                        self.registry,
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                }
                Err(e) => {
                    return Err(RegistryError::Unreachable {
                        host: self.registry.clone(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Sends a request for `scope` with the right authorization, retrying
    /// as [`Client::retrying`] does. A 401 gets one fresh token; a second
    /// 401, or a 403, is "not authorised".
    pub(crate) fn send(
        &self,
        scope: &Scope,
        what: &str,
        make: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        self.send_with(scope, what, make, true)
    }

    /// Like [`Client::send`], but the answer to a request with the token
    /// at hand, whatever it is: for a request that may be refused without
    /// harm, which a fresh token would not change.
    pub(crate) fn send_once(
        &self,
        scope: &Scope,
        what: &str,
        make: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        self.send_with(scope, what, make, false)
    }

    fn send_with(
        &self,
        scope: &Scope,
        what: &str,
        make: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
        renew: bool,
    ) -> Result<Response, RegistryError> {
        let mut renewed = !renew;
        loop {
            let authorization = self.authorization(scope)?;
            let response = self.retrying(what, &|| {
                let request = make()?;
                match &authorization {
                    Some(value) => self.authorize(request, value, what),
                    None => Ok(request),
                }
            })?;
            match response.status() {
                StatusCode::UNAUTHORIZED
                    if !renewed && matches!(self.challenge, Challenge::Bearer { .. }) =>
                {
                    renewed = true;
                    if let Ok(mut tokens) = self.tokens.lock() {
                        tokens.remove(&scope.strings().join(" "));
                    }
                }
                // Basic auth checks the password on every request; with
                // tokens the login was accepted when the token was issued,
                // so a refusal now is about what that token allows.
                StatusCode::UNAUTHORIZED if matches!(self.challenge, Challenge::Basic) => {
                    return Err(self.not_authorised(scope, Refusal::Login));
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(self.not_authorised(scope, Refusal::Rights));
                }
                _ => return Ok(response),
            }
        }
    }

    /// Adds the `Authorization` header `value` to `request` if it goes to
    /// this registry's own API (scheme, host and port). An upload location
    /// the registry sent may point elsewhere: it gets no login, as docker
    /// sends one only to the hosts whose challenge it holds.
    fn authorize(
        &self,
        request: RequestBuilder,
        value: &str,
        what: &str,
    ) -> Result<RequestBuilder, RegistryError> {
        let (http, built) = request.build_split();
        let mut built = built.map_err(|_| RegistryError::Status {
            host: self.registry.clone(),
            what: format!("{what}: the request cannot be made"),
            status: 0,
            detail: String::new(),
        })?;
        if self.base.origin() == built.url().origin() {
            let mut header = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                RegistryError::Status {
                    host: self.registry.clone(),
                    what: "the login does not fit in an HTTP header".into(),
                    status: 0,
                    detail: String::new(),
                }
            })?;
            header.set_sensitive(true);
            built.headers_mut().insert(AUTHORIZATION, header);
        } else {
            tracing::debug!(
                "{}: {what} at {}: sent without the login, which belongs to {}",
                self.registry,
                origin(built.url()),
                origin(&self.base)
            );
        }
        Ok(RequestBuilder::from_parts(http, built))
    }

    fn not_authorised(&self, scope: &Scope, refusal: Refusal) -> RegistryError {
        let (repository, action) = scope.main();
        let verb = match action {
            Action::Pull => "pull from",
            Action::Push => "push to",
        };
        let command = crate::invocation::command();
        let registry = &self.registry;
        let hint = match (&self.login, refusal) {
            (None, _) => format!(
                ": no login found for {registry}; log in with `{command} login {registry}`{}",
                if action == Action::Push {
                    " or set CONDA_DOCKER_REGISTRY_USER and CONDA_DOCKER_REGISTRY_PASSWORD"
                } else {
                    ""
                }
            ),
            (Some(login), Refusal::Login) => {
                let fix = match &login.origin {
                    Origin::Environment => "; check them".to_owned(),
                    Origin::Given => String::new(),
                    Origin::File(_) | Origin::Helper(_) => {
                        format!("; log in again with `{command} login {registry}`")
                    }
                };
                format!(
                    ": the login {} was refused (wrong user name or password){fix}",
                    login.origin
                )
            }
            (Some(login), Refusal::Rights) => format!(
                ": the login {}{} was accepted, but may not {verb} it",
                login.origin,
                match &login.credentials {
                    Credentials::Basic { username, .. } => format!(" (user {username})"),
                    Credentials::IdentityToken(_) => String::new(),
                },
            ),
        };
        RegistryError::NotAuthorised {
            action: verb,
            target: format!("{}/{repository}", self.registry),
            hint,
        }
    }

    /// The `Authorization` header for `scope`, fetching a token if needed.
    fn authorization(&self, scope: &Scope) -> Result<Option<String>, RegistryError> {
        let credentials = self.login.as_ref().map(|l| &l.credentials);
        match (&self.challenge, credentials) {
            (Challenge::None, _) => Ok(None),
            (Challenge::Basic, Some(Credentials::Basic { username, password })) => Ok(Some(
                format!("Basic {}", BASE64.encode(format!("{username}:{password}"))),
            )),
            (Challenge::Basic, _) => Ok(None),
            (Challenge::Bearer { realm, service }, _) => {
                let key = scope.strings().join(" ");
                if let Ok(tokens) = self.tokens.lock()
                    && let Some((token, expires)) = tokens.get(&key)
                    && Instant::now() < *expires
                {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, lifetime) = self.fetch_token(realm, service.as_deref(), scope)?;
                // Renew a little early rather than have a request refused.
                let expires = Instant::now() + lifetime.saturating_sub(Duration::from_secs(10));
                if let Ok(mut tokens) = self.tokens.lock() {
                    tokens.insert(key, (token.clone(), expires));
                }
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Gets a bearer token for `scope` from the token service: a GET (with
    /// basic auth when logged in), or for an identity token the OAuth2
    /// refresh-token POST.
    fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<(String, Duration), RegistryError> {
        if realm.scheme() != "https" && !self.insecure && !is_loopback_url(realm) {
            return Err(RegistryError::PlainHttp {
                host: self.registry.clone(),
                what: format!(
                    "its token service {} is plain HTTP, which would expose the login",
                    origin(realm)
                ),
            });
        }
        let scopes = scope.strings();
        let response = self.retrying("getting a token", &|| {
            Ok(match self.login.as_ref().map(|l| &l.credentials) {
                Some(Credentials::IdentityToken(token)) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token".to_owned()),
                        ("refresh_token", token.clone()),
                        ("client_id", "conda-docker".to_owned()),
                        ("scope", scopes.join(" ")),
                    ];
                    form.extend(service.map(|s| ("service", s.to_owned())));
                    self.http.post(realm.clone()).form(&form)
                }
                credentials => {
                    let mut url = realm.clone();
                    {
                        let mut query = url.query_pairs_mut();
                        if let Some(service) = service {
                            query.append_pair("service", service);
                        }
                        for s in &scopes {
                            query.append_pair("scope", s);
                        }
                    }
                    let request = self.http.get(url);
                    match credentials {
                        Some(Credentials::Basic { username, password }) => {
                            request.basic_auth(username, Some(password))
                        }
                        _ => request,
                    }
                }
            }
            .timeout(self.read_timeout))
        })?;
        match response.status() {
            status if status.is_success() => {}
            // The token service checks the login itself.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.not_authorised(scope, Refusal::Login));
            }
            _ => return Err(self.status_error("getting a token", response)),
        }
        let body = small_json(response).ok_or_else(|| RegistryError::Status {
            host: self.registry.clone(),
            what: format!(
                "the token service answered something other than a JSON document of at most {}",
                crate::blob::size_text(MAX_SMALL_ANSWER)
            ),
            status: 200,
            detail: String::new(),
        })?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Status {
                host: self.registry.clone(),
                what: "the token service sent no token".into(),
                status: 200,
                detail: String::new(),
            })?;
        // The spec's default lifetime is 60 s.
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(60).max(10));
        Ok((token.to_owned(), lifetime))
    }

    /// Checks the login this client has, as `docker login` does: a token
    /// with no scope from the token service, or `/v2/` with basic auth. A
    /// refusal is [`RegistryError::LoginFailed`].
    pub(crate) fn check_login(&self) -> Result<(), RegistryError> {
        let scope = Scope::default();
        let refused = |e: RegistryError| match e {
            RegistryError::NotAuthorised { .. } => RegistryError::LoginFailed {
                host: self.registry.clone(),
            },
            other => other,
        };
        match &self.challenge {
            Challenge::None => Ok(()),
            Challenge::Bearer { realm, service } => self
                .fetch_token(realm, service.as_deref(), &scope)
                .map(drop)
                .map_err(refused),
            Challenge::Basic => {
                let response = self
                    .send(&scope, "logging in", &|| {
                        Ok(self.small(self.http.get(self.url("/v2/"))))
                    })
                    .map_err(refused)?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(self.status_error("logging in", response))
                }
            }
        }
    }

    /// An error for an unexpected answer, with the registry's own message.
    pub(crate) fn status_error(&self, what: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let body = small_json(response).unwrap_or_default();
        let detail = body["errors"][0]["message"]
            .as_str()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        RegistryError::Status {
            host: self.registry.clone(),
            what: what.to_owned(),
            status,
            detail,
        }
    }

    /// A small request (a manifest, a HEAD, a token): its whole answer
    /// must come within the read timeout, or it has hung.
    pub(crate) fn small(&self, request: RequestBuilder) -> RequestBuilder {
        request.timeout(self.read_timeout)
    }

    /// An upload request for `bytes` bytes (a chunk, a whole blob, or the
    /// closing PUT after which the registry checks a whole blob): the
    /// blocking client can bound only a whole request, not each write of
    /// its body, so a request may take the read timeout plus the time its
    /// bytes take at [`SLOWEST_UPLOAD`]. A registry that stops reading, or
    /// never answers, is cut there (a chunk at most 256 s past the read
    /// timeout) instead of holding the push for ever.
    pub(crate) fn upload(&self, request: RequestBuilder, bytes: u64) -> RequestBuilder {
        request.timeout(
            self.read_timeout
                .saturating_add(Duration::from_secs(bytes / SLOWEST_UPLOAD)),
        )
    }

    /// The error for `tries` tries that each sent nothing for the read
    /// timeout, naming the setting that sets it.
    pub(crate) fn stalled(&self, what: &str, tries: u32) -> RegistryError {
        RegistryError::Stalled {
            host: self.registry.clone(),
            what: what.to_owned(),
            after: self.read_timeout,
            tries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.0.0.1",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["ghcr.io", "10.0.0.1:5000", "registry-1.docker.io"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    /// A server on loopback that answers each plain-HTTP request with the
    /// next of `replies` (TLS hellos are hung up on); returns its address
    /// and the request lines it saw.
    fn scripted_server(replies: Vec<&'static str>) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() || !first.starts_with("GET ") {
                    continue;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                log.lock().unwrap().push(first.trim().to_owned());
                let Some(reply) = replies.next() else { return };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (address, seen)
    }

    const BUSY: &str = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const SLOW_DOWN: &str =
        "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

    #[test]
    fn busy_answers_are_tried_again() {
        let (address, seen) = scripted_server(vec![BUSY, SLOW_DOWN, OK]);
        let client = Client::connect(&address, &RegistryOptions::default(), None).unwrap();
        assert!(matches!(client.challenge, Challenge::None));
        assert_eq!(client.base.scheme(), "http", "loopback without TLS");
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_cap() {
        let secs = Duration::from_secs;
        assert_eq!(wait_before_retry(Some(secs(2)), 1), secs(2));
        assert_eq!(wait_before_retry(Some(secs(3600)), 1), MAX_WAIT);
        assert_eq!(wait_before_retry(None, 1), Duration::from_millis(250));
        assert_eq!(wait_before_retry(None, 20), secs(16));
    }

    #[test]
    fn retries_are_bounded() {
        let (address, seen) = scripted_server(vec![SLOW_DOWN; 10]);
        let error = Client::connect(&address, &RegistryOptions::default(), None)
            .err()
            .unwrap();
        assert!(error.to_string().contains("HTTP 429"), "{error}");
        assert_eq!(seen.lock().unwrap().len(), ATTEMPTS as usize);
    }

    /// The login `ci`/`secret` from the environment variables.
    fn ci_login() -> Login {
        Login {
            credentials: Credentials::Basic {
                username: "ci".into(),
                password: "secret".into(),
            },
            origin: Origin::Environment,
        }
    }

    #[test]
    fn refusals_say_whose_login_and_why() {
        const BASIC: &str = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        const FORBIDDEN: &str =
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (address, _) = scripted_server(vec![BASIC, BASIC, FORBIDDEN]);
        let client =
            Client::connect(&address, &RegistryOptions::default(), Some(ci_login())).unwrap();
        let scope = Scope::new("a/b", Action::Push);
        let get = || Ok(client.http().get(client.url("/v2/a/b/tags/list")));
        let wrong = client.send(&scope, "listing", &get).err().unwrap();
        assert_eq!(
            wrong.to_string(),
            format!(
                "not authorised to push to {address}/a/b: the login from CONDA_DOCKER_REGISTRY_USER and CONDA_DOCKER_REGISTRY_PASSWORD was refused (wrong user name or password); check them"
            )
        );
        let forbidden = client.send(&scope, "listing", &get).err().unwrap();
        assert_eq!(
            forbidden.to_string(),
            format!(
                "not authorised to push to {address}/a/b: the login from CONDA_DOCKER_REGISTRY_USER and CONDA_DOCKER_REGISTRY_PASSWORD (user ci) was accepted, but may not push to it"
            )
        );
    }

    #[test]
    fn a_plain_http_token_service_off_loopback_gets_no_login() {
        const BEARER: &str = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://10.0.0.1:9/token\",service=\"s\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (address, seen) = scripted_server(vec![BEARER]);
        let client =
            Client::connect(&address, &RegistryOptions::default(), Some(ci_login())).unwrap();
        let scope = Scope::new("a/b", Action::Pull);
        let get = || Ok(client.http().get(client.url("/v2/a/b/tags/list")));
        let error = client.send(&scope, "listing", &get).err().unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "{address}: its token service http://10.0.0.1:9 is plain HTTP, which would expose the login; plain HTTP is used only on this machine (localhost) or with --insecure"
            )
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "only the ping was sent");
    }

    #[test]
    fn scopes_name_every_repository() {
        let scope = Scope::new("a/b", Action::Push).and("c", Action::Pull);
        assert_eq!(
            scope.strings(),
            ["repository:a/b:pull,push", "repository:c:pull"]
        );
    }
}
