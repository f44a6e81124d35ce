//! SBOMs (issue 18): `build --sbom PATH` in SPDX 2.3 and CycloneDX 1.6,
//! each checked by its own independent tool from PyPI (`pyspdxtools`,
//! cyclonedx-python-lib's strict JSON schema validator), and the same
//! image giving the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use conda_docker::sbom::{BaseImage, Ecosystem, Inventory, Package, SbomFormat};
use serde_json::Value;

use crate::common::{self, CD_ARCH, CD_LEAF, CondaChannel, Registry, Venv, require_tools};
use crate::fixtures::{busybox_in_registry, conda_docker};

/// `SOURCE_DATE_EPOCH` of every build here, and its RFC 3339 form.
const EPOCH: (&str, &str) = ("1700000000", "2023-11-14T22:13:20Z");

/// Checks a CycloneDX file against the 1.6 schema, printing what is wrong.
const CDX_CHECK: &str = "import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if errors:
    print(errors)
    sys.exit(1)
";

/// The venv with both validators, built once.
fn validators() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    Venv {
        dir: "sbom-tools",
        requirements: &["spdx-tools", "cyclonedx-python-lib[json-validation]"],
        check: "import spdx_tools.spdx.parser.parse_anything, cyclonedx.validation.json",
    }
    .python(&PYTHON)
}

/// Fails unless the independent tool of `format` accepts `file`.
fn validate(python: &Path, format: SbomFormat, file: &Path) {
    let output = match format {
        SbomFormat::Spdx => common::run_unchecked(
            Command::new(python.with_file_name("pyspdxtools"))
                .arg("-i")
                .arg(file),
        ),
        SbomFormat::Cyclonedx => {
            common::run_unchecked(Command::new(python).args(["-c", CDX_CHECK]).arg(file))
        }
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{format:?} {}: {said}",
        file.display()
    );
    assert!(
        !said.to_lowercase().contains("invalid"),
        "{format:?} {}: {said}",
        file.display()
    );
}

/// `conda-docker build` of `cd-leaf` (and `cd-text`, its dependency) from
/// `channel` on `base`, isolated from the host, at [`EPOCH`].
fn build(home: &Path, channel: &CondaChannel, base: &str, args: &[&str]) -> std::process::Output {
    build_of(home, channel, base, args, CD_LEAF)
}

/// [`build`] of `package`.
fn build_of(
    home: &Path,
    channel: &CondaChannel,
    base: &str,
    args: &[&str],
    package: &str,
) -> std::process::Output {
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
        .arg(package);
    cmd.output().expect("run conda-docker")
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn builds_write_sboms_that_the_spdx_and_cyclonedx_tools_accept() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let (base, base_digest) = busybox_in_registry(dir.path(), &registry);
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let out = dir.path().join("app.tar");
    let (spdx, cdx) = (dir.path().join("app.spdx.json"), dir.path().join("app.cdx"));
    let args = |sbom: &Path, more: &[&str]| {
        let mut all = vec![
            "-o",
            out.to_str().unwrap(),
            "--sbom",
            sbom.to_str().unwrap(),
        ];
        all.extend_from_slice(more);
        build(&home, &channel, &base, &all)
    };
    for (file, more) in [
        (&spdx, &[][..]),
        (&cdx, &["--sbom-format", "cyclonedx"][..]),
    ] {
        let output = args(file, more);
        assert!(output.status.success(), "{output:?}");
    }

    let doc = json(&spdx);
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], EPOCH.1);
    let packages = doc["packages"].as_array().unwrap();
    let base_package = packages
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-BaseImage")
        .unwrap();
    assert_eq!(base_package["name"], base.as_str());
    assert_eq!(base_package["versionInfo"], base_digest);
    let leaf = packages.iter().find(|p| p["name"] == "cd-leaf").unwrap();
    let record = channel.record("cd-leaf");
    let purl = leaf["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(
        purl.starts_with(&format!(
            "pkg:conda/cd-leaf@{}?build={}&channel=file%3A%2F%2F%2F",
            record.package_record.version, record.package_record.build
        )),
        "{purl}"
    );
    assert!(
        purl.ends_with("&subdir=linux-64&type=conda") || purl.ends_with("&type=tar.bz2"),
        "{purl}"
    );
    assert_eq!(leaf["licenseDeclared"], "BSD-3-Clause");
    let checksums: Vec<&str> = leaf["checksums"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["checksumValue"].as_str().unwrap())
        .collect();
    assert_eq!(
        checksums,
        [
            CondaChannel::sha256_of(record),
            CondaChannel::md5_of(record)
        ]
    );
    let depends_on: Vec<(&str, &str)> = doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "DEPENDS_ON")
        .map(|r| {
            (
                r["spdxElementId"].as_str().unwrap(),
                r["relatedSpdxElement"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        depends_on.contains(&("SPDXRef-conda-cd-leaf", "SPDXRef-conda-cd-text")),
        "{depends_on:?}"
    );

    let bom = json(&cdx);
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["metadata"]["timestamp"], EPOCH.1);
    let components = bom["components"].as_array().unwrap();
    let leaf = components.iter().find(|c| c["name"] == "cd-leaf").unwrap();
    assert_eq!(leaf["purl"], purl);
    assert_eq!(leaf["licenses"][0]["expression"], "BSD-3-Clause");
    let leaf_deps = bom["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ref"] == purl)
        .unwrap();
    assert!(
        leaf_deps["dependsOn"][0]
            .as_str()
            .unwrap()
            .starts_with("pkg:conda/cd-text@"),
        "{leaf_deps}"
    );

    // The same image, built again (from the layer cache): the same bytes.
    let again = dir.path().join("again.spdx.json");
    assert!(args(&again, &[]).status.success());
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&spdx).unwrap()
    );
    let again = dir.path().join("again.cdx.json");
    assert!(args(&again, &[]).status.success());
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&cdx).unwrap());

    let Some(python) = validators() else {
        return;
    };
    validate(&python, SbomFormat::Spdx, &spdx);
    validate(&python, SbomFormat::Cyclonedx, &cdx);
}

/// A name that says no format, or a folder that is not there: one line
/// naming the fix, non-zero, and no image written.
#[test]
fn sbom_paths_that_cannot_be_written_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let out = dir.path().join("app.tar");
    let output = build(
        &home,
        &channel,
        "scratch",
        &["-o", out.to_str().unwrap(), "--sbom", "sbom.json"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--sbom sbom.json") && stderr.contains(".spdx.json"),
        "{stderr}"
    );
    assert!(!out.exists(), "refused before any work");

    let missing = dir.path().join("no/such/dir/app.spdx.json");
    let output = build(
        &home,
        &channel,
        "scratch",
        &[
            "-o",
            out.to_str().unwrap(),
            "--sbom",
            missing.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot write the SBOM"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// What builds in the tests' channel cannot show: a PyPI wheel, a conda
/// license string that is no SPDX expression, a base read from a file;
/// both tools accept the documents.
#[test]
fn license_refs_and_wheels_pass_both_validators() {
    let package = |ecosystem, name: &str, license: Option<&str>| Package {
        ecosystem,
        name: name.into(),
        version: "1.0".into(),
        build: if ecosystem == Ecosystem::Conda {
            "h0_0".into()
        } else {
            String::new()
        },
        url: Some(format!("https://example.com/{name}-1.0.whl")),
        sha256: Some("ab".repeat(32)),
        md5: (ecosystem == Ecosystem::Conda).then(|| "cd".repeat(16)),
        license: license.map(Into::into),
        depends: if name == "app" {
            vec!["zlib".into()]
        } else {
            Vec::new()
        },
        purl: format!(
            "pkg:{}/{name}@1.0",
            if ecosystem == Ecosystem::Conda {
                "conda"
            } else {
                "pypi"
            }
        ),
    };
    let inventory = Inventory {
        name: "example.com/app:1".into(),
        created: EPOCH.1.into(),
        base: Some(BaseImage {
            reference: None,
            digest: Some(format!("sha256:{}", "ef".repeat(32))),
        }),
        packages: vec![
            package(Ecosystem::Conda, "app", Some("BSD 3-Clause")),
            package(Ecosystem::Conda, "zlib", Some("Zlib")),
            package(Ecosystem::Pypi, "requests", None),
        ],
    };
    let spdx = inventory.render(SbomFormat::Spdx);
    let doc: Value = serde_json::from_slice(&spdx).unwrap();
    let app = &doc["packages"].as_array().unwrap()[2];
    assert_eq!(app["licenseDeclared"], "LicenseRef-BSD-3-Clause");
    assert_eq!(
        doc["hasExtractedLicensingInfos"][0]["extractedText"],
        "BSD 3-Clause"
    );
    let cdx = inventory.render(SbomFormat::Cyclonedx);
    let bom: Value = serde_json::from_slice(&cdx).unwrap();
    assert_eq!(
        bom["components"][1]["licenses"][0]["license"]["name"],
        "BSD 3-Clause"
    );
    let Some(python) = validators() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (format, bytes) in [(SbomFormat::Spdx, &spdx), (SbomFormat::Cyclonedx, &cdx)] {
        let file = dir.path().join(format.file_name());
        std::fs::write(&file, bytes).unwrap();
        validate(&python, format, &file);
    }
}

/// Inside the image: both formats under `PREFIX/conda-meta/sbom/` (a
/// folder, so conda and our `packages` read no SBOM as a package record),
/// the same bytes as `--sbom` writes, unpacked by umoci.
#[test]
fn images_hold_both_sboms_under_conda_meta_sbom() {
    require_tools!("umoci");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let layout = dir.path().join("app-oci");
    let to_layout = format!("oci:{}:app", layout.display());
    let written = dir.path().join("app.cdx.json");
    let output = build(
        &home,
        &channel,
        "scratch",
        &["-o", &to_layout, "--sbom", written.to_str().unwrap()],
    );
    assert!(output.status.success(), "{output:?}");
    let bundle = dir.path().join("bundle");
    common::umoci_unpack(&layout, "app", &bundle);
    let sbom_dir = bundle.join("rootfs/opt/conda/conda-meta/sbom");
    let mut names: Vec<String> = std::fs::read_dir(&sbom_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["sbom.cdx.json", "sbom.spdx.json"]);
    assert_eq!(
        std::fs::read(sbom_dir.join("sbom.cdx.json")).unwrap(),
        std::fs::read(&written).unwrap()
    );
    let spdx: Value = json(&sbom_dir.join("sbom.spdx.json"));
    assert_eq!(spdx["packages"].as_array().unwrap().len(), 1 + 2, "{spdx}");

    let listed = common::run(conda_docker().args(["packages", "--json", &to_layout]));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let text = listed.to_string();
    assert!(
        text.contains("cd-leaf") && text.contains("cd-text"),
        "{text}"
    );
    assert!(!text.contains("sbom"), "no SBOM read as a record: {text}");
}

/// The manifest `reference` of `repo` on `host`, by plain HTTP, as OCI.
fn manifest(host: &str, repo: &str, reference: &str) -> Value {
    let accept =
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
    let answer = common::http_request(
        host,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", accept)],
        b"",
    );
    assert_eq!(answer.status, 200, "{repo}:{reference}: {}", answer.text());
    answer.json()
}

/// The manifest digest of `app/env:1` on `host`, as the registry says.
fn subject_digest(host: &str) -> String {
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let answer = common::http_request(
        host,
        "HEAD",
        "/v2/app/env/manifests/1",
        &[("Accept", accept)],
        b"",
    );
    answer.header("docker-content-digest").unwrap().to_owned()
}

/// Checks the pushed SBOM artifact `digest` of `app/env`: its subject is
/// the image manifest `subject`, and its one blob is the SBOM the image
/// holds in `sboms`.
fn check_artifact(host: &str, digest: &str, subject: &str, sboms: &Path) -> String {
    check_artifact_in(host, "app/env", (digest, subject), &|title| {
        sboms.join(title)
    })
}

/// Checks the SBOM artifact `digest` of `repo`: its subject is the image
/// manifest `subject`, and its one blob has the bytes of the file
/// `expected` names for its title (`sbom.spdx.json`). Its artifact type.
fn check_artifact_in(
    host: &str,
    repo: &str,
    (digest, subject): (&str, &str),
    expected: &dyn Fn(&str) -> PathBuf,
) -> String {
    let artifact = manifest(host, repo, digest);
    assert_eq!(artifact["subject"]["digest"], subject, "{artifact}");
    let kind = artifact["artifactType"].as_str().unwrap().to_owned();
    let layer = &artifact["layers"][0];
    assert_eq!(layer["mediaType"], kind.as_str());
    let title = layer["annotations"]["org.opencontainers.image.title"]
        .as_str()
        .unwrap();
    let blob = common::http_request(
        host,
        "GET",
        &format!("/v2/{repo}/blobs/{}", layer["digest"].as_str().unwrap()),
        &[],
        b"",
    );
    assert_eq!(
        blob.body,
        std::fs::read(expected(title)).unwrap(),
        "{title}"
    );
    kind
}

/// `--push --attach-sbom` to the loopback registry, which has no referrers
/// API: both SBOMs are artifacts whose subject is the image, listed in
/// the index under the `sha256-<hex>` tag (read back by skopeo and plain
/// HTTP); pushing the same image again lists each once.
#[test]
fn pushed_images_carry_their_sboms_under_the_referrers_tag() {
    require_tools!("docker-registry", "skopeo", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let target = registry.image("app/env:1");
    let layout = dir.path().join("app-oci");
    let to_layout = format!("oci:{}:app", layout.display());
    for _ in 0..2 {
        let output = build(
            &home,
            &channel,
            "scratch",
            &["--push", "-i", &target, "--attach-sbom", "-o", &to_layout],
        );
        assert!(output.status.success(), "{output:?}");
    }
    let bundle = dir.path().join("bundle");
    common::umoci_unpack(&layout, "app", &bundle);
    let sboms = bundle.join("rootfs/opt/conda/conda-meta/sbom");
    let subject = registry.inspect("app/env:1", &[])["Digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
    let index = registry.inspect(&format!("app/env:{tag}"), &["--raw"]);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "each SBOM once: {index}");
    let mut kinds: Vec<String> = listed
        .iter()
        .map(|m| {
            check_artifact(
                registry.host(),
                m["digest"].as_str().unwrap(),
                &subject,
                &sboms,
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["application/spdx+json", "application/vnd.cyclonedx+json"]
    );
    for m in listed {
        assert_eq!(
            m["artifactType"],
            manifest(registry.host(), "app/env", m["digest"].as_str().unwrap())["artifactType"]
        );
    }

    let output = build(
        &home,
        &channel,
        "scratch",
        &["-o", &to_layout, "--attach-sbom"],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("add --push"),
        "{output:?}"
    );
}

/// A registry with the referrers API (the loopback registry behind a
/// stand-in that answers `GET /v2/<repo>/referrers/<digest>` with an
/// index): the artifacts are pushed with their subject, and no
/// `sha256-<hex>` tag is written.
#[test]
fn registries_with_the_referrers_api_list_sboms_themselves() {
    require_tools!("docker-registry", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let proxy = referrers_api(&registry);
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let layout = dir.path().join("app-oci");
    let to_layout = format!("oci:{}:app", layout.display());
    let target = format!("{}/app/env:1", proxy.host());
    let output = build(
        &home,
        &channel,
        "scratch",
        &["--push", "-i", &target, "--attach-sbom", "-o", &to_layout],
    );
    assert!(output.status.success(), "{output:?}");
    let bundle = dir.path().join("bundle");
    common::umoci_unpack(&layout, "app", &bundle);
    let sboms = bundle.join("rootfs/opt/conda/conda-meta/sbom");
    let subject = subject_digest(registry.host());
    let seen = proxy.seen();
    let asked: Vec<&str> = seen
        .iter()
        .filter(|s| s.path.contains("/referrers/"))
        .map(|s| s.path.as_str())
        .collect();
    assert!(!asked.is_empty(), "the referrers API was asked");
    let artifacts: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "PUT" && s.path.starts_with("/v2/app/env/manifests/sha256:"))
        .map(|s| s.path.trim_start_matches("/v2/app/env/manifests/"))
        .collect();
    assert_eq!(artifacts.len(), 2, "{seen:?}");
    for digest in artifacts {
        let kind = check_artifact(registry.host(), digest, &subject, &sboms);
        assert!(kind.contains("json"), "{kind}");
    }
    let tags =
        common::http_request(registry.host(), "GET", "/v2/app/env/tags/list", &[], b"").json();
    assert_eq!(
        tags["tags"],
        serde_json::json!(["1"]),
        "no fallback tag: {tags}"
    );
}

/// The platforms of the builds of several below, as `--platform` flags.
const TWO_PLATFORMS: [&str; 4] = ["--platform", "linux-64", "--platform", "linux-aarch64"];

/// Each platform's manifest digest in the index `REPO:1` on `registry`,
/// with its subdir, as skopeo reads the index.
fn platform_manifests(registry: &Registry, repo: &str) -> Vec<(String, &'static str)> {
    let index = registry.inspect(&format!("{repo}:1"), &["--raw"]);
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let subdir = match m["platform"]["architecture"].as_str().unwrap() {
                "amd64" => "linux-64",
                "arm64" => "linux-aarch64",
                other => panic!("{other} in {index}"),
            };
            (m["digest"].as_str().unwrap().to_owned(), subdir)
        })
        .collect()
}

/// `--push --attach-sbom --sbom` with two platforms, to the loopback
/// registry (no referrers API): each platform's manifest gets its own two
/// artifacts under its own `sha256-<hex>` tag (read back by skopeo), the
/// index none; `--sbom` writes one file per platform, which the tools
/// accept and which a second build writes again byte for byte.
#[test]
fn several_platforms_get_their_sboms_each_on_its_own_manifest() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let target = registry.image("multi/env:1");
    let layout = format!("oci:{}:multi", dir.path().join("multi-oci").display());
    for sbom in ["app.spdx.json", "app.cdx.json", "again.spdx.json"] {
        let sbom = dir.path().join(sbom);
        let mut args = vec!["--sbom", sbom.to_str().unwrap(), "-o", &layout];
        args.extend(TWO_PLATFORMS);
        args.extend(["--push", "-i", &target, "--attach-sbom"]);
        let output = build_of(&home, &channel, "scratch", &args, CD_ARCH);
        assert!(output.status.success(), "{output:?}");
        assert!(!sbom.exists(), "one file per platform, none for the index");
    }
    let file = |stem: &str, subdir: &str, title: &str| {
        dir.path()
            .join(title.replace("sbom.", &format!("{stem}.{subdir}.")))
    };
    let manifests = platform_manifests(&registry, "multi/env");
    assert_eq!(manifests.len(), 2);
    for (subject, subdir) in &manifests {
        let tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
        let listed = registry.inspect(&format!("multi/env:{tag}"), &["--raw"]);
        let listed = listed["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 2, "each SBOM once, pushed thrice: {listed:?}");
        let mut kinds: Vec<String> = listed
            .iter()
            .map(|m| {
                let digest = m["digest"].as_str().unwrap();
                let expected = |title: &str| file("app", subdir, title);
                check_artifact_in(registry.host(), "multi/env", (digest, subject), &expected)
            })
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            ["application/spdx+json", "application/vnd.cyclonedx+json"]
        );
        let spdx = json(&file("app", subdir, "sbom.spdx.json"));
        let arch = spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == CD_ARCH)
            .unwrap()
            .to_string();
        assert!(arch.contains(&format!("subdir={subdir}")), "{arch}");
        assert_eq!(
            std::fs::read(file("again", subdir, "sbom.spdx.json")).unwrap(),
            std::fs::read(file("app", subdir, "sbom.spdx.json")).unwrap()
        );
    }
    let index_digest = registry.inspect("multi/env:1", &[])["Digest"].clone();
    let tags =
        common::http_request(registry.host(), "GET", "/v2/multi/env/tags/list", &[], b"").json();
    assert_eq!(tags["tags"].as_array().unwrap().len(), 1 + 2, "{tags}");
    assert!(
        !tags
            .to_string()
            .contains(index_digest.as_str().unwrap().trim_start_matches("sha256:"))
    );

    let Some(python) = validators() else {
        return;
    };
    for (_, subdir) in &manifests {
        validate(
            &python,
            SbomFormat::Spdx,
            &file("app", subdir, "sbom.spdx.json"),
        );
        validate(
            &python,
            SbomFormat::Cyclonedx,
            &file("app", subdir, "sbom.cdx.json"),
        );
    }
}

/// The stand-in of a registry with the referrers API in front of
/// `registry`: it answers `GET /v2/<repo>/referrers/<digest>` with an
/// empty index and forwards the rest.
fn referrers_api(registry: &Registry) -> common::RecordingProxy {
    let upstream = registry.host().to_owned();
    common::RecordingProxy::start(move |method, path| {
        if method == "GET" && path.contains("/referrers/") {
            common::Route::Json(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
                    .into(),
            )
        } else {
            common::Route::Forward {
                upstream: upstream.clone(),
                authorization: None,
                location_host: None,
            }
        }
    })
}

/// Two platforms pushed through a registry with the referrers API: two
/// artifacts per platform manifest, each with that manifest as subject,
/// the API asked about each manifest, and no `sha256-<hex>` tag.
#[test]
fn the_referrers_api_gets_the_sboms_of_each_platform_manifest() {
    require_tools!("docker-registry", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let proxy = referrers_api(&registry);
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let home = dir.path().join("home");
    let target = format!("{}/multi/api:1", proxy.host());
    let sbom = dir.path().join("app.spdx.json");
    let mut args = vec!["--push", "-i", &target, "--attach-sbom"];
    args.extend(["--sbom", sbom.to_str().unwrap()]);
    args.extend(TWO_PLATFORMS);
    let output = build_of(&home, &channel, "scratch", &args, CD_ARCH);
    assert!(output.status.success(), "{output:?}");
    let manifests = platform_manifests(&registry, "multi/api");
    let seen = proxy.seen();
    let mut subjects: Vec<String> = seen
        .iter()
        .filter(|s| s.method == "PUT" && s.path.starts_with("/v2/multi/api/manifests/sha256:"))
        .map(|s| s.path.trim_start_matches("/v2/multi/api/manifests/"))
        .filter_map(|digest| {
            let put = manifest(registry.host(), "multi/api", digest);
            put["subject"]["digest"].as_str().map(str::to_owned)
        })
        .collect();
    subjects.sort();
    let mut expected: Vec<String> = manifests
        .iter()
        .flat_map(|(digest, _)| [digest.clone(), digest.clone()])
        .collect();
    expected.sort();
    assert_eq!(subjects, expected, "two artifacts per platform manifest");
    for (digest, subdir) in &manifests {
        assert!(
            seen.iter()
                .any(|s| s.path == format!("/v2/multi/api/referrers/{digest}")),
            "the API asked about {subdir}'s manifest: {seen:?}"
        );
    }
    let tags =
        common::http_request(registry.host(), "GET", "/v2/multi/api/tags/list", &[], b"").json();
    assert_eq!(
        tags["tags"],
        serde_json::json!(["1"]),
        "no fallback tag: {tags}"
    );
    for subdir in ["linux-64", "linux-aarch64"] {
        assert!(dir.path().join(format!("app.{subdir}.spdx.json")).exists());
    }
}
