//! docker's and conda's habits (`-f`, `-t`, shell-quoted commands), and
//! the small things a new user meets first: folders made for them, quiet
//! pipes, channels that only a solve uses.

use conda_docker::Image;

/// SIGPIPE's number on Linux.
const SIGPIPE: i32 = 13;

use crate::common::{self, CacheLayout, CondaChannel, install_env};
use crate::fixtures::{conda_docker, failure};

#[test]
fn docker_and_conda_spellings_are_understood() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Conda, dir.path());
    let explicit = dir.path().join("explicit.txt");
    common::explicit_file(&env.repodata_records(), &explicit);
    let out = dir.path().join("out.tar");
    let build = |args: &[&str]| {
        let mut cmd = conda_docker();
        cmd.env("HOME", dir.path().join("home"))
            .env("CONDA_PKGS_DIRS", &env.cache_dir)
            .env("CONDA_DOCKER_CACHE_DIR", dir.path().join("cache"))
            .args(["build", "-q", "-b", "scratch", "-o"])
            .arg(&out)
            .args(args);
        cmd
    };
    // conda's `-f FILE`, docker's `-t NAME:TAG`; commands split as a shell
    // splits them, and a command may start with a dash.
    common::run(&mut build(&[
        "-f",
        explicit.to_str().unwrap(),
        "-t",
        "habits:1",
        "--entrypoint",
        r#"python -c "import sys; print(sys.argv)""#,
        "--cmd",
        "--verbose 'two words'",
    ]));
    let image = Image::open(&format!("docker-archive:{}", out.display())).unwrap();
    let name = image.name().map(ToString::to_string).unwrap_or_default();
    assert!(name.ends_with("habits:1"), "{name}");
    let config = image.config().as_json();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["python", "-c", "import sys; print(sys.argv)"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["--verbose", "two words"])
    );

    // `inspect` shows the config, and which packages each layer holds.
    let inspected: serde_json::Value = serde_json::from_slice(
        &common::run(
            conda_docker()
                .arg("inspect")
                .arg(format!("docker-archive:{}", out.display())),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(inspected["config"]["Cmd"], config["config"]["Cmd"]);
    let held: Vec<&serde_json::Value> = inspected["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.get("packages"))
        .collect();
    assert_eq!(
        held,
        [
            &serde_json::json!(["cd-text-1.0-0"]),
            &serde_json::json!(["cd-leaf-1.0-0"])
        ],
        "{inspected}"
    );

    std::fs::remove_file(&out).unwrap();
    let line = failure(&mut build(&[
        "-f",
        explicit.to_str().unwrap(),
        "--cmd",
        "echo 'open",
    ]));
    assert!(line.contains("a quote is not closed"), "{line}");
    let usage = common::run_unchecked(&mut build(&["--environment-file", "env.yml"]));
    assert_eq!(usage.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&usage.stderr);
    assert!(stderr.contains("did you mean --file?"), "{stderr}");

    // Channels choose where a solve looks: with nothing to solve, or with
    // no channel left, they are a mistake, not silently ignored.
    let line = failure(&mut build(&[
        "-p",
        env.prefix.to_str().unwrap(),
        "-c",
        "conda-forge",
    ]));
    assert!(line.contains("this environment is not solved"), "{line}");
    let line = failure(&mut build(&["--override-channels", "cd-leaf"]));
    assert!(
        line.contains("--override-channels leaves no channel"),
        "{line}"
    );
    assert!(!out.exists());
}

#[test]
fn man_makes_its_folder_and_pipes_end_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("share/man/man1");
    common::run(conda_docker().arg("man").arg(&pages));
    assert!(pages.join("conda-docker-build.1").is_file());

    // Into a pipe nobody reads any more (`man | head` once head is done):
    // no "Broken pipe" error, just the end, as for `cat`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = conda_docker()
        .arg("man")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&output.status),
        Some(SIGPIPE),
        "{:?}",
        output.status
    );
}
