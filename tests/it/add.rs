//! `build --add SRC:DEST` follows Docker's `COPY` rules on a base whose
//! `/bin` is a symlink to `usr/bin` (Debian's merged /usr), checked by
//! running the images with podman (issue 13, item 1: `--add FILE:/dir/`
//! replaced the directory with the file).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use conda_docker::Image;

use crate::common::{self, CacheLayout, CondaChannel, CondaEnv, Podman, require_tools};
use crate::fixtures::{conda_docker, failure};

/// A busybox base with a merged /usr: `/usr/bin` holds busybox and its
/// applets, `/bin -> usr/bin`, plus `/srv` (a directory) and
/// `/etc/hostname` (a file). Written as a docker-archive at `dir/base.tar`.
fn merged_usr_base(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    fs::create_dir_all(rootfs.join("usr")).unwrap();
    fs::rename(rootfs.join("bin"), rootfs.join("usr/bin")).unwrap();
    symlink("usr/bin", rootfs.join("bin")).unwrap();
    fs::create_dir(rootfs.join("srv")).unwrap();
    fs::write(rootfs.join("etc/hostname"), "base\n").unwrap();
    let mut image = Image::scratch().unwrap();
    image.add_layer_path(&rootfs, "/", None).unwrap();
    image.config_mut().set_env("PATH", "/usr/bin:/bin");
    let base = dir.join("base.tar");
    image.write_file(&base).unwrap();
    base
}

/// The environment (`cd-leaf` and what it needs).
fn install(dir: &Path) -> CondaEnv {
    let channel = CondaChannel::build_without_binary(&dir.join("channel"));
    common::install_env(&channel, &["cd-leaf"], CacheLayout::Conda, &dir.join("e"))
}

/// `conda-docker build -q -p ENV -b BASE -o OUT`, isolated from the host's
/// caches and config.
fn build_command(env: &CondaEnv, dir: &Path, base: &Path, out: &Path) -> Command {
    let home = dir.join("home");
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cd-cache"))
        .env("CONDA_PKGS_DIRS", &env.cache_dir)
        .args(["build", "-q", "-p"])
        .arg(&env.prefix)
        .arg("-b")
        .arg(format!("docker-archive:{}", base.display()))
        .arg("-o")
        .arg(out);
    cmd
}

fn add(cmd: &mut Command, source: &Path, dest: &str) {
    cmd.arg("--add").arg(format!("{}:{dest}", source.display()));
}

/// The paths of every entry of the image's top `n` layers.
fn top_layer_paths(image: &Path, n: usize) -> Vec<String> {
    let image = Image::open(image.to_str().unwrap()).unwrap();
    let layers = image.layers();
    let mut paths = Vec::new();
    for layer in &layers[layers.len() - n..] {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(layer.blob().open().unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        for entry in tar::Archive::new(&raw[..]).entries().unwrap() {
            paths.push(entry.unwrap().path().unwrap().display().to_string());
        }
    }
    paths
}

#[test]
fn add_follows_copy_rules_and_keeps_the_bases_symlinks() {
    require_tools!("busybox", "podman", "runc");
    let dir = tempfile::tempdir().unwrap();
    let base = merged_usr_base(&dir.path().join("base"));
    let env = install(dir.path());

    let app = dir.path().join("app");
    fs::create_dir_all(app.join("sub")).unwrap();
    fs::write(app.join("main.py"), "print('main')\n").unwrap();
    let tool = dir.path().join("tool");
    fs::write(&tool, "#!/bin/sh\necho tool ran\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    let appdir = dir.path().join("appdir");
    fs::create_dir_all(appdir.join("sub")).unwrap();
    fs::write(appdir.join("sub/data.txt"), "data\n").unwrap();
    fs::write(appdir.join("run.txt"), "run\n").unwrap();

    let out = dir.path().join("image.tar");
    let name = common::unique_name("cd-add");
    let mut cmd = build_command(&env, dir.path(), &base, &out);
    cmd.args(["-i", &name]);
    let main_py = app.join("main.py");
    add(&mut cmd, &main_py, "/srv/");
    add(&mut cmd, &main_py, "/usr/bin");
    add(&mut cmd, &tool, "/bin/");
    add(&mut cmd, &appdir, "/app");
    // /app is a directory now: the next file goes inside it.
    add(&mut cmd, &main_py, "/app");
    // A directory the environment's layers made, not the base.
    add(&mut cmd, &main_py, "/opt/conda/bin");
    common::run(&mut cmd);

    let paths = top_layer_paths(&out, 6);
    assert!(
        !paths.iter().any(|p| p == "bin" || p.starts_with("bin/")),
        "no --add layer writes below the /bin symlink: {paths:?}"
    );
    assert!(paths.contains(&"usr/bin/tool".to_owned()), "{paths:?}");

    let podman = Podman::new().unwrap();
    podman.load(&out);
    let got = podman.run(
        &name,
        &[
            "/bin/sh",
            "-c",
            "test -d /srv && cat /srv/main.py; \
             cat /usr/bin/main.py; \
             ls /usr/bin | grep -c -e '^busybox$' -e '^ls$' -e '^main.py$' -e '^tool$'; \
             readlink /bin; /bin/tool; /bin/echo applets run; \
             cat /app/run.txt /app/sub/data.txt /app/main.py; test -e /app/appdir || echo contents only; \
             cat /opt/conda/bin/main.py",
        ],
    );
    assert_eq!(
        got,
        "print('main')\nprint('main')\n4\nusr/bin\ntool ran\napplets run\nrun\ndata\nprint('main')\ncontents only\nprint('main')\n"
    );
}

/// A directory onto a file of the base, a file into it, and a file onto a
/// directory fail with one line naming the path and what is there, and
/// write nothing.
#[test]
fn add_never_turns_a_file_of_the_image_into_a_directory() {
    require_tools!("busybox");
    let dir = tempfile::tempdir().unwrap();
    let base = merged_usr_base(&dir.path().join("base"));
    let env = install(dir.path());
    let src = dir.path().join("dir");
    fs::create_dir_all(src.join("usr")).unwrap();
    fs::write(
        src.join("usr/bin"),
        "a file where the base has a directory\n",
    )
    .unwrap();
    let main_py = dir.path().join("main.py");
    fs::write(&main_py, "print()\n").unwrap();

    let out = dir.path().join("image.tar");
    let fails = |source: &Path, dest: &str| {
        let mut cmd = build_command(&env, dir.path(), &base, &out);
        add(&mut cmd, source, dest);
        let line = failure(&mut cmd);
        assert!(!out.exists(), "no output after: {line}");
        line
    };
    let (src_text, py_text) = (src.display(), main_py.display());
    assert_eq!(
        fails(&src, "/etc/hostname"),
        format!(
            "error: --add {src_text}:/etc/hostname: /etc/hostname is a file in the image; a directory cannot replace it"
        )
    );
    assert_eq!(
        fails(&main_py, "/etc/hostname/"),
        format!(
            "error: --add {py_text}:/etc/hostname/: /etc/hostname is a file in the image; main.py cannot go inside it"
        )
    );
    assert_eq!(
        fails(&src, "/"),
        format!(
            "error: --add {src_text}:/: /usr/bin is a directory in the image; a file cannot replace it"
        )
    );
    assert_eq!(
        fails(&main_py, "/bin/ls/x"),
        format!(
            "error: --add {py_text}:/bin/ls/x: /usr/bin/busybox is a file in the image, not a directory"
        )
    );
}
