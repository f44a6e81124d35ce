//! Finding external tools, and the skip-or-fail policy for missing ones.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Set to `1` (as `.ci/run` does) to turn a missing tool into a failure, so
/// CI cannot pass by quietly skipping every interesting test.
pub const REQUIRE_TOOLS_ENV: &str = "CONDA_DOCKER_REQUIRE_TOOLS";

/// Finds `name` on `PATH`; `None` (after a skip message) when it is missing.
///
/// Panics instead when [`REQUIRE_TOOLS_ENV`] is `1`.
pub fn tool(name: &str) -> Option<PathBuf> {
    match find_usable(name) {
        Ok(path) => Some(path),
        Err(why) => {
            skip_or_panic(&format!(
                "{name} {why} (Debian package: {})",
                apt_package(name)
            ));
            None
        }
    }
}

/// Like [`tool`], but panics when missing: for helpers whose callers are
/// expected to have guarded the test with `require_tools!`.
pub fn expect_tool(name: &str) -> PathBuf {
    find_usable(name).unwrap_or_else(|why| {
        panic!(
            "{name} {why} (Debian package: {}); guard the test with require_tools!({name:?})",
            apt_package(name)
        )
    })
}

/// Prints `skipping: {reason}`, or panics with it when tools are required.
pub fn skip_or_panic(reason: &str) {
    if std::env::var(REQUIRE_TOOLS_ENV).as_deref() == Ok("1") {
        panic!("{reason}, and {REQUIRE_TOOLS_ENV}=1 requires it");
    }
    eprintln!("skipping: {reason}; set {REQUIRE_TOOLS_ENV}=1 to fail instead");
}

/// Whether this process runs as root: `/proc/self` is owned by the effective
/// uid, which spares us a libc dependency for `geteuid`.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Locates `name` and checks it is fit for our use.
fn find_usable(name: &str) -> Result<PathBuf, String> {
    let path = find_on_path(name).ok_or_else(|| "not found on PATH".to_string())?;
    if name == "busybox" && !is_static_elf(&path) {
        return Err(format!(
            "at {} is dynamically linked (it cannot run inside a bare rootfs)",
            path.display()
        ));
    }
    Ok(path)
}

/// The first executable file called `name` in `PATH`.
pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True for a 64-bit little-endian ELF without a `PT_INTERP` program header,
/// i.e. one that needs no dynamic loader inside the container.
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        bytes
            .get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != PT_INTERP)
    })
}

/// The Debian package that provides `name`, for skip and failure messages.
fn apt_package(name: &str) -> &str {
    match name {
        "busybox" => "busybox-static",
        "docker" => "docker.io",
        "htpasswd" => "apache2-utils",
        "python3" => "python3 + python3-venv",
        "unshare" | "taskset" => "util-linux",
        "go" => "golang-go",
        "cc" => "gcc",
        "ldd" => "libc-bin",
        "readelf" => "binutils",
        "man" => "man-db",
        other => other,
    }
}
