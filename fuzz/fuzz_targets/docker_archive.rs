//! A docker-archive (or legacy v1 tar) as a base image: its tar index,
//! `manifest.json`, config, and then its layers.
#![no_main]

use conda_docker_fuzz::{open_and_read, scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = scratch();
    let path = write(dir.path(), "image.tar", bytes);
    open_and_read("docker-archive", &path);
});
