//! Hostile base images and input files (issue 17, "Hostile inputs"): layer
//! entries that climb out, absolute paths, links pointing out, device
//! files, loops, huge or malformed headers; archives whose `manifest.json`
//! names paths outside the archive, deeply nested or mistyped JSON, bad
//! digests; environment and lock files of the wrong types.
//!
//! Each command either works or stops with one line naming the input
//! (exit 1, never 101); nothing is written outside the paths asked for;
//! and memory stays bounded: every run has an 8 GiB address-space limit
//! (`prlimit --as`), so an input claiming 10 GiB cannot be allocated.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::{self, CondaChannel, sha256_hex};
use crate::security_images::{cd, config_json, docker_archive, fails};

/// The address space a run may use: far above what these inputs need,
/// far below what their claimed sizes would take.
const ADDRESS_SPACE: &str = "--as=8589934592";

/// A tar header for `name` (raw bytes, unchecked: the point is to write
/// what the `tar` crate refuses) of entry type `kind`, declaring `size`.
fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let old = header.as_old_mut();
    old.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    old.linkname[..link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_size(size);
    header.set_mode(0o755);
    header.set_cksum();
    header
}

/// A layer of raw entries: `(header, body)`, the body padded to 512.
fn layer(entries: Vec<(tar::Header, Vec<u8>)>) -> Vec<u8> {
    let mut tar = Vec::new();
    for (header, mut body) in entries {
        tar.extend_from_slice(header.as_bytes());
        body.resize(body.len().div_ceil(512) * 512, 0);
        tar.extend(body);
    }
    tar.extend([0; 1024]);
    tar
}

fn file(name: &str, body: &[u8]) -> (tar::Header, Vec<u8>) {
    (
        header(name.as_bytes(), b'0', body.len() as u64, b""),
        body.to_vec(),
    )
}

fn link(name: &str, kind: u8, target: &str) -> (tar::Header, Vec<u8>) {
    (
        header(name.as_bytes(), kind, 0, target.as_bytes()),
        Vec::new(),
    )
}

/// A GNU long-name entry claiming `claimed` bytes of name, then `entry`.
fn long_name(claimed: u64, name: &[u8]) -> (tar::Header, Vec<u8>) {
    (header(b"././@LongLink", b'L', claimed, b""), name.to_vec())
}

/// The hostile layers, by what they try. `outside` is an absolute
/// directory that must stay empty.
fn hostile_layers(outside: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let abs = format!("{}/escaped-abs", outside.display());
    let mut bad_checksum = header(b"etc/hostname", b'0', 4, b"");
    bad_checksum.as_old_mut().cksum = *b"0000000\0";
    let device = |name: &str, kind: u8| {
        let mut h = header(name.as_bytes(), kind, 0, b"");
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        (h, Vec::new())
    };
    vec![
        (
            "dot-dot paths",
            layer(vec![
                file("../../../../escaped-dotdot", b"x"),
                file("etc/../../../escaped-mid", b"x"),
            ]),
        ),
        ("absolute paths", layer(vec![file(&abs, b"x")])),
        (
            "symlinks pointing out",
            layer(vec![
                link("lib64", b'2', "/"),
                link("lib", b'2', "../../../../../../.."),
                link("opt/conda/conda-meta", b'2', &outside.display().to_string()),
                file("lib64/escaped-through-link", b"x"),
            ]),
        ),
        (
            "hard links to outside",
            layer(vec![
                link("etc/shadow-link", b'1', "../../../../etc/shadow"),
                link("etc/abs-link", b'1', "/etc/passwd"),
                link("etc/self-link", b'1', "etc/self-link"),
            ]),
        ),
        (
            "device files and fifos",
            layer(vec![
                device("dev/mem-again", b'3'),
                device("dev/sda-again", b'4'),
                device("run/fifo", b'6'),
            ]),
        ),
        (
            "symlink loops",
            layer(vec![
                link("a", b'2', "b"),
                link("b", b'2', "a"),
                link("lib64", b'2', "lib64"),
                link("lib", b'2', "a/lib"),
            ]),
        ),
        (
            "a file claiming 10 GiB",
            layer(vec![(
                header(b"opt/conda/conda-meta/big.json", b'0', 10 << 30, b""),
                vec![b'{'; 4096],
            )]),
        ),
        (
            "a bad checksum",
            layer(vec![(bad_checksum, b"box\n".to_vec())]),
        ),
        (
            "a long name claiming 8 GiB",
            layer(vec![long_name(8 << 30, &[b'a'; 4096])]),
        ),
        (
            "a 1 MiB long name",
            layer(vec![
                long_name(1 << 20, &vec![b'n'; 1 << 20]),
                file("x", b"x"),
            ]),
        ),
        (
            "random bytes",
            (0..100_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
                .collect(),
        ),
    ]
}

/// Runs `cmd` under the address-space limit and returns (exit code, stderr).
fn run_bounded(cmd: &Command) -> (Option<i32>, String) {
    let mut bounded = Command::new("prlimit");
    bounded.arg(ADDRESS_SPACE).arg("--").arg(cmd.get_program());
    bounded.args(cmd.get_args());
    bounded.env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            bounded.env(key, value);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        bounded.current_dir(dir);
    }
    let output = common::run_unchecked(&mut bounded);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Either success, or one `error:` line that names `input`.
fn works_or_one_line(what: &str, (code, stderr): (Option<i32>, String), input: &Path) {
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    match code {
        Some(0) => {}
        Some(1) => {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('[')).collect();
            assert_eq!(lines.len(), 1, "{what}: one error line expected: {stderr}");
            assert!(lines[0].starts_with("error: "), "{what}: {stderr}");
            let name = input.file_name().unwrap().to_string_lossy();
            assert!(
                lines[0].contains(&*name),
                "{what}: the error names {name}: {stderr}"
            );
        }
        other => panic!("{what}: exit {other:?}: {stderr}"),
    }
}

/// Every path under `dir` (not following symlinks).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
            paths.push(entry.path());
        }
    }
    paths
}

/// A build from specs on each hostile base (it scans the base's layers for
/// glibc), `packages` and `diff` on it (they walk its layers for records),
/// `copy` (it hashes every layer), and `inspect`: each works or stops with
/// one line, nothing escapes, memory stays bounded.
#[test]
fn hostile_base_layers_never_write_outside_and_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // Deep enough that `../../../../x` from the work dir stays in `dir`.
    let work = dir.path().join("a/b/c/d/e/work");
    std::fs::create_dir_all(&work).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let home = work.join("home");
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    for (index, (what, layer)) in hostile_layers(&outside).into_iter().enumerate() {
        let base = work.join(format!("base-{index}.tar"));
        docker_archive(
            &base,
            &layer,
            &format!("sha256:{}", sha256_hex(&layer)),
            0,
            0,
        );
        let source = format!("docker-archive:{}", base.display());
        let out = work.join(format!("out-{index}"));
        let mut build = cd(&home);
        build
            .current_dir(&work)
            .args(["build", "-q", "--override-channels", "-c"])
            .arg(channel.url())
            .args(["-b", &source, common::CD_DATA, "-o"])
            .arg(format!("oci:{}", out.display()));
        works_or_one_line(&format!("build on {what}"), run_bounded(&build), &base);
        for args in [
            vec!["packages", &source],
            vec!["diff", &source, &source],
            vec!["inspect", &source],
        ] {
            let mut cmd = cd(&home);
            cmd.current_dir(&work).args(&args);
            works_or_one_line(&format!("{} on {what}", args[0]), run_bounded(&cmd), &base);
        }
        let mut copy = cd(&home);
        copy.current_dir(&work).args(["copy", &source]).arg(format!(
            "oci:{}",
            work.join(format!("copy-{index}")).display()
        ));
        works_or_one_line(&format!("copy of {what}"), run_bounded(&copy), &base);
    }
    assert_eq!(
        tree(&outside),
        Vec::<PathBuf>::new(),
        "nothing lands outside"
    );
    let escaped: Vec<PathBuf> = tree(dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("escaped")
        })
        .collect();
    assert_eq!(
        escaped,
        Vec::<PathBuf>::new(),
        "no layer entry became a file"
    );
}

/// A docker-archive whose `manifest.json` is `manifest`, holding a small
/// config and layer under their usual names.
fn archive_with_manifest(path: &Path, manifest: &[u8]) {
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    let layer = layer(vec![file("etc/hostname", b"box\n")]);
    let config = config_json(&[format!("sha256:{}", sha256_hex(&layer))]);
    for (name, bytes) in [
        ("config.json", config.as_slice()),
        ("layer.tar", layer.as_slice()),
        ("manifest.json", manifest),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, bytes).unwrap();
    }
    tar.finish().unwrap();
}

/// An OCI layout at `dir` whose `index.json` is `index`.
fn layout_with_index(dir: &Path, index: &serde_json::Value) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(index).unwrap()).unwrap();
}

/// `manifest.json` naming paths outside the archive, mistyped or deeply
/// nested; OCI indexes with digests of other algorithms, bad hex, wrong
/// types or absurd sizes: `copy` and `inspect` stop with one line naming
/// the input, and write nothing.
#[test]
fn hostile_archive_metadata_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let manifests: Vec<(&str, Vec<u8>)> = vec![
        (
            "layers outside",
            json!([{"Config": "config.json", "Layers": ["../../../etc/passwd"]}])
                .to_string()
                .into(),
        ),
        (
            "absolute layer",
            json!([{"Config": "config.json", "Layers": ["/etc/passwd"]}])
                .to_string()
                .into(),
        ),
        (
            "config outside",
            json!([{"Config": "../config.json", "Layers": ["layer.tar"]}])
                .to_string()
                .into(),
        ),
        (
            "wrong types",
            json!([{"Config": 5, "Layers": "layer.tar"}])
                .to_string()
                .into(),
        ),
        (
            "an object",
            json!({"Config": "config.json"}).to_string().into(),
        ),
        ("deeply nested", deep.into_bytes()),
    ];
    for (index, (what, manifest)) in manifests.iter().enumerate() {
        let out = dir.path().join(format!("out-{index}"));
        let archive = dir.path().join(format!("archive-{index}.tar"));
        archive_with_manifest(&archive, manifest);
        let source = format!("docker-archive:{}", archive.display());
        for args in [vec!["inspect", &source], vec!["copy", &source]] {
            let mut cmd = cd(&home);
            cmd.args(&args);
            if args[0] == "copy" {
                cmd.arg(format!("oci:{}", out.display()));
            }
            let (code, stderr) = run_bounded(&cmd);
            // `../config.json` is read as the archive's own `config.json`
            // (names are clamped at the archive's root, as docker does).
            if *what != "config outside" {
                assert_eq!(code, Some(1), "{} of {what}: {stderr}", args[0]);
            }
            works_or_one_line(&format!("{} of {what}", args[0]), (code, stderr), &archive);
            if code != Some(0) {
                assert!(!out.exists(), "{what}: no output from a refused input");
            }
        }
    }
    let hex = "ab".repeat(32);
    let descriptor = |digest: serde_json::Value, size: serde_json::Value| {
        json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
        }]})
    };
    let indexes = [
        (
            "md5 digest",
            descriptor(json!("md5:0123456789abcdef0123456789abcdef"), json!(10)),
        ),
        (
            "bad hex",
            descriptor(json!(format!("sha256:{}", "zz".repeat(32))), json!(10)),
        ),
        (
            "short hex",
            descriptor(json!(format!("sha256:{}", &hex[..63])), json!(10)),
        ),
        (
            "digest path climbs",
            descriptor(json!("sha256:../../../../etc/passwd"), json!(10)),
        ),
        ("digest a number", descriptor(json!(5), json!(10))),
        (
            "negative size",
            descriptor(json!(format!("sha256:{hex}")), json!(-1)),
        ),
        (
            "huge size",
            descriptor(json!(format!("sha256:{hex}")), json!(1e30)),
        ),
        (
            "manifests a string",
            json!({"schemaVersion": 2, "manifests": "x"}),
        ),
    ];
    for (index, (what, value)) in indexes.iter().enumerate() {
        let layout = dir.path().join(format!("layout-{index}"));
        layout_with_index(&layout, value);
        let line = fails(cd(&home).args(["inspect", &format!("oci:{}", layout.display())]));
        assert!(line.contains(&*layout.to_string_lossy()), "{what}: {line}");
    }
}

/// Environment files, lock files and explicit specs of the wrong shape:
/// one line naming the file, no output.
#[test]
fn mistyped_environment_and_lock_files_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("out.tar");
    let files: [(&str, &[u8]); 8] = [
        ("environment.yml", b"name: x\ndependencies: 5\n"),
        (
            "channels.yml",
            b"channels: {a: b}\ndependencies: [python]\n",
        ),
        ("names.yml", b"name: [1, 2]\ndependencies:\n  - {pip: 3}\n"),
        ("pixi.lock", b"version: 6\nenvironments: 7\npackages: 7\n"),
        ("conda-lock.yml", b"version: 1\nmetadata: []\npackage: {}\n"),
        ("wrong-version.lock", b"version: 999\npackages: []\n"),
        ("spec.txt", b"@EXPLICIT\n\x00\xff\xfe not a url\n"),
        ("binary.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00"),
    ];
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let line = fails(
            cd(&home)
                .args(["build", "-q", "-b", "scratch", "--file"])
                .arg(&path)
                .arg("-o")
                .arg(&out),
        );
        assert!(line.contains(name), "{name}: {line}");
        assert!(!out.exists(), "{name}: no output");
    }
}
