//! Image config JSON, as read from every base image.
#![no_main]

use conda_docker::image::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = ImageConfig::parse(bytes);
});
