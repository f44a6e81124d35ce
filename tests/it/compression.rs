//! `--compression` and `--jobs`: a layer is compressed on several threads,
//! in chunks cut at fixed offsets (gzip) or zstd's fixed-size jobs, so the
//! image's bytes depend neither on `--jobs` nor on the cores the process
//! may use; and a layer of several gzip members (one per chunk) is read
//! whole by every consumer: podman, skopeo, umoci and Go's
//! `compress/gzip`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use conda_docker::Image;
use conda_docker::layer::Layer;
use conda_docker::layer::compress::GZIP_CHUNK_SIZE;

use crate::common::{self, HostilePackage, Podman, hostile_channel, require_tools, sha256_hex};
use crate::fixtures::{busybox_base, conda_docker, failure};
use crate::registry::noise;

/// The big package's files: incompressible bytes (more than two chunks)
/// and text (more than one), so its layer is several gzip members.
const RANDOM: &str = "share/big/random.bin";
const TEXT: &str = "share/big/text.txt";

/// Text that compresses about as source code does.
fn text_bytes(len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while text.len() < len {
        text.extend_from_slice(
            format!("def function_{line}(x):\n    return x * {}\n", line % 97).as_bytes(),
        );
        line += 1;
    }
    text.truncate(len);
    text
}

/// A channel with `big` (a layer of several chunks) and `small`, solved
/// once into a lock file that every build then uses.
struct Scene {
    dir: tempfile::TempDir,
    lock: PathBuf,
    random: Vec<u8>,
    text: Vec<u8>,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let random = noise(GZIP_CHUNK_SIZE * 5 / 2);
        let text = text_bytes(GZIP_CHUNK_SIZE * 3 / 2);
        let mut big = HostilePackage::new(&work, "big");
        big.file(RANDOM, &random, RANDOM).file(TEXT, &text, TEXT);
        let mut small = HostilePackage::new(&work, "small");
        small.file("share/small.txt", b"small\n", "share/small.txt");
        let channel = hostile_channel(&dir.path().join("channel"), &[&big, &small]);
        let scene = Scene {
            lock: dir.path().join("lock.txt"),
            dir,
            random,
            text,
        };
        let lock = scene.lock.to_str().unwrap().to_owned();
        let out = format!("oci-archive:{}", scene.path("solved.tar").display());
        common::run(
            scene
                .command(false)
                .args(["build", "-q", "-b", "scratch", "-o", &out])
                .args(["-c", &channel, "--override-channels", "--lock-file", &lock])
                .args(["big", "small"]),
        );
        scene
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `conda-docker` with this scene's caches, on one core if `pinned`.
    fn command(&self, pinned: bool) -> Command {
        let mut cmd = if pinned {
            let mut cmd = Command::new(common::expect_tool("taskset"));
            cmd.args(["-c", "0", env!("CARGO_BIN_EXE_conda-docker")]);
            cmd
        } else {
            conda_docker()
        };
        cmd.env("HOME", self.path("home"))
            .env("RATTLER_CACHE_DIR", self.path("rattler"))
            .env("CONDA_PKGS_DIRS", self.path("pkgs"))
            .env("CONDA_DOCKER_CACHE_DIR", self.path("cache"));
        cmd
    }

    /// Builds the locked environment on `base` with `args`, every layer
    /// compressed anew (`--no-cache`), into `output`.
    fn build(&self, pinned: bool, base: &str, output: &str, args: &[&str]) {
        let lock = self.lock.to_str().unwrap();
        common::run(
            self.command(pinned)
                .args(["build", "-q", "--no-cache", "--file", lock, "-b", base])
                .args(["-i", "compressed:1", "-o", output])
                .args(args),
        );
    }
}

/// The layer of the `big` package.
fn big_layer(image: &Image) -> &Layer {
    image
        .layers()
        .iter()
        .find(|l| {
            l.annotations()
                .get("org.conda-docker.packages")
                .is_some_and(|p| p.starts_with("big-"))
        })
        .expect("a layer of the big package")
}

/// The regular files of a layer's tar, `(path, bytes)`.
fn layer_files(layer: &Layer) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(layer.uncompressed().unwrap());
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.push((path, bytes));
        }
    }
    files
}

/// How many gzip members follow each other in `blob`.
fn gzip_members(blob: &[u8]) -> usize {
    let mut rest = blob;
    let mut members = 0;
    while !rest.is_empty() {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut member, &mut std::io::sink()).unwrap();
        rest = member.into_inner();
        members += 1;
    }
    members
}

fn blob_bytes(layer: &Layer) -> Vec<u8> {
    let mut bytes = Vec::new();
    layer
        .blob()
        .open()
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn image_bytes_do_not_depend_on_jobs_or_cores() {
    require_tools!("taskset");
    let scene = Scene::new();
    let mut image_ids = Vec::new();
    for compression in ["gzip", "zstd"] {
        let mut outputs = Vec::new();
        for (label, pinned, jobs) in [
            ("--jobs 1", false, &["--jobs", "1"][..]),
            ("--jobs 2", false, &["--jobs", "2"][..]),
            ("--jobs 8", false, &["--jobs", "8"][..]),
            ("taskset -c 0, no --jobs", true, &[][..]),
        ] {
            let file = scene.path(&format!("{compression}-{}.tar", outputs.len()));
            let output = format!("oci-archive:{}", file.display());
            let args = [&["--compression", compression][..], jobs].concat();
            scene.build(pinned, "scratch", &output, &args);
            outputs.push((label, common::sha256_file_hex(&file), output));
        }
        let (_, first, output) = &outputs[0];
        for (label, digest, _) in &outputs {
            assert_eq!(digest, first, "{compression} with {label}");
        }

        // The big layer reads back as the package's files, and was
        // really cut: one gzip member per started chunk of its tar.
        let image = Image::open(output).unwrap();
        let big = big_layer(&image);
        let files = layer_files(big);
        let file = |name: &str| {
            let path = format!("opt/conda/{name}");
            let found = files.iter().find(|(p, _)| *p == path);
            &found.unwrap_or_else(|| panic!("{path} in the layer")).1
        };
        assert!(file(RANDOM) == &scene.random, "{RANDOM} round-trips");
        assert!(file(TEXT) == &scene.text, "{TEXT} round-trips");
        if compression == "gzip" {
            let mut tar = Vec::new();
            big.uncompressed().unwrap().read_to_end(&mut tar).unwrap();
            assert_eq!(
                gzip_members(&blob_bytes(big)),
                tar.len().div_ceil(GZIP_CHUNK_SIZE)
            );
        }
        image_ids.push(image.config_digest());
    }
    assert_eq!(
        image_ids[0], image_ids[1],
        "gzip and zstd layers hold the same tars, so the image id is the same"
    );
}

/// Go's reader: every regular file's sha256, then the sha256 of the whole
/// decompressed stream (the diff id), read to its end so that every gzip
/// member's CRC is checked.
const GO_READER: &str = r#"package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		panic(err)
	}
	all := sha256.New()
	stream := io.TeeReader(z, all)
	t := tar.NewReader(stream)
	for {
		h, err := t.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		s := sha256.New()
		if _, err := io.Copy(s, t); err != nil {
			panic(err)
		}
		fmt.Printf("%s %x\n", h.Name, s.Sum(nil))
	}
	if _, err := io.Copy(io.Discard, stream); err != nil {
		panic(err)
	}
	fmt.Printf("diff_id sha256:%x\n", all.Sum(nil))
}
"#;

/// `go run` of [`GO_READER`] on `blob`: its lines.
fn go_read(dir: &Path, blob: &Path) -> Vec<String> {
    let program = dir.join("reader.go");
    std::fs::write(&program, GO_READER).unwrap();
    let output = common::run(
        Command::new(common::expect_tool("go"))
            .arg("run")
            .arg(&program)
            .arg(blob)
            .env("GOPROXY", "off")
            .env("GOPATH", dir.join("gopath"))
            .current_dir(dir),
    );
    common::stdout(&output).lines().map(str::to_owned).collect()
}

#[test]
fn a_layer_of_several_gzip_members_reads_in_podman_skopeo_umoci_and_go() {
    require_tools!("busybox", "podman", "runc", "skopeo", "umoci", "go");
    let scene = Scene::new();
    let base = scene.path("base.tar");
    busybox_base(&scene.path("base")).write_file(&base).unwrap();
    let base = format!("docker-archive:{}", base.display());
    let layout = scene.path("layout");
    scene.build(false, &base, &format!("oci:{}:v1", layout.display()), &[]);
    let image = Image::open(&format!("oci:{}:v1", layout.display())).unwrap();
    let big = big_layer(&image);
    assert!(gzip_members(&blob_bytes(big)) > 2);
    let (random, text) = (sha256_hex(&scene.random), sha256_hex(&scene.text));

    // podman: load the docker-archive and read the files in a container.
    let archive = scene.path("image.tar");
    image.write_file(&archive).unwrap();
    let podman = Podman::new().unwrap();
    let loaded = podman.load(&archive);
    let sums = podman.run(
        &loaded,
        &[
            "/bin/busybox",
            "sha256sum",
            &format!("/opt/conda/{RANDOM}"),
            &format!("/opt/conda/{TEXT}"),
        ],
    );
    assert_eq!(
        sums,
        format!("{random}  /opt/conda/{RANDOM}\n{text}  /opt/conda/{TEXT}\n")
    );

    // umoci checks every digest, unpacks, and has the same bytes.
    let bundle = scene.path("bundle");
    common::umoci_unpack(&layout, "v1", &bundle);
    let rootfs = bundle.join("rootfs/opt/conda");
    assert_eq!(
        sha256_hex(&std::fs::read(rootfs.join(RANDOM)).unwrap()),
        random
    );
    assert_eq!(sha256_hex(&std::fs::read(rootfs.join(TEXT)).unwrap()), text);

    // skopeo reads every layer to recompress it with zstd; what it
    // wrote decompresses to the diff ids.
    let zstd = scene.path("zstd");
    common::skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:v1", zstd.display()),
        &["--dest-compress", "--dest-compress-format", "zstd"],
    );
    let copy = Image::open(&format!("oci:{}:v1", zstd.display())).unwrap();
    assert_eq!(copy.layers().len(), image.layers().len());
    for (theirs, ours) in copy.layers().iter().zip(image.layers()) {
        assert!(theirs.is_zstd(), "{}", theirs.describe());
        let mut tar = Vec::new();
        theirs
            .uncompressed()
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(
            format!("sha256:{}", sha256_hex(&tar)),
            ours.diff_id().to_string()
        );
    }

    // Go's compress/gzip reads all the members (multistream by default).
    let blob = layout.join("blobs/sha256").join(big.digest().hex());
    let lines = go_read(scene.dir.path(), &blob);
    assert!(
        lines.contains(&format!("opt/conda/{RANDOM} {random}")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("opt/conda/{TEXT} {text}")),
        "{lines:?}"
    );
    assert_eq!(lines.last(), Some(&format!("diff_id {}", big.diff_id())));
}

#[test]
fn zstd_for_a_docker_archive_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    // The environment does not exist: only a check made before any work
    // can answer with the compression.
    let line = failure(
        conda_docker()
            .args(["build", "-p"])
            .arg(dir.path().join("no-such-env"))
            .args(["-b", "scratch", "--compression", "zstd:3", "-o"])
            .arg(&out),
    );
    assert!(
        line.contains("docker-archive cannot hold zstd layers"),
        "{line}"
    );
    assert!(line.contains("--compression gzip"), "{line}");
    assert!(!out.exists());
    let line = failure(
        conda_docker()
            .args(["build", "-p"])
            .arg(dir.path().join("no-such-env"))
            .args([
                "-b",
                "scratch",
                "--compress-base",
                "--compression",
                "none",
                "-o",
            ])
            .arg(&out),
    );
    assert!(line.contains("--compress-base compresses layers"), "{line}");
    assert!(!out.exists());

    let usage = |args: &[&str]| {
        let output = common::run_unchecked(conda_docker().args(args));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let err = usage(&[
        "build",
        "-b",
        "scratch",
        "-o",
        "x.tar",
        "--compression",
        "xz",
    ]);
    assert!(err.contains("gzip[:0-9]"), "{err}");
    let err = usage(&["build", "-b", "scratch", "-o", "x.tar", "--jobs", "0"]);
    assert!(err.contains("--jobs"), "{err}");
}
