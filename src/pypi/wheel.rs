//! Reading a wheel (PEP 427) and checking what the install needs from
//! it: its one `.dist-info` folder, `WHEEL`, `RECORD` and entry points.
//! Every size read from it is bounded.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use rattler_conda_types::package::EntryPoint;
use zip::ZipArchive;

use crate::conda::envfile::normalized_name;

use super::PypiError;

/// The most entries a wheel may have.
const MAX_ENTRIES: usize = 200_000;
/// The largest `WHEEL`, `RECORD` or `entry_points.txt` read into memory.
pub(super) const MAX_META_BYTES: u64 = 32 << 20;

/// An opened wheel, its metadata read and checked.
pub(super) struct Wheel {
    /// The zip archive.
    pub archive: ZipArchive<File>,
    /// `NAME-VERSION.dist-info`.
    pub dist_info: String,
    /// `NAME-VERSION.data`.
    pub data: String,
    /// The hashes `RECORD` gives, by archive path (`sha256=...`).
    pub record: HashMap<String, String>,
    /// The console and GUI entry points (on Linux, the same kind of
    /// script).
    pub entry_points: Vec<EntryPoint>,
}

impl Wheel {
    /// Opens the wheel at `path` (fetched as `file_name`) and reads its
    /// metadata.
    pub(super) fn open(path: &Path, file_name: &str) -> Result<Self, PypiError> {
        let bad = |why: String| PypiError::Bad {
            wheel: file_name.to_owned(),
            why,
        };
        let file = File::open(path).map_err(|source| PypiError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut archive =
            ZipArchive::new(file).map_err(|e| bad(format!("it is not a zip archive: {e}")))?;
        if archive.len() > MAX_ENTRIES {
            return Err(bad(format!("it has more than {MAX_ENTRIES} entries")));
        }
        let dist_info = dist_info_dir(&archive, file_name).map_err(bad)?;
        let wheel_meta = read_text(&mut archive, &format!("{dist_info}/WHEEL"))
            .map_err(bad)?
            .ok_or_else(|| bad(format!("it has no {dist_info}/WHEEL")))?;
        check_wheel_version(&wheel_meta).map_err(bad)?;
        let record_text = read_text(&mut archive, &format!("{dist_info}/RECORD"))
            .map_err(bad)?
            .ok_or_else(|| bad(format!("it has no {dist_info}/RECORD")))?;
        let record = record_text
            .lines()
            .map(csv_fields)
            .filter_map(|f| Some((f.first()?.clone(), f.get(1)?.clone())))
            .filter(|(_, hash)| !hash.is_empty())
            .collect();
        let entry_points =
            match read_text(&mut archive, &format!("{dist_info}/entry_points.txt")).map_err(bad)? {
                Some(text) => parse_entry_points(&text).map_err(bad)?,
                None => Vec::new(),
            };
        Ok(Wheel {
            archive,
            data: format!("{}.data", dist_info.trim_end_matches(".dist-info")),
            dist_info,
            record,
            entry_points,
        })
    }
}

/// The wheel's one top-level `.dist-info` folder, which must be its own
/// distribution's.
fn dist_info_dir(archive: &ZipArchive<File>, file_name: &str) -> Result<String, String> {
    let mut found: Vec<String> = archive
        .file_names()
        .filter_map(|name| {
            let name = name.ok()?;
            let top = name.split('/').next()?;
            (top.ends_with(".dist-info") && name.len() > top.len()).then(|| top.to_owned())
        })
        .collect();
    found.sort();
    found.dedup();
    let [dist_info] = found.as_slice() else {
        return Err(format!(
            "it has {} .dist-info folders, and a wheel has one",
            found.len()
        ));
    };
    let own = file_name.split('-').next().unwrap_or_default();
    let named = dist_info.split('-').next().unwrap_or_default();
    if normalized_name(own) != normalized_name(named) {
        return Err(format!(
            "its metadata folder {dist_info} is not that of {own}"
        ));
    }
    Ok(dist_info.clone())
}

/// The text of archive member `name`, if present, bounded in size.
fn read_text(archive: &mut ZipArchive<File>, name: &str) -> Result<Option<String>, String> {
    let entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("{name} cannot be read: {e}")),
    };
    let mut text = String::new();
    entry
        .take(MAX_META_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{name} cannot be read: {e}"))?;
    if text.len() as u64 > MAX_META_BYTES {
        return Err(format!("{name} is larger than {MAX_META_BYTES} bytes"));
    }
    Ok(Some(text))
}

/// `Wheel-Version: 1.x` is the format this installer knows.
fn check_wheel_version(wheel: &str) -> Result<(), String> {
    let version = wheel
        .lines()
        .find_map(|l| l.strip_prefix("Wheel-Version:"))
        .map(str::trim)
        .ok_or("its WHEEL file has no Wheel-Version")?;
    match version.split('.').next() {
        Some("1") => Ok(()),
        _ => Err(format!(
            "it is wheel format {version}, and only 1.x is installed"
        )),
    }
}

/// The fields of one CSV line (`RECORD`'s dialect: commas, double quotes).
pub(super) fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The console and GUI scripts of an `entry_points.txt`; extras
/// (`name = mod:func [extra]`) are ignored, as pip does.
fn parse_entry_points(text: &str) -> Result<Vec<EntryPoint>, String> {
    let mut scripts = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            scripts = matches!(name.trim(), "console_scripts" | "gui_scripts");
            continue;
        }
        if !scripts {
            continue;
        }
        let spec = line.split('[').next().unwrap_or(line).trim();
        let entry = EntryPoint::from_str(spec)
            .map_err(|e| format!("its entry point `{line}` is not valid: {e}"))?;
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_entry_points() {
        assert_eq!(
            csv_fields("\"a,b.py\",sha256=x,12"),
            ["a,b.py", "sha256=x", "12"]
        );
        assert_eq!(csv_fields("pkg/RECORD,,"), ["pkg/RECORD", "", ""]);
        let eps = parse_entry_points(
            "[console_scripts]\ntool = pkg.cli:main [extra]\n[gui_scripts]\ngui=pkg:gui\n[other]\nx = y:z\n",
        )
        .unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].command, "tool");
        assert_eq!(eps[1].function, "gui");
        assert!(parse_entry_points("[console_scripts]\n../evil = a:b\n").is_err());
    }
}
