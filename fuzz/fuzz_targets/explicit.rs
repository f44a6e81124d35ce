//! `@EXPLICIT` spec files (`conda list --explicit` output).
#![no_main]

use conda_docker::fuzzing::read_explicit;
use conda_docker_fuzz::{scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = scratch();
    let _ = read_explicit(&write(dir.path(), "spec.txt", bytes));
});
