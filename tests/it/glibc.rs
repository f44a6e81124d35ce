//! A base without glibc (or with an older one) under an environment that
//! needs it is refused before anything is written: such an image would
//! build and then not start a single program.

use std::path::PathBuf;
use std::process::Command;

use conda_docker::Image;
use serde_json::json;

use crate::common::{self, HostilePackage, hostile_channel};
use crate::fixtures::{conda_docker, failure};

/// A real program linked against glibc (gcc's default), so its ELF
/// interpreter is glibc's loader; `None` (skip printed) without gcc.
fn dynamic_program(dir: &std::path::Path) -> Option<Vec<u8>> {
    let gcc = common::tool("gcc")?;
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("tool.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let program = dir.join("tool");
    common::run(Command::new(gcc).arg("-o").arg(&program).arg(&source));
    Some(std::fs::read(program).unwrap())
}

struct Scene {
    dir: tempfile::TempDir,
    channel: String,
}

impl Scene {
    /// A channel of `needs-glibc` (depends on `__glibc >=2.28`), `elf-tool`
    /// (a program loaded by glibc's loader, no `__glibc` dependency) and
    /// `plain` (a text file); `None` (skip printed) without gcc.
    fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let mut needs = HostilePackage::new(&work, "needs-glibc");
        needs.index["depends"] = json!(["__glibc >=2.28,<3.0.a0"]);
        needs.file("share/needs.txt", b"x\n", "share/needs.txt");
        let mut tool = HostilePackage::new(&work, "elf-tool");
        tool.file(
            "bin/tool",
            &dynamic_program(&dir.path().join("gcc"))?,
            "bin/tool",
        );
        let mut plain = HostilePackage::new(&work, "plain");
        plain.file("share/plain.txt", b"x\n", "share/plain.txt");
        let channel = hostile_channel(&dir.path().join("channel"), &[&needs, &tool, &plain]);
        Some(Scene { dir, channel })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `conda-docker build -q -o out.tar ARGS`, with `-c CHANNEL
    /// --override-channels` when `ARGS` are specs to solve.
    fn build(&self, args: &[&str]) -> Command {
        let mut cmd = conda_docker();
        cmd.env("HOME", self.path("home"))
            .env("RATTLER_CACHE_DIR", self.path("rattler"))
            .env("CONDA_PKGS_DIRS", self.path("pkgs"))
            .env("CONDA_DOCKER_CACHE_DIR", self.path("cache"))
            .args(["build", "-q", "-o"])
            .arg(self.path("out.tar"))
            .args(args);
        if !args.contains(&"--file") {
            cmd.args(["-c", &self.channel, "--override-channels"]);
        }
        cmd
    }

    /// The one line of a refused build; no image is left behind.
    fn refused(&self, args: &[&str]) -> String {
        let line = failure(&mut self.build(args));
        assert!(!self.path("out.tar").exists(), "{line}");
        line
    }

    /// A docker-archive base whose only file is `libc-VERSION.so`.
    fn base_with_glibc(&self, version: &str) -> String {
        let path = self.path(&format!("glibc-{version}.tar"));
        let mut image = Image::scratch().unwrap();
        image
            .add_layer_contents([(
                format!("usr/lib/x86_64-linux-gnu/libc-{version}.so"),
                b"elf".as_slice(),
            )])
            .unwrap();
        image.write_file(&path).unwrap();
        format!("docker-archive:{}", path.display())
    }
}

fn lock(scene: &Scene) -> String {
    let lock = scene.path("lock.txt");
    // A solve told to go on anyway writes the lock file the others build.
    common::run(&mut scene.build(&[
        "-b",
        "scratch",
        "--virtual-package",
        "__glibc=2.28",
        "--lock-file",
        lock.to_str().unwrap(),
        "needs-glibc",
    ]));
    std::fs::remove_file(scene.path("out.tar")).unwrap();
    lock.display().to_string()
}

#[test]
fn a_solve_for_a_base_without_glibc_names_the_fix() {
    let Some(scene) = Scene::new() else {
        return;
    };
    let line = scene.refused(&["-b", "scratch", "needs-glibc"]);
    assert_eq!(
        line,
        "error: the base image scratch has no glibc, but the environment needs glibc \
         (packages it asks for depend on __glibc); build on a base with glibc such as \
         docker.io/library/debian:stable-slim, or pass --virtual-package __glibc=VERSION \
         to build anyway"
    );
    // What needs no glibc builds on scratch.
    common::run(&mut scene.build(&["-b", "scratch", "plain"]));
}

#[test]
fn a_locked_environment_is_checked_against_the_bases_glibc() {
    let Some(scene) = Scene::new() else {
        return;
    };
    let lock = lock(&scene);
    let line = scene.refused(&["-b", "scratch", "--file", &lock]);
    assert!(
        line.contains("the base image scratch has no glibc")
            && line.contains("needs-glibc-1-0 depends on `__glibc >=2.28,<3.0.a0`"),
        "{line}"
    );
    let old = scene.base_with_glibc("2.17");
    let line = scene.refused(&["-b", &old, "--file", &lock]);
    assert!(
        line.contains("has glibc 2.17, but the environment needs a newer glibc"),
        "{line}"
    );
    // The base was scanned once; later builds read the answer it left.
    let memos: Vec<_> = std::fs::read_dir(scene.path("cache/glibc"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(memos, ["2.17"]);
    let again = scene.refused(&["-b", &old, "--file", &lock]);
    assert_eq!(again, line);
    let new = scene.base_with_glibc("2.36");
    common::run(&mut scene.build(&["-b", &new, "--file", &lock]));
    assert!(scene.path("out.tar").is_file());
}

#[test]
fn a_program_loaded_by_glibcs_loader_needs_glibc() {
    let Some(scene) = Scene::new() else {
        return;
    };
    let line = scene.refused(&["-b", "scratch", "elf-tool"]);
    assert!(
        line.contains("bin/tool of elf-tool-1-0 is loaded by /lib") && line.contains("/ld-linux"),
        "{line}"
    );
    // The way to go on anyway, for a base completed later.
    common::run(&mut scene.build(&[
        "-b",
        "scratch",
        "--virtual-package",
        "__glibc=2.17",
        "elf-tool",
    ]));
}
