//! The manifest of an OCI layout. The input is the manifest JSON; the
//! strings `CONFIG_DIGEST` and `LAYER_DIGEST` in it become the digests of
//! a real config and layer, so mutations get past the digest checks.
#![no_main]

use conda_docker_fuzz::{digest, docker_archive, open_and_read, scratch, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let dir = scratch();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("a scratch layout");
    let layer = docker_archive(b"");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
    })
    .to_string();
    let blob = |bytes: &[u8]| {
        let digest = digest(bytes);
        write(&blobs, &digest["sha256:".len()..], bytes);
        digest
    };
    let manifest = text
        .replace("CONFIG_DIGEST", &blob(config.as_bytes()))
        .replace("LAYER_DIGEST", &blob(&layer));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": blob(manifest.as_bytes()),
            "size": manifest.len(),
        }],
    })
    .to_string();
    write(dir.path(), "index.json", index.as_bytes());
    write(
        dir.path(),
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    open_and_read("oci", dir.path());
});
