//! The conda records a package layer holds, said on its descriptor (the
//! `org.conda-docker.records` annotation) so that `packages`, `lock` and
//! `diff` can read an image of ours without unpacking its package layers.
//!
//! The value is compact JSON: the prefix the layer writes under and, per
//! package, the name of its `conda-meta/` file and its record without the
//! file list (url, channel, hashes, dependencies, license: everything a
//! read-back prints or writes). The writer sets it from the build's plan,
//! so a layer built and one taken from a cache carry the same annotation.
//! A reader takes it as the image's claim: untrusted, bounded in size,
//! checked for form, never a panic; one it cannot use is read as a layer.

use rattler_conda_types::RepoDataRecord;
use serde::{Deserialize, Serialize};

/// The layer descriptor annotation holding a layer's [`LayerRecords`].
pub const RECORDS_ANNOTATION: &str = "org.conda-docker.records";

/// The largest annotation value written or read: a layer grouping a few
/// hundred packages stays well below it, and a manifest must stay below
/// the 4 MiB registries (and this tool) accept.
pub const MAX_RECORDS_ANNOTATION: usize = 512 << 10;

/// What one package layer holds of conda's: the records it writes below
/// `PREFIX/conda-meta/`, and nothing else there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRecords {
    /// The environment's prefix in the image (`/opt/conda`).
    pub prefix: String,
    /// Each package's record, in the layer's order.
    pub packages: Vec<LayerRecord>,
}

/// One package's record in a layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Its file in `PREFIX/conda-meta/` (`numpy-2.1.0-py312_0.json`).
    pub conda_meta: String,
    /// The record that file holds, without its file list.
    pub record: RepoDataRecord,
}

impl LayerRecords {
    /// The annotation's value: compact JSON, its keys in the order of the
    /// types' fields, so the same records give the same bytes.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("records serialise: their maps have string keys")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> LayerRecords {
        let record: RepoDataRecord = serde_json::from_value(serde_json::json!({
            "name": "x", "version": "1.0", "build": "0", "build_number": 0,
            "subdir": "linux-64", "depends": ["y >=2"], "license": "MIT",
            "md5": "0123456789abcdef0123456789abcdef",
            "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "fn": "x-1.0-0.conda", "url": "https://example.com/c/linux-64/x-1.0-0.conda",
            "channel": "https://example.com/c",
        }))
        .unwrap();
        LayerRecords {
            prefix: "/opt/conda".into(),
            packages: vec![LayerRecord {
                conda_meta: "x-1.0-0.json".into(),
                record,
            }],
        }
    }

    #[test]
    fn records_are_compact_json_in_field_order() {
        let text = records().to_annotation();
        assert!(
            text.starts_with(
                r#"{"prefix":"/opt/conda","packages":[{"conda_meta":"x-1.0-0.json","record":{"#
            ),
            "{text}"
        );
        assert!(
            !text.contains('\n') && !text.contains("\"files\""),
            "{text}"
        );
    }
}
