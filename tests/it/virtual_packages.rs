//! What a solve is told of the machine the image runs on: conda's override
//! variables and `.condarc`'s `override_virtual_packages`, beaten by
//! `--virtual-package`, and `__cuda=host` reading this machine's driver
//! (here a STAND-IN `libcuda.so.1` compiled by the test, since this machine
//! has no NVIDIA driver).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::{self, HostilePackage, hostile_channel};
use crate::fixtures::{conda_docker, failure};

/// A channel of `gpu-tool`, which depends on `__cuda >=12`.
struct Scene {
    dir: tempfile::TempDir,
    channel: String,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut gpu = HostilePackage::new(&dir.path().join("work"), "gpu-tool");
        gpu.index["depends"] = json!(["__cuda >=12"]);
        gpu.file("share/gpu.txt", b"gpu\n", "share/gpu.txt");
        let channel = hostile_channel(&dir.path().join("channel"), &[&gpu]);
        Scene { dir, channel }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `build -q gpu-tool` from the channel onto scratch, with a clean
    /// environment (no host `CONDA_OVERRIDE_*`) and a home of its own.
    fn build(&self, args: &[&str]) -> Command {
        let mut cmd = conda_docker();
        let home = self.path("home");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("CONDA_DOCKER_CACHE_DIR", home.join("cd-cache"))
            .env("RATTLER_CACHE_DIR", home.join("rattler"))
            .args(["build", "-q", "-b", "scratch", "--override-channels", "-c"])
            .arg(&self.channel)
            .arg("-o")
            .arg(self.path("out.tar"))
            .arg("gpu-tool")
            .args(args);
        cmd
    }

    /// Runs `cmd`; whether it built the image (removed again after).
    fn builds(&self, cmd: &mut Command) -> bool {
        let ok = common::run_unchecked(cmd).status.success();
        let out = self.path("out.tar");
        assert_eq!(ok, out.exists(), "an image exactly when the build succeeds");
        let _ = std::fs::remove_file(out);
        ok
    }
}

#[test]
fn overrides_follow_conda_and_flags_win() {
    let s = Scene::new();
    let err = unsolvable(&mut s.build(&[]));
    assert!(
        err.contains("__cuda >=12"),
        "no driver stated, no solve: {err}"
    );

    assert!(s.builds(s.build(&[]).env("CONDA_OVERRIDE_CUDA", "12.4")));
    assert!(!s.builds(s.build(&[]).env("CONDA_OVERRIDE_CUDA", "11.8")));
    assert!(
        s.builds(
            s.build(&["--virtual-package", "__cuda=12.4"])
                .env("CONDA_OVERRIDE_CUDA", "")
        ),
        "an empty variable removes __cuda, but the flag is stronger"
    );

    let rc = s.path("home/.condarc");
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    std::fs::write(&rc, "override_virtual_packages:\n  cuda: 12.2\n").unwrap();
    assert!(s.builds(&mut s.build(&[])), ".condarc states a driver");
    assert!(
        !s.builds(s.build(&[]).env("CONDA_OVERRIDE_CUDA", "")),
        "the variable beats .condarc"
    );
    assert!(
        s.builds(
            s.build(&["--virtual-package", "__cuda=12.0"])
                .env("CONDA_OVERRIDE_CUDA", "11.0")
        )
    );
    std::fs::write(&rc, "virtual_packages:\n  cuda: '11.2'\n").unwrap();
    assert!(!s.builds(&mut s.build(&[])), "conda's alias is read too");
}

#[test]
fn cuda_host_reads_the_driver_or_says_what_to_do() {
    common::require_tools!("gcc");
    let s = Scene::new();
    let err = failure(&mut s.build(&["--virtual-package", "__cuda=host"]));
    assert!(
        err.contains("no NVIDIA driver") && err.contains("__cuda=12.4"),
        "{err}"
    );
    assert!(!s.path("out.tar").exists());

    let lib = stand_in_libcuda(&s.path("driver"), 12040);
    assert!(
        s.builds(
            s.build(&["--virtual-package", "__cuda=host"])
                .env("LD_LIBRARY_PATH", lib.parent().unwrap())
        )
    );
    let old = stand_in_libcuda(&s.path("old-driver"), 11080);
    let err = unsolvable(
        s.build(&["--virtual-package", "__cuda=host"])
            .env("LD_LIBRARY_PATH", old.parent().unwrap()),
    );
    assert!(
        err.contains("__cuda >=12"),
        "a CUDA 11.8 driver is too old: {err}"
    );

    let err = failure(&mut s.build(&["--virtual-package", "__glibc=host"]));
    assert!(err.contains("only __cuda=host"), "{err}");
}

/// The solver's explanation (several lines) of why `cmd` cannot solve.
fn unsolvable(cmd: &mut Command) -> String {
    let output = common::run_unchecked(cmd);
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: the specs cannot be satisfied"),
        "{err}"
    );
    err
}

/// A STAND-IN for NVIDIA's `libcuda.so.1`: `cuInit` succeeds and
/// `cuDriverGetVersion` reports `version` (12040 is CUDA 12.4).
fn stand_in_libcuda(dir: &Path, version: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("libcuda.c");
    std::fs::write(
        &source,
        format!(
            "int cuInit(unsigned int flags) {{ return 0; }}\n\
             int cuDriverGetVersion(int *v) {{ *v = {version}; return 0; }}\n"
        ),
    )
    .unwrap();
    let lib = dir.join("libcuda.so.1");
    common::run(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(&source),
    );
    lib
}
