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
    ("prefix gzip: image id", "sha256:d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731"),
    ("prefix gzip: manifest digest", "sha256:3476a8f998769d3e8b6ea50c44e1c236572081c89e589713195bc2c3b5e3fbb6"),
    ("prefix.docker.tar", "588b2fa37911b2c6a89d8d916a4cb23f49c311912719f0e5db2182d4e5823694"),
    ("prefix.oci.tar", "8ddcbede56680b82799195774ba79e83463e7eceece2c679fb98ac94d4b5255d"),
    ("prefix-oci/blobs/sha256/013df8f39189b0c7de31defd84128e465ba2ad51a7d7f75b9385ac1f545a3e51", "013df8f39189b0c7de31defd84128e465ba2ad51a7d7f75b9385ac1f545a3e51"),
    ("prefix-oci/blobs/sha256/10787045433e2f4e68d26598e17a1c4578f157c15bbe907364504f83e0ce2458", "10787045433e2f4e68d26598e17a1c4578f157c15bbe907364504f83e0ce2458"),
    ("prefix-oci/blobs/sha256/1a811fe2ebf6dc6584902625fd402677698080b857909b260f133043226bdb20", "1a811fe2ebf6dc6584902625fd402677698080b857909b260f133043226bdb20"),
    ("prefix-oci/blobs/sha256/3013e3451b48b25675d8fa092862b0ef6e20006d83b463ef19268f18ed779539", "3013e3451b48b25675d8fa092862b0ef6e20006d83b463ef19268f18ed779539"),
    ("prefix-oci/blobs/sha256/3476a8f998769d3e8b6ea50c44e1c236572081c89e589713195bc2c3b5e3fbb6", "3476a8f998769d3e8b6ea50c44e1c236572081c89e589713195bc2c3b5e3fbb6"),
    ("prefix-oci/blobs/sha256/6308a90da5202d236f515bdcaba677b3ae213dfc5b44a65c2c5c9643511118dd", "6308a90da5202d236f515bdcaba677b3ae213dfc5b44a65c2c5c9643511118dd"),
    ("prefix-oci/blobs/sha256/d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731", "d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731"),
    ("prefix-oci/blobs/sha256/ddf4afa2979378f8be5d9c8a9b63cc8b642d832b25db38c1beaea33c04b45ce6", "ddf4afa2979378f8be5d9c8a9b63cc8b642d832b25db38c1beaea33c04b45ce6"),
    ("prefix-oci/index.json", "aed2df59f4293becaf5a2c4f0735bf39eb1026a8158dd4a6d014bf0667e5972f"),
    ("prefix-oci/oci-layout", "18f0797eab35a4597c1e9624aa4f15fd91f6254e5538c1e0d193b2a95dd4acc6"),
    ("explicit gzip: image id", "sha256:651d20d7a2886aeadd9ae64f64b2cd07b552476b0fdc275327aec8330a423b29"),
    ("explicit gzip: manifest digest", "sha256:f0449350a914a764baf45147df37deecc37b86f602ec8951bbf34c1a2edff559"),
    ("explicit.docker.tar", "413c440d4b92a515f57f441a973baeb04c413b84eb5e94989a8768d11a13a924"),
    ("prefix zstd: image id", "sha256:d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731"),
    ("prefix zstd: manifest digest", "sha256:4909c050b4582bfda3d5ca7348942135a28583efef552e1f57ae5f9e3463e17e"),
    ("prefix-zstd.oci.tar", "7939d104e437e74a8cdd42b65739b61f3a5855d9e2831952530f7cb052ce7366"),
    ("prefix-zstd-oci/blobs/sha256/4909c050b4582bfda3d5ca7348942135a28583efef552e1f57ae5f9e3463e17e", "4909c050b4582bfda3d5ca7348942135a28583efef552e1f57ae5f9e3463e17e"),
    ("prefix-zstd-oci/blobs/sha256/594c044d8c0bcf58fd21e94898d5ad66bf1b0ecd8d23892e27f934852f2d3a68", "594c044d8c0bcf58fd21e94898d5ad66bf1b0ecd8d23892e27f934852f2d3a68"),
    ("prefix-zstd-oci/blobs/sha256/61ff44815536b159df8f7680d877972a0278ec474a24a3f04773587899a976f4", "61ff44815536b159df8f7680d877972a0278ec474a24a3f04773587899a976f4"),
    ("prefix-zstd-oci/blobs/sha256/9950d8c9717a02723bc3417f4e6a518806fdd2551719afad20c21aa27f819795", "9950d8c9717a02723bc3417f4e6a518806fdd2551719afad20c21aa27f819795"),
    ("prefix-zstd-oci/blobs/sha256/a20f809300cf606576650ba79a08e11066fb2d98fde9da9da3d7a6c1d9fa3b0b", "a20f809300cf606576650ba79a08e11066fb2d98fde9da9da3d7a6c1d9fa3b0b"),
    ("prefix-zstd-oci/blobs/sha256/a2119b795275c71a1315b0b92c8b536d7c08de7ad136bf1968b5883f3e648f53", "a2119b795275c71a1315b0b92c8b536d7c08de7ad136bf1968b5883f3e648f53"),
    ("prefix-zstd-oci/blobs/sha256/bdcea5d66be5903c5753f93c6c016181c743b27b448444d14bc1aa9896b98920", "bdcea5d66be5903c5753f93c6c016181c743b27b448444d14bc1aa9896b98920"),
    ("prefix-zstd-oci/blobs/sha256/d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731", "d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731"),
    ("prefix-zstd-oci/index.json", "eac7084cb1a8f393b0213b066c9e578388e833d2d7ccc43c4370c7109c74faa6"),
    ("prefix-zstd-oci/oci-layout", "18f0797eab35a4597c1e9624aa4f15fd91f6254e5538c1e0d193b2a95dd4acc6"),
    ("prefix none: image id", "sha256:d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731"),
    ("prefix none: manifest digest", "sha256:8108e21d74225ab302fca028aed629b08e8f8be2e57ed0dcf63884a2a52b83ad"),
    ("prefix-none.docker.tar", "7b47ddf72ecf847328f5becefec6ca318e8a18dac59507d326bc48c78f7f48b8"),
    ("prefix-none.oci.tar", "f1a1d1a7894446c2e5b2365fb67fe1159d4d7217ff302ac84a25fd88ac94b79a"),
    ("prefix-none-oci/blobs/sha256/19a0125c8ce83f4f9a79311feec0856066c1ab4c4159d9b0619599fa1075d2bb", "19a0125c8ce83f4f9a79311feec0856066c1ab4c4159d9b0619599fa1075d2bb"),
    ("prefix-none-oci/blobs/sha256/5b2ec9c59b603865583ca97df73595b3c504594fce803b81a0d56aa65220a4a0", "5b2ec9c59b603865583ca97df73595b3c504594fce803b81a0d56aa65220a4a0"),
    ("prefix-none-oci/blobs/sha256/7762999816eadd6fc024d2cb9dbb3d6bdcc934afc6e5a7d5f0739570cb71bdcd", "7762999816eadd6fc024d2cb9dbb3d6bdcc934afc6e5a7d5f0739570cb71bdcd"),
    ("prefix-none-oci/blobs/sha256/8108e21d74225ab302fca028aed629b08e8f8be2e57ed0dcf63884a2a52b83ad", "8108e21d74225ab302fca028aed629b08e8f8be2e57ed0dcf63884a2a52b83ad"),
    ("prefix-none-oci/blobs/sha256/ab28398c4adf7a4f6a3aad787cc6ce6df2a586b0da34d93e1e064a82524d22ad", "ab28398c4adf7a4f6a3aad787cc6ce6df2a586b0da34d93e1e064a82524d22ad"),
    ("prefix-none-oci/blobs/sha256/cef68dacae51af7501b5433b11ebe2b853598e45616f89049df936d12accb221", "cef68dacae51af7501b5433b11ebe2b853598e45616f89049df936d12accb221"),
    ("prefix-none-oci/blobs/sha256/d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731", "d308dca06cb8345443015b1f75e43f775f0cf1e1922eb1a798f044c205671731"),
    ("prefix-none-oci/blobs/sha256/fb01400d2ac41588ccf87dcaff3102b6e8f18dd874df7329fdb5bf8cf39e891e", "fb01400d2ac41588ccf87dcaff3102b6e8f18dd874df7329fdb5bf8cf39e891e"),
    ("prefix-none-oci/index.json", "cfd048244913d57354944af1a7220f860f9bafc10b604383ed7247318ecfa58c"),
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
