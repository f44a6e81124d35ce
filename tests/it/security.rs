//! Hostile packages, records and lock files: each is refused with one line
//! naming it, and nothing outside the build's own folders is written,
//! changed or removed (a [`Canary`] folder proves it). Hostile registries
//! and image archives are covered by `security_images.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{self, CacheLayout, Canary, HostilePackage, hostile_channel, install_env};
use crate::fixtures::{conda_docker, failure};

/// A temp folder with a canary beside the build's caches and output.
struct Scene {
    dir: tempfile::TempDir,
    canary: Canary,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let canary = Canary::new(&dir.path().join("canary"));
        Scene { dir, canary }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// conda-docker with every cache inside the scene.
    fn command(&self) -> Command {
        let mut cmd = conda_docker();
        cmd.env("HOME", self.path("home"))
            .env("RATTLER_CACHE_DIR", self.path("rattler"))
            .env("CONDA_PKGS_DIRS", self.path("pkgs"))
            .env("CONDA_DOCKER_CACHE_DIR", self.path("cache"))
            .env_remove("CONDA_PREFIX")
            .env_remove("CONDA_CHANNELS");
        cmd
    }

    /// `build ARGS -b scratch -o out.tar` fails with one line, leaves no
    /// output and an untouched canary; returns the line.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.path("out.tar");
        let line = failure(
            self.command()
                .args(["build", "-q", "-b", "scratch", "-o"])
                .arg(&out)
                .args(args),
        );
        assert!(!out.exists(), "an image was written: {line}");
        self.canary.assert_untouched();
        line
    }
}

/// Builds one hostile package (after `edit`) in its own channel and
/// returns the one-line refusal of a build from it.
fn refuse_package(name: &str, edit: impl FnOnce(&mut HostilePackage, &Canary)) -> String {
    let scene = Scene::new();
    let mut package = HostilePackage::new(&scene.path("work"), name);
    edit(&mut package, &scene.canary);
    let url = hostile_channel(&scene.path("channel"), &[&package]);
    let line = scene.refused(&["-c", &url, "--override-channels", name]);
    assert!(
        line.contains(&format!("refusing package {name}-1-0")),
        "{line}"
    );
    line
}

#[test]
fn paths_json_entries_that_climb_out_are_refused() {
    // The same file on both sides: copying it onto itself would empty it.
    let line = refuse_package("evil-same", |p, canary| {
        p.list(&canary.climb("passwd"), "hardlink");
    });
    assert!(line.contains("has a `..`"), "{line}");

    // Through a deep symlink of the package, then back up and out.
    let line = refuse_package("evil-climb", |p, canary| {
        let deep = vec!["d"; 20].join("/");
        p.file(&format!("{deep}/keep"), b"x", "keep");
        p.symlink("x", &deep, "x", "softlink");
        let listed = format!("x/{}", canary.climb("evil.sh"));
        p.file("payload", b"#!/bin/sh\necho pwned\n", &listed);
    });
    assert!(line.contains("has a `..` or `.` component"), "{line}");

    // An absolute path: an error, not rattler's panic.
    let line = refuse_package("evil-abs", |p, canary| {
        p.list(&format!("{}/abs.sh", canary.dir.display()), "hardlink");
    });
    assert!(line.contains("is absolute"), "{line}");
}

#[test]
fn paths_json_entries_through_symlinks_are_refused() {
    // A symlink the package makes, then a file written through it.
    let line = refuse_package("evil-through", |p, canary| {
        p.symlink("lnk", &canary.dir.display().to_string(), "lnk", "softlink");
        p.list("lnk/passwd", "hardlink");
    });
    // Read through it on the package side, written through it on ours:
    // the first check to see it names it.
    assert!(
        line.contains("`lnk/passwd` goes through the symlink lnk"),
        "{line}"
    );

    // A symlink to a host file, listed as a file: its target would be
    // copied into the image.
    let line = refuse_package("evil-leak", |p, canary| {
        let target = canary.dir.join("passwd").display().to_string();
        p.symlink("leak", &target, "leak", "hardlink");
    });
    assert!(
        line.contains("is listed as a file but is a symlink"),
        "{line}"
    );

    // A no_link symlink is copied, not linked: from outside, never.
    let line = refuse_package("evil-nolink", |p, canary| {
        let target = canary.dir.join("passwd").display().to_string();
        p.symlink("nl", &target, "nl", "softlink");
        p.paths[0]["no_link"] = json!(true);
    });
    assert!(line.contains("no_link symlink to a file outside"), "{line}");
}

#[test]
fn paths_json_entries_that_collide_or_touch_conda_meta_are_refused() {
    let line = refuse_package("evil-twice", |p, _| {
        p.file("a", b"1", "a");
        p.list("a", "hardlink");
    });
    assert!(line.contains("`a` is listed twice"), "{line}");
    let line = refuse_package("evil-meta", |p, _| {
        p.file(
            "conda-meta/other-1-0.json",
            b"{}",
            "conda-meta/other-1-0.json",
        );
    });
    assert!(line.contains("is in conda-meta/"), "{line}");
}

/// A python for noarch packages, with `extra` in its repodata entry.
fn python_channel(scene: &Scene, extra: &Value, noarch: HostilePackage) -> String {
    let mut python = HostilePackage::new(&scene.path("work"), "python");
    python.index["version"] = json!("3.11.0");
    python.file("bin/python3.11", b"#!/bin/sh\n", "bin/python3.11");
    python.repodata = extra.clone();
    hostile_channel(&scene.path("channel"), &[&python, &noarch])
}

fn noarch_package(scene: &Scene, name: &str) -> HostilePackage {
    let mut package = HostilePackage::new(&scene.path("work"), name);
    package.index["subdir"] = json!("noarch");
    package.index["noarch"] = json!("python");
    package.index["depends"] = json!(["python"]);
    package.file("site-packages/six.py", b"x = 1\n", "site-packages/six.py");
    package
}

#[test]
fn python_site_packages_path_must_stay_in_the_prefix() {
    for (value, why) in [
        ("../../../../../../../../../../../..{CANARY}", "has a `..`"),
        ("{CANARY}", "is absolute"),
    ] {
        let scene = Scene::new();
        let value = value.replace("{CANARY}", &scene.canary.dir.display().to_string());
        let noarch = noarch_package(&scene, "six");
        let url = python_channel(&scene, &json!({"python_site_packages_path": value}), noarch);
        let line = scene.refused(&["-c", &url, "--override-channels", "six"]);
        assert!(
            line.contains("refusing the record of python-3.11.0-0: its python_site_packages_path"),
            "{line}"
        );
        assert!(line.contains(why), "{line}");
    }
}

#[test]
fn entry_points_must_be_plain_names() {
    let scene = Scene::new();
    let mut noarch = noarch_package(&scene, "evil-ep");
    noarch.link = Some(json!({
        "noarch": {"type": "python", "entry_points": [
            format!("{} = six:main", scene.canary.climb("ep"))
        ]},
        "package_metadata_version": 1,
    }));
    let url = python_channel(&scene, &json!({}), noarch);
    let line = scene.refused(&["-c", &url, "--override-channels", "evil-ep"]);
    // rattler's parser refuses it already; our own check stands behind it.
    assert!(
        line.contains("evil-ep-1-0")
            && line.contains("entry point command must not contain path separators"),
        "{line}"
    );

    // A link.json that says generic for a noarch python package: rattler
    // would reach an `unreachable!`.
    let scene = Scene::new();
    let mut noarch = noarch_package(&scene, "evil-generic");
    noarch.link = Some(json!({"noarch": {"type": "generic"}, "package_metadata_version": 1}));
    let url = python_channel(&scene, &json!({}), noarch);
    let line = scene.refused(&["-c", &url, "--override-channels", "evil-generic"]);
    assert!(line.contains("says noarch generic"), "{line}");
}

/// An installed environment whose `conda-meta` record of cd-leaf is
/// rewritten by `edit`.
fn edited_env(scene: &Scene, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let channel = common::CondaChannel::build_without_binary(&scene.path("channel"));
    let env = install_env(
        &channel,
        &["cd-leaf"],
        CacheLayout::Conda,
        &scene.path("env"),
    );
    let meta = env.prefix.join("conda-meta");
    let file = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cd-leaf-")
        })
        .unwrap();
    let mut record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    edit(&mut record);
    std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();
    env.prefix
}

fn prefix_arg(prefix: &Path) -> String {
    prefix.display().to_string()
}

#[test]
fn record_fields_cannot_name_folders_outside() {
    // A build string that climbs: it would name the staging folder.
    let scene = Scene::new();
    let prefix = edited_env(&scene, |r| {
        r["build"] = json!(format!("0/{}", scene.canary.climb("x")))
    });
    let line = scene.refused(&["-p", &prefix_arg(&prefix)]);
    assert!(
        line.contains("refusing the record of cd-leaf-1.0-0/"),
        "{line}"
    );
    assert!(line.contains("its build `0/../"), "{line}");
    assert!(line.contains("holds `/`"), "{line}");

    // A symlink the record lists, and a file below it.
    let scene = Scene::new();
    let link_target = scene.canary.climb("");
    let prefix = edited_env(&scene, |r| {
        let paths = r["paths_data"]["paths"].as_array_mut().unwrap();
        paths.push(json!({"_path": "lnk", "path_type": "softlink", "sha256": "0".repeat(64), "size_in_bytes": 0}));
        paths.push(json!({"_path": "lnk/evil.sh", "path_type": "hardlink", "sha256": "0".repeat(64), "size_in_bytes": 0}));
    });
    std::os::unix::fs::symlink(&link_target, prefix.join("lnk")).unwrap();
    let line = scene.refused(&["-p", &prefix_arg(&prefix)]);
    assert!(
        line.contains("its paths `lnk/evil.sh`: goes through the symlink lnk"),
        "{line}"
    );
}

#[test]
fn a_lock_file_cannot_name_folders_outside() {
    use rattler_conda_types::package::BuildString;

    let scene = Scene::new();
    let channel = common::CondaChannel::build_without_binary(&scene.path("channel"));
    let mut records = channel.with_dependencies(&["cd-leaf"]);
    for record in &mut records {
        if record.package_record.name.as_normalized() == "cd-leaf" {
            record.package_record.build =
                BuildString::new_unchecked(format!("0/{}", scene.canary.climb("victim")));
        }
    }
    let lock = scene.path("pixi.lock");
    common::write_pixi_lock(&lock, "linux-64", &["default"], &channel.url(), &records);
    let line = scene.refused(&["--file", &lock.display().to_string()]);
    assert!(
        line.contains("pixi.lock: refusing the record of cd-leaf-1.0-0/"),
        "{line}"
    );
}

#[test]
fn activation_scripts_run_only_when_allowed() {
    let scene = Scene::new();
    let channel = common::CondaChannel::build_without_binary(&scene.path("channel"));
    let env = install_env(
        &channel,
        &["cd-leaf"],
        CacheLayout::Conda,
        &scene.path("env"),
    );
    let script = env.prefix.join("etc/conda/activate.d/cd.sh");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    let ran = scene.path("ran");
    std::fs::write(
        &script,
        format!("touch {}\nexport CD_FROM_SCRIPT=1\n", ran.display()),
    )
    .unwrap();
    let build = |extra: &[&str]| {
        let out = scene.path("out.tar");
        let output = common::run(
            scene
                .command()
                .args(["build", "-b", "scratch", "-o"])
                .arg(&out)
                .arg("-p")
                .arg(&env.prefix)
                .args(extra),
        );
        let image =
            conda_docker::Image::open(&format!("docker-archive:{}", out.display())).unwrap();
        let set = image.config().env_var("CD_FROM_SCRIPT").is_some();
        (String::from_utf8_lossy(&output.stderr).into_owned(), set)
    };
    let (warnings, set) = build(&["--no-activation-scripts"]);
    assert!(!ran.exists(), "the script ran");
    assert!(!set);
    assert!(
        warnings.contains("not running activation script")
            && warnings.contains("etc/conda/activate.d/cd.sh"),
        "{warnings}"
    );
    // By default an installed environment's scripts run, on this machine.
    let (warnings, set) = build(&[]);
    assert!(ran.exists(), "the script did not run: {warnings}");
    assert!(set, "{warnings}");
}

#[test]
fn long_lines_are_cut_in_errors() {
    let scene = Scene::new();
    let file = scene.path("explicit.txt");
    let line = format!("https://example.invalid/{}.conda", "x".repeat(10 << 20));
    std::fs::write(&file, format!("@EXPLICIT\n{line}\n")).unwrap();
    let error = scene.refused(&["--file", &file.display().to_string()]);
    assert!(error.len() < 1000, "{} bytes", error.len());
    assert!(error.contains("explicit.txt:2:"), "{error}");
}

#[test]
fn deeply_nested_yaml_is_refused_before_parsing() {
    let scene = Scene::new();
    let file = scene.path("environment.yml");
    let depth = 100_000;
    std::fs::write(
        &file,
        format!("dependencies: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    )
    .unwrap();
    let error = scene.refused(&["--file", &file.display().to_string()]);
    assert!(
        error.contains("environment.yml:1: nested deeper than 64 brackets"),
        "{error}"
    );
}
