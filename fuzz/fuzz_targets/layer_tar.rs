//! The tar reader used on base layers: the input is one layer of an
//! otherwise valid image, then walked as a build walks a base (whiteouts,
//! links, symlink resolution for the glibc check, conda records).
#![no_main]

use conda_docker_fuzz::{docker_archive, open_and_read, scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|layer: &[u8]| {
    let dir = scratch();
    let path = write(dir.path(), "image.tar", &docker_archive(layer));
    open_and_read("docker-archive", &path);
});
