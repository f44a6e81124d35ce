//! Packages rebuilt from an installed prefix, for when the caches were
//! cleaned (`conda clean -a`, common before images are made).
//!
//! Each file the record lists is read from the prefix, its relocation
//! undone (the host prefix back to the package's placeholder; for binary
//! files the NUL padding a C string got is taken back), checked against the
//! package's own sha256, and written at its path inside the package. With
//! `info/index.json`, `info/paths.json` and (noarch python) `info/link.json`
//! beside them, the folder is linked forward exactly like one from a cache.
//! Files the installer generated (entry points, `.pyc`) are not copied:
//! entry points are recreated from their definitions, found in the scripts.

use std::path::{Path, PathBuf};

use rattler::install::PythonInfo;
use rattler_conda_types::package::{
    EntryPoint, FileMode, IndexJson, LinkJson, NoArchLinks, PathType, PathsEntry, PathsJson,
    PrefixPlaceholder, PythonEntryPoints,
};
use rattler_conda_types::prefix_record::{PathType as InstalledType, PathsEntry as InstalledEntry};
use rattler_conda_types::{PackageRecord, PrefixRecord};

use super::CondaError;
use super::cache::dist_name;
use super::contained::{ContainedPath, RealDirs, Unsafe};

/// Undoes conda's (and rattler's) C-string replacement: each string that
/// starts with `host` and runs to a NUL got the placeholder swapped for the
/// host prefix and was padded with NULs to its old length; put the
/// placeholder back and take the padding out. `None` if the bytes do not
/// have that shape.
pub fn unreplace_binary(data: &[u8], host: &[u8], placeholder: &[u8]) -> Option<Vec<u8>> {
    if host.is_empty() || placeholder.len() < host.len() {
        return None;
    }
    let grow = placeholder.len() - host.len();
    let mut out = Vec::with_capacity(data.len());
    let finder = memchr::memmem::Finder::new(host);
    let mut i = 0;
    while let Some(at) = finder.find(&data[i..]) {
        out.extend_from_slice(&data[i..i + at]);
        i += at;
        let end = i + memchr::memchr(0, &data[i..])?;
        let segment = &data[i..=end];
        let occurrences = count(segment, host);
        let padding = grow * occurrences;
        let after = end + 1;
        if data.len() < after + padding || data[after..after + padding].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend(replace(segment, host, placeholder));
        i = after + padding;
    }
    out.extend_from_slice(&data[i..]);
    Some(out)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    memchr::memmem::find_iter(haystack, needle).count()
}

/// `haystack` with every `from` replaced by `to`.
pub fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    for at in memchr::memmem::find_iter(haystack, from) {
        out.extend_from_slice(&haystack[i..at]);
        out.extend_from_slice(to);
        i = at + from.len();
    }
    out.extend_from_slice(&haystack[i..]);
    out
}

/// The file as it was before an installer replaced its over-long shebang
/// `#!PLACEHOLDER/bin/PROGRAM ARGS` (past Linux's 127 bytes) with one of the
/// two short forms conda and rattler use: `#!/usr/bin/env PROGRAM ARGS`, or
/// for python `#!/bin/sh` plus `'''exec' "PATH" ARGS "$0" "$@" #'''`. The
/// bytes come with the host prefix already put back to the placeholder. A
/// guess, so the caller checks it against the package's sha256.
pub fn restore_long_shebang(bytes: &[u8], placeholder: &str) -> Option<Vec<u8>> {
    if let Some(rest) = bytes.strip_prefix(b"#!/usr/bin/env ") {
        let mut restored = format!("#!{placeholder}/bin/").into_bytes();
        restored.extend_from_slice(rest);
        return Some(restored);
    }
    let rest = bytes.strip_prefix(b"#!/bin/sh\n'''exec' \"")?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&rest[..end]).ok()?;
    let (program, args) = line.split_once('"')?;
    let args = args.strip_suffix(r#" "$0" "$@" #'''"#)?;
    let mut restored = format!("#!{program}{args}\n").into_bytes();
    restored.extend_from_slice(&rest[end + 1..]);
    Some(restored)
}

/// Where an installed path lives inside the package: noarch python files
/// move back from `lib/pythonX.Y/site-packages/` and `bin/`.
fn package_path(installed: &Path, noarch_python: bool, python: Option<&PythonInfo>) -> PathBuf {
    if let (true, Some(python)) = (noarch_python, python) {
        if let Ok(rest) = installed.strip_prefix(&python.site_packages_path) {
            return Path::new("site-packages").join(rest);
        }
        if let Ok(rest) = installed.strip_prefix(&python.bin_dir) {
            return Path::new("python-scripts").join(rest);
        }
    }
    installed.to_owned()
}

/// `command = module:function` from an entry point script written by
/// conda's or rattler's template (`from M import F` ... `sys.exit(F())`),
/// checked as rattler checks it when it reads `link.json`.
fn entry_point(name: &str, script: &str) -> Option<EntryPoint> {
    let module = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("from ")?.split_once(" import "))?
        .0;
    let function = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("sys.exit(")?.strip_suffix("())"))?;
    format!("{name} = {module}:{function}").parse().ok()
}

/// Rebuilds the package of `record` from the environment at `prefix` into
/// the new folder `into`.
pub fn unrelocate(
    record: &PrefixRecord,
    prefix: &Path,
    python: Option<&PythonInfo>,
    into: &Path,
) -> Result<(), CondaError> {
    fs_err::create_dir_all(into).map_err(io(into))?;
    let mut rebuild = Rebuild {
        dist: dist_name(&record.repodata_record),
        host: prefix.to_string_lossy().into_owned(),
        noarch_python: record.repodata_record.package_record.noarch.is_python(),
        python,
        into,
        installed_dirs: RealDirs::new(prefix),
        package_dirs: RealDirs::new(into),
        paths: Vec::new(),
        entry_points: Vec::new(),
    };
    for entry in &record.paths_data.paths {
        rebuild.add(entry)?;
    }
    rebuild.write_info(record)
}

/// An I/O error at `path`, for `map_err`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CondaError + use<> {
    let path = path.to_owned();
    move |source| CondaError::Io { path, source }
}

/// One package being rebuilt: where from and to, and the metadata found
/// so far.
struct Rebuild<'a> {
    /// `name-version-build`, for errors.
    dist: String,
    /// The host prefix, as relocation wrote it into files.
    host: String,
    /// Whether the package is noarch python, whose paths move.
    noarch_python: bool,
    /// The environment's python, for noarch python paths.
    python: Option<&'a PythonInfo>,
    /// The package folder.
    into: &'a Path,
    // Records are checked at load; these also make sure that nothing is read
    // from the prefix, or written into the package, through a symlink.
    /// The prefix's folders.
    installed_dirs: RealDirs<'a>,
    /// The package folder's.
    package_dirs: RealDirs<'a>,
    /// The package's `paths.json` entries, in the record's order.
    paths: Vec<PathsEntry>,
    /// `command = module:function`, read back from the entry point scripts.
    entry_points: Vec<EntryPoint>,
}

impl Rebuild<'_> {
    /// A record path that is not a plain path inside the environment.
    fn unsafe_path(&self, path: &Path, why: Unsafe) -> CondaError {
        CondaError::Unrelocatable {
            file: path.to_owned(),
            package: self.dist.clone(),
            reason: format!("is not a plain path inside the environment: it {why}"),
        }
    }

    /// An installed `file` that cannot be taken back into the package.
    fn unrelocatable(&self, file: &Path, reason: &str) -> CondaError {
        CondaError::Unrelocatable {
            file: file.to_owned(),
            package: self.dist.clone(),
            reason: reason.into(),
        }
    }

    /// Takes one installed path back into the package: an entry point
    /// script becomes its definition; a file, symlink or folder is copied;
    /// anything else the installer made (`.pyc`) is left out.
    fn add(&mut self, entry: &InstalledEntry) -> Result<(), CondaError> {
        let installed = self.installed_path(entry)?;
        match entry.path_type {
            InstalledType::UnixPythonEntryPoint => self.read_entry_point(entry, &installed),
            InstalledType::HardLink | InstalledType::SoftLink | InstalledType::Directory => {
                self.copy(entry, &installed)
            }
            _ => Ok(()),
        }
    }

    /// Where `entry` is in the prefix, reached through no symlink; only a
    /// symlink entry may itself be a symlink, as reading any other through
    /// one would take a host file into the image.
    fn installed_path(&mut self, entry: &InstalledEntry) -> Result<PathBuf, CondaError> {
        let relative = ContainedPath::new(&entry.relative_path)
            .map_err(|why| self.unsafe_path(&entry.relative_path, why))?;
        let installed = self
            .installed_dirs
            .join(&relative)
            .map_err(|why| self.unsafe_path(&entry.relative_path, why))?;
        if entry.path_type != InstalledType::SoftLink
            && std::fs::symlink_metadata(&installed).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(self.unsafe_path(
                &entry.relative_path,
                Unsafe::ThroughSymlink(entry.relative_path.display().to_string()),
            ));
        }
        Ok(installed)
    }

    /// Reads the definition back from an entry point script, for
    /// `link.json`: the installer recreates the script from it.
    fn read_entry_point(
        &mut self,
        entry: &InstalledEntry,
        installed: &Path,
    ) -> Result<(), CondaError> {
        let script = std::fs::read_to_string(installed).map_err(io(installed))?;
        let name = entry
            .relative_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let definition = entry_point(&name, &script).ok_or_else(|| {
            self.unrelocatable(
                installed,
                "an entry point script whose module and function cannot be read",
            )
        })?;
        self.entry_points.push(definition);
        Ok(())
    }

    /// Copies a file, symlink or folder to its path inside the package and
    /// lists it for `paths.json`.
    fn copy(&mut self, entry: &InstalledEntry, installed: &Path) -> Result<(), CondaError> {
        let inner = entry
            .original_path
            .as_deref()
            .unwrap_or(&entry.relative_path);
        let inner = package_path(inner, self.noarch_python, self.python);
        let inner_checked =
            ContainedPath::new(&inner).map_err(|why| self.unsafe_path(&inner, why))?;
        let target = self
            .package_dirs
            .create_parents(&inner_checked)
            .map_err(io(self.into))?;
        let path_type = match entry.path_type {
            InstalledType::SoftLink => {
                let link = std::fs::read_link(installed).map_err(io(installed))?;
                std::os::unix::fs::symlink(&link, &target).map_err(io(&target))?;
                PathType::SoftLink
            }
            InstalledType::Directory => {
                fs_err::create_dir_all(&target).map_err(io(&target))?;
                PathType::Directory
            }
            _ if entry.prefix_placeholder.is_none() => {
                self.copy_unchanged(entry, installed, &target)?;
                PathType::HardLink
            }
            _ => {
                let original = self.original_bytes(entry, installed)?;
                write_new(&target, &original, installed)?;
                PathType::HardLink
            }
        };
        self.paths.push(PathsEntry {
            relative_path: inner,
            no_link: entry.no_link,
            path_type,
            prefix_placeholder: entry.prefix_placeholder.as_ref().map(|placeholder| {
                PrefixPlaceholder {
                    file_mode: entry.file_mode.unwrap_or(FileMode::Text),
                    placeholder: placeholder.clone(),
                    experimental_offsets: None,
                }
            }),
            sha256: entry.sha256,
            size_in_bytes: entry.size_in_bytes,
        });
        Ok(())
    }

    /// The sha256 the record gives `installed`'s file, which its bytes are
    /// checked against.
    fn wanted_sha256(
        &self,
        entry: &InstalledEntry,
        installed: &Path,
    ) -> Result<rattler_digest::Sha256Hash, CondaError> {
        entry.sha256.ok_or_else(|| {
            self.unrelocatable(
                installed,
                "has no sha256 in the record, so it cannot be checked",
            )
        })
    }

    /// The error for a file whose bytes are not the package's.
    fn modified(&self, installed: &Path) -> CondaError {
        self.unrelocatable(
            installed,
            "was modified after install (its bytes do not match the package's sha256)",
        )
    }

    /// Copies a file that relocation left as it was to `target`, checked
    /// against the record's sha256 on the way: one buffer of memory, however
    /// big the file.
    fn copy_unchanged(
        &self,
        entry: &InstalledEntry,
        installed: &Path,
        target: &Path,
    ) -> Result<(), CondaError> {
        let want = self.wanted_sha256(entry, installed)?;
        let mut from = std::fs::File::open(installed).map_err(io(installed))?;
        let to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .map_err(io(target))?;
        let mut hashing = rattler_digest::HashingWriter::<_, rattler_digest::Sha256>::new(
            std::io::BufWriter::with_capacity(1 << 16, to),
        );
        std::io::copy(&mut from, &mut hashing).map_err(io(installed))?;
        let (buffered, hash) = hashing.finalize();
        buffered
            .into_inner()
            .map_err(|e| io(target)(e.into_error()))?;
        if hash != want {
            return Err(self.modified(installed));
        }
        copy_mode(installed, target)
    }

    /// The bytes of a file with a prefix placeholder as the package shipped
    /// them: relocation undone, then checked against the record's sha256,
    /// so a file changed after install never enters the image as the
    /// package's. Such files (scripts, configs, some libraries) are read
    /// whole, as the replacement needs them.
    fn original_bytes(
        &self,
        entry: &InstalledEntry,
        installed: &Path,
    ) -> Result<Vec<u8>, CondaError> {
        let want = self.wanted_sha256(entry, installed)?;
        let bytes = std::fs::read(installed).map_err(io(installed))?;
        let host = self.host.as_bytes();
        let original = match (&entry.prefix_placeholder, entry.file_mode) {
            (Some(placeholder), Some(FileMode::Binary)) => {
                unreplace_binary(&bytes, host, placeholder.as_bytes())
            }
            (Some(placeholder), _) => Some(replace(&bytes, host, placeholder.as_bytes())),
            (None, _) => Some(bytes),
        };
        let modified = || self.modified(installed);
        let original = original.ok_or_else(modified)?;
        let matches = |bytes: &[u8]| {
            rattler_digest::compute_bytes_digest::<rattler_digest::Sha256>(bytes) == want
        };
        if matches(&original) {
            return Ok(original);
        }
        // A shebang too long for the kernel was shortened to
        // `#!/usr/bin/env PROGRAM` at install time.
        entry
            .prefix_placeholder
            .as_deref()
            .and_then(|placeholder| restore_long_shebang(&original, placeholder))
            .filter(|restored| matches(restored))
            .ok_or_else(modified)
    }

    /// Writes the package's `info/`: `index.json` from the record (without
    /// what only repodata says), `paths.json`, and for noarch python a
    /// `link.json` with the entry points; each as rattler's type for the
    /// file, which is what rattler reads when it links the package.
    fn write_info(self, record: &PrefixRecord) -> Result<(), CondaError> {
        let Rebuild {
            dist,
            noarch_python,
            into,
            paths,
            mut entry_points,
            ..
        } = self;
        let info = into.join("info");
        fs_err::create_dir_all(&info).map_err(io(&info))?;
        let index = index_json(&record.repodata_record.package_record);
        write_json(&info.join("index.json"), &index, &dist)?;
        let paths = PathsJson {
            paths,
            paths_version: 1,
        };
        write_json(&info.join("paths.json"), &paths, &dist)?;
        if noarch_python {
            entry_points.sort_by_cached_key(ToString::to_string);
            let link = LinkJson {
                noarch: NoArchLinks::Python(PythonEntryPoints { entry_points }),
                package_metadata_version: 1,
            };
            write_json(&info.join("link.json"), &link, &dist)?;
        }
        Ok(())
    }
}

/// Writes `value` as pretty JSON (two-space indent, fields in the type's
/// order) to `path`, a metadata file of the package `dist`.
fn write_json(path: &Path, value: &impl serde::Serialize, dist: &str) -> Result<(), CondaError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CondaError::Unrelocatable {
        file: path.to_owned(),
        package: dist.to_owned(),
        reason: format!("its metadata cannot be written: {e}"),
    })?;
    fs_err::write(path, text).map_err(io(path))
}

/// The package's `index.json`: the record without what only repodata
/// says (hashes, sizes, attestations, when it was indexed, run exports,
/// which have their own file).
fn index_json(p: &PackageRecord) -> IndexJson {
    IndexJson {
        arch: p.arch.clone(),
        build: p.build.clone(),
        build_number: p.build_number,
        constrains: p.constrains.clone(),
        depends: p.depends.clone(),
        extra_depends: p.extra_depends.clone(),
        features: p.features.clone(),
        flags: p.flags.clone(),
        license: p.license.clone(),
        license_family: p.license_family.clone(),
        name: p.name.clone(),
        noarch: p.noarch,
        platform: p.platform.clone(),
        purls: p.purls.clone(),
        python_site_packages_path: p.python_site_packages_path.clone(),
        repodata_revision: None,
        subdir: Some(p.subdir.clone()),
        timestamp: p.timestamp,
        track_features: p.track_features.clone(),
        version: p.version.clone(),
    }
}

/// Writes `bytes` to `target` with the mode of `installed`. A new file,
/// never one already there: a path listed twice could otherwise write
/// through the symlink the first made.
fn write_new(target: &Path, bytes: &[u8], installed: &Path) -> Result<(), CondaError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .and_then(|mut file| std::io::Write::write_all(&mut file, bytes))
        .map_err(io(target))?;
    copy_mode(installed, target)
}

/// Gives `target` the permissions of `installed`.
fn copy_mode(installed: &Path, target: &Path) -> Result<(), CondaError> {
    let mode = std::fs::metadata(installed)
        .map_err(io(installed))?
        .permissions();
    std::fs::set_permissions(target, mode).map_err(io(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_replacement_is_undone() {
        let placeholder = b"/opt/placeholder_placeholder_placeholder";
        let host = b"/tmp/env";
        let mut original = b"abc\0".to_vec();
        original.extend_from_slice(placeholder);
        original.extend_from_slice(b"/lib:");
        original.extend_from_slice(placeholder);
        original.extend_from_slice(b"/bin\0tail");
        // What conda writes: both occurrences replaced, NULs after the string.
        let mut installed = b"abc\0/tmp/env/lib:/tmp/env/bin\0".to_vec();
        installed.extend(std::iter::repeat_n(
            0u8,
            2 * (placeholder.len() - host.len()),
        ));
        installed.extend_from_slice(b"tail");
        assert_eq!(installed.len(), original.len());
        assert_eq!(
            unreplace_binary(&installed, host, placeholder).unwrap(),
            original
        );
        // Missing padding: not a relocated binary.
        assert!(unreplace_binary(b"/tmp/env/x\0zz", host, placeholder).is_none());
    }

    #[test]
    fn long_shebangs_are_restored() {
        let restored =
            restore_long_shebang(b"#!/usr/bin/env python -u\nprint(1)\n", "/ph").unwrap();
        assert_eq!(restored, b"#!/ph/bin/python -u\nprint(1)\n");
        assert!(restore_long_shebang(b"#!/bin/sh\n", "/ph").is_none());
        let exec = b"#!/bin/sh\n'''exec' \"/ph/bin/python3.12\" -u \"$0\" \"$@\" #'''\nprint(1)\n";
        assert_eq!(
            restore_long_shebang(exec, "/ph").unwrap(),
            b"#!/ph/bin/python3.12 -u\nprint(1)\n"
        );
    }

    #[test]
    fn entry_points_are_read_back_from_scripts() {
        let script = "#!/env/bin/python\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n\nfrom cdpkg.cli import main\n\nif __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n    sys.exit(main())\n";
        assert_eq!(
            entry_point("cd-entry", script).unwrap().to_string(),
            "cd-entry = cdpkg.cli:main"
        );
    }
}
