//! Lock files: `pixi.lock` and `conda-lock.yml` (rattler_lock reads both;
//! the name tells them apart only in error messages).
#![no_main]

use conda_docker::fuzzing::read_lock_file;
use conda_docker_fuzz::{scratch, write};
use libfuzzer_sys::fuzz_target;
use rattler_conda_types::Subdir;

fuzz_target!(|bytes: &[u8]| {
    let dir = scratch();
    let path = write(dir.path(), "pixi.lock", bytes);
    for platform in [Subdir::Linux64, Subdir::NoArch] {
        let _ = read_lock_file(&path, None, platform, false);
        let _ = read_lock_file(&path, Some("default"), platform, true);
    }
});
