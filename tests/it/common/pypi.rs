//! PyPI fixtures: a real CPython as a conda package, a glibc base to run
//! it on, wheels written by the test, and a v6 `pixi.lock` naming them.
//!
//! The conda fixtures' `python` is an `sh` stand-in; installing wheels
//! needs the real thing. The machine's vanilla CPython (built by pyenv:
//! its `site.py` uses `site-packages`, where Debian's uses
//! `dist-packages`) is packaged as conda packages are: `bin/python3.11`
//! carries the build prefix as a binary placeholder (its RUNPATH), so
//! relocation points it at the image prefix's `lib/libpython3.11.so.1.0`. The busybox base has no C library, so [`glibc_base`] adds the
//! host's glibc loader and the libraries `ldd` lists for that python and
//! its extension modules, each at its own absolute path.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use conda_docker::Image;
use rattler_conda_types::compression_level::CompressionLevel;
use rattler_conda_types::{Channel, RepoData, RepoDataRecord};
use rattler_digest::{Md5, compute_file_digest};
use rattler_package_streaming::write::write_conda_package;
use serde_json::json;

use super::conda::{sha256_file_hex, sha256_hex};
use super::process::run;
use super::rootfs::busybox_rootfs;
use super::tools::skip_or_panic;

/// A vanilla CPython on this machine.
pub struct CPython {
    /// Its prefix (`sys.base_prefix`), e.g. `/root/.pyenv/versions/3.11.7`.
    pub home: PathBuf,
    /// `major.minor`, e.g. `3.11`.
    pub short: String,
    /// The full version, e.g. `3.11.7`.
    pub version: String,
}

impl CPython {
    /// Its `include/pythonX.Y`, for compiling an extension.
    pub fn include(&self) -> PathBuf {
        self.home
            .join("include")
            .join(format!("python{}", self.short))
    }

    /// `cpXY`, the wheel tag of this interpreter.
    pub fn tag(&self) -> String {
        format!("cp{}", self.short.replace('.', ""))
    }
}

/// The machine's vanilla CPython 3.11: `python3`'s `sys.base_prefix` when
/// that is one, else `~/.pyenv/versions/3.11.*`. `None` after a printed
/// skip (a failure under `CONDA_DOCKER_REQUIRE_TOOLS=1`: the machines
/// this project runs on have one) when there is none.
pub fn vanilla_cpython() -> Option<CPython> {
    let from_python3 = Command::new("python3")
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let pyenv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".pyenv/versions"))
        .and_then(|dir| fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("3.11."))
        });
    let found = from_python3.into_iter().chain(pyenv).find_map(|home| {
        let version = home.file_name()?.to_string_lossy().into_owned();
        let vanilla = !home.starts_with("/usr")
            && home.join("bin/python3.11").is_file()
            && home.join("lib/python3.11/site.py").is_file()
            && home.join("lib/libpython3.11.so.1.0").is_file()
            && home.join("include/python3.11/Python.h").is_file()
            && home.join("lib/python3.11/site-packages/pip").is_dir();
        vanilla.then(|| CPython {
            version: match version.starts_with("3.11.") {
                true => version,
                false => "3.11.0".into(),
            },
            short: "3.11".into(),
            home,
        })
    });
    if found.is_none() {
        skip_or_panic(
            "no vanilla CPython 3.11 with pip and a shared libpython (pyenv's, ~/.pyenv/versions/3.11.*) found",
        );
    }
    found
}

/// Whether a path under `lib/pythonX.Y` stays out of the package: tests,
/// byte code, build config, GUI modules and every site package but pip.
fn left_out(rel: &Path) -> bool {
    let name = rel.file_name().unwrap_or_default().to_string_lossy();
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let in_site = parts.get(2).is_some_and(|p| p == "site-packages");
    name == "__pycache__"
        || name == "test"
        || name == "tests"
        || name == "idle_test"
        || name.starts_with("config-")
        || ["idlelib", "tkinter", "turtledemo", "ensurepip"].contains(&name.as_ref())
        || name.starts_with("_tkinter")
        || (in_site
            && parts.len() == 4
            && !(name == "pip" || (name.starts_with("pip-") && name.ends_with(".dist-info"))))
}

/// Files of `dir` (relative to `root`), sorted, minus what [`left_out`]
/// drops.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).unwrap().to_owned();
        if left_out(&rel) {
            continue;
        }
        let meta = path.symlink_metadata().unwrap();
        if meta.is_dir() {
            walk(root, &path, out);
        } else if meta.is_file() || meta.is_symlink() {
            out.push(rel);
        }
    }
}

/// Writes `cpython` as the linux-64 conda package `python` into
/// `channel/linux-64/` (with `repodata.json` there and in `noarch/`).
pub fn cpython_channel(cpython: &CPython, channel: &Path) {
    let dist = format!("python-{}-h0_cd", cpython.version);
    let staging = channel.join(".work").join(&dist);
    let mut files = vec![
        PathBuf::from("bin/python3.11"),
        PathBuf::from("lib/libpython3.11.so.1.0"),
    ];
    walk(
        &cpython.home,
        &cpython.home.join("lib/python3.11"),
        &mut files,
    );
    let placeholder = cpython.home.to_string_lossy().into_owned();
    let mut paths = Vec::new();
    for rel in &files {
        let (from, to) = (cpython.home.join(rel), staging.join(rel));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        let meta = from.symlink_metadata().unwrap();
        if meta.is_symlink() {
            symlink(fs::read_link(&from).unwrap(), &to).unwrap();
            paths.push(json!({"_path": rel, "path_type": "softlink",
                "sha256": sha256_file_hex(&to), "size_in_bytes": fs::metadata(&to).unwrap().len()}));
            continue;
        }
        fs::copy(&from, &to).unwrap();
        let mode = (meta.permissions().mode() & 0o755) | 0o644;
        fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        let mut entry = json!({"_path": rel, "path_type": "hardlink",
            "sha256": sha256_file_hex(&to), "size_in_bytes": meta.len()});
        // The interpreter's RUNPATH names the build prefix. Not
        // libpython's strings: there the linker shares the tail of that
        // prefix with the version string (`3.11.7`), which relocation
        // would blank; conda-build's long placeholder prefixes avoid that.
        if rel.starts_with("bin") {
            entry["prefix_placeholder"] = json!(placeholder);
            entry["file_mode"] = json!("binary");
        }
        paths.push(entry);
    }
    for link in ["python", "python3"] {
        symlink("python3.11", staging.join("bin").join(link)).unwrap();
        paths.push(
            json!({"_path": format!("bin/{link}"), "path_type": "softlink",
            "sha256": sha256_file_hex(&staging.join("bin/python3.11")),
            "size_in_bytes": fs::metadata(staging.join("bin/python3.11")).unwrap().len()}),
        );
    }
    let mut index = json!({
        "build": "h0_cd", "build_number": 0, "depends": [], "license": "PSF-2.0",
        "name": "python", "subdir": "linux-64", "arch": "x86_64", "platform": "linux",
        "timestamp": 1_700_000_000_000u64, "version": cpython.version,
    });
    let info = staging.join("info");
    fs::create_dir_all(&info).unwrap();
    fs::write(info.join("index.json"), index.to_string()).unwrap();
    fs::write(
        info.join("paths.json"),
        json!({"paths": paths, "paths_version": 1}).to_string(),
    )
    .unwrap();
    let listed: String = paths
        .iter()
        .map(|p| format!("{}\n", p["_path"].as_str().unwrap()))
        .collect();
    fs::write(info.join("files"), listed).unwrap();
    let mut contents = Vec::new();
    collect_all(&staging, &mut contents);
    let file_name = format!("{dist}.conda");
    let archive = channel.join("linux-64").join(&file_name);
    fs::create_dir_all(archive.parent().unwrap()).unwrap();
    write_conda_package(
        File::create(&archive).unwrap(),
        &staging,
        &contents,
        CompressionLevel::Numeric(1),
        None,
        &dist,
        None,
        None,
    )
    .unwrap();
    fs::remove_dir_all(channel.join(".work")).unwrap();
    index["md5"] = json!(hex::encode(compute_file_digest::<Md5>(&archive).unwrap()));
    index["sha256"] = json!(sha256_file_hex(&archive));
    index["size"] = json!(fs::metadata(&archive).unwrap().len());
    for (subdir, packages) in [
        ("linux-64", json!({file_name: index})),
        ("noarch", json!({})),
    ] {
        let repodata = json!({"info": {"subdir": subdir}, "packages": {},
            "packages.conda": packages, "repodata_version": 1});
        fs::create_dir_all(channel.join(subdir)).unwrap();
        fs::write(
            channel.join(subdir).join("repodata.json"),
            repodata.to_string(),
        )
        .unwrap();
    }
}

/// Every file and symlink under `dir`, absolute (as
/// `rattler_package_streaming` wants them).
fn collect_all(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.symlink_metadata().unwrap().is_dir() {
            collect_all(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The records of the channel at `dir`, served at `url`.
pub fn channel_records(dir: &Path, url: &str) -> Vec<RepoDataRecord> {
    let channel = Channel::from_url(url.parse::<url::Url>().unwrap());
    let repodata = RepoData::from_path(dir.join("linux-64/repodata.json")).unwrap();
    repodata.into_repo_data_records(&channel)
}

/// A base image: busybox plus the host's glibc loader and the libraries
/// `ldd` lists for `binaries`, each copied to the path `ldd` names.
pub fn glibc_base(dir: &Path, binaries: &[PathBuf]) -> Image {
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    let mut libraries = BTreeSet::new();
    for binary in binaries {
        let output = run(Command::new("ldd").arg(binary));
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim().split(' ').next().unwrap_or_default(),
                None => line.trim().split(' ').next().unwrap_or_default(),
            };
            // libpython comes with the python package, not the base.
            if path.starts_with('/') && !path.contains("libpython") {
                libraries.insert(PathBuf::from(path));
            }
        }
    }
    for library in &libraries {
        let to = rootfs.join(library.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(library, &to).unwrap_or_else(|e| panic!("copy {}: {e}", library.display()));
    }
    let mut image = Image::scratch().unwrap();
    image.add_layer_path(&rootfs, "/", None).unwrap();
    image.config_mut().set_env("PATH", "/bin");
    image
}

/// The binaries whose libraries a python base needs: the interpreter, its
/// libpython and its extension modules (the GUI ones left out).
pub fn python_binaries(cpython: &CPython) -> Vec<PathBuf> {
    let mut binaries = vec![
        cpython.home.join("bin/python3.11"),
        cpython.home.join("lib/libpython3.11.so.1.0"),
    ];
    let dynload = cpython.home.join("lib/python3.11/lib-dynload");
    let mut modules: Vec<PathBuf> = fs::read_dir(&dynload)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("_tkinter")
        })
        .collect();
    modules.sort();
    binaries.extend(modules);
    binaries
}

/// A file of a wheel: its archive path, bytes and whether it is executable.
pub struct WheelFile<'a> {
    pub path: &'a str,
    pub bytes: &'a [u8],
    pub executable: bool,
}

/// Writes the wheel `dir/NAME-VERSION-TAG.whl` with `files`, its
/// `.dist-info` (`METADATA`, `WHEEL`, `entry_points.txt` when given, a
/// true `RECORD`) and returns its path and sha256 (hex).
pub fn write_wheel(
    dir: &Path,
    (name, version, tag): (&str, &str, &str),
    files: &[WheelFile],
    entry_points: Option<&str>,
) -> (PathBuf, String) {
    let path = dir.join(format!("{name}-{version}-{tag}.whl"));
    fs::create_dir_all(dir).unwrap();
    let dist_info = format!("{name}-{version}.dist-info");
    let metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let pure = tag.ends_with("-none-any");
    let wheel = format!(
        "Wheel-Version: 1.0\nGenerator: conda-docker-tests\nRoot-Is-Purelib: {pure}\nTag: {tag}\n"
    );
    let mut all: Vec<(String, Vec<u8>, bool)> = files
        .iter()
        .map(|f| (f.path.to_owned(), f.bytes.to_vec(), f.executable))
        .collect();
    all.push((
        format!("{dist_info}/METADATA"),
        metadata.into_bytes(),
        false,
    ));
    all.push((format!("{dist_info}/WHEEL"), wheel.into_bytes(), false));
    if let Some(text) = entry_points {
        all.push((
            format!("{dist_info}/entry_points.txt"),
            text.as_bytes().to_vec(),
            false,
        ));
    }
    let mut record = String::new();
    for (path, bytes, _) in &all {
        let digest = rattler_digest::compute_bytes_digest::<rattler_digest::Sha256>(bytes);
        record.push_str(&format!(
            "{path},sha256={},{}\n",
            base64url_nopad(&digest),
            bytes.len()
        ));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    all.push((format!("{dist_info}/RECORD"), record.into_bytes(), false));
    let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
    for (name, bytes, executable) in &all {
        let mode = if *executable { 0o755 } else { 0o644 };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    let sha = sha256_hex(&fs::read(&path).unwrap());
    (path, sha)
}

/// URL-safe base64 without padding (a wheel `RECORD`'s hash encoding).
fn base64url_nopad(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One PyPI entry of a v6 `pixi.lock`: its location (a URL or a path) and
/// what the lock says of it.
pub struct PypiEntry {
    pub name: String,
    pub version: String,
    pub location: String,
    pub sha256: Option<String>,
}

/// A v6 `pixi.lock` (as pixi 0.4x-0.6x write it) at `path`: environment
/// `default` on linux-64 with the channel `channel_url`, the conda
/// `records` and the PyPI `pypi` entries.
pub fn write_pixi_lock_v6(
    path: &Path,
    channel_url: &str,
    records: &[RepoDataRecord],
    pypi: &[PypiEntry],
) {
    let mut text = format!(
        "version: 6\nenvironments:\n  default:\n    channels:\n    - url: {channel_url}\n    indexes:\n    - https://pypi.org/simple\n    packages:\n      linux-64:\n"
    );
    for record in records {
        text.push_str(&format!("      - conda: {}\n", record.url));
    }
    for entry in pypi {
        text.push_str(&format!("      - pypi: {}\n", entry.location));
    }
    text.push_str("packages:\n");
    for record in records {
        let p = &record.package_record;
        text.push_str(&format!(
            "- conda: {}\n  name: {}\n  version: '{}'\n  build: '{}'\n  subdir: {}\n  sha256: {}\n  md5: {}\n  size: {}\n",
            record.url,
            p.name.as_normalized(),
            p.version,
            p.build,
            p.subdir,
            hex::encode(p.sha256.unwrap()),
            hex::encode(p.md5.unwrap()),
            p.size.unwrap_or(0)
        ));
    }
    for entry in pypi {
        text.push_str(&format!(
            "- pypi: {}\n  name: {}\n  version: '{}'\n",
            entry.location, entry.name, entry.version
        ));
        if let Some(sha) = &entry.sha256 {
            text.push_str(&format!("  sha256: {sha}\n"));
        }
        text.push_str("  requires_python: '>=3.8'\n");
    }
    fs::write(path, text).unwrap();
}
