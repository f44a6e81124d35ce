//! How users start the binary: under the names they type (`conda-docker`,
//! `conda docker`, `pixi docker`), from a pixi workspace, with shell
//! completions and man pages; and what it links against.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{self, CacheLayout, CondaChannel, install_env_at};
use crate::fixtures::{self, conda_docker, failure};

/// The test binary under the name pixi's extension rule runs it by
/// (`pixi docker ...` execs `pixi-docker` found on PATH, with argv[0] its
/// path); the conda-forge package installs the same file under both names.
fn pixi_docker(dir: &Path) -> Command {
    let link = dir.join("bin/pixi-docker");
    if !link.exists() {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(env!("CARGO_BIN_EXE_conda-docker"), &link).unwrap();
    }
    Command::new(link)
}

/// A usage error: exit code 2 (as conda's argparse and clap agree) and
/// clap's text on stderr.
fn usage_error(cmd: &mut Command) -> String {
    let output = common::run_unchecked(cmd);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{cmd:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn help_and_errors_name_the_command_the_user_typed() {
    let dir = tempfile::tempdir().unwrap();
    let help = common::stdout(&common::run(conda_docker().arg("--help")));
    assert!(
        help.contains("Usage: conda-docker [OPTIONS] <COMMAND>"),
        "{help}"
    );
    for variable in ["CONDA_PKGS_DIRS", "CONDA_ENVS_DIRS", "CONDA_CHANNELS"] {
        assert!(
            help.contains(variable),
            "--help documents {variable}: {help}"
        );
    }

    // The conda plugin says so through the variable it sets.
    let as_conda = || {
        let mut cmd = conda_docker();
        cmd.env("CONDA_DOCKER_INVOKED_AS", "conda");
        cmd
    };
    let help = common::stdout(&common::run(as_conda().args(["build", "--help"])));
    assert!(
        help.contains("Usage: conda docker build [OPTIONS] [SPEC]..."),
        "{help}"
    );
    let error = usage_error(as_conda().args(["build", "-n", "x", "-y"]));
    assert!(error.contains("unexpected argument '-y'"), "{error}");
    assert!(
        error.contains("tip: `-y` is a flag of conda's own; conda docker does not take it"),
        "{error}"
    );
    assert!(error.contains("Usage: conda docker build"), "{error}");
    let error = usage_error(as_conda().args(["build", "--subdir", "linux-64"]));
    assert!(
        error.contains("conda's `--subdir` is `--platform` here"),
        "{error}"
    );
    // `conda docker` alone shows the commands, as conda and pixi do.
    let bare = usage_error(&mut as_conda());
    assert!(
        bare.contains("Usage: conda docker [OPTIONS] <COMMAND>")
            && bare.contains("Commands:\n  build"),
        "{bare}"
    );
    let error = usage_error(as_conda().arg("biuld"));
    assert!(error.contains("unrecognized subcommand 'biuld'"), "{error}");
    assert!(
        error.contains("Usage: conda docker [OPTIONS] <COMMAND>"),
        "{error}"
    );
    // Hints inside our own errors follow the name too.
    let line = failure(
        as_conda()
            .args(["login", "127.0.0.1:1", "-u", "me", "--password-stdin"])
            .stdin(Stdio::null()),
    );
    assert!(line.contains("| conda docker login REGISTRY"), "{line}");

    // pixi's name comes from argv[0].
    let help = common::stdout(&common::run(pixi_docker(dir.path()).arg("--help")));
    assert!(
        help.contains("Usage: pixi docker [OPTIONS] <COMMAND>"),
        "{help}"
    );
    let error = usage_error(pixi_docker(dir.path()).args(["build", "--dry-run"]));
    assert!(error.contains("Usage: pixi docker build"), "{error}");
    let version = common::stdout(&common::run(pixi_docker(dir.path()).arg("--version")));
    assert_eq!(
        version.trim(),
        format!("conda-docker {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The packages of a `build --json` run.
fn built_packages(output: &std::process::Output) -> Vec<String> {
    fixtures::built_packages(&serde_json::from_slice(&output.stdout).unwrap())
}

#[test]
fn pixi_docker_builds_the_pixi_workspace_environment() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let pkgs = dir.path().join("pkgs");
    let workspace = dir.path().join("project");
    std::fs::create_dir_all(workspace.join("src/deep")).unwrap();
    std::fs::write(
        workspace.join("pixi.toml"),
        "[workspace]\nname = \"project\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n",
    )
    .unwrap();
    // A member package's manifest on the way up is not the workspace.
    std::fs::write(
        workspace.join("src/pixi.toml"),
        "[package]\nname = \"member\"\n",
    )
    .unwrap();
    let pixi_env = install_env_at(
        &channel,
        &["cd-noarch"],
        CacheLayout::Conda,
        &workspace.join(".pixi/envs/default"),
        &pkgs,
    );
    let active = install_env_at(
        &channel,
        &["cd-leaf"],
        CacheLayout::Conda,
        &dir.path().join("active"),
        &pkgs,
    );
    let names = |records: &[rattler_conda_types::PrefixRecord]| {
        let mut names: Vec<String> = records
            .iter()
            .map(|r| {
                let p = &r.repodata_record.package_record;
                format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build)
            })
            .collect();
        names.sort();
        names
    };
    let isolate = |mut cmd: Command| {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path().join("home"))
            .env("CONDA_DOCKER_CACHE_DIR", dir.path().join("cd-cache"))
            .env("CONDA_PKGS_DIRS", &pkgs)
            .env("CONDA_PREFIX", &active.prefix)
            .current_dir(workspace.join("src/deep"));
        cmd
    };
    let build = |cmd: Command, out: &str, extra: &[&str]| {
        let mut cmd = isolate(cmd);
        cmd.args(["build", "--json", "-b", "scratch", "-o"])
            .arg(dir.path().join(out))
            .args(extra);
        common::run(&mut cmd)
    };

    // `pixi docker build` takes the workspace's environment, not the
    // active conda one.
    let output = build(pixi_docker(dir.path()), "pixi.tar", &[]);
    assert_eq!(built_packages(&output), names(&pixi_env.records));
    // `conda-docker build` still takes CONDA_PREFIX...
    let output = build(conda_docker(), "active.tar", &[]);
    assert_eq!(built_packages(&output), names(&active.records));
    // ...unless a pixi environment is asked for.
    let output = build(conda_docker(), "asked.tar", &["--pixi-env", "default"]);
    assert_eq!(built_packages(&output), names(&pixi_env.records));

    // An environment pixi has not installed names the fix.
    let out = dir.path().join("dev.tar");
    let line = failure(
        isolate(pixi_docker(dir.path()))
            .args(["build", "-b", "scratch", "--pixi-env", "dev", "-o"])
            .arg(&out),
    );
    assert!(
        line.contains("the pixi environment `dev` of")
            && line.contains("project/pixi.toml is not installed: run `pixi install -e dev` first"),
        "{line}"
    );
    assert!(!out.exists());

    // --pixi-env with another source is a mistake, not ignored.
    let line = failure(
        isolate(conda_docker())
            .args([
                "build",
                "-b",
                "scratch",
                "-n",
                "x",
                "--pixi-env",
                "dev",
                "-o",
            ])
            .arg(&out),
    );
    assert!(
        line.contains("--pixi-env names an environment of a pixi workspace"),
        "{line}"
    );

    // Outside any workspace.
    let outside = dir.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let line = failure(
        isolate(pixi_docker(dir.path()))
            .current_dir(&outside)
            .args(["build", "-b", "scratch", "-o"])
            .arg(&out),
    );
    assert!(line.contains("no pixi workspace in"), "{line}");
    assert!(!out.exists());
}

/// Runs bash's completion function for `words` (the last one being
/// completed) and returns what it offers.
fn bash_complete(script: &str, function: &str, words: &[&str]) -> String {
    let cword = words.len() - 1;
    let program = format!(
        "source /dev/stdin <<'EOF'\n{script}\nEOF\nCOMP_WORDS=({words}); COMP_CWORD={cword}; {function} {cmd} {cur} {prev}; echo \"${{COMPREPLY[*]}}\"",
        words = words.join(" "),
        cmd = words[0],
        cur = words[cword],
        prev = words[cword - 1],
    );
    common::stdout(&common::run(Command::new("bash").args(["-c", &program])))
        .trim()
        .to_owned()
}

/// Whether a bash script registers `function` for `command`.
fn registers(script: &str, function: &str, command: &str) -> bool {
    script.lines().any(|l| {
        let l = l.trim();
        l.starts_with(&format!("complete -F {function} ")) && l.ends_with(&format!(" {command}"))
    })
}

#[test]
fn completions_complete_subcommands_and_their_flags() {
    common::require_tools!("bash");
    let dir = tempfile::tempdir().unwrap();
    let bash = common::stdout(&common::run(conda_docker().args(["completions", "bash"])));
    assert!(registers(&bash, "_conda_docker", "conda-docker"), "{bash}");
    assert_eq!(
        bash_complete(&bash, "_conda_docker", &["conda-docker", "bu"]),
        "build"
    );
    assert_eq!(
        bash_complete(&bash, "_conda_docker", &["conda-docker", "build", "--plat"]),
        "--platform"
    );
    // Values: platform names, and the transports of images.
    assert_eq!(
        bash_complete(
            &bash,
            "_conda_docker",
            &["conda-docker", "build", "--platform", "linux-a"]
        ),
        "linux-aarch64"
    );
    assert_eq!(
        bash_complete(
            &bash,
            "_conda_docker",
            &["conda-docker", "build", "-b", "oci-"]
        ),
        "oci-archive:"
    );
    assert_eq!(
        bash_complete(
            &bash,
            "_conda_docker",
            &["conda-docker", "build", "-o", "docker-a"]
        ),
        "docker-archive:"
    );
    // Under pixi's name the script is keyed on pixi-docker.
    let bash = common::stdout(&common::run(
        pixi_docker(dir.path()).args(["completions", "bash"]),
    ));
    assert!(registers(&bash, "_pixi_docker", "pixi-docker"), "{bash}");
    assert_eq!(
        bash_complete(&bash, "_pixi_docker", &["pixi-docker", "build", "--pixi"]),
        "--pixi-env"
    );

    let zsh = common::stdout(&common::run(conda_docker().args(["completions", "zsh"])));
    assert!(zsh.starts_with("#compdef conda-docker"), "{zsh}");
    let fish = common::stdout(&common::run(conda_docker().args(["completions", "fish"])));
    assert!(
        fish.contains(
            "complete -c conda-docker -n \"__fish_conda_docker_using_subcommand build\" -l platform"
        ),
        "{fish}"
    );
    let error = usage_error(conda_docker().args(["completions", "tcsh"]));
    assert!(error.contains("invalid value 'tcsh'"), "{error}");
}

#[test]
fn man_pages_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let page = common::stdout(&common::run(conda_docker().arg("man")));
    assert!(page.contains(".TH conda-docker 1"), "{page}");
    assert!(
        page.contains("CONDA_PKGS_DIRS"),
        "the environment section: {page}"
    );

    let pages = dir.path().join("man1");
    std::fs::create_dir(&pages).unwrap();
    common::run(conda_docker().arg("man").arg(&pages));
    let mut written: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    for expected in [
        "conda-docker.1",
        "conda-docker-build.1",
        "conda-docker-pull.1",
        "conda-docker-cache-prune.1",
    ] {
        assert!(written.iter().any(|w| w == expected), "{written:?}");
    }
    let build = std::fs::read_to_string(pages.join("conda-docker-build.1")).unwrap();
    assert!(build.contains("\\-\\-platform"), "{build}");
    // man itself renders it.
    if let Some(man) = common::tool("man") {
        let output = common::run(
            Command::new(man)
                .args(["-l", "-P", "cat"])
                .arg(pages.join("conda-docker-build.1"))
                .env("MANWIDTH", "100"),
        );
        let text = common::stdout(&output);
        assert!(text.contains("--prefix-in-image"), "{text}");
    }

    // A folder that is missing is made; a file in its place is an error.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let line = failure(conda_docker().arg("man").arg(&file));
    assert!(line.contains("cannot write the man page"), "{line}");
    assert!(line.contains("a-file"), "{line}");
}

/// What the binary needs at run time: glibc's libraries and libgcc_s, no
/// OpenSSL. `cargo install` links the same dependencies as this test build.
#[test]
fn the_binary_links_only_glibc_and_libgcc() {
    common::require_tools!("ldd");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_conda-docker"));
    let output = common::run(Command::new("ldd").arg(&binary));
    let listing = common::stdout(&output);
    let allowed = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
    ];
    let libraries: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        libraries.iter().any(|l| l.starts_with("libc.so")),
        "{listing}"
    );
    for library in &libraries {
        let name = Path::new(library).file_name().unwrap().to_string_lossy();
        assert!(
            allowed.iter().any(|a| name.starts_with(a)),
            "unexpected library {library}: {listing}"
        );
    }
}

/// The README's flag reference: the top-level and every command's
/// `--help`, as the binary prints them.
fn flag_reference() -> String {
    let command = conda_docker::cli::Cli::command_as(conda_docker::invocation::Invocation::Direct);
    // Every command and subcommand (`cache prune`), as the words that run it.
    let mut names: Vec<Vec<String>> = vec![Vec::new()];
    for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
        names.push(vec![sub.get_name().to_owned()]);
        names.extend(
            sub.get_subcommands()
                .filter(|c| c.get_name() != "help")
                .map(|c| vec![sub.get_name().to_owned(), c.get_name().to_owned()]),
        );
    }
    let mut reference = String::new();
    for name in names {
        let words: Vec<&str> = name.iter().map(String::as_str).chain(["--help"]).collect();
        let help = common::stdout(&common::run(
            conda_docker()
                .args(&words)
                .env_remove("CONDA_DOCKER_INVOKED_AS"),
        ));
        reference.push_str(&format!(
            "<details><summary><code>conda-docker {}</code></summary>\n\n```text\n{}\n```\n\n</details>\n",
            words.join(" "),
            help.trim_end()
        ));
    }
    reference
}

#[test]
fn readme_flag_reference_is_current() {
    const BEGIN: &str = "<!-- BEGIN flag reference -->\n";
    const END: &str = "<!-- END flag reference -->";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find(BEGIN).expect("README has the BEGIN marker") + BEGIN.len();
    let end = readme.find(END).expect("README has the END marker");
    let expected = flag_reference();
    if readme[start..end] == expected {
        return;
    }
    if std::env::var("CONDA_DOCKER_UPDATE_README").as_deref() == Ok("1") {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated.as_bytes()).unwrap();
        return;
    }
    panic!(
        "README.md's flag reference differs from --help; run `CONDA_DOCKER_UPDATE_README=1 cargo test readme` and commit the result"
    );
}
