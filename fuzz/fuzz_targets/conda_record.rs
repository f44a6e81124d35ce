//! `conda-meta/*.json` records, as read from an installed environment or
//! from an image: parsed, then checked for paths and names that could
//! leave the prefix.
#![no_main]

use conda_docker::fuzzing::check_record;
use libfuzzer_sys::fuzz_target;
use rattler_conda_types::PrefixRecord;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<PrefixRecord>(bytes) {
        let _ = check_record(&record);
    }
});
