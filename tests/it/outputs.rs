//! `build -o` and `pull -o` take the same transports as `copy`
//! (`docker-archive:`, `oci:DIR[:TAG]`, `oci-archive:`, `docker://REF`),
//! with `--format` for a plain path; each output is read back by skopeo.

use std::path::Path;
use std::process::Command;

use crate::common::{self, CacheLayout, CondaChannel, Registry, install_env, require_tools};
use crate::fixtures::{conda_docker, failure};

/// `conda-docker build -q -p ENV -b scratch ARGS` with caches in `dir`.
fn build(dir: &Path, env: &Path, args: &[&str]) -> Command {
    let mut cmd = conda_docker();
    cmd.current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", dir.join("cache"))
        .env("CONDA_PKGS_DIRS", dir.join("pkgs"))
        .args(["build", "-q", "-p"])
        .arg(env)
        .args(["-b", "scratch"])
        .args(args);
    cmd
}

#[test]
fn build_writes_every_transport_and_plain_paths_by_format() {
    require_tools!("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, dir.path());
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
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, dir.path());
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
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, dir.path());
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
