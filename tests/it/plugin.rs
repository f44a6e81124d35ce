//! `conda docker ...` through the conda plugin in `plugin/`, and the
//! conda-forge recipe in `conda-recipe/`.
//!
//! The plugin is pip-installed for real (so its entry point is what conda
//! would find) and runs the real binary. conda itself cannot be installed
//! here, so `python -m conda` is the STAND-IN in `tests/conda-standin/`
//! (real pluggy, conda's dispatch rules; see its README), in one of the
//! condas it mirrors: conda's main branch, 23.1, or a future conda whose
//! plugin types this plugin cannot find.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{self, CacheLayout, CondaChannel, Venv, install_env_at};

/// A venv with pluggy (for the conda stand-in) and setuptools (the
/// plugin's build backend; 77 reads an SPDX `license` and builds wheels
/// on its own).
fn pluggy_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    Venv {
        dir: "venv-pluggy",
        requirements: &["pluggy>=1.0", "setuptools>=77"],
        check: "import pluggy, setuptools; assert int(setuptools.__version__.split('.')[0]) >= 77",
    }
    .python(&PYTHON)
}

/// A venv with py-rattler-build, which renders recipes offline.
fn rattler_build_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    Venv {
        dir: "venv-rattler-build",
        requirements: &["py-rattler-build>=0.73"],
        check: "import rattler_build; rattler_build.Stage0Recipe.from_yaml",
    }
    .python(&PYTHON)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Which conda the stand-in mirrors (`CONDA_STANDIN_VERSION`).
#[derive(Clone, Copy, Debug)]
enum Mirrors {
    /// conda's main branch after conda/conda#16561: `conda.plugins`
    /// exports only `hookimpl`, and the types are keyword-only dataclasses.
    Main,
    /// conda 23.1: NamedTuple types, re-exported from `conda.plugins`.
    V23_1,
    /// A conda with no `conda.plugins.types`.
    Future,
}

impl Mirrors {
    fn name(self) -> &'static str {
        match self {
            Mirrors::Main => "main",
            Mirrors::V23_1 => "23.1",
            Mirrors::Future => "future",
        }
    }
}

/// conda's world for one test: the plugin installed by pip into `site`,
/// and the folders `python -m conda` searches.
struct Conda {
    python: PathBuf,
    path: String,
    dir: PathBuf,
    mirrors: Mirrors,
}

impl Conda {
    /// Installs the plugin from a copy of `plugin/` (pip builds in the
    /// source folder; the repository stays clean).
    fn new(dir: &Path, mirrors: Mirrors) -> Option<Self> {
        let python = pluggy_python()?;
        let source = dir.join("plugin-src");
        copy_tree(&repo().join("plugin"), &source);
        common::run(
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args([
                    "--no-deps",
                    "--no-build-isolation",
                    "--no-index",
                    "--target",
                ])
                .arg(dir.join("site"))
                .arg(&source),
        );
        // pluggy comes from the venv's own site-packages.
        let pluggy = common::stdout(&common::run(Command::new(&python).args([
            "-c",
            "import os, pluggy; print(os.path.dirname(os.path.dirname(pluggy.__file__)))",
        ])));
        let path = std::env::join_paths([
            dir.join("site"),
            repo().join("tests/conda-standin"),
            PathBuf::from(pluggy.trim()),
        ])
        .unwrap()
        .to_string_lossy()
        .into_owned();
        Some(Conda {
            python,
            path,
            dir: dir.to_owned(),
            mirrors,
        })
    }

    /// `python -m conda ARGS` with a clean environment: PATH is `path`,
    /// and the stand-in's settings come from `context` (JSON).
    fn command(&self, path: &Path, context: &serde_json::Value) -> Command {
        self.command_in(&self.python, path, context)
    }

    /// [`Conda::command`] run by another `python` (another `sys.prefix`).
    fn command_in(&self, python: &Path, path: &Path, context: &serde_json::Value) -> Command {
        let file = self.dir.join("context.json");
        std::fs::write(&file, context.to_string()).unwrap();
        let mut cmd = Command::new(python);
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.join("home"))
            .env("PYTHONPATH", &self.path)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("CONDA_DOCKER_CACHE_DIR", self.dir.join("cd-cache"))
            .env("CONDA_STANDIN_CONTEXT", file)
            .env("CONDA_STANDIN_VERSION", self.mirrors.name())
            .args(["-m", "conda"]);
        cmd
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "build" || name.to_string_lossy().ends_with(".egg-info") || name == "__pycache__"
        {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// A folder holding `conda-docker`: the binary cargo built.
fn bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    symlink(env!("CARGO_BIN_EXE_conda-docker"), bin.join("conda-docker")).unwrap();
    bin
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn exit_code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

#[test]
fn conda_docker_runs_the_binary_on_condas_main_branch() {
    runs_the_binary_with_every_argument_and_exit_code(Mirrors::Main);
}

#[test]
fn conda_docker_runs_the_binary_on_conda_23_1() {
    runs_the_binary_with_every_argument_and_exit_code(Mirrors::V23_1);
}

fn runs_the_binary_with_every_argument_and_exit_code(mirrors: Mirrors) {
    let dir = tempfile::tempdir().unwrap();
    let Some(conda) = Conda::new(dir.path(), mirrors) else {
        return;
    };
    let bin = bin_dir(dir.path());
    let none = serde_json::json!({});
    let run = |args: &[&str]| common::run_unchecked(conda.command(&bin, &none).args(args));

    // The hook registered `docker`, with its summary for `conda --help`,
    // and touched no name this conda lacks: not a word on stderr.
    let help = run(&["--help"]);
    assert_eq!(text(&help.stderr), "", "{mirrors:?}");
    assert!(
        text(&help.stdout).contains(
            "docker            Build a container image from a conda environment, without Docker."
        ),
        "{}",
        text(&help.stdout)
    );

    let version = run(&["docker", "--version"]);
    assert_eq!(exit_code(&version), 0);
    assert_eq!(
        text(&version.stdout).trim(),
        format!("conda-docker {}", env!("CARGO_PKG_VERSION"))
    );
    // Help and usage errors speak of `conda docker`, with clap's exit 2.
    let help = run(&["docker", "build", "--help"]);
    assert!(
        text(&help.stdout).contains("Usage: conda docker build [OPTIONS] [SPEC]..."),
        "{}",
        text(&help.stdout)
    );
    let flag = run(&["docker", "build", "-n", "x", "--dry-run"]);
    assert_eq!(exit_code(&flag), 2);
    assert!(
        text(&flag.stderr).contains("tip: `--dry-run` is a flag of conda's own"),
        "{}",
        text(&flag.stderr)
    );
    let unknown = run(&["docker", "biuld"]);
    assert_eq!(exit_code(&unknown), 2);
    assert!(
        text(&unknown.stderr).contains("unrecognized subcommand 'biuld'")
            && text(&unknown.stderr).contains("Usage: conda docker [OPTIONS] <COMMAND>"),
        "{}",
        text(&unknown.stderr)
    );
    // `conda docker -- ...` keeps conda's hands off the flags; the `--` is
    // not the binary's.
    let guarded = run(&["docker", "--", "inspect", "--help"]);
    assert_eq!(exit_code(&guarded), 0, "{}", text(&guarded.stderr));
    assert!(text(&guarded.stdout).contains("Usage: conda docker inspect"));
    // Our own errors: one line, exit 1, as conda's errors.
    let missing = run(&[
        "docker", "build", "-n", "nosuch", "-b", "scratch", "-o", "x.tar",
    ]);
    assert_eq!(exit_code(&missing), 1);
    assert!(
        text(&missing.stderr).starts_with("error: no environment named `nosuch`"),
        "{}",
        text(&missing.stderr)
    );
    // conda's own answer to a typo, and to --no-plugins.
    for args in [&["dockr"][..], &["--no-plugins", "docker", "build"][..]] {
        let output = run(args);
        assert_eq!(exit_code(&output), 2);
        assert!(
            text(&output.stderr).contains("invalid choice"),
            "{}",
            text(&output.stderr)
        );
    }
}

#[test]
fn conda_settings_reach_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let Some(conda) = Conda::new(dir.path(), Mirrors::Main) else {
        return;
    };
    let bin = bin_dir(dir.path());
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    // An environment and a package cache that only conda's settings name.
    let envs = dir.path().join("conda-envs");
    let pkgs = dir.path().join("conda-pkgs");
    let env = install_env_at(
        &channel,
        &["cd-leaf"],
        CacheLayout::Conda,
        &envs.join("work"),
        &pkgs,
    );
    let context = serde_json::json!({
        "root_prefix": dir.path().join("root"),
        "pkgs_dirs": [pkgs],
        "envs_dirs": [dir.path().join("nothing-here"), envs],
        "channels": [channel.url()],
    });
    let out_dir = dir.path().join("out dir");
    std::fs::create_dir(&out_dir).unwrap();

    // `-n work` is found in conda's envs_dirs, its packages in pkgs_dirs;
    // a path with a space arrives as one argument.
    let output = common::run(
        conda
            .command(&bin, &context)
            .args(["docker", "build", "-q", "-n", "work", "-b", "scratch", "-o"])
            .arg(out_dir.join("named.tar")),
    );
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    let image = conda_docker::Image::open(&format!(
        "docker-archive:{}",
        out_dir.join("named.tar").display()
    ))
    .unwrap();
    assert_eq!(
        image.layers().len(),
        env.records.len() + 1,
        "a layer per package, and the history"
    );

    // Specs are solved from conda's channels.
    let output = common::run(
        conda
            .command(&bin, &context)
            .args([
                "docker", "build", "--json", "-b", "scratch", "cd-leaf", "-o",
            ])
            .arg(out_dir.join("solved.tar")),
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = crate::fixtures::built_packages(&summary);
    assert!(
        packages.iter().any(|p| p.starts_with("cd-leaf-1.0-")),
        "{packages:?}"
    );

    // Without those settings the same commands fail: they came from conda.
    let line = text(
        &common::run_unchecked(
            conda
                .command(&bin, &serde_json::json!({}))
                .args(["docker", "build", "-n", "work", "-b", "scratch", "-o"])
                .arg(out_dir.join("none.tar")),
        )
        .stderr,
    );
    assert!(
        line.starts_with("error: no environment named `work`"),
        "{line}"
    );
}

#[test]
fn the_plugin_runs_the_binary_beside_it_or_names_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let Some(conda) = Conda::new(dir.path(), Mirrors::Main) else {
        return;
    };
    // A prefix of its own for conda (sys.prefix), whose bin/ holds a
    // conda-docker that reports what it was given.
    let prefix = dir.path().join("conda-prefix");
    common::run(
        Command::new(&conda.python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&prefix),
    );
    let python = prefix.join("bin/python");
    let beside = prefix.join("bin/conda-docker");
    std::fs::write(
        &beside,
        "#!/bin/sh\necho \"invoked as: $CONDA_DOCKER_INVOKED_AS\"\necho \"alias: ${CONDA_CHANNEL_ALIAS-unset}\"\nprintf '<%s>\\n' \"$@\"\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(&beside, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let on_path = bin_dir(dir.path());
    let run = |context: &serde_json::Value, path: &Path, args: &[&str]| {
        common::run_unchecked(conda.command_in(&python, path, context).args(args))
    };

    // The one in conda's prefix wins over PATH's; its arguments arrive
    // word for word, and its exit code is conda's.
    let plain_alias =
        serde_json::json!({"channel_alias": {"base_url": "https://mirror.example/conda"}});
    let output = run(
        &plain_alias,
        &on_path,
        &["docker", "build", "two words", "--json"],
    );
    assert_eq!(exit_code(&output), 7, "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "invoked as: conda\nalias: https://mirror.example/conda\n<build>\n<two words>\n<--json>\n"
    );
    // An alias with a token is left for the binary to read from .condarc.
    let token_alias = serde_json::json!({"channel_alias": {"base_url": "https://mirror.example/conda", "token": "tk-1"}});
    let output = run(&token_alias, &on_path, &["docker"]);
    assert!(
        text(&output.stdout).contains("alias: unset\n"),
        "{}",
        text(&output.stdout)
    );

    // Neither beside conda nor on PATH: one line naming both, exit 1.
    std::fs::remove_file(&beside).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = run(&plain_alias, &empty, &["docker", "build"]);
    assert_eq!(exit_code(&output), 1);
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: conda docker needs the conda-docker program, which is in none of {}, PATH; install it with `conda install -c conda-forge conda-docker`\n",
            prefix.join("bin").display()
        )
    );
}

#[test]
fn a_conda_without_the_plugin_types_loses_only_conda_docker() {
    let dir = tempfile::tempdir().unwrap();
    let Some(conda) = Conda::new(dir.path(), Mirrors::Future) else {
        return;
    };
    let bin = bin_dir(dir.path());
    let none = serde_json::json!({});
    let run = |args: &[&str]| common::run_unchecked(conda.command(&bin, &none).args(args));
    let warning = format!(
        "warning: `conda docker` is unavailable: conda-docker-plugin {} \
        cannot register it with conda 99.0.0 (ModuleNotFoundError: No module named \
        'conda.plugins.types'); it needs conda >= 23.1, so upgrade conda or \
        conda-docker-plugin, or remove the plugin; other conda commands are not affected\n",
        env!("CARGO_PKG_VERSION")
    );

    // conda's own commands work, with one warning line.
    let list = run(&["list"]);
    assert_eq!(exit_code(&list), 0, "{}", text(&list.stderr));
    assert!(text(&list.stdout).starts_with("# packages in environment at "));
    assert_eq!(text(&list.stderr), warning);
    let help = run(&["--help"]);
    assert_eq!(exit_code(&help), 0);
    assert!(
        !text(&help.stdout).contains("docker"),
        "{}",
        text(&help.stdout)
    );
    // `conda docker` is conda's unknown command, after the same warning.
    let docker = run(&["docker", "--version"]);
    assert_eq!(exit_code(&docker), 2);
    assert!(
        text(&docker.stderr).starts_with(&warning),
        "{}",
        text(&docker.stderr)
    );
    assert!(text(&docker.stderr).contains("invalid choice: 'docker'"));
}

#[test]
fn versions_agree_and_the_recipe_renders() {
    let version = env!("CARGO_PKG_VERSION");
    let pyproject = std::fs::read_to_string(repo().join("plugin/pyproject.toml")).unwrap();
    assert!(
        pyproject.contains(&format!("\nversion = \"{version}\"\n")),
        "{pyproject}"
    );
    let init =
        std::fs::read_to_string(repo().join("plugin/conda_docker_plugin/__init__.py")).unwrap();
    assert!(
        init.contains(&format!("__version__ = \"{version}\"")),
        "{init}"
    );

    let Some(python) = rattler_build_python() else {
        return;
    };
    let script = r#"
import json, pathlib, sys
import rattler_build as rb
folder = pathlib.Path(sys.argv[1])
recipe = rb.Stage0Recipe.from_yaml((folder / "recipe.yaml").read_text(), recipe_dir=folder)
variants = rb.VariantConfig.from_file(folder / "variants.yaml")
print(json.dumps([v.recipe.to_dict() for v in recipe.render(variants, rb.RenderConfig())]))
"#;
    let output = common::run(
        Command::new(python)
            .args(["-c", script])
            .arg(repo().join("conda-recipe")),
    );
    let outputs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outputs.len(), 2, "{outputs:#?}");
    let binary = &outputs[0];
    assert_eq!(binary["package"]["name"], "conda-docker");
    assert_eq!(binary["package"]["version"], version);
    let build = binary["requirements"]["build"].to_string();
    for compiler in [
        "rust_linux-64",
        "gcc_linux-64",
        "sysroot_linux-64",
        "cargo-bundle-licenses",
    ] {
        assert!(build.contains(compiler), "{build}");
    }
    let script = binary["build"]["script"].to_string();
    assert!(
        script.contains("cargo-bundle-licenses --format yaml"),
        "{script}"
    );
    assert!(script.contains("bin/pixi-docker"), "{script}");
    let tests = binary["tests"].to_string();
    for check in ["conda-docker --help", "pixi-docker --help"] {
        assert!(tests.contains(check), "{tests}");
    }
    assert_eq!(binary["about"]["license"], "BSD-3-Clause");
    assert!(repo().join("LICENSE").is_file());

    let plugin = &outputs[1];
    assert_eq!(plugin["package"]["name"], "conda-docker-plugin");
    assert_eq!(plugin["build"]["noarch"], "python");
    let run = plugin["requirements"]["run"].to_string();
    assert!(
        run.contains("conda >=23.1") && run.contains("\"conda-docker\""),
        "{run}"
    );
    let tests = plugin["tests"].to_string();
    assert!(tests.contains("conda_docker_plugin.plugin"), "{tests}");
}
