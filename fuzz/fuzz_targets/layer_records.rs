//! The `org.conda-docker.records` annotation of a layer descriptor, as
//! `packages`, `lock` and `diff` read it instead of the layer: parsed,
//! checked, then turned into `conda-meta` files.
#![no_main]

use conda_docker::fuzzing::LayerRecords;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(records) = LayerRecords::parse(text)
    {
        let _ = records.files();
    }
});
