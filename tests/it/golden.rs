//! Golden bytes: fixed builds whose every output byte is pinned.
//!
//! The determinism tests prove that one build gives the same bytes twice in
//! one process; nothing there notices when a dependency upgrade
//! (libdeflate, zstd, tar) or a refactoring changes every image digest. This
//! test builds fixed images and compares, against constants:
//!
//! - the sha256 of each output file: a `docker-archive:` and an
//!   `oci-archive:` tar, and every file of an `oci:` layout (`index.json`,
//!   `oci-layout`, every blob);
//! - the image id (config digest) and manifest digest of each image;
//! - the fixture's own package archives, so that a change of the test
//!   fixture is told apart from a change of the product.
//!
//! The images: the fixture channel's packages ([`PACKAGES_WITHOUT_BINARY`])
//! built on `scratch` as `golden:1` with `SOURCE_DATE_EPOCH` fixed, by the
//! real binary, from an installed prefix (gzip, every output format) and
//! from an `@EXPLICIT` file with empty caches (the packages fetched from the
//! `file://` channel: the path without an installed environment). zstd and
//! uncompressed layers, which the CLI does not write, come from the library:
//! the prefix image's layers re-encoded with `Image::set_compression`.
//!
//! The fixture is independent of the host: everything runs twice, with
//! different HOME, TMPDIR, CONDA_DOCKER_CACHE_DIR, package caches, prefix,
//! channel folder, working directory and umask, and both runs must agree
//! byte for byte before they are compared with the pins. The uid does not
//! matter: layer tar entries, and the members of the archives written, are
//! all owned by 0:0 with no user or group names (`layer::tar::header`;
//! the test asserts it of every entry, with the epoch as mtime), and modes
//! of staged trees are normalised to 0755/0644. (Checked once by hand too:
//! the test binary run as uid 65534 passes unchanged.)
//!
//! The pins hold for x86_64 only (`cfg(target_arch)`): compressors may
//! choose other matches on other CPUs (zlib-rs gave different deflate
//! output on aarch64 than on x86_64 until its hash changed, issue #300 of
//! trifectatechfoundation/zlib-rs; zstd's output has depended on SSE/NEON
//! for some window sizes, facebook/zstd#4099). Elsewhere the test still
//! checks that the two runs agree, prints the values it found and says why
//! it does not compare them.
//!
//! **Changing a pin**: the pins must not change while code is only moved
//! or tidied. A changed digest is a deliberate commit of its own, whose
//! message says why the bytes changed (a dependency upgrade, a format
//! change); on a mismatch the test prints the new `PINS` to paste.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use conda_docker::Image;
use conda_docker::layer::Compression;

use crate::common::{
    self, CacheLayout, CondaChannel, PACKAGES_WITHOUT_BINARY, explicit_file, install_env_at,
    sha256_file_hex,
};

/// `SOURCE_DATE_EPOCH` of every golden build (2023-11-14T22:13:20Z).
const EPOCH: u64 = 1_700_000_000;
/// The image name of every golden build.
const NAME: &str = "golden:1";
/// The zstd level of the re-encoded image.
const ZSTD_LEVEL: i32 = 3;

/// The pinned values, `(what, value)`, in the order the test computes them:
/// the fixture's archives, then for each image its id and manifest digest
/// followed by its outputs. Paste the block the test prints on a mismatch,
/// in a commit of its own.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const PINS: &[(&str, &str)] = &[
    ("fixture python-3.12.0-0.conda", "e0ab69f34be0dfa11852aeb45e12ea6ffe56033d919f835f2eded3ec72e30c98"),
    ("fixture cd-noarch-1.0-0.tar.bz2", "86fbd75c67cfeca2775c12661e6c80855654f1973b85db3f56a89274d7730f61"),
    ("fixture cd-link-1.0-0.tar.bz2", "e1300aa1490e7357a987c7f25d87d87d42495918ed1072e9250f7d112cb938f7"),
    ("fixture cd-text-1.0-0.tar.bz2", "400a8099880ae1efc47e954efe573c1c163ddf47f0474ec87d929ccac4c673e6"),
    ("fixture cd-leaf-1.0-0.conda", "97ca10ff6a6f1db733220f7383965f7c5f913e94d7d700a27119bb37889ac229"),
    ("prefix gzip: image id", "sha256:414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2"),
    ("prefix gzip: manifest digest", "sha256:ada4951d9f4ae48d2a0522e20a081663d0b6a474590d07c8fc350bc5443e8c7a"),
    ("prefix.docker.tar", "36181b2d5301b40844c1c662926e4bcad949ba2964f4091485e3a7020c8b6901"),
    ("prefix.oci.tar", "b67effb537657d7b54f9dcf3e7607b80ac981d62541049b2a58ea03e28fa31e3"),
    ("prefix-oci/blobs/sha256/414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2", "414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2"),
    ("prefix-oci/blobs/sha256/80aa63f8b68e4b433f34bf19a8d644e16a348523cdf88fa03c35e503068e802c", "80aa63f8b68e4b433f34bf19a8d644e16a348523cdf88fa03c35e503068e802c"),
    ("prefix-oci/blobs/sha256/ada4951d9f4ae48d2a0522e20a081663d0b6a474590d07c8fc350bc5443e8c7a", "ada4951d9f4ae48d2a0522e20a081663d0b6a474590d07c8fc350bc5443e8c7a"),
    ("prefix-oci/blobs/sha256/b7b3e2a1222992eb5e23b99fc5e733b2175e0434456eaeb46f0f9d6de9717aaf", "b7b3e2a1222992eb5e23b99fc5e733b2175e0434456eaeb46f0f9d6de9717aaf"),
    ("prefix-oci/blobs/sha256/d34555431fa3aae5c101811702208fbdda131bedbf486a6b856e5b5013b3e8c2", "d34555431fa3aae5c101811702208fbdda131bedbf486a6b856e5b5013b3e8c2"),
    ("prefix-oci/blobs/sha256/d3b8e12775986cc92a49d18977ba27bcd6a4e26bae2ce9fabc5e588ea4e42ff7", "d3b8e12775986cc92a49d18977ba27bcd6a4e26bae2ce9fabc5e588ea4e42ff7"),
    ("prefix-oci/blobs/sha256/ded2781350a2a898dc532380efe136c9524c39f0f1484b45a2d136a75cd6e630", "ded2781350a2a898dc532380efe136c9524c39f0f1484b45a2d136a75cd6e630"),
    ("prefix-oci/blobs/sha256/fc2e244d2f9c49cd29900cfe1fab8c0d079027c374486028292ec434b69231ff", "fc2e244d2f9c49cd29900cfe1fab8c0d079027c374486028292ec434b69231ff"),
    ("prefix-oci/index.json", "1259e87f0662ceb1661b833dda04a601ba7023507909731b451fe3fd026242d2"),
    ("prefix-oci/oci-layout", "18f0797eab35a4597c1e9624aa4f15fd91f6254e5538c1e0d193b2a95dd4acc6"),
    ("explicit gzip: image id", "sha256:414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2"),
    ("explicit gzip: manifest digest", "sha256:ada4951d9f4ae48d2a0522e20a081663d0b6a474590d07c8fc350bc5443e8c7a"),
    ("explicit.docker.tar", "36181b2d5301b40844c1c662926e4bcad949ba2964f4091485e3a7020c8b6901"),
    ("prefix zstd: image id", "sha256:414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2"),
    ("prefix zstd: manifest digest", "sha256:d3727f3ee0210e0cfe57e008055750697f7197ca55a2376b34a4854e01091247"),
    ("prefix-zstd.oci.tar", "ed9d09438196f440cfe65e18e86840765a338de434cdb30991fa630aa6fe758e"),
    ("prefix-zstd-oci/blobs/sha256/414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2", "414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2"),
    ("prefix-zstd-oci/blobs/sha256/42727fbefdd8b4a83c4b7c7e9909d48366155cb447ffad9aeadd1d9cdffd839b", "42727fbefdd8b4a83c4b7c7e9909d48366155cb447ffad9aeadd1d9cdffd839b"),
    ("prefix-zstd-oci/blobs/sha256/4af2f1a5620e7f3e72a8bc907c22286336149020f94090fda8ba02605d0c4f94", "4af2f1a5620e7f3e72a8bc907c22286336149020f94090fda8ba02605d0c4f94"),
    ("prefix-zstd-oci/blobs/sha256/7e6b77b332f59c3379668686f3e0f5ba4d0ffa4bc5647f76d1df0751ed7e934f", "7e6b77b332f59c3379668686f3e0f5ba4d0ffa4bc5647f76d1df0751ed7e934f"),
    ("prefix-zstd-oci/blobs/sha256/bcf48fcb4fff4f75998b4801af1bfa77a7a4d8899c0905c80c1c09e70e5c8be7", "bcf48fcb4fff4f75998b4801af1bfa77a7a4d8899c0905c80c1c09e70e5c8be7"),
    ("prefix-zstd-oci/blobs/sha256/c42830fca6805f4412133d189c619f547e9f2aefedea841248bf3e4aedd9a805", "c42830fca6805f4412133d189c619f547e9f2aefedea841248bf3e4aedd9a805"),
    ("prefix-zstd-oci/blobs/sha256/d3727f3ee0210e0cfe57e008055750697f7197ca55a2376b34a4854e01091247", "d3727f3ee0210e0cfe57e008055750697f7197ca55a2376b34a4854e01091247"),
    ("prefix-zstd-oci/blobs/sha256/f66cf265b86c15c39f31d34db31079ba2075fe5aac49ebe6233b7e6b12200d22", "f66cf265b86c15c39f31d34db31079ba2075fe5aac49ebe6233b7e6b12200d22"),
    ("prefix-zstd-oci/index.json", "e635757bb919455171e727629c432a0cebb99a9ba5d95ee227de5cdaf855a4f4"),
    ("prefix-zstd-oci/oci-layout", "18f0797eab35a4597c1e9624aa4f15fd91f6254e5538c1e0d193b2a95dd4acc6"),
    ("prefix none: image id", "sha256:414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2"),
    ("prefix none: manifest digest", "sha256:a44ddf324253139814e10e7caa0029a0681409749eb6008301213d3a9839ae9c"),
    ("prefix-none.docker.tar", "70a041122f3ce719e6e700630046c73f98dcde684c4db448911c4f5fa4c161d4"),
    ("prefix-none.oci.tar", "c8e353f3cbe7e7371630da1f85eb056776966ab5de8d6e7be2d4fb2f64b660c4"),
    ("prefix-none-oci/blobs/sha256/23de44e0eae10a7f3b35ed504b7e4622fd1a6ea6f57f5623abe8a0acf7b3d33e", "23de44e0eae10a7f3b35ed504b7e4622fd1a6ea6f57f5623abe8a0acf7b3d33e"),
    ("prefix-none-oci/blobs/sha256/34a326a8c0e669a2cc3be1dfe2d1fbd915b6405c838c87bf9b0c713a1fbe86ed", "34a326a8c0e669a2cc3be1dfe2d1fbd915b6405c838c87bf9b0c713a1fbe86ed"),
    ("prefix-none-oci/blobs/sha256/414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2", "414259b5cab7daf3c4733f728d4ade624e4b2d8ef35bf27e39c7c5f26c9587f2"),
    ("prefix-none-oci/blobs/sha256/a44ddf324253139814e10e7caa0029a0681409749eb6008301213d3a9839ae9c", "a44ddf324253139814e10e7caa0029a0681409749eb6008301213d3a9839ae9c"),
    ("prefix-none-oci/blobs/sha256/d0548e8d53426dec03d14f78f73a94866b149b1ccc0da4bc2f1806d37bdd7572", "d0548e8d53426dec03d14f78f73a94866b149b1ccc0da4bc2f1806d37bdd7572"),
    ("prefix-none-oci/blobs/sha256/d44bddcdf3d65a80a8865ebe7ee0c50bc3ee579e2b612cad19a5df88cfef97f1", "d44bddcdf3d65a80a8865ebe7ee0c50bc3ee579e2b612cad19a5df88cfef97f1"),
    ("prefix-none-oci/blobs/sha256/e376bb78f71b20f50bf09d01302e8f1da4dd262ffc7e63e6eb3e30d5c5bd0440", "e376bb78f71b20f50bf09d01302e8f1da4dd262ffc7e63e6eb3e30d5c5bd0440"),
    ("prefix-none-oci/blobs/sha256/ee9e849c0f31f7f207eb579073552dbed5f36201fdf95f5f7ceb77a6ad66347d", "ee9e849c0f31f7f207eb579073552dbed5f36201fdf95f5f7ceb77a6ad66347d"),
    ("prefix-none-oci/index.json", "c337cf447c0aca93d6e327fd1e2fbdf3a428ddeab624236071e365cb5e346c83"),
    ("prefix-none-oci/oci-layout", "18f0797eab35a4597c1e9624aa4f15fd91f6254e5538c1e0d193b2a95dd4acc6"),
];

/// One host's set of paths (and umask) to build from.
struct Host {
    root: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    cd_cache: PathBuf,
    /// RATTLER_CACHE_DIR of the prefix builds (the cache the prefix was
    /// installed from is `pkgs/` inside it).
    rattler: PathBuf,
    /// RATTLER_CACHE_DIR of the explicit build: empty, so it fetches.
    rattler_empty: PathBuf,
    /// CONDA_PKGS_DIRS: empty.
    conda_pkgs: PathBuf,
    prefix: PathBuf,
    /// The channel folder: its name is kept in the image's records
    /// (`file:///channel/...`), so both hosts call it `channel`.
    channel: PathBuf,
    out: PathBuf,
    umask: &'static str,
}

impl Host {
    fn new(root: PathBuf, names: [&str; 8], umask: &'static str) -> Self {
        let [
            home,
            tmp,
            cd_cache,
            rattler,
            rattler_empty,
            conda_pkgs,
            prefix,
            channel,
        ] = names;
        let host = Host {
            home: root.join(home),
            tmp: root.join(tmp),
            cd_cache: root.join(cd_cache),
            rattler: root.join(rattler),
            rattler_empty: root.join(rattler_empty),
            conda_pkgs: root.join(conda_pkgs),
            prefix: root.join(prefix),
            channel: root.join(channel),
            out: root.join("out"),
            root,
            umask,
        };
        for dir in [
            &host.home,
            &host.tmp,
            &host.rattler_empty,
            &host.conda_pkgs,
            &host.out,
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        host
    }

    /// `conda-docker ARGS` with nothing of the caller's environment but
    /// PATH, under this host's umask.
    fn conda_docker(&self, rattler: &Path, args: &[&str]) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("umask {} && exec \"$0\" \"$@\"", self.umask))
            .arg(env!("CARGO_BIN_EXE_conda-docker"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .env("CONDA_DOCKER_CACHE_DIR", &self.cd_cache)
            .env("RATTLER_CACHE_DIR", rattler)
            .env("CONDA_PKGS_DIRS", &self.conda_pkgs)
            .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
            .current_dir(&self.root);
        common::run(&mut cmd);
    }
}

/// What one host produced, `(what, value)` in a fixed order.
type Observed = Vec<(String, String)>;

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Records the image id and manifest digest of `image` under `label`.
fn record_image(seen: &mut Observed, label: &str, image: &Image) {
    seen.push((
        format!("{label}: image id"),
        image.config_digest().to_string(),
    ));
    seen.push((
        format!("{label}: manifest digest"),
        image.manifest_digest().to_string(),
    ));
}

/// Checks what makes the uid and the clock irrelevant: every entry of the
/// tar is owned by 0:0, with no user or group name, and dated `EPOCH`.
fn assert_root_owned(tar: impl std::io::Read, what: &str) {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let path = entry.path().unwrap().display().to_string();
        assert_eq!(
            (header.uid().unwrap(), header.gid().unwrap()),
            (0, 0),
            "{what}: {path}"
        );
        let names = (header.username_bytes(), header.groupname_bytes());
        assert!(
            names.0.is_none_or(<[u8]>::is_empty) && names.1.is_none_or(<[u8]>::is_empty),
            "{what}: {path} names its owner"
        );
        assert_eq!(header.mtime().unwrap(), EPOCH, "{what}: {path}");
    }
}

/// Records an output file (`docker-archive:`/`oci-archive:`) and checks
/// that it reads back as `image`.
fn record_file(seen: &mut Observed, host: &Host, transport: &str, file: &str, image: &Image) {
    let path = host.out.join(file);
    seen.push((file.to_owned(), sha256_file_hex(&path)));
    assert_root_owned(fs::File::open(&path).unwrap(), file);
    let back = Image::open(&format!("{transport}:{}", path_arg(&path))).unwrap();
    assert_eq!(back.config_digest(), image.config_digest(), "{file}");
    assert_eq!(back.manifest_digest(), image.manifest_digest(), "{file}");
    for layer in back.layers() {
        let what = format!("{file}: {}", layer.describe());
        assert_root_owned(layer.uncompressed().unwrap(), &what);
    }
}

/// Records every file of an OCI layout and checks that it reads back as
/// `image`.
fn record_layout(seen: &mut Observed, host: &Host, dir: &str, image: &Image) {
    let root = host.out.join(dir);
    let mut files = Vec::new();
    collect_files(&root, &mut files);
    files.sort();
    for file in files {
        let relative = file.strip_prefix(&host.out).unwrap();
        seen.push((path_arg(relative).to_owned(), sha256_file_hex(&file)));
    }
    let back = Image::open(&format!("oci:{}", path_arg(&root))).unwrap();
    assert_eq!(back.config_digest(), image.config_digest(), "{dir}");
    assert_eq!(back.manifest_digest(), image.manifest_digest(), "{dir}");
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.symlink_metadata().unwrap().is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The image at `docker-archive:src` with its layers re-encoded with
/// `compression` (same tars, same history, so the same image id).
fn reencode(src: &Path, compression: Compression, scratch: &Path) -> Image {
    let original = Image::open(&format!("docker-archive:{}", path_arg(src))).unwrap();
    let created_by: Vec<String> = original.config().as_json()["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .map(|h| h["created_by"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(created_by.len(), original.layers().len());
    let mut image = original.clone();
    image.set_epoch(EPOCH);
    image.set_scratch_dir(scratch);
    image.set_compression(compression);
    for _ in original.layers() {
        image.remove_layer().unwrap();
    }
    for (layer, created_by) in original.layers().iter().zip(&created_by) {
        image
            .add_layer_tar(layer.uncompressed().unwrap(), created_by)
            .unwrap();
    }
    image
}

/// Builds every golden output on `host` and returns what it found.
fn build_all(host: &Host) -> Observed {
    let mut seen = Observed::new();
    let channel = CondaChannel::build_without_binary(&host.channel);
    let env = install_env_at(
        &channel,
        &PACKAGES_WITHOUT_BINARY,
        CacheLayout::Rattler,
        &host.prefix,
        &host.rattler.join("pkgs"),
    );
    for record in channel.with_dependencies(&PACKAGES_WITHOUT_BINARY) {
        let archive = CondaChannel::archive_of(&record);
        let name = archive.file_name().unwrap().to_str().unwrap();
        seen.push((format!("fixture {name}"), sha256_file_hex(&archive)));
    }

    // The installed prefix, gzip (the CLI's default), each output format.
    let prefix = path_arg(&env.prefix);
    let mut gzip: Option<Image> = None;
    for (transport, out) in [
        ("docker-archive", "prefix.docker.tar"),
        ("oci-archive", "prefix.oci.tar"),
        ("oci", "prefix-oci"),
    ] {
        let dest = format!("{transport}:{}", path_arg(&host.out.join(out)));
        let args = ["build", "-q", "-p", prefix, "-b", "scratch", "-i", NAME];
        host.conda_docker(&host.rattler, &[&args[..], &["-o", &dest]].concat());
        let image = gzip.get_or_insert_with(|| {
            let image = Image::open(&dest).unwrap();
            record_image(&mut seen, "prefix gzip", &image);
            image
        });
        match transport {
            "oci" => record_layout(&mut seen, host, out, image),
            _ => record_file(&mut seen, host, transport, out, image),
        }
    }

    // An explicit file and empty caches: fetched from the channel.
    let spec = host.root.join("explicit.txt");
    explicit_file(&env.repodata_records(), &spec);
    let out = "explicit.docker.tar";
    let dest = format!("docker-archive:{}", path_arg(&host.out.join(out)));
    let args = ["build", "-q", "--file", path_arg(&spec), "-b", "scratch"];
    host.conda_docker(
        &host.rattler_empty,
        &[&args[..], &["-i", NAME, "-o", &dest]].concat(),
    );
    let explicit = Image::open(&dest).unwrap();
    record_image(&mut seen, "explicit gzip", &explicit);
    record_file(&mut seen, host, "docker-archive", out, &explicit);

    // zstd and plain layers, from the library.
    let gzip = gzip.unwrap();
    let src = host.out.join("prefix.docker.tar");
    for (label, compression, outputs) in [
        (
            "zstd",
            Compression::Zstd(ZSTD_LEVEL),
            &["oci-archive", "oci"][..],
        ),
        (
            "none",
            Compression::None,
            &["docker-archive", "oci-archive", "oci"][..],
        ),
    ] {
        let image = reencode(&src, compression, &host.tmp);
        assert_eq!(
            image.config_digest(),
            gzip.config_digest(),
            "re-encoding keeps the diff ids and history, so the image id"
        );
        record_image(&mut seen, &format!("prefix {label}"), &image);
        for &transport in outputs {
            let out = match transport {
                "docker-archive" => format!("prefix-{label}.docker.tar"),
                "oci-archive" => format!("prefix-{label}.oci.tar"),
                _ => format!("prefix-{label}-oci"),
            };
            let dest = format!("{transport}:{}", path_arg(&host.out.join(&out)));
            image.write(&dest).unwrap();
            match transport {
                "oci" => record_layout(&mut seen, host, &out, &image),
                _ => record_file(&mut seen, host, transport, &out, &image),
            }
        }
    }
    seen
}

/// `observed` as the `PINS` constant, ready to paste.
fn as_pins(observed: &Observed) -> String {
    let mut text = String::from("const PINS: &[(&str, &str)] = &[\n");
    for (what, value) in observed {
        text.push_str(&format!("    ({what:?}, {value:?}),\n"));
    }
    text.push_str("];\n");
    text
}

/// What differs between two lists of `(what, value)`, one line each.
fn differences(expected: &[(&str, &str)], found: &Observed) -> Vec<String> {
    let mut lines = Vec::new();
    for (what, value) in expected {
        match found.iter().find(|(w, _)| w == what) {
            None => lines.push(format!("gone:    {what} (was {value})")),
            Some((_, now)) if now != value => {
                lines.push(format!("changed: {what}: {value} -> {now}"))
            }
            Some(_) => {}
        }
    }
    for (what, value) in found {
        if !expected.iter().any(|(w, _)| w == what) {
            lines.push(format!("new:     {what} = {value}"));
        }
    }
    if lines.is_empty() && expected.len() == found.len() {
        let same_order = expected.iter().zip(found).all(|((w, _), (f, _))| w == f);
        if !same_order {
            lines.push("same values, in another order".into());
        }
    }
    lines
}

#[test]
fn golden_digests_of_fixed_builds() {
    let dir = tempfile::tempdir().unwrap();
    let one = Host::new(
        dir.path().join("a"),
        [
            "home",
            "tmp",
            "cd-cache",
            "rattler",
            "rattler-empty",
            "pkgs",
            "env",
            "channel",
        ],
        "022",
    );
    let two = Host::new(
        dir.path().join("second/host/deeper"),
        [
            "users/someone",
            "var/tmp/scratch",
            "caches/conda-docker",
            "caches/rattler-cache",
            "caches/empty",
            "conda/pkgs",
            "envs/a-much-longer-prefix-than-the-first",
            "mirror/channel",
        ],
        "077",
    );
    let first = build_all(&one);
    let second = build_all(&two);
    let pairs: Vec<(&str, &str)> = first
        .iter()
        .map(|(w, v)| (w.as_str(), v.as_str()))
        .collect();
    let host_dependent = differences(&pairs, &second);
    assert!(
        host_dependent.is_empty(),
        "the golden builds depend on the host's paths or umask (first -> second host):\n{}",
        host_dependent.join("\n")
    );

    #[cfg(target_arch = "x86_64")]
    {
        let mut changed = differences(PINS, &first);
        if changed.iter().any(|line| line.contains(" fixture ")) {
            changed.insert(
                0,
                "The test fixture's package archives changed (tests/it/common/conda.rs or \
                 rattler_package_streaming's writer), so every image built from them changes \
                 too: that alone is no change of the product."
                    .into(),
            );
        }
        assert!(
            changed.is_empty(),
            "the golden bytes changed on x86_64:\n{}\n\n\
             A pin changes only in a commit of its own whose message says why the bytes \
             changed (a dependency upgrade, a format change), never within a refactoring. \
             If this change is that deliberate one, replace PINS in tests/it/golden.rs with:\n\n{}",
            changed.join("\n"),
            as_pins(&first)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!(
        "skipping the comparison with the pins: they are pinned for x86_64 only, \
         since compressors may give other bytes on other CPUs (both builds on this \
         {} machine agreed). To pin this architecture too, add a PINS block for it \
         from these values, in a commit of its own:\n\n{}",
        std::env::consts::ARCH,
        as_pins(&first)
    );
}
