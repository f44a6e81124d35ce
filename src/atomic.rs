//! Writing files so that a failure leaves nothing behind: bytes go to a
//! temp file beside the target, which is renamed into place when complete.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

/// A temp file in the folder of `path` (so the rename stays on one file
/// system), named so it is recognisable if a crash leaves it.
pub fn temp_beside(path: &Path) -> io::Result<NamedTempFile> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".conda-docker-")
        .tempfile_in(parent)
}

/// Gives a finished temp file `mode` and renames it to `path`.
pub fn publish(file: NamedTempFile, path: &Path, mode: u32) -> io::Result<()> {
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` with `mode`, atomically.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = temp_beside(path)?;
    file.write_all(bytes)?;
    publish(file, path, mode)
}
