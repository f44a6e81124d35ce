//! `--cache-repo` (issue 15, "Beyond one machine"): machines, each with
//! its own `CONDA_DOCKER_CACHE_DIR`, share package layers through one
//! repository of a real `docker-registry` on 127.0.0.1. A fresh machine
//! builds and uploads no package layer another built before; a read-only
//! cache is never written; an entry whose blob is not what it says is not
//! used.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{
    self, CacheLayout, CondaChannel, CondaEnv, Registry, install_env, require_tools,
};
use crate::fixtures::conda_docker;
use crate::registry::{json_of, uploads};

/// One machine: `conda-docker` with its own home and cache under `dir`,
/// reading the packages of `env`.
fn machine(dir: &Path, env: &CondaEnv) -> Command {
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", dir.join("cache"))
        .env("CONDA_PKGS_DIRS", &env.cache_dir)
        .args(["build", "-v", "--json", "-b", "scratch", "-p"])
        .arg(&env.prefix);
    cmd
}

/// Where each conda layer came from: `built`, `cache` or `registry`.
fn sources(report: &Value) -> Vec<&str> {
    report["conda_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect()
}

/// The tags of `repository`, as skopeo lists them.
fn tags(registry: &Registry, repository: &str) -> Vec<String> {
    let output = common::run(
        Command::new(common::expect_tool("skopeo"))
            .arg("list-tags")
            .args(registry.client_flags())
            .arg(registry.reference(repository)),
    );
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut tags: Vec<String> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

/// What the machines share: a plain registry with the cache repository
/// `ci/layers`, and an environment of `packages` packages from a
/// conda-style package cache (so each layer has an identity).
struct Machines {
    registry: Registry,
    env: CondaEnv,
    packages: usize,
    cache_repo: String,
}

impl Machines {
    /// The registry `start` starts in `dir/registry` (`None`: skipped).
    fn new(dir: &Path, start: impl FnOnce(&Path) -> Option<Registry>) -> Option<Self> {
        let registry = start(&dir.join("registry"))?;
        let channel = CondaChannel::build_without_binary(&dir.join("channel"));
        let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, dir);
        Some(Machines {
            packages: env.records.len(),
            cache_repo: registry.image("ci/layers"),
            registry,
            env,
        })
    }
}

/// Entries of a machine's local layer cache.
fn local_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("cache/layers")).map_or(0, |d| d.count())
}

#[test]
fn machines_share_package_layers_through_a_cache_repo() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(Machines {
        registry,
        env,
        packages,
        cache_repo,
    }) = Machines::new(d, Registry::plain)
    else {
        return;
    };
    let target = registry.image("app/env:1");
    let cached = ["--cache-repo", cache_repo.as_str()];

    // Machine A builds every layer, writes one entry per layer, and pushes
    // (mounting the layers from the cache repository it just filled).
    let output = common::run(
        machine(&d.join("a"), &env)
            .args(cached)
            .args(["--push", "-i", &target]),
    );
    let a = json_of(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(sources(&a), vec!["built"; packages], "{a:#}");
    let digest = a["pushed"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(a["pushed"]["mounted"], packages, "{a:#}\n{log}");
    let entries = tags(&registry, "ci/layers");
    assert_eq!(entries.len(), packages, "{entries:?}");
    assert!(entries.iter().all(|t| t.len() == 64), "{entries:?}");
    let entry = registry.inspect(&format!("ci/layers:{}", entries[0]), &["--raw"]);
    assert_eq!(
        entry["artifactType"],
        "application/vnd.conda-docker.layer.v1"
    );
    assert_eq!(entry["layers"].as_array().unwrap().len(), 1, "{entry:#}");
    // The records annotation comes from the plan, not the entry, which a
    // reader bounds at 64 KiB.
    assert!(entry["layers"][0]["annotations"]["org.conda-docker.records"].is_null());

    // Machine B, with an empty local cache, builds nothing, reads no layer
    // and uploads nothing: the same image, whose layers the registry has.
    let before = uploads(&registry);
    let b = json_of(&common::run(
        machine(&d.join("b"), &env)
            .args(cached)
            .args(["--push", "-i", &target]),
    ));
    assert_eq!(sources(&b), vec!["registry"; packages], "{b:#}");
    assert_eq!(b["pushed"]["digest"], digest.as_str(), "{b:#}");
    assert_eq!(b["pushed"]["uploaded"], 0, "{b:#}");
    assert_eq!(uploads(&registry), before, "no upload requests");
    assert_eq!(local_entries(&d.join("b")), 0, "nothing pulled");
    let inspected = registry.inspect("app/env:1", &[]);
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(tags(&registry, "ci/layers"), entries, "nothing written");

    // Machine C pushes the same environment to another repository: the
    // package layers are mounted from the cache repository, and only the
    // environment's own layer and the config are uploaded.
    let c = json_of(&common::run(
        machine(&d.join("c"), &env).args(cached).args([
            "--push",
            "-i",
            &registry.image("app/other:1"),
        ]),
    ));
    assert_eq!(sources(&c), vec!["registry"; packages], "{c:#}");
    assert_eq!(c["pushed"]["uploaded"], 2, "{c:#}");
    assert_eq!(c["pushed"]["digest"], digest.as_str(), "{c:#}");
    let mounts = registry
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.starts_with("/v2/app/other/")
                && r.path.contains("from=ci%2Flayers")
                && r.status == 201
        })
        .count();
    assert_eq!(mounts, packages);
    assert_eq!(
        registry.inspect("app/other:1", &[])["Digest"],
        digest.as_str()
    );

    // Machine A again, to a third repository: its layers come from its
    // local cache, and are mounted from the cache repository, which has them.
    let again = json_of(&common::run(
        machine(&d.join("a"), &env).args(cached).args([
            "--push",
            "-i",
            &registry.image("app/third:1"),
        ]),
    ));
    assert_eq!(sources(&again), vec!["cache"; packages], "{again:#}");
    assert_eq!(again["pushed"]["mounted"], packages, "{again:#}");
    assert_eq!(tags(&registry, "ci/layers"), entries, "nothing written");

    // Machine D writes an OCI layout: the layers are pulled (and checked)
    // into its local cache; the image is the same.
    let layout = d.join("d-layout");
    let out = format!("oci:{}:t", layout.display());
    let dd = json_of(&common::run(
        machine(&d.join("d"), &env).args(cached).args(["-o", &out]),
    ));
    assert_eq!(sources(&dd), vec!["registry"; packages], "{dd:#}");
    assert_eq!(local_entries(&d.join("d")), packages);
    assert_eq!(common::skopeo_inspect(&out, &[])["Digest"], digest.as_str());
}

#[test]
fn a_read_only_cache_repo_is_never_written_and_a_bad_entry_is_not_used() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(Machines {
        registry,
        env,
        packages,
        cache_repo,
    }) = Machines::new(d, Registry::plain)
    else {
        return;
    };
    let cached = ["--cache-repo", cache_repo.as_str()];
    let out = |name: &str| format!("oci:{}:t", d.join(name).display());

    // Read only: the layers are built, and no entry is written.
    let ro = json_of(&common::run(
        machine(&d.join("ro"), &env).args(cached).args([
            "--cache-repo-read-only",
            "-o",
            &out("ro-layout"),
        ]),
    ));
    assert_eq!(sources(&ro), vec!["built"; packages], "{ro:#}");
    let missing = common::run_unchecked(
        Command::new(common::expect_tool("skopeo"))
            .arg("list-tags")
            .args(registry.client_flags())
            .arg(registry.reference("ci/layers")),
    );
    assert!(!missing.status.success(), "no tag, no repository");
    let listed = registry.requests();
    assert!(
        !listed
            .iter()
            .any(|r| r.path.starts_with("/v2/ci/layers/") && r.method != "GET"),
        "{listed:#?}"
    );

    // Written by a machine that may.
    let a = json_of(&common::run(
        machine(&d.join("a"), &env)
            .args(cached)
            .args(["-o", &out("a-layout")]),
    ));
    assert_eq!(sources(&a), vec!["built"; packages], "{a:#}");
    assert_eq!(tags(&registry, "ci/layers").len(), packages);
    let image = common::skopeo_inspect(&out("a-layout"), &[])["Digest"].clone();

    // The registry serves other bytes for one layer: that entry is not
    // used (the layer is built), the others are, and the image is the same.
    let poisoned = a["conda_layers"][0]["digest"].as_str().unwrap();
    let hex = poisoned.trim_start_matches("sha256:");
    let data = registry
        .dir()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let original = std::fs::read(&data).unwrap();
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let output = common::run(machine(&d.join("b"), &env).args(cached).args([
        "--cache-repo-read-only",
        "-o",
        &out("b-layout"),
    ]));
    let b = json_of(&output);
    let mut expected = vec!["registry"; packages];
    expected[0] = "built";
    assert_eq!(sources(&b), expected, "{b:#}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("is not used") && log.contains("does not match its digest"),
        "{log}"
    );
    assert_eq!(
        common::skopeo_inspect(&out("b-layout"), &[])["Digest"],
        image
    );
    std::fs::write(&data, &original).unwrap();

    // An entry whose diff id is not its layer's: not used either.
    let wrong_diff_id = a["conda_layers"][1]["digest"].as_str().unwrap();
    let tag = tags(&registry, "ci/layers")
        .into_iter()
        .find(|tag| {
            let entry = registry.inspect(&format!("ci/layers:{tag}"), &["--raw"]);
            entry["layers"][0]["digest"] == wrong_diff_id
        })
        .unwrap();
    let mut entry = registry.inspect(&format!("ci/layers:{tag}"), &["--raw"]);
    entry["layers"][0]["annotations"]["org.conda-docker.layer.diff-id"] =
        serde_json::json!(format!("sha256:{}", "0".repeat(64)));
    let put = common::http_request(
        registry.host(),
        "PUT",
        &format!("/v2/ci/layers/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &serde_json::to_vec(&entry).unwrap(),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let output = common::run(machine(&d.join("c"), &env).args(cached).args([
        "--cache-repo-read-only",
        "-o",
        &out("c-layout"),
    ]));
    let c = json_of(&output);
    let mut expected = vec!["registry"; packages];
    expected[1] = "built";
    assert_eq!(sources(&c), expected, "{c:#}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("does not match its diff id"), "{log}");
    assert_eq!(
        common::skopeo_inspect(&out("c-layout"), &[])["Digest"],
        image
    );
}

/// The cache repository is reached with the user's login for its registry;
/// without one, or without a registry at all, the build goes on (warnings)
/// and builds every layer.
#[test]
fn the_cache_repo_uses_the_login_for_its_registry_and_never_stops_a_build() {
    require_tools!("docker-registry", "skopeo", "htpasswd");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let basic = |dir: &Path| Registry::basic(dir, "ci", "secret");
    let Some(Machines {
        registry,
        env,
        packages,
        cache_repo,
    }) = Machines::new(d, basic)
    else {
        return;
    };
    let build = |name: &str, cache_repo: &str| {
        let output = common::run(machine(&d.join(name), &env).args([
            "--cache-repo",
            cache_repo,
            "-o",
            &format!("oci:{}:t", d.join(format!("{name}-layout")).display()),
        ]));
        (
            json_of(&output),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    // No registry there at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("{}/ci/layers", closed.local_addr().unwrap());
    drop(closed);
    let (report, log) = build("nowhere", &nowhere);
    assert_eq!(sources(&report), vec!["built"; packages], "{report:#}");
    assert!(log.contains("the cache repository cannot be used"), "{log}");

    // No login for the registry: refused, the build goes on.
    let (report, log) = build("anonymous", &cache_repo);
    assert_eq!(sources(&report), vec!["built"; packages], "{report:#}");
    assert!(log.contains("not authorised to pull from"), "{log}");

    // CI's login for the registry pushed to serves the cache repository
    // there: entries are written.
    let output = common::run(
        machine(&d.join("ci"), &env)
            .env("CONDA_DOCKER_REGISTRY_USER", "ci")
            .env("CONDA_DOCKER_REGISTRY_PASSWORD", "secret")
            .args(["--cache-repo", &cache_repo, "--push", "-i"])
            .arg(registry.image("app/env:1")),
    );
    let (report, log) = (json_of(&output), String::from_utf8_lossy(&output.stderr));
    assert_eq!(sources(&report), vec!["built"; packages], "{report:#}");
    assert!(!log.contains("WARN"), "{log}");
    assert_eq!(tags(&registry, "ci/layers").len(), packages);

    // The user's stored login (docker's config.json): entries are found.
    let docker = d.join("a/home/.docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        registry.docker_config(false).to_string(),
    )
    .unwrap();
    let (report, log) = build("a", &cache_repo);
    assert_eq!(sources(&report), vec!["registry"; packages], "{report:#}");
    assert!(!log.contains("WARN"), "{log}");
}

/// On a registry with bearer tokens (Docker Hub's and ghcr's flow), a push
/// to another repository mounts the layers from the cache repository with
/// a token for both.
#[test]
fn layers_are_mounted_from_the_cache_repo_with_bearer_tokens() {
    require_tools!("docker-registry", "skopeo", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = |dir: &Path| Registry::token(dir, "ci", "secret");
    let Some(Machines {
        registry,
        env,
        packages,
        cache_repo,
    }) = Machines::new(d, token)
    else {
        return;
    };
    let push = |name: &str, image: &str| {
        json_of(&common::run(
            machine(&d.join(name), &env)
                .env("CONDA_DOCKER_REGISTRY_USER", "ci")
                .env("CONDA_DOCKER_REGISTRY_PASSWORD", "secret")
                .args(["--cache-repo", &cache_repo, "--push", "-i"])
                .arg(registry.image(image)),
        ))
    };
    let a = push("a", "app/env:1");
    assert_eq!(sources(&a), vec!["built"; packages], "{a:#}");
    let b = push("b", "app/other:1");
    assert_eq!(sources(&b), vec!["registry"; packages], "{b:#}");
    assert_eq!(b["pushed"]["digest"], a["pushed"]["digest"], "{b:#}");
    assert!(
        registry.tokens().iter().any(|t| {
            t.scopes
                .contains(&"repository:app/other:pull,push".to_owned())
                && t.scopes.contains(&"repository:ci/layers:pull".to_owned())
        }),
        "{:#?}",
        registry.tokens()
    );
    let mounted = registry
        .requests()
        .iter()
        .filter(|r| r.path.contains("from=ci%2Flayers") && r.status == 201)
        .count();
    assert_eq!(mounted, 2 * packages, "A's push and B's build mount each");
}
