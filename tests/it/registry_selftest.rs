//! Proves the `common::Registry` harness against real docker-registry,
//! skopeo and podman: every auth variant accepts the right client and
//! refuses the wrong one, and the access log is read correctly.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{self, Registry, require_tools};

const USER: &str = "selftest-user";
const PASSWORD: &str = "s3cret:with colon";
const IMAGE: &str = "selftest/img:1";
const MANIFEST: &str = "/v2/selftest/img/manifests/1";

#[test]
fn registry_access_log_line_parses() {
    // Verbatim from docker-registry 2.8.2's stdout.
    let line = r#"127.0.0.1 - - [28/Nov/2026:07:49:22 +0000] "GET /v2/x/manifests/1?a=b HTTP/1.1" 404 91 "" "curl/7.88.1""#;
    let request = common::parse_access_log_line(line).unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/v2/x/manifests/1?a=b");
    assert_eq!(request.status, 404);
    assert_eq!(request.user_agent, "curl/7.88.1");
    assert_eq!(
        common::parse_access_log_line(r#"time="x" level=info msg="listening on 127.0.0.1:1""#),
        None
    );
}

#[test]
fn registry_base64_round_trips() {
    for text in [
        "",
        "a",
        "ab",
        "abc",
        "abcd",
        "user:pass word",
        "\u{ff}\u{fe}?>",
    ] {
        let bytes = text.as_bytes();
        assert_eq!(
            common::base64_decode(&common::base64_encode(bytes)).unwrap(),
            bytes
        );
        assert_eq!(
            common::base64_decode(&common::base64url(bytes)).unwrap(),
            bytes
        );
    }
    assert_eq!(common::base64_encode(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(common::base64_encode(b"ab"), "YWI=");
    assert_eq!(common::base64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn registry_plain_push_inspect_and_log() {
    require_tools!("docker-registry", "skopeo", "umoci", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(dir.path()) else {
        return;
    };
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(registry.cert_dir(), None);
    assert_eq!(registry.creds(), None);
    // The readiness probe is not reported.
    assert_eq!(registry.requests(), vec![]);
    let layout = busybox_layout(dir.path());
    registry.push(&oci(&layout), IMAGE);
    assert_pushed(&registry);
    let requests = registry.requests();
    assert!(
        requests.iter().all(|r| r.user_agent.contains("skopeo")),
        "{requests:#?}"
    );
    // Blob uploads show their query (the digest) in the path.
    assert!(
        requests.iter().any(|r| r.method == "PUT"
            && r.path.contains("/blobs/uploads/")
            && r.path.contains("digest=sha256")),
        "{requests:#?}"
    );
    assert_eq!(registry.tokens_issued(), 0);
    let reply = common::http_request(registry.host(), "GET", "/v2/", &[], b"");
    assert_eq!(reply.status, 200);
    assert!(registry.served("GET", "/v2/", 200));
    let last = registry.requests().pop().unwrap();
    assert_eq!(last.user_agent, common::HTTP_CLIENT_USER_AGENT);
}

#[test]
fn registry_basic_refuses_anonymous_and_accepts_user() {
    require_tools!("docker-registry", "htpasswd", "skopeo", "umoci", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::basic(dir.path(), USER, PASSWORD) else {
        return;
    };
    assert_eq!(registry.credentials(), Some((USER, PASSWORD)));
    let layout = busybox_layout(dir.path());
    let anonymous = registry.try_push(&oci(&layout), IMAGE, &registry.tls_flags("dest-"));
    assert!(!anonymous.status.success());
    // skopeo gets as far as asking whether a blob exists.
    let requests = registry.requests();
    assert!(requests.iter().all(|r| r.status == 401), "{requests:#?}");
    assert!(registry.served("GET", "/v2/", 401), "{requests:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r.method == "HEAD" && r.path.contains("/blobs/sha256:"))
    );
    let wrong = [
        registry.tls_flags("dest-"),
        vec!["--dest-creds".into(), format!("{USER}:wrong")],
    ]
    .concat();
    assert!(
        !registry
            .try_push(&oci(&layout), IMAGE, &wrong)
            .status
            .success()
    );
    registry.push(&oci(&layout), IMAGE);
    assert_pushed(&registry);
    let challenge = common::http_request(registry.host(), "GET", "/v2/", &[], b"");
    assert_eq!(challenge.status, 401);
    assert!(
        challenge
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=")
    );
    let auth = format!(
        "Basic {}",
        common::base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
    );
    let ok = common::http_request(
        registry.host(),
        "GET",
        "/v2/",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(ok.status, 200);
    // The docker config.json helper is a valid skopeo auth file.
    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, registry.docker_config(false).to_string()).unwrap();
    let output = common::run(
        std::process::Command::new(common::expect_tool("skopeo"))
            .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(registry.reference(IMAGE)),
    );
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
}

#[test]
fn registry_tls_needs_the_certificate() {
    require_tools!(
        "docker-registry",
        "htpasswd",
        "openssl",
        "skopeo",
        "umoci",
        "busybox"
    );
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::tls_basic(dir.path(), USER, PASSWORD) else {
        return;
    };
    assert_eq!(registry.scheme(), "https");
    let cert_dir = registry.cert_dir().unwrap();
    let names: Vec<_> = std::fs::read_dir(cert_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ca.crt"]);
    let layout = busybox_layout(dir.path());
    let creds = vec!["--dest-creds".to_string(), registry.creds().unwrap()];
    let untrusted = registry.try_push(&oci(&layout), IMAGE, &creds);
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        stderr.contains("x509") || stderr.contains("certificate"),
        "{stderr}"
    );
    assert_eq!(registry.requests(), vec![], "no request got past TLS");
    assert!(
        registry
            .skopeo_dest_flags()
            .contains(&"--dest-cert-dir".to_string())
    );
    registry.push(&oci(&layout), IMAGE);
    assert_pushed(&registry);

    // podman pulls with the same flags.
    require_tools!("podman", "runc");
    let Some(podman) = common::Podman::new() else {
        return;
    };
    let flags = registry.client_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let id = podman.pull(&registry.image(IMAGE), &flags);
    assert!(!id.is_empty());
    assert_eq!(
        podman.run(&registry.image(IMAGE), &["/bin/sh", "-c", "echo pulled"]),
        "pulled\n"
    );
    assert!(
        registry.served("GET", MANIFEST, 200),
        "{:#?}",
        registry.requests()
    );
}

#[test]
fn registry_token_flow() {
    require_tools!("docker-registry", "openssl", "skopeo", "umoci", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::token(dir.path(), USER, PASSWORD) else {
        return;
    };
    let token_host = registry.token_host().unwrap();
    assert_eq!(
        registry.token_realm().unwrap(),
        format!("http://{token_host}/token")
    );
    let challenge = common::http_request(registry.host(), "GET", "/v2/", &[], b"");
    assert_eq!(challenge.status, 401);
    let bearer = challenge.header("www-authenticate").unwrap();
    assert!(
        bearer.starts_with("Bearer realm=\"http://127.0.0.1:"),
        "{bearer}"
    );
    assert!(bearer.contains(common::TOKEN_SERVICE), "{bearer}");

    // Anonymous: pull only, so the push is refused.
    let layout = busybox_layout(dir.path());
    let anonymous = registry.try_push(&oci(&layout), IMAGE, &registry.tls_flags("dest-"));
    assert!(!anonymous.status.success());
    let tokens = registry.tokens();
    assert!(!tokens.is_empty());
    assert!(
        tokens
            .iter()
            .all(|t| t.grant == "anonymous" && t.subject.is_empty())
    );
    assert!(
        tokens
            .iter()
            .all(|t| t.scopes == ["repository:selftest/img:pull"]),
        "{tokens:#?}"
    );
    assert!(
        !registry
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.status < 300)
    );

    let before = registry.tokens_issued();
    registry.push(&oci(&layout), IMAGE);
    assert!(registry.tokens_issued() > before);
    assert!(
        registry.tokens().iter().any(|t| t.grant == "basic"
            && t.scopes
                .contains(&"repository:selftest/img:pull,push".to_string())),
        "{:#?}",
        registry.tokens()
    );
    assert_pushed(&registry);
    // Anonymous pull works.
    let output = common::run(
        std::process::Command::new(common::expect_tool("skopeo"))
            .args(["inspect", "--raw"])
            .args(registry.tls_flags(""))
            .arg(registry.reference(IMAGE)),
    );
    assert!(common::stdout(&output).contains("schemaVersion"));

    // Raw token requests: wrong password, Basic GET, OAuth2 POSTs.
    let scope = "scope=repository:selftest/img:pull,push&scope=repository:other/x:pull";
    let get = |auth: Option<String>| {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        common::http_request(
            &token_host,
            "GET",
            &format!("/token?service={}&{scope}", common::TOKEN_SERVICE),
            &headers,
            b"",
        )
    };
    let basic = |password: &str| {
        format!(
            "Basic {}",
            common::base64_encode(format!("{USER}:{password}").as_bytes())
        )
    };
    assert_eq!(get(Some(basic("wrong"))).status, 401);
    let granted = get(Some(basic(PASSWORD)));
    assert_eq!(granted.status, 200, "{}", granted.text());
    let claims = jwt_claims(&granted.json()["token"]);
    assert_eq!(claims["iss"], common::TOKEN_ISSUER);
    assert_eq!(claims["aud"], common::TOKEN_SERVICE);
    assert_eq!(claims["sub"], USER);
    assert_eq!(
        claims["access"],
        serde_json::json!([
            {"type": "repository", "name": "selftest/img", "actions": ["pull", "push"]},
            {"type": "repository", "name": "other/x", "actions": ["pull"]},
        ])
    );
    let anonymous = jwt_claims(&get(None).json()["token"]);
    assert_eq!(
        anonymous["access"][0]["actions"],
        serde_json::json!(["pull"])
    );

    let post = |form: &str| {
        common::http_request(
            &token_host,
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
    };
    let service = format!("service={}", common::TOKEN_SERVICE);
    let refresh = post(&format!(
        "grant_type=refresh_token&refresh_token={}&{service}&scope=repository%3Aselftest%2Fimg%3Apull%2Cpush+repository%3Aother%2Fy%3Apull&client_id=selftest",
        registry.identity_token()
    ));
    assert_eq!(refresh.status, 200, "{}", refresh.text());
    let response = refresh.json();
    assert_eq!(response["token"], response["access_token"]);
    assert_eq!(response["expires_in"], 300);
    assert!(response["issued_at"].as_str().unwrap().ends_with('Z'));
    let claims = jwt_claims(&response["token"]);
    assert_eq!(
        claims["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    assert_eq!(claims["access"][1]["name"], "other/y");
    // The registry itself accepts the token.
    let bearer = format!("Bearer {}", response["token"].as_str().unwrap());
    let manifest = common::http_request(
        registry.host(),
        "GET",
        MANIFEST,
        &[
            ("Authorization", bearer.as_str()),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        b"",
    );
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    assert_eq!(manifest.json()["schemaVersion"], 2);
    // ...and checks its signature: a token whose claims were altered after
    // signing (here: a different subject) is refused.
    let token = response["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims.clone();
    forged["sub"] = "intruder".into();
    let forged = format!(
        "Bearer {}.{}.{}",
        parts[0],
        common::base64url(forged.to_string().as_bytes()),
        parts[2]
    );
    let refused = common::http_request(
        registry.host(),
        "GET",
        MANIFEST,
        &[("Authorization", forged.as_str())],
        b"",
    );
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(
        post(&format!(
            "grant_type=refresh_token&refresh_token=nope&{service}"
        ))
        .status,
        401
    );
    let password = post(&format!(
        "grant_type=password&username={USER}&password={}&{service}&access_type=offline&scope=repository%3Aselftest%2Fimg%3Apush",
        url_encode(PASSWORD)
    ));
    assert_eq!(password.status, 200, "{}", password.text());
    assert_eq!(password.json()["refresh_token"], common::IDENTITY_TOKEN);
    let wrong = post(&format!(
        "grant_type=password&username={USER}&password=x&{service}"
    ));
    assert_eq!(wrong.status, 401);

    // skopeo with an identity token in its auth file uses the OAuth2 POST.
    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, registry.docker_config(true).to_string()).unwrap();
    let before = registry.tokens_issued();
    let output = common::run(
        std::process::Command::new(common::expect_tool("skopeo"))
            .args(["--insecure-policy", "copy", "--quiet"])
            .args(registry.tls_flags("dest-"))
            .arg("--dest-authfile")
            .arg(&authfile)
            .arg(oci(&layout))
            .arg(registry.reference("selftest/img:2")),
    );
    assert!(output.status.success());
    let refreshed: Vec<_> = registry.tokens().into_iter().skip(before).collect();
    assert!(
        refreshed
            .iter()
            .any(|t| t.grant == "refresh_token"
                && t.scopes.iter().any(|s| s.ends_with(":pull,push"))),
        "{refreshed:#?}"
    );
    assert!(registry.served("PUT", "/v2/selftest/img/manifests/2", 201));
}

/// The busybox rootfs as an OCI layout (tag `t`) written by umoci.
fn busybox_layout(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    let layout = dir.join("layout");
    common::umoci_layout_from_rootfs(&rootfs, &layout, "t");
    layout
}

fn oci(layout: &Path) -> String {
    format!("oci:{}:t", layout.display())
}

/// The manifest PUT is in the access log and skopeo reads it back.
fn assert_pushed(registry: &Registry) {
    assert!(
        registry.served("PUT", MANIFEST, 201),
        "{:#?}\n{}",
        registry.requests(),
        registry.log()
    );
    let manifest = registry.inspect(IMAGE, &["--raw"]);
    // umoci's manifests carry no top-level mediaType; the config's tells.
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let config = registry.inspect(IMAGE, &["--config"]);
    assert_eq!(config["os"], "linux");
}

/// The claims of a JWT (its middle segment), unverified.
fn jwt_claims(token: &Value) -> Value {
    let token = token.as_str().expect("a token string");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&common::base64_decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
    serde_json::from_slice(&common::base64_decode(parts[1]).unwrap()).unwrap()
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
