//! Hostile conda packages: real `.tar.bz2` archives whose metadata lies.
//!
//! The channel builder in `conda.rs` writes honest packages from a spec;
//! here a test writes the package folder itself (files, symlinks, and a
//! `paths.json`, `index.json` or `link.json` of its choosing), and
//! [`hostile_channel`] archives it and indexes it with correct hashes, so
//! the only lie is inside the package.

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rattler_conda_types::compression_level::CompressionLevel;
use rattler_digest::{Md5, compute_file_digest};
use rattler_package_streaming::write::write_tar_bz2_package;
use serde_json::{Value, json};

use super::conda::sha256_file_hex;

/// One package folder being written.
pub struct HostilePackage {
    /// The folder holding the package's files and `info/`.
    pub dir: PathBuf,
    /// `info/index.json`.
    pub index: Value,
    /// The `paths` of `info/paths.json`.
    pub paths: Vec<Value>,
    /// `info/link.json`, if any.
    pub link: Option<Value>,
    /// Merged into the package's `repodata.json` entry (say, a
    /// `python_site_packages_path`).
    pub repodata: Value,
}

impl HostilePackage {
    /// A linux-64 package `name-1-0` staged under `work/name`.
    pub fn new(work: &Path, name: &str) -> Self {
        let dir = work.join(name);
        fs::create_dir_all(&dir).unwrap();
        HostilePackage {
            dir,
            index: json!({
                "name": name, "version": "1", "build": "0", "build_number": 0,
                "depends": [], "license": "MIT", "subdir": "linux-64",
                "arch": "x86_64", "platform": "linux", "timestamp": 1_700_000_000_000u64,
            }),
            paths: Vec::new(),
            link: None,
            repodata: json!({}),
        }
    }

    /// A file in the package, listed in `paths.json` at `listed`.
    pub fn file(&mut self, path: &str, bytes: &[u8], listed: &str) -> &mut Self {
        let full = self.dir.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, bytes).unwrap();
        self.list(listed, "hardlink")
    }

    /// A symlink in the package, listed as `path_type` at `listed`.
    pub fn symlink(
        &mut self,
        path: &str,
        target: &str,
        listed: &str,
        path_type: &str,
    ) -> &mut Self {
        let full = self.dir.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        symlink(target, &full).unwrap();
        self.list(listed, path_type)
    }

    /// A `paths.json` entry with nothing behind it on disk.
    pub fn list(&mut self, listed: &str, path_type: &str) -> &mut Self {
        self.paths.push(json!({
            "_path": listed, "path_type": path_type,
            "sha256": "0".repeat(64), "size_in_bytes": 0,
        }));
        self
    }

    fn write_info(&self) {
        let info = self.dir.join("info");
        fs::create_dir_all(&info).unwrap();
        let write = |name: &str, value: &Value| {
            fs::write(info.join(name), serde_json::to_vec_pretty(value).unwrap()).unwrap()
        };
        write("index.json", &self.index);
        write(
            "paths.json",
            &json!({"paths": self.paths, "paths_version": 1}),
        );
        if let Some(link) = &self.link {
            write("link.json", link);
        }
    }

    fn dist(&self) -> String {
        format!(
            "{}-{}-{}",
            self.index["name"].as_str().unwrap(),
            self.index["version"].as_str().unwrap(),
            self.index["build"].as_str().unwrap()
        )
    }
}

/// Every non-directory below `dir`, symlinks not followed.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.symlink_metadata().unwrap().is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Archives each package into `channel/<subdir>/` with a `repodata.json`
/// of true hashes (and an empty `noarch/`), and returns the channel's
/// `file://` URL.
pub fn hostile_channel(channel: &Path, packages: &[&HostilePackage]) -> String {
    let channel = std::path::absolute(channel).unwrap();
    let mut by_subdir: std::collections::BTreeMap<String, serde_json::Map<String, Value>> =
        [("noarch".to_owned(), serde_json::Map::new())].into();
    for package in packages {
        package.write_info();
        let subdir = package.index["subdir"].as_str().unwrap().to_owned();
        let file_name = format!("{}.tar.bz2", package.dist());
        let archive = channel.join(&subdir).join(&file_name);
        fs::create_dir_all(archive.parent().unwrap()).unwrap();
        let base = std::path::absolute(&package.dir).unwrap();
        write_tar_bz2_package(
            File::create(&archive).unwrap(),
            &base,
            &files_under(&base),
            CompressionLevel::Numeric(1),
            None,
            None,
        )
        .unwrap();
        let mut entry = package.index.clone();
        entry["md5"] = json!(hex::encode(compute_file_digest::<Md5>(&archive).unwrap()));
        entry["sha256"] = json!(sha256_file_hex(&archive));
        entry["size"] = json!(fs::metadata(&archive).unwrap().len());
        if let (Some(entry), Some(extra)) = (entry.as_object_mut(), package.repodata.as_object()) {
            entry.extend(extra.clone());
        }
        by_subdir
            .entry(subdir)
            .or_default()
            .insert(file_name, entry);
    }
    for (subdir, packages) in by_subdir {
        let repodata = json!({
            "info": {"subdir": subdir}, "packages": packages,
            "packages.conda": {}, "removed": [], "repodata_version": 1,
        });
        fs::create_dir_all(channel.join(&subdir)).unwrap();
        fs::write(
            channel.join(&subdir).join("repodata.json"),
            serde_json::to_vec(&repodata).unwrap(),
        )
        .unwrap();
    }
    url::Url::from_directory_path(&channel).unwrap().to_string()
}

/// A folder outside everything a build owns, holding one file; tests check
/// that it is exactly as it was afterwards.
pub struct Canary {
    /// The folder.
    pub dir: PathBuf,
}

impl Canary {
    /// Creates `dir` with `passwd` holding a known line.
    pub fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("passwd"), b"root:x:0:0\n").unwrap();
        Canary {
            dir: std::path::absolute(dir).unwrap(),
        }
    }

    /// Panics unless the folder holds exactly `passwd`, unchanged.
    pub fn assert_untouched(&self) {
        let names: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["passwd"], "the canary folder changed");
        assert_eq!(
            fs::read(self.dir.join("passwd")).unwrap(),
            b"root:x:0:0\n",
            "the canary file changed"
        );
    }

    /// `../` repeated enough to climb from any temp folder to `/`, then the
    /// canary's path: a relative path that lands in the canary.
    pub fn climb(&self, file: &str) -> String {
        format!(
            "{}{}/{file}",
            "../".repeat(40),
            self.dir.display().to_string().trim_start_matches('/')
        )
    }
}
