//! Proves the conda fixtures in `common::conda`: the packages are valid
//! archives, both cache layouts give a complete, relocated environment, and
//! the explicit file is what conda writes. Product tests can then trust them.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use rattler::validation::{ValidationMode, validate_package_directory};
use rattler_conda_types::package::{FileMode, IndexJson};
use rattler_conda_types::prefix_record::PathType;
use rattler_conda_types::{ExplicitEnvironmentSpec, RepoDataRecord, Subdir};
use rattler_package_streaming::seek::read_package_file;

use crate::common::{
    self, CD_BINARY, CD_LEAF, CD_LINK, CD_NOARCH, CD_TEXT, CacheLayout, CondaChannel, CondaEnv,
    PACKAGES_WITHOUT_BINARY, PLACEHOLDER,
};

/// Re-reads every archive with rattler: hashes match the repodata, and a
/// full validation (every file against `paths.json`) passes.
#[test]
fn conda_fixture_packages_are_valid_archives() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(dir.path());
    let names: BTreeSet<_> = channel
        .records
        .iter()
        .map(|r| r.package_record.name.as_normalized().to_string())
        .collect();
    assert_eq!(names, PACKAGES_WITHOUT_BINARY.map(String::from).into());
    for record in &channel.records {
        check_archive(&channel, record, dir.path());
    }
    let extensions: BTreeSet<_> = channel
        .records
        .iter()
        .map(|r| r.identifier.to_file_name().ends_with(".conda"))
        .collect();
    assert_eq!(extensions.len(), 2, "both .conda and .tar.bz2 are used");
}

#[test]
fn conda_fixture_placeholders_are_declared_in_paths_json() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(dir.path());
    let extracted = extract(&channel, CD_TEXT, dir.path());
    let (_, paths) = validate_package_directory(&extracted, ValidationMode::Full).unwrap();
    for entry in &paths.paths {
        let placeholder = entry.prefix_placeholder.as_ref().expect("placeholder");
        assert_eq!(placeholder.placeholder, PLACEHOLDER);
        assert_eq!(placeholder.file_mode, FileMode::Text);
    }
    assert!(PLACEHOLDER.len() > 80);
    let noarch = extract(&channel, CD_NOARCH, dir.path());
    let link: serde_json::Value =
        serde_json::from_slice(&fs::read(noarch.join("info/link.json")).unwrap()).unwrap();
    assert_eq!(link["noarch"]["type"], "python");
    assert_eq!(link["noarch"]["entry_points"][0], "cd-entry = cdpkg:main");
}

#[test]
fn conda_fixture_rattler_layout_env_is_complete_and_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(dir.path().join("channel").as_path());
    let env = common::install_env(
        &channel,
        &PACKAGES_WITHOUT_BINARY,
        CacheLayout::Rattler,
        dir.path(),
    );
    check_env(&env, PACKAGES_WITHOUT_BINARY.len());
    for record in &env.records {
        let dist = dist(&record.repodata_record);
        assert!(env.cache_dir.join(&dist).join("info/index.json").is_file());
        assert!(env.cache_dir.join(format!("{dist}.lock")).is_file());
        assert_eq!(
            record.extracted_package_dir.as_deref(),
            Some(env.cache_dir.join(&dist).as_path())
        );
    }
    assert!(!env.cache_dir.join("urls.txt").exists());
}

#[test]
fn conda_fixture_conda_layout_env_is_complete_and_relocated() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(dir.path().join("channel").as_path());
    // Only leaves requested: cd-text and python come in as dependencies.
    let env = common::install_env(
        &channel,
        &[CD_LEAF, CD_NOARCH, CD_LINK],
        CacheLayout::Conda,
        dir.path(),
    );
    check_env(&env, PACKAGES_WITHOUT_BINARY.len());
    check_pkgs_dir(&env);
    check_conda_meta(&env);
    assert!(env.prefix.join("conda-meta/history").is_file());
    assert!(
        !env.prefix.join("CACHEDIR.TAG").exists(),
        "conda writes none"
    );
}

/// The binary placeholder: the static C program prints whatever prefix it
/// was installed into, in both layouts.
#[test]
fn conda_fixture_binary_is_relocated_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(channel) = CondaChannel::build(dir.path().join("channel").as_path()) else {
        return;
    };
    check_archive(&channel, channel.record(CD_BINARY), dir.path());
    for (layout, sub) in [(CacheLayout::Rattler, "r"), (CacheLayout::Conda, "c")] {
        let env = common::install_env(&channel, &[CD_BINARY], layout, &dir.path().join(sub));
        assert_eq!(env.records.len(), 2, "cd-binary pulls in cd-text");
        let output = common::run(&mut Command::new(env.prefix.join("bin/cd-binary")));
        assert_eq!(
            common::stdout(&output),
            common::cd_binary_output(&env.prefix.to_string_lossy())
        );
        let path = &env.record(CD_BINARY).paths_data.paths[0];
        assert_eq!(path.file_mode, Some(FileMode::Binary));
        assert_ne!(path.sha256_in_prefix, path.sha256);
    }
}

#[test]
fn conda_fixture_explicit_file_is_what_conda_lists() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(dir.path().join("channel").as_path());
    let env = common::install_env(&channel, &[CD_LEAF], CacheLayout::Conda, dir.path());
    let path = dir.path().join("explicit.txt");
    common::explicit_file(&env.repodata_records(), &path);
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "# This file may be used to create an environment using:"
    );
    assert_eq!(lines[2], "# platform: linux-64");
    assert_eq!(lines[4], "@EXPLICIT");
    let text_record = channel.record(CD_TEXT);
    let md5 = hex::encode(text_record.package_record.md5.unwrap());
    assert_eq!(lines[5], format!("{}#{md5}", text_record.url), "deps first");
    let leaf = channel.record(CD_LEAF);
    let md5 = hex::encode(leaf.package_record.md5.unwrap());
    assert!(text.ends_with(&format!("{}#{md5}\n", leaf.url)), "{text}");
    // conda's final newline is no blank line: rattler reads the file as is.
    let spec = ExplicitEnvironmentSpec::from_path(&path).unwrap();
    assert_eq!(spec.platform, Some(Subdir::Linux64));
    assert_eq!(spec.packages.len(), 2);
}

/// Extracts `record`'s archive, checks its hashes against the repodata and
/// validates every file against its `paths.json`.
fn check_archive(channel: &CondaChannel, record: &RepoDataRecord, tmp: &Path) {
    let name = record.package_record.name.as_normalized();
    let archive = channel.archive(name);
    assert!(archive.starts_with(channel.dir.join(&record.package_record.subdir)));
    let index: IndexJson = read_package_file(&archive).unwrap();
    assert_eq!(index.name, record.package_record.name);
    let dest = tmp.join("extracted").join(name);
    let result = rattler_package_streaming::fs::extract(&archive, &dest).unwrap();
    assert_eq!(Some(result.sha256), record.package_record.sha256, "{name}");
    assert_eq!(Some(result.md5), record.package_record.md5, "{name}");
    assert_eq!(
        Some(fs::metadata(&archive).unwrap().len()),
        record.package_record.size
    );
    validate_package_directory(&dest, ValidationMode::Full)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let files = fs::read_to_string(dest.join("info/files")).unwrap();
    assert!(!files.is_empty(), "{name}: info/files lists the payload");
}

fn extract(channel: &CondaChannel, name: &str, tmp: &Path) -> std::path::PathBuf {
    let dest = tmp.join("x").join(name);
    rattler_package_streaming::fs::extract(&channel.archive(name), &dest).unwrap();
    dest
}

/// What every environment must show, whatever its cache layout.
fn check_env(env: &CondaEnv, expected_packages: usize) {
    assert_eq!(env.records.len(), expected_packages);
    for record in &env.records {
        for path in &record.paths_data.paths {
            let full = env.prefix.join(&path.relative_path);
            assert!(
                full.symlink_metadata().is_ok(),
                "{} missing",
                full.display()
            );
        }
    }
    let prefix = env.prefix.to_string_lossy();
    let config = fs::read_to_string(env.prefix.join("share/cd-text/config.txt")).unwrap();
    assert_eq!(config, format!("root={prefix}/share\n"));
    let output = common::run(&mut Command::new(env.prefix.join("bin/cd-show")));
    assert_eq!(common::stdout(&output), common::cd_show_output(&prefix));
    let link = env.prefix.join("lib/libcd.so");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("libcd.so.1"));
    let module = env
        .prefix
        .join("lib/python3.12/site-packages/cdpkg/__init__.py");
    assert!(fs::read_to_string(module).unwrap().contains("def main():"));
    let entry = fs::read_to_string(env.prefix.join("bin/cd-entry")).unwrap();
    assert!(
        entry.starts_with(&format!("#!{prefix}/bin/python3.12")),
        "{entry}"
    );
    let noarch = env.record(CD_NOARCH);
    assert!(
        noarch
            .paths_data
            .paths
            .iter()
            .any(|p| p.path_type == PathType::UnixPythonEntryPoint)
    );
}

/// A conda pkgs dir: archives, extracted folders with
/// `info/repodata_record.json`, `urls.txt`, and nothing of rattler's.
fn check_pkgs_dir(env: &CondaEnv) {
    let pkgs = &env.cache_dir;
    let urls = fs::read_to_string(pkgs.join("urls.txt")).unwrap();
    let urls: BTreeSet<&str> = urls.lines().collect();
    for record in env.repodata_records() {
        assert!(pkgs.join(record.identifier.to_file_name()).is_file());
        let saved = pkgs.join(dist(&record)).join("info/repodata_record.json");
        let saved: RepoDataRecord = serde_json::from_slice(&fs::read(saved).unwrap()).unwrap();
        assert_eq!(saved.url, record.url);
        assert_eq!(saved.package_record.sha256, record.package_record.sha256);
        assert!(urls.contains(record.url.as_str()));
    }
    for entry in fs::read_dir(pkgs).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".lock"),
            "rattler left {name} in the pkgs dir"
        );
    }
}

/// The conda-meta records carry what conda writes, pointing into pkgs.
fn check_conda_meta(env: &CondaEnv) {
    for record in &env.records {
        let dist = dist(&record.repodata_record);
        let extracted = env.cache_dir.join(&dist);
        assert_eq!(
            record.extracted_package_dir.as_deref(),
            Some(extracted.as_path())
        );
        assert!(record.package_tarball_full_path.as_ref().unwrap().is_file());
        assert_eq!(record.link.as_ref().unwrap().source, extracted);
        assert!(record.repodata_record.package_record.sha256.is_some());
        assert!(record.repodata_record.package_record.md5.is_some());
    }
    let meta = env.prefix.join("conda-meta/cd-text-1.0-0.json");
    let meta: serde_json::Value = serde_json::from_slice(&fs::read(meta).unwrap()).unwrap();
    assert_eq!(
        meta["requested_specs"],
        serde_json::json!([]),
        "a dependency"
    );
    assert!(meta["url"].as_str().unwrap().starts_with("file:///"));
    let config = &meta["paths_data"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["_path"] == "share/cd-text/config.txt")
        .unwrap();
    assert_eq!(config["prefix_placeholder"], PLACEHOLDER);
    assert_eq!(config["file_mode"], "text");
    let installed = common::sha256_file_hex(&env.prefix.join("share/cd-text/config.txt"));
    assert_eq!(config["sha256_in_prefix"], installed.as_str());
    assert_ne!(config["sha256"], installed.as_str());
    let leaf = env.record(CD_LEAF);
    assert_eq!(leaf.requested_specs, vec![CD_LEAF.to_string()]);
    // conda hardlinks unmodified files from the pkgs dir into the prefix.
    let installed = fs::metadata(env.prefix.join("share/cd-leaf/leaf.txt")).unwrap();
    let cached = fs::metadata(env.cache_dir.join("cd-leaf-1.0-0/share/cd-leaf/leaf.txt")).unwrap();
    assert_eq!(installed.ino(), cached.ino(), "linked from the pkgs dir");
}

fn dist(record: &RepoDataRecord) -> String {
    let p = &record.package_record;
    format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build)
}
