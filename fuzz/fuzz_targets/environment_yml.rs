//! `environment.yml` files.
#![no_main]

use conda_docker::fuzzing::read_environment_yaml;
use conda_docker_fuzz::{scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = scratch();
    let _ = read_environment_yaml(&write(dir.path(), "environment.yml", bytes), false);
});
