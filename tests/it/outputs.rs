//! `build -o` and `pull -o` take the same transports as `copy`
//! (`docker-archive:`, `oci:DIR[:TAG]`, `oci-archive:`, `docker://REF`),
//! with `--format` for a plain path; each output is read back by skopeo.

use std::path::Path;
use std::process::Command;

use crate::common::{
    self, CacheLayout, CondaChannel, CondaEnv, Registry, install_env, require_tools,
};
use crate::fixtures::{conda_docker, failure};

/// `conda-docker build -q -p ENV ARGS` with caches in `dir`, on
/// `scratch` unless `ARGS` name a base.
fn build(dir: &Path, env: &Path, args: &[&str]) -> Command {
    let mut cmd = conda_docker();
    cmd.current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", dir.join("cache"))
        .env("CONDA_PKGS_DIRS", dir.join("pkgs"))
        .args(["build", "-q", "-p"])
        .arg(env)
        .args(args);
    if !args.contains(&"-b") {
        cmd.args(["-b", "scratch"]);
    }
    cmd
}

/// `cd-leaf` (and `cd-text`) installed from the fixture channel under `dir`.
fn leaf_env(dir: &Path) -> CondaEnv {
    let channel = CondaChannel::build_without_binary(&dir.join("channel"));
    install_env(&channel, &["cd-leaf"], CacheLayout::Conda, dir)
}

#[test]
fn build_writes_every_transport_and_plain_paths_by_format() {
    require_tools!("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let env = leaf_env(dir.path());
    let d = dir.path();
    let digest = |reference: &str| {
        common::skopeo_inspect(reference, &[])["Digest"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (output, reference) in [
        ("oci:layout:v1", "oci:layout:v1"),
        ("oci-archive:image.oci.tar", "oci-archive:image.oci.tar"),
        ("docker-archive:image.tar", "docker-archive:image.tar"),
        ("plain.tar", "docker-archive:plain.tar"),
    ] {
        common::run(&mut build(d, &env.prefix, &["-o", output]));
        let reference = reference.replacen(':', &format!(":{}/", d.display()), 1);
        // skopeo reads it as the transport says: `oci:DIR:TAG` is a layout.
        assert!(!digest(&reference).is_empty(), "{output}");
    }
    assert!(d.join("layout/index.json").is_file(), "oci: is a directory");
    common::run(&mut build(
        d,
        &env.prefix,
        &["-o", "plain-layout", "--format", "oci"],
    ));
    assert!(d.join("plain-layout/index.json").is_file());

    // Mistakes are one line before any work.
    let line = failure(&mut build(
        d,
        &env.prefix,
        &["-o", "oci:x", "--format", "oci"],
    ));
    assert!(
        line.contains("-o oci:x names its own format; leave out --format"),
        "{line}"
    );
    let line = failure(&mut build(d, &env.prefix, &["-o", "nodir/x.tar"]));
    assert!(
        line.contains("cannot write nodir/x.tar: the folder nodir does not exist"),
        "{line}"
    );
    let line = failure(&mut build(d, &env.prefix, &["-o", "oci:nodir/layout"]));
    assert!(line.contains("the folder nodir does not exist"), "{line}");
    let output = common::run_unchecked(
        conda_docker()
            .arg("copy")
            .arg(format!("docker-archive:{}", d.join("image.tar").display()))
            .arg("bogus:x"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("expected `docker://REF`, `docker-archive:PATH`"),
        "{stderr}"
    );
}

#[test]
fn build_pushes_to_a_docker_reference_given_as_output() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let env = leaf_env(dir.path());
    let target = registry.reference("app/env:1");
    let summary: serde_json::Value = serde_json::from_slice(
        &common::run(&mut build(
            dir.path(),
            &env.prefix,
            &["--json", "-o", &target],
        ))
        .stdout,
    )
    .unwrap();
    let pushed = summary["pushed"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        registry.inspect("app/env:1", &[])["Digest"],
        pushed.as_str()
    );

    let line = failure(&mut build(
        dir.path(),
        &env.prefix,
        &["-o", &target, "--push"],
    ));
    assert!(line.contains("-o docker://REF pushes already"), "{line}");
}

#[test]
fn one_manifest_digest_for_build_inspect_copy_and_push() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let env = leaf_env(dir.path());
    let d = dir.path();
    let json = |cmd: &mut Command| -> serde_json::Value {
        serde_json::from_slice(&common::run(cmd).stdout).unwrap()
    };
    let name = registry.image("pushed:1");
    let built = json(&mut build(
        d,
        &env.prefix,
        &["--json", "-i", &name, "-o", "image.tar"],
    ));
    let digest = built["manifest_digest"].as_str().unwrap().to_owned();
    let archive = format!("docker-archive:{}", d.join("image.tar").display());
    let inspected = json(conda_docker().args(["inspect", &archive]));
    assert_eq!(inspected["manifest_digest"], digest.as_str());
    // The archive is an OCI layout too (as Docker 25's are): skopeo reads
    // the very manifest from it.
    let oci = format!("oci-archive:{}", d.join("image.tar").display());
    assert_eq!(common::skopeo_inspect(&oci, &[])["Digest"], digest.as_str());
    // Copied to a registry, and pushed straight from a build: the same.
    common::run(conda_docker().args(["copy", &archive, &registry.reference("copied:1")]));
    assert_eq!(registry.inspect("copied:1", &[])["Digest"], digest.as_str());
    let pushed = json(&mut build(
        d,
        &env.prefix,
        &["--json", "--push", "-i", &name],
    ));
    assert_eq!(pushed["pushed"]["digest"], digest.as_str());
}

#[test]
fn plain_tar_base_layers_are_compressed_on_request() {
    require_tools!("skopeo", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A base whose layer is a plain tar, as `docker save` writes them.
    let mut base = conda_docker::Image::scratch().unwrap();
    base.set_compression(conda_docker::layer::Compression::None);
    let text = "plain base layer\n".repeat(20_000);
    base.add_layer_contents([("etc/big.txt", text.as_bytes())])
        .unwrap();
    let base_tar = d.join("plain.tar");
    base.write_file(&base_tar).unwrap();
    let base_ref = format!("docker-archive:{}", base_tar.display());
    let env = leaf_env(d);
    let layers = |layout: &str| -> Vec<serde_json::Value> {
        let raw = common::skopeo_inspect(&format!("oci:{}", d.join(layout).display()), &["--raw"]);
        raw["layers"].as_array().unwrap().clone()
    };
    let mut plain = build(
        d,
        &env.prefix,
        &["-b", &base_ref, "-o", "oci:kept", "--json"],
    );
    let kept: serde_json::Value = serde_json::from_slice(&common::run(&mut plain).stdout).unwrap();
    let mut squeezed = build(
        d,
        &env.prefix,
        &[
            "-b",
            &base_ref,
            "-o",
            "oci:squeezed:latest",
            "--json",
            "--compress-base",
        ],
    );
    let small: serde_json::Value =
        serde_json::from_slice(&common::run(&mut squeezed).stdout).unwrap();
    assert_eq!(
        kept["id"], small["id"],
        "the diff ids, so the image id, stay"
    );
    let (kept_layers, small_layers) = (layers("kept"), layers("squeezed"));
    assert_eq!(
        kept_layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(
        small_layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert!(small_layers[0]["size"].as_u64() < kept_layers[0]["size"].as_u64());
    assert_eq!(
        kept_layers[1..],
        small_layers[1..],
        "the environment's layers are as they were"
    );
    // An independent reader unpacks it, checking every digest.
    common::umoci_unpack(&d.join("squeezed"), "latest", &d.join("bundle"));
    assert!(d.join("bundle/rootfs/etc/big.txt").is_file());

    // `copy --compress-layers` does the same to any image.
    common::run(conda_docker().args([
        "copy",
        "--compress-layers",
        &base_ref,
        &format!("oci:{}:c", d.join("copied").display()),
    ]));
    let raw = common::skopeo_inspect(&format!("oci:{}:c", d.join("copied").display()), &["--raw"]);
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}
