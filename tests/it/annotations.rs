//! The OCI standard annotations of a built image (`created` from the
//! epoch, `base.name` and `base.digest` from the pulled base) and the
//! user's `--annotation K=V`, on the manifest and on the OCI layout's
//! index entry, read back by skopeo from a layout and from a registry;
//! a docker-archive, which cannot carry them to `docker load`, says so.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{self, CondaChannel, Registry, require_tools, skopeo_inspect};
use crate::fixtures::{busybox_base, busybox_in_registry, conda_docker};

/// `SOURCE_DATE_EPOCH` of every build here, and its RFC 3339 form.
const EPOCH: (&str, &str) = ("1700000000", "2023-11-14T22:13:20Z");

/// What the user adds: `.source`, `.revision`, `.title`, `.version`.
const USERS: [(&str, &str); 4] = [
    ("org.opencontainers.image.source", "https://example.com/app"),
    ("org.opencontainers.image.revision", "0123abc"),
    ("org.opencontainers.image.title", "app"),
    ("org.opencontainers.image.version", "1.2"),
];

/// `conda-docker build` of `cd-text` solved from `channel`, isolated from
/// the host, at [`EPOCH`].
fn build(home: &Path, channel: &CondaChannel, base: &str, args: &[&str]) -> std::process::Output {
    let mut cmd: Command = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cache"))
        .env("RATTLER_CACHE_DIR", home.join("rattler"))
        .env("SOURCE_DATE_EPOCH", EPOCH.0)
        .args(["build", "-q", "--override-channels", "-c", &channel.url()])
        .args(["-b", base])
        .args(args)
        .arg("cd-text");
    common::run(&mut cmd)
}

fn with_users(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for (key, value) in USERS {
        all.push("--annotation".into());
        all.push(format!("{key}={value}"));
    }
    all
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn built_images_carry_the_standard_annotations_and_the_users() {
    require_tools!("docker-registry", "skopeo", "umoci", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let (base, base_digest) = busybox_in_registry(dir.path(), &registry);
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let home = dir.path().join("home");

    // An OCI layout: on the manifest and on its index.json entry.
    let out = dir.path().join("app-oci");
    let to_layout = format!("oci:{}:app", out.display());
    build(
        &home,
        &channel,
        &base,
        &strs(&with_users(&["-o", &to_layout])),
    );
    let manifest = skopeo_inspect(&to_layout, &["--raw"]);
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.created"], EPOCH.1);
    assert_eq!(
        annotations["org.opencontainers.image.base.name"],
        base.as_str()
    );
    assert_eq!(
        annotations["org.opencontainers.image.base.digest"],
        base_digest
    );
    for (key, value) in USERS {
        assert_eq!(annotations[key], value, "{manifest}");
    }
    assert_eq!(annotations.as_object().unwrap().len(), 3 + USERS.len());
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0]["annotations"];
    for (key, value) in annotations.as_object().unwrap() {
        assert_eq!(&entry[key], value, "{index}");
    }
    assert_eq!(entry["org.opencontainers.image.ref.name"], "app");
    common::umoci_unpack(&out, "app", &dir.path().join("bundle"));

    // The same build pushed: the registry serves the same manifest.
    let pushed = registry.image("app/env:1");
    build(
        &home,
        &channel,
        &base,
        &strs(&with_users(&["--push", "-i", &pushed])),
    );
    let remote = registry.inspect("app/env:1", &["--raw"]);
    assert_eq!(remote, manifest, "deterministic, whatever the output");

    // A docker-archive base is no reference: no `base.name`; its manifest
    // (in the archive's OCI index.json, as Docker 25 writes it) has a digest.
    let archive_base = dir.path().join("base.tar");
    let base_image = busybox_base(&dir.path().join("base2"));
    base_image.write_file(&archive_base).unwrap();
    let out = dir.path().join("from-archive-oci");
    let layout_out = format!("oci:{}:x", out.display());
    build(
        &home,
        &channel,
        &format!("docker-archive:{}", archive_base.display()),
        &["-o", &layout_out],
    );
    let annotations = skopeo_inspect(&layout_out, &["--raw"])["annotations"].clone();
    assert_eq!(
        annotations,
        serde_json::json!({
            "org.opencontainers.image.created": EPOCH.1,
            "org.opencontainers.image.base.digest": base_image.manifest_digest().to_string(),
        })
    );

    // A docker-archive cannot hand annotations to `docker load`: said once.
    let tar = dir.path().join("app.tar");
    let output = build(
        &home,
        &channel,
        &base,
        &strs(&with_users(&["-o", tar.to_str().unwrap()])),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings = stderr.matches("manifest.json has no annotations").count();
    assert_eq!(warnings, 1, "{stderr}");
    assert!(stderr.contains("oci-archive:PATH"), "{stderr}");
    let quiet = build(&home, &channel, &base, &["-o", tar.to_str().unwrap()]);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("annotations"),
        "no --annotation, no warning"
    );
}
