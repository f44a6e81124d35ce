//! The image's `conda-meta/*.json` records carry every hash of a package
//! that any source knows (the input, conda's or rattler's cache, the
//! archive, what an earlier build saw), and the same package gives the same
//! layer from every input that knows the same hashes: an installed prefix
//! with conda's cache, with rattler's, with a cleaned cache; a solve; a
//! pixi.lock; `conda list --explicit --md5` output; an `@EXPLICIT` spec
//! naming packages by sha256 alone.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use conda_docker::Image;
use rattler_conda_types::RepoDataRecord;
use serde_json::Value;

use crate::common::{
    self, CacheLayout, ChannelServer, CondaChannel, explicit_file, install_env_at, write_pixi_lock,
};
use crate::fixtures::conda_docker;

/// The package layers of an image: per package (`name-version-build`),
/// its layer's diff id and the package's record in that layer.
type Layers = BTreeMap<String, (String, Value)>;

struct Scene {
    dir: tempfile::TempDir,
    channel: CondaChannel,
    /// `cd-leaf` and what it depends on (`cd-text`).
    records: Vec<RepoDataRecord>,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
        let records = channel.with_dependencies(&["cd-leaf"]);
        Scene {
            dir,
            channel,
            records,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `conda-docker` isolated from the host: its caches under `home`, and
    /// conda's pkgs dir `pkgs` (made or not by the caller).
    fn cd(&self, home: &str, pkgs: &str) -> Command {
        let home = self.path(home);
        let mut cmd = conda_docker();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("CONDA_DOCKER_CACHE_DIR", home.join("cd-cache"))
            .env("RATTLER_CACHE_DIR", home.join("rattler"))
            .env("CONDA_PKGS_DIRS", self.path(pkgs));
        cmd
    }

    /// `build -b scratch ARGS` into a docker-archive; the package layers
    /// and what the build printed on stderr.
    fn build(&self, mut cmd: Command, out: &str, args: &[&str]) -> (Layers, String) {
        let path = self.path(out);
        let output: Output = common::run(
            cmd.args(["build", "-q", "-b", "scratch", "-o"])
                .arg(&path)
                .args(args),
        );
        (
            package_layers(&path),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The layers hold the scene's packages, each record with the
    /// channel's md5 and sha256.
    fn assert_every_hash(&self, layers: &Layers, case: &str) {
        let mut names: Vec<String> = self.records.iter().map(dist).collect();
        names.sort();
        assert_eq!(layers.keys().cloned().collect::<Vec<_>>(), names, "{case}");
        for record in &self.records {
            let (_, json) = &layers[&dist(record)];
            assert_eq!(json["md5"], CondaChannel::md5_of(record).as_str(), "{case}");
            assert_eq!(
                json["sha256"],
                CondaChannel::sha256_of(record).as_str(),
                "{case}"
            );
        }
    }
}

fn dist(record: &RepoDataRecord) -> String {
    let p = &record.package_record;
    format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build)
}

/// Reads every package layer of the image at `path`: the records under
/// `opt/conda/conda-meta/`, each with its layer's diff id.
fn package_layers(path: &Path) -> Layers {
    let image = Image::open(path.to_str().unwrap()).unwrap();
    let mut layers = Layers::new();
    for layer in image.layers() {
        if !layer
            .annotations()
            .contains_key("org.conda-docker.packages")
        {
            continue;
        }
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(layer.blob().open().unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let mut archive = tar::Archive::new(raw.as_slice());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let Some(stem) = name
                .strip_prefix("opt/conda/conda-meta/")
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            let json: Value = serde_json::from_str(&text).unwrap();
            layers.insert(stem.to_owned(), (layer.diff_id().to_string(), json));
        }
    }
    layers
}

fn diff_ids(layers: &Layers) -> Vec<&str> {
    layers.values().map(|(d, _)| d.as_str()).collect()
}

/// Removes `key` from every `conda-meta/*.json` of `prefix`.
fn strip_from_conda_meta(prefix: &Path, key: &str) {
    for entry in std::fs::read_dir(prefix.join("conda-meta")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            json.as_object_mut().unwrap().remove(key);
            std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        }
    }
}

/// `@EXPLICIT` lines `URL#HASH` for `records`, served from `base`.
fn explicit_spec(records: &[RepoDataRecord], base: &str, sha256: bool, path: &Path) {
    let mut text = String::from("@EXPLICIT\n");
    for record in records {
        let hash = match sha256 {
            true => format!("sha256:{}", CondaChannel::sha256_of(record)),
            false => CondaChannel::md5_of(record),
        };
        let url = CondaChannel::package_url(base, record);
        text.push_str(&format!("{url}#{hash}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// Every input that names the package by a `file://` channel knows both of
/// its hashes, from itself or from a cache or the archive: each gives the
/// same layers, whose records carry both.
#[test]
fn every_input_gives_the_same_records_with_every_hash() {
    let s = Scene::new();
    let installed = |layout, name: &str, cache: &str| {
        install_env_at(
            &s.channel,
            &["cd-leaf"],
            layout,
            &s.path(name),
            &s.path(cache),
        )
    };
    let prefix = |env: &common::CondaEnv| env.prefix.to_str().unwrap().to_owned();

    // An installed prefix with conda's pkgs dir (archives, extracted folders
    // with info/repodata_record.json).
    let conda = installed(CacheLayout::Conda, "conda-env", "pkgs");
    let (reference, _) = s.build(s.cd("h1", "pkgs"), "conda.tar", &["-p", &prefix(&conda)]);
    s.assert_every_hash(&reference, "conda's cache");
    let mut cases = Vec::new();

    // Its records without md5 (as an old conda wrote them): conda's cache
    // knows it.
    let old = installed(CacheLayout::Conda, "old-env", "pkgs");
    strip_from_conda_meta(&old.prefix, "md5");
    cases.push((
        "records without md5, conda's cache",
        s.build(s.cd("h2", "pkgs"), "old.tar", &["-p", &prefix(&old)]),
    ));

    // With rattler's cache (no archives, no repodata_record.json).
    let rattler = installed(CacheLayout::Rattler, "rattler-env", "h3/rattler/pkgs");
    cases.push((
        "rattler's cache",
        s.build(
            s.cd("h3", "none"),
            "rattler.tar",
            &["-p", &prefix(&rattler)],
        ),
    ));

    // A cleaned cache: rebuilt from the prefix, with the prefix's hashes.
    let cleaned = installed(CacheLayout::Conda, "cleaned-env", "cleaned-pkgs");
    std::fs::remove_dir_all(s.path("cleaned-pkgs")).unwrap();
    cases.push((
        "cleaned cache",
        s.build(
            s.cd("h4", "cleaned-pkgs"),
            "cleaned.tar",
            &["-p", &prefix(&cleaned)],
        ),
    ));

    // A solve against the channel.
    let url = s.channel.url();
    cases.push((
        "solve",
        s.build(
            s.cd("h5", "none"),
            "solve.tar",
            &["--override-channels", "-c", &url, "cd-leaf"],
        ),
    ));

    // A pixi.lock.
    let lock = s.path("pixi.lock");
    write_pixi_lock(&lock, "linux-64", &["default"], &url, &s.records);
    cases.push((
        "pixi.lock",
        s.build(
            s.cd("h6", "none"),
            "pixi.tar",
            &["--file", lock.to_str().unwrap()],
        ),
    ));

    // `conda list --explicit --md5`: the archive gives the sha256.
    let md5s = s.path("explicit-md5.txt");
    explicit_file(&s.records, &md5s);
    cases.push((
        "explicit --md5",
        s.build(
            s.cd("h7", "none"),
            "md5.tar",
            &["--file", md5s.to_str().unwrap()],
        ),
    ));

    // An explicit spec with sha256 alone: the archive gives the md5.
    let shas = s.path("explicit-sha256.txt");
    explicit_spec(&s.records, &url, true, &shas);
    cases.push((
        "explicit sha256",
        s.build(
            s.cd("h8", "none"),
            "sha.tar",
            &["--file", shas.to_str().unwrap()],
        ),
    ));

    for (case, (layers, stderr)) in &cases {
        s.assert_every_hash(layers, case);
        assert_eq!(diff_ids(layers), diff_ids(&reference), "{case}");
        assert!(!stderr.contains("leave them out"), "{case}: {stderr}");
    }
}

/// Over HTTP no archive is at hand: `#md5` names the package, rattler's
/// cache entry gives its sha256; a sha256 alone leaves the md5 out (said
/// once, naming the packages), until a build that knew both has run.
#[test]
fn a_hash_nothing_tells_is_left_out_and_said_once() {
    let s = Scene::new();
    let server = ChannelServer::serve(&s.channel.dir);
    let base = server.url();
    let shas = s.path("sha256.txt");
    explicit_spec(&s.records, &base, true, &shas);
    let md5s = s.path("md5.txt");
    explicit_spec(&s.records, &base, false, &md5s);
    let file = |p: &Path| p.to_str().unwrap().to_owned();

    let (sha_only, stderr) = s.build(s.cd("h", "none"), "sha1.tar", &["--file", &file(&shas)]);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("leave them out"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    for record in &s.records {
        assert!(
            warnings[0].contains(&format!("{} (md5)", dist(record))),
            "{stderr}"
        );
        let (_, json) = &sha_only[&dist(record)];
        assert_eq!(json["sha256"], CondaChannel::sha256_of(record).as_str());
        assert!(json.get("md5").is_none(), "{json}");
    }

    // `#md5` over HTTP, the same cache: rattler's entry gives the sha256.
    let (both, stderr) = s.build(s.cd("h", "none"), "md5.tar", &["--file", &file(&md5s)]);
    s.assert_every_hash(&both, "explicit --md5 over HTTP");
    assert!(!stderr.contains("leave them out"), "{stderr}");
    assert_ne!(diff_ids(&both), diff_ids(&sha_only), "a hash more");

    // The sha256 alone again: the md5 that build saw completes the records.
    let (again, stderr) = s.build(s.cd("h", "none"), "sha2.tar", &["--file", &file(&shas)]);
    s.assert_every_hash(&again, "sha256 after a build that knew the md5");
    assert!(!stderr.contains("leave them out"), "{stderr}");
    assert_eq!(diff_ids(&again), diff_ids(&both));
}
