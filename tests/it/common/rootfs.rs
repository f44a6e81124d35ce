//! A tiny busybox root filesystem: the base image we can build offline.

use std::fs::{self, File};
use std::os::unix::fs::{chown, lchown, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::tools::{expect_tool, is_root};

/// Applets linked to `busybox` in `bin/`: enough for shell-driven checks
/// (hashing, counting, dumping bytes) inside a container.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh",
    "ls",
    "cat",
    "echo",
    "env",
    "true",
    "false",
    "test",
    "wc",
    "head",
    "od",
    "sha256sum",
    "grep",
    "id",
    "stat",
    "readlink",
    "printf",
    "mkdir",
    "rm",
    "sleep",
];

/// Owner given to every fixture file (as root): deliberately not 0:0, so a
/// layer writer that forgets to normalise owners is caught.
pub const FIXTURE_UID: u32 = 1234;
/// Group given to every fixture file (as root); see [`FIXTURE_UID`].
pub const FIXTURE_GID: u32 = 5678;

/// Seconds since the epoch for `bin/busybox`, `etc/*` files and directories:
/// distinct values, so tests can tell preserved from clamped mtimes.
pub const FIXTURE_MTIMES: [(&str, u64); 5] = [
    ("bin/busybox", 1_000_000_000),
    ("etc/passwd", 1_234_567_890),
    ("etc/group", 1_234_567_890),
    ("bin", 1_500_000_000),
    ("etc", 1_600_000_000),
];

/// Builds the busybox rootfs in `dir` (created if needed; must not already
/// hold one, as the applet links would collide).
///
/// Panics when no static busybox is on PATH: guard with
/// `require_tools!("busybox")`. Owners are only changed when running as
/// root; otherwise files keep the (also non-zero) caller's uid.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = expect_tool("busybox");
    fs::create_dir_all(dir.join("bin")).expect("create bin/");
    fs::create_dir_all(dir.join("etc")).expect("create etc/");
    fs::copy(&busybox, dir.join("bin/busybox")).expect("copy busybox");
    for applet in BUSYBOX_APPLETS {
        symlink("busybox", dir.join("bin").join(applet)).expect("link applet");
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("write passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\n").expect("write group");
    if is_root() {
        chown_fixture(dir);
    }
    // Last: creating entries would bump the directories' mtimes again.
    for (path, secs) in FIXTURE_MTIMES {
        set_mtime(&dir.join(path), secs);
    }
}

/// Gives everything we created (not `dir` itself) the fixture owner.
fn chown_fixture(dir: &Path) {
    let own = |p: &Path| chown(p, Some(FIXTURE_UID), Some(FIXTURE_GID)).expect("chown");
    for sub in ["bin", "etc"] {
        own(&dir.join(sub));
    }
    for file in ["bin/busybox", "etc/passwd", "etc/group"] {
        own(&dir.join(file));
    }
    for applet in BUSYBOX_APPLETS {
        lchown(
            dir.join("bin").join(applet),
            Some(FIXTURE_UID),
            Some(FIXTURE_GID),
        )
        .expect("lchown applet");
    }
}

/// Sets a file's or directory's mtime (a directory opens read-only fine).
fn set_mtime(path: &Path, secs: u64) {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    File::open(path)
        .and_then(|f| f.set_modified(time))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}
