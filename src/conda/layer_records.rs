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

use super::contained::{DistName, shown};
use rattler_conda_types::{PrefixRecord, RepoDataRecord};
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

    /// The records an annotation's value states, checked, or why they
    /// cannot be used (too large, not this JSON, a prefix that is not a
    /// plain absolute path, a file not named after its own record).
    pub fn parse(value: &str) -> Result<ClaimedRecords, String> {
        if value.len() > MAX_RECORDS_ANNOTATION {
            return Err(format!(
                "it has {} bytes, over the {} KiB this tool reads",
                value.len(),
                MAX_RECORDS_ANNOTATION >> 10
            ));
        }
        let records: LayerRecords =
            serde_json::from_str(value).map_err(|e| format!("it is not valid: {e}"))?;
        let prefix = records.prefix_arc()?;
        for p in &records.packages {
            // The writer names each file as relocation does: a name made
            // from the record's checked fields is one plain component.
            let own = DistName::of(&p.record.package_record)
                .is_ok_and(|dist| dist.conda_meta_file() == p.conda_meta);
            if !own {
                return Err(format!(
                    "`{}` is not the conda-meta file name of its record",
                    shown(&p.conda_meta)
                ));
            }
        }
        Ok(ClaimedRecords {
            dir: match prefix.is_empty() {
                true => "conda-meta".to_owned(),
                false => format!("{prefix}/conda-meta"),
            },
            packages: records.packages,
        })
    }

    /// The prefix as a layer's paths name it (`opt/conda`; empty for `/`),
    /// when it is an absolute path of plain components.
    fn prefix_arc(&self) -> Result<String, String> {
        let bad = || {
            format!(
                "the prefix `{}` is not a plain absolute path",
                shown(&self.prefix)
            )
        };
        let rest = self.prefix.strip_prefix('/').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        if parts
            .iter()
            .any(|p| *p == "." || *p == ".." || p.contains('\0'))
        {
            return Err(bad());
        }
        Ok(parts.join("/"))
    }
}

/// Records read from an annotation by [`LayerRecords::parse`], checked:
/// only such records become files, so no unchecked prefix or name can.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedRecords {
    /// Where the files go, relative to the image's root:
    /// `opt/conda/conda-meta`.
    dir: String,
    packages: Vec<LayerRecord>,
}

impl ClaimedRecords {
    /// Each record's path in the image (relative to the root:
    /// `opt/conda/conda-meta/x-1-0.json`) and the bytes of a `conda-meta`
    /// file holding it (without its file list).
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        self.packages
            .iter()
            .map(|p| {
                let record = PrefixRecord::from_repodata_record(p.record.clone(), Vec::new());
                let bytes = serde_json::to_vec(&record).expect("a record serialises");
                (format!("{}/{}", self.dir, p.conda_meta), bytes)
            })
            .collect()
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

    #[test]
    fn records_round_trip_and_become_conda_meta_files() {
        let records = records();
        let text = records.to_annotation();
        let files = LayerRecords::parse(&text).unwrap().files();
        assert_eq!(files[0].0, "opt/conda/conda-meta/x-1.0-0.json");
        let back: PrefixRecord = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(back.repodata_record, records.packages[0].record);
        assert!(back.files.is_empty());
        let root = LayerRecords {
            prefix: "/".into(),
            ..records
        };
        let root = LayerRecords::parse(&root.to_annotation()).unwrap();
        assert_eq!(root.files()[0].0, "conda-meta/x-1.0-0.json");
    }

    #[test]
    fn hostile_values_are_refused_not_panicked_on() {
        let good = records().to_annotation();
        for (value, why) in [
            ("[]".to_owned(), "not valid"),
            ("{\"prefix\":1}".to_owned(), "not valid"),
            ("{".to_owned(), "not valid"),
            (good.replace("/opt/conda", "opt/conda"), "prefix"),
            (good.replace("/opt/conda", "/opt/../etc"), "prefix"),
            (good.replace("x-1.0-0.json", "../x.json"), "file name"),
            (good.replace("x-1.0-0.json", ".wh.x.json"), "file name"),
            (good.replace("x-1.0-0.json", ".json"), "file name"),
            (good.replace("x-1.0-0.json", "x-1.0-0.txt"), "file name"),
            (good.replace("x-1.0-0.json", "y-1.0-0.json"), "file name"),
            (good.replace("\"1.0\"", "\"not a version!\""), "not valid"),
            (" ".repeat(MAX_RECORDS_ANNOTATION + 1), "bytes"),
        ] {
            let err = LayerRecords::parse(&value).unwrap_err();
            assert!(err.contains(why), "{err} for {value:.80}");
        }
    }
}
