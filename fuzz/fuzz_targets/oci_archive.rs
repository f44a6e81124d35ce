//! An OCI layout in a tar as a base image: `oci-layout`, `index.json`,
//! nested indexes, manifests, config, and then its layers.
#![no_main]

use conda_docker_fuzz::{open_and_read, scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = scratch();
    let path = write(dir.path(), "image.tar", bytes);
    open_and_read("oci-archive", &path);
});
