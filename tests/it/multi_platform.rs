//! `build --platform A --platform B`: one image per platform on the
//! matching image of a multi-platform base, as one OCI index (layout,
//! archive) or one pushed index; read back by skopeo, run by podman.

use std::collections::BTreeSet;

use conda_docker::ImageSource;
use conda_docker::platform::Platform;
use rattler_conda_types::Subdir;
use rattler_lock::{LockFile, PlatformData};
use serde_json::Value;

use crate::common::{
    self, CD_ARCH, CD_ARCH_ELF, CD_DATA, CondaChannel, Registry, THREE_ARCH_SUBDIRS, require_tools,
    skopeo_copy, skopeo_inspect, umoci_unpack,
};
use crate::fixtures::failure;
use crate::registry::{cd, json_of, platform_layout, two_platform_layout, uploads};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The image index `digest` (a JSON string) of the OCI layout `dir`.
fn layout_index(dir: &std::path::Path, digest: &Value) -> Value {
    let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The digests of every layer of each image of `build --json`'s output.
fn layer_digests(report: &Value) -> Vec<Vec<String>> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            image["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The digest of the layer holding `package` in each image.
fn package_layers(report: &Value, package: &str) -> Vec<String> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            let layers = image["layers"].as_array().unwrap();
            let layer = layers.iter().find(|l| {
                l["packages"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p.as_str().unwrap().starts_with(&format!("{package}-")))
                })
            });
            layer.unwrap_or_else(|| panic!("no layer of {package}: {image}"))["digest"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The text of `path` (below the image prefix) in the `subdir` image of
/// the index `source`.
fn file_in(source: &str, subdir: Subdir, path: &str) -> String {
    let platform = Platform::from_subdir(subdir).unwrap();
    let image = source
        .parse::<ImageSource>()
        .unwrap()
        .open_local(&platform)
        .unwrap();
    let wanted = format!("opt/conda/{path}");
    let files = image.read_files(&|p| p == wanted, 1 << 20).unwrap();
    String::from_utf8(files[0].bytes.clone()).unwrap()
}

#[test]
fn two_platforms_make_one_index_written_pushed_and_run() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let base = format!("oci:{}:multi", two_platform_layout(dir.path()).display());
    let home = dir.path().join("home");
    let build = |extra: &[&str]| {
        let mut cmd = cd(&home);
        cmd.args(["build", "-q", "--json", "--override-channels", "-c"])
            .arg(channel.url())
            .args(["--platform", "linux-64", "--platform", "linux-aarch64"])
            .args(["-b", &base, CD_ARCH])
            .args(extra);
        json_of(&common::run(&mut cmd))
    };
    let out = dir.path().join("out");
    let layout = format!("oci:{}:multi", out.display());
    let lock = dir.path().join("env.lock");
    let report = build(&["-o", &layout, "--lock-file", lock.to_str().unwrap()]);

    // skopeo sees an index of both platforms, and picks each.
    let raw = skopeo_inspect(&layout, &["--raw"]);
    assert_eq!(raw["mediaType"], INDEX, "{raw}");
    // The index was built on the base's index, each image on its
    // platform's manifest of it.
    let base_index = skopeo_inspect(&base, &[])["Digest"].clone();
    assert_eq!(raw["annotations"][BASE_DIGEST], base_index, "{raw}");
    let base_manifests = &layout_index(&dir.path().join("multi"), &base_index)["manifests"];
    for (i, entry) in raw["manifests"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            entry["annotations"][BASE_DIGEST], base_manifests[i]["digest"],
            "{i}: {entry}"
        );
    }
    let platforms: Vec<(String, String)> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            (p["os"].to_string(), p["architecture"].to_string())
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("\"linux\"".into(), "\"amd64\"".into()),
            ("\"linux\"".into(), "\"arm64\"".into())
        ]
    );
    let layers_of = |inspected: &Value| -> Vec<String> {
        inspected["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect()
    };
    let arm = skopeo_inspect(&layout, &["--override-arch", "arm64"]);
    assert_eq!(arm["Architecture"], "arm64");
    assert_eq!(layers_of(&arm), layer_digests(&report)[1]);
    let amd = skopeo_inspect(&layout, &["--override-arch", "amd64"]);
    assert_eq!(amd["Architecture"], "amd64");
    assert_eq!(layers_of(&amd), layer_digests(&report)[0]);

    // Each image holds its own platform's packages (their ELF files are
    // checked in three_platforms_hold_executables_of_their_own_architecture).
    assert_eq!(
        file_in(&layout, Subdir::LinuxAarch64, "share/cd-arch/platform.txt"),
        common::cd_arch_output("linux-aarch64")
    );
    assert_eq!(
        file_in(&layout, Subdir::Linux64, "share/cd-arch/platform.txt"),
        common::cd_arch_output("linux-64")
    );

    // The noarch package's layer is the same blob in both, stored once.
    let data = package_layers(&report, CD_DATA);
    assert_eq!(data[0], data[1], "one noarch layer for both platforms");
    let arch = package_layers(&report, CD_ARCH);
    assert_ne!(arch[0], arch[1]);
    let layers: Vec<String> = layer_digests(&report).concat();
    let unique: BTreeSet<&String> = layers.iter().collect();
    assert!(unique.len() < layers.len());
    let blobs = std::fs::read_dir(out.join("blobs/sha256")).unwrap().count();
    // Every distinct layer, two configs, two manifests and the index.
    assert_eq!(blobs, unique.len() + 5, "each blob once");

    // One lock file per platform.
    for subdir in ["linux-64", "linux-aarch64"] {
        let text = std::fs::read_to_string(dir.path().join(format!("env.{subdir}.lock"))).unwrap();
        assert!(text.contains(&format!("# platform: {subdir}")), "{text}");
        assert!(text.contains(&format!("/{subdir}/cd-arch-")), "{text}");
    }
    assert!(!lock.exists());
    // A platform's lock file builds that platform's image again.
    let mut again = cd(&home);
    again
        .args([
            "build",
            "-q",
            "--json",
            "--platform",
            "linux-aarch64",
            "--file",
        ])
        .arg(dir.path().join("env.linux-aarch64.lock"))
        .args(["-b", &base, "-o"])
        .arg(format!(
            "oci:{}:arm",
            dir.path().join("arm-again").display()
        ));
    let again = json_of(&common::run(&mut again));
    assert_eq!(again["manifest_digest"], raw["manifests"][1]["digest"]);

    // An oci-archive holds the same index.
    let archive = dir.path().join("multi.tar");
    let archived = build(&["-o", &format!("oci-archive:{}", archive.display())]);
    assert_eq!(archived["index_digest"], report["index_digest"]);
    let raw_archive = skopeo_inspect(&format!("oci-archive:{}", archive.display()), &["--raw"]);
    assert_eq!(raw_archive, raw);

    // Pushed: one tag holding the index; the shared blobs are sent once.
    let target = registry.image("multi/env:1");
    let pushed = build(&["--push", "-i", &target]);
    assert_eq!(pushed["index_digest"], report["index_digest"]);
    let sent = &pushed["pushed"];
    assert_eq!(sent["digest"], report["index_digest"], "{pushed}");
    let blobs_pushed = unique.len() + 2;
    assert_eq!(sent["uploaded"], blobs_pushed, "{pushed}");
    assert_eq!(
        sent["existing"],
        layers.len() + 2 - blobs_pushed,
        "{pushed}"
    );
    assert_eq!(
        uploads(&registry),
        blobs_pushed,
        "the registry saw each once"
    );
    let remote = registry.inspect("multi/env:1", &["--raw"]);
    assert_eq!(remote, raw, "the registry holds the same index");
    let remote_arm = registry.inspect("multi/env:1", &["--override-arch", "arm64"]);
    assert_eq!(remote_arm["Architecture"], "arm64");

    // A base pulled from a registry: the index names the registry's index.
    let mut all = registry.skopeo_dest_flags();
    all.push("--all".into());
    let pushed_base = registry.try_push(&base, "base/multi:1", &all);
    assert!(pushed_base.status.success(), "{pushed_base:?}");
    let from_registry = format!("oci:{}:multi", dir.path().join("from-registry").display());
    common::run(
        cd(&home)
            .args(["build", "-q", "--override-channels", "-c"])
            .arg(channel.url())
            .args(["--platform", "linux-64", "--platform", "linux-aarch64"])
            .args(["-b", &registry.image("base/multi:1"), CD_ARCH, "-o"])
            .arg(&from_registry),
    );
    let raw_from_registry = skopeo_inspect(&from_registry, &["--raw"]);
    assert_eq!(
        raw_from_registry["annotations"][BASE_DIGEST],
        registry.inspect("base/multi:1", &[])["Digest"]
    );

    let Some(podman) = common::Podman::new() else {
        return;
    };
    podman.pull(&target, &["--tls-verify=false"]);
    assert_eq!(
        podman.run(&target, &["cd-arch"]),
        common::cd_arch_output("linux-64")
    );
}

/// What `tool ARGS... FILE` prints.
fn says(tool: &str, args: &[&str], file: &std::path::Path) -> String {
    common::stdout(&common::run(
        std::process::Command::new(common::expect_tool(tool))
            .args(args)
            .arg(file),
    ))
}

/// `CD_ARCH_ELF` of the `arch` image of the index `layout` (`oci:DIR:TAG`),
/// picked by skopeo and unpacked by umoci into `dir`.
fn elf_of(layout: &str, arch: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let single = dir.join(format!("{arch}-oci"));
    skopeo_copy(
        layout,
        &format!("oci:{}:{arch}", single.display()),
        &["--override-arch", arch],
    );
    let bundle = dir.join(format!("{arch}-bundle"));
    umoci_unpack(&single, arch, &bundle);
    bundle.join("rootfs/opt/conda").join(CD_ARCH_ELF)
}

/// `readelf -h` and `file` on `elf` (unpacked from an image) say it is a
/// little-endian ELF64 executable of `machine` (readelf's word) and
/// `kind` (file's).
fn check_elf(elf: &std::path::Path, machine: &str, kind: &str) {
    let header = says("readelf", &["-h"], elf);
    let machine_line = format!("Machine:                           {machine}\n");
    assert!(header.contains(&machine_line), "{header}");
    assert!(
        header.contains("ELF64") && header.contains("little endian"),
        "{header}"
    );
    assert!(header.contains("EXEC (Executable file)"), "{header}");
    let said = says("file", &["-b"], elf);
    assert!(said.starts_with("ELF 64-bit LSB executable, "), "{said}");
    assert!(said.contains(kind), "{said}");
}

/// linux-64, linux-aarch64 and linux-ppc64le in one build, on a base of
/// the three: an index of three, each picked by skopeo; each image holds a
/// real executable of its architecture (the test channel writes a tiny
/// static ELF per platform by hand): podman runs the amd64 one, readelf
/// and file, run on the files unpacked from the arm64 and ppc64le images,
/// say AArch64 and PowerPC64 (little endian, ELFv2).
#[test]
fn three_platforms_hold_executables_of_their_own_architecture() {
    require_tools!("skopeo", "umoci", "busybox", "readelf", "file");
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_three_platform(&dir.path().join("channel"));
    let archs = [("amd64", None), ("arm64", Some("v8")), ("ppc64le", None)];
    let base = format!(
        "oci:{}:multi",
        platform_layout(dir.path(), &archs).display()
    );
    let layout = format!("oci:{}:multi", dir.path().join("out").display());
    let mut build = cd(&dir.path().join("home"));
    build
        .args(["build", "-q", "--override-channels", "-c"])
        .arg(channel.url());
    for subdir in THREE_ARCH_SUBDIRS {
        build.args(["--platform", subdir]);
    }
    common::run(build.args(["-b", &base, CD_ARCH, "-o", &layout]));

    let raw = skopeo_inspect(&layout, &["--raw"]);
    let listed: Vec<(&str, &str)> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let arch = m["platform"]["architecture"].as_str().unwrap();
            (arch, m["digest"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        listed.iter().map(|l| l.0).collect::<Vec<_>>(),
        archs.map(|a| a.0)
    );
    let ppc = skopeo_inspect(&layout, &["--override-arch", "ppc64le"]);
    assert_eq!(ppc["Architecture"], "ppc64le");
    let manifest = dir
        .path()
        .join("out/blobs/sha256")
        .join(listed[2].1.trim_start_matches("sha256:"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let layers: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    assert_eq!(
        ppc["Layers"].as_array().unwrap().iter().collect::<Vec<_>>(),
        layers,
        "the ppc64le manifest's layers"
    );
    assert_eq!(
        file_in(&layout, Subdir::LinuxPpc64le, "share/cd-arch/platform.txt"),
        common::cd_arch_output("linux-ppc64le")
    );

    check_elf(
        &elf_of(&layout, "arm64", dir.path()),
        "AArch64",
        "ARM aarch64",
    );
    let ppc = elf_of(&layout, "ppc64le", dir.path());
    check_elf(&ppc, "PowerPC64", "64-bit PowerPC");
    assert!(says("file", &["-b"], &ppc).contains("ELF V2 ABI"));
    check_elf(
        &elf_of(&layout, "amd64", dir.path()),
        "Advanced Micro Devices X86-64",
        "x86-64",
    );

    let Some(podman) = common::Podman::new() else {
        return;
    };
    // podman names an `oci:` image after its path: a docker-archive of
    // the amd64 image, picked from the index by skopeo, spares that.
    let tar = dir.path().join("amd64.tar");
    let archive = format!("docker-archive:{}:elf/amd64:1", tar.display());
    skopeo_copy(&layout, &archive, &["--override-arch", "amd64"]);
    let image = podman.load(&tar);
    let elf = format!("/opt/conda/{CD_ARCH_ELF}");
    assert_eq!(
        podman.run(&image, &[&elf]),
        common::cd_arch_output("linux-64")
    );
}

#[test]
fn several_platforms_refuse_a_docker_archive_and_an_installed_environment() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let two = ["--platform", "linux-64", "--platform", "linux-aarch64"];
    let tar = dir.path().join("out.tar");
    let err = failure(
        cd(&home)
            .args(["build", "-b", "scratch", "cd-arch"])
            .args(two)
            .arg("-o")
            .arg(&tar),
    );
    assert!(err.contains("docker-archive holds one platform"), "{err}");
    assert!(err.contains("oci:DIR"), "{err}");
    assert!(!tar.exists());

    let prefix = dir.path().join("env");
    std::fs::create_dir_all(prefix.join("conda-meta")).unwrap();
    let out = dir.path().join("oci");
    let layout = format!("oci:{}", out.display());
    let err = failure(
        cd(&home)
            .args(["build", "-b", "scratch", "-p"])
            .arg(&prefix)
            .args(two)
            .args(["-o", &layout]),
    );
    assert!(err.contains("is for one platform"), "{err}");
    assert!(err.contains(&prefix.display().to_string()), "{err}");
    assert!(!out.exists());

    let err = failure(
        cd(&home)
            .args(["build", "-b", "scratch", "cd-arch"])
            .args(["--platform", "linux-64", "--platform", "linux/amd64"])
            .args(["-o", &layout]),
    );
    assert!(err.contains("linux-64 is given twice"), "{err}");
    assert!(!out.exists());
}

/// A `pixi.lock` of the channel's `cd-arch` for linux-64 and linux-aarch64.
fn two_platform_pixi_lock(channel: &CondaChannel, path: &std::path::Path) {
    let subdirs = [Subdir::Linux64, Subdir::LinuxAarch64];
    let mut builder = LockFile::builder()
        .with_platforms(
            subdirs
                .iter()
                .map(|subdir| PlatformData {
                    name: subdir.into(),
                    subdir: *subdir,
                    virtual_packages: Vec::new(),
                })
                .collect(),
        )
        .unwrap()
        .with_channels("default", [channel.url()]);
    for subdir in subdirs {
        for record in channel.with_dependencies_in(subdir.as_str(), &[CD_ARCH]) {
            builder
                .add_conda_package("default", subdir.as_str(), record.into())
                .unwrap();
        }
    }
    builder.finish().to_path(path).unwrap();
}

#[test]
fn a_pixi_lock_of_two_platforms_makes_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let lock = dir.path().join("pixi.lock");
    two_platform_pixi_lock(&channel, &lock);
    let layout = format!("oci-archive:{}", dir.path().join("multi.tar").display());
    let mut build = cd(&dir.path().join("home"));
    build
        .args(["build", "-q", "--json", "-b", "scratch", "--file"])
        .arg(&lock)
        .args(["--platform", "linux-aarch64", "--platform", "linux-64"])
        .args(["-o", &layout]);
    let report = json_of(&common::run(&mut build));
    let images = report["images"].as_array().unwrap();
    assert_eq!(
        images[0]["platform"], "linux/arm64/v8",
        "in the order asked"
    );
    assert_eq!(images[1]["platform"], "linux/amd64");
    for subdir in [Subdir::Linux64, Subdir::LinuxAarch64] {
        assert_eq!(
            file_in(&layout, subdir, "share/cd-arch/platform.txt"),
            common::cd_arch_output(subdir.as_str())
        );
    }
}
