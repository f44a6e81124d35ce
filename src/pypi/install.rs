//! Installing a wheel by the binary distribution format (PEP 427, the
//! PyPA "binary distribution format" spec) into a staging folder laid out
//! like the environment's prefix: the root and `.data/purelib|platlib`
//! into site-packages, `.data/scripts` into `bin` (a `#!python` shebang
//! made the image's python), `.data/headers` into `include/pythonX.Y/NAME`,
//! `.data/data` into the prefix; entry points written as conda writes
//! them; `RECORD` rewritten for the installed paths; `INSTALLER` and,
//! when asked for, `REQUESTED`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rattler::install::{PythonInfo, python_entry_point_template};

use crate::conda::contained::{ContainedPath, RealDirs};
use crate::conda::envfile::LockedWheel;
use crate::digest::{Digest, HashingWriter};

use super::PypiError;
use super::wheel::{MAX_META_BYTES, Wheel};

/// The version of how a wheel is installed (where files go, the scripts,
/// `RECORD`, `INSTALLER`): part of a wheel layer's identity, bumped with
/// any change to what this module writes for the same wheel.
pub const INSTALL_FORMAT: u32 = 1;

/// The most bytes one wheel may unpack to (a bound against zip bombs).
const MAX_INSTALLED_BYTES: u64 = 32 << 30;

/// What `INSTALLER` says.
const INSTALLER: &str = "conda-docker\n";

/// Where a wheel goes: the environment's python, inside the image.
pub(crate) struct Layout<'a> {
    /// The environment's python (site-packages, bin, version).
    pub python: &'a PythonInfo,
    /// The environment's prefix inside the image (`/opt/conda`).
    pub image_prefix: &'a str,
}

/// One installed file, as `RECORD` lists it.
struct Row {
    /// The path relative to site-packages.
    path: String,
    /// `sha256=<urlsafe base64>`.
    hash: String,
    size: u64,
}

/// The install of one wheel into `staging`.
struct Installer<'a> {
    /// The wheel's file name, for errors.
    name: String,
    wheel: Wheel,
    layout: &'a Layout<'a>,
    staging: &'a Path,
    dirs: RealDirs<'a>,
    rows: Vec<Row>,
    total: u64,
}

/// Installs the wheel at `path` (the lock's `locked`) into `staging`, a
/// folder that stands for the prefix.
pub(crate) fn install(
    path: &Path,
    locked: &LockedWheel,
    layout: &Layout,
    staging: &Path,
) -> Result<(), PypiError> {
    fs_err::create_dir_all(staging).map_err(|source| PypiError::Io {
        path: staging.to_owned(),
        source,
    })?;
    let mut installer = Installer {
        name: locked.file_name.clone(),
        wheel: Wheel::open(path, &locked.file_name)?,
        layout,
        staging,
        dirs: RealDirs::new(staging),
        rows: Vec::new(),
        total: 0,
    };
    for index in 0..installer.wheel.archive.len() {
        installer.entry(index)?;
    }
    installer.entry_points()?;
    let dist_info = installer.wheel.dist_info.clone();
    installer.write_new(
        &format!("{dist_info}/INSTALLER"),
        INSTALLER.as_bytes(),
        0o644,
    )?;
    if locked.requested {
        installer.write_new(&format!("{dist_info}/REQUESTED"), b"", 0o644)?;
    }
    installer.write_record()
}

impl Installer<'_> {
    fn site_packages(&self) -> &Path {
        &self.layout.python.site_packages_path
    }

    /// Installs archive entry `index`.
    fn entry(&mut self, index: usize) -> Result<(), PypiError> {
        let (name, is_dir, is_symlink, mode, size) = {
            let entry = self
                .wheel
                .archive
                .by_index(index)
                .map_err(|e| bad(&self.name, format!("entry {index} cannot be read: {e}")))?;
            let name = entry
                .name()
                .map_err(|e| bad(&self.name, format!("entry {index} has a bad name: {e}")))?
                .into_owned();
            let (is_dir, is_symlink) = (entry.is_dir(), entry.is_symlink());
            (name, is_dir, is_symlink, entry.unix_mode(), entry.size())
        };
        let record = format!("{}/RECORD", self.wheel.dist_info);
        let signature = [".jws", ".p7s"].map(|s| format!("{record}{s}"));
        if is_dir || name == record || signature.contains(&name) {
            return Ok(());
        }
        if is_symlink {
            return Err(bad(
                &self.name,
                format!("{name} is a symlink, which wheels cannot hold"),
            ));
        }
        ContainedPath::new(Path::new(&name))
            .map_err(|why| bad(&self.name, format!("entry {name:?} {why}")))?;
        let (target, script) = self.target(&name)?;
        let executable = script || mode.is_some_and(|m| m & 0o111 != 0);
        let mode = if executable { 0o755 } else { 0o644 };
        self.total += size;
        if self.total > MAX_INSTALLED_BYTES {
            return Err(bad(
                &self.name,
                format!("it unpacks to more than {MAX_INSTALLED_BYTES} bytes"),
            ));
        }
        let digest = match script {
            true => self.install_script(index, &name, &target, size)?,
            false => self.install_file(index, &name, &target, size, mode)?,
        };
        self.check_hash(&name, &digest)
    }

    /// Where archive path `name` goes, relative to the prefix, and whether
    /// it is a script whose shebang may need the image's python.
    fn target(&self, name: &str) -> Result<(PathBuf, bool), PypiError> {
        let Some(rest) = name.strip_prefix(&format!("{}/", self.wheel.data)) else {
            return Ok((self.site_packages().join(name), false));
        };
        let (scheme, rest) = rest.split_once('/').ok_or_else(|| {
            bad(
                &self.name,
                format!("{name} is in no scheme folder of .data"),
            )
        })?;
        let python = self.layout.python;
        let (major, minor) = python.short_version;
        Ok(match scheme {
            "purelib" | "platlib" => (self.site_packages().join(rest), false),
            "scripts" => (python.bin_dir.join(rest), true),
            "headers" => {
                let package = self.wheel.dist_info.split('-').next().unwrap_or_default();
                let include = format!("include/python{major}.{minor}");
                (Path::new(&include).join(package).join(rest), false)
            }
            "data" => (PathBuf::from(rest), false),
            other => {
                return Err(bad(
                    &self.name,
                    format!("{name} is in the unknown scheme `{other}` of .data"),
                ));
            }
        })
    }

    /// Creates `target` (relative to the prefix) anew: two entries that
    /// install the same path are an error, not a silent overwrite.
    fn create(&mut self, target: &Path, mode: u32) -> Result<File, PypiError> {
        let contained = ContainedPath::new(target).map_err(|why| {
            bad(
                &self.name,
                format!("it installs {} which {why}", target.display()),
            )
        })?;
        let path = self
            .dirs
            .create_parents(&contained)
            .map_err(|source| PypiError::Io {
                path: self.staging.join(target),
                source,
            })?;
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => bad(
                    &self.name,
                    format!("it installs {} twice", target.display()),
                ),
                _ => PypiError::Io {
                    path: path.clone(),
                    source,
                },
            })?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|source| PypiError::Io { path, source })?;
        Ok(file)
    }

    /// Copies entry `index` (`size` bytes, as its header says) to `target`
    /// and returns the digest of its bytes.
    fn install_file(
        &mut self,
        index: usize,
        name: &str,
        target: &Path,
        size: u64,
        mode: u32,
    ) -> Result<Digest, PypiError> {
        let file = self.create(target, mode)?;
        let mut writer = HashingWriter::new(file);
        let entry = self
            .wheel
            .archive
            .by_index(index)
            .map_err(|e| bad(&self.name, format!("{name} cannot be read: {e}")))?;
        let copied = std::io::copy(&mut entry.take(size + 1), &mut writer);
        let copied = copied.map_err(|e| bad(&self.name, format!("{name} cannot be read: {e}")))?;
        if copied != size {
            return Err(bad(
                &self.name,
                format!("{name} holds {copied} bytes where its header says {size}"),
            ));
        }
        let (_, digest, size) = writer.finish();
        self.rows.push(self.row(target, &digest, size));
        Ok(digest)
    }

    /// Installs script `name` into `target`, its `#!python` shebang made
    /// the image's python; returns the digest of the script as the wheel
    /// has it (what `RECORD` names).
    fn install_script(
        &mut self,
        index: usize,
        name: &str,
        target: &Path,
        size: u64,
    ) -> Result<Digest, PypiError> {
        if size > MAX_META_BYTES {
            return Err(bad(
                &self.name,
                format!("script {name} is larger than {MAX_META_BYTES} bytes"),
            ));
        }
        let mut bytes = Vec::new();
        let entry = self
            .wheel
            .archive
            .by_index(index)
            .map_err(|e| bad(&self.name, format!("{name} cannot be read: {e}")))?;
        entry
            .take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(&self.name, format!("{name} cannot be read: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(bad(
                &self.name,
                format!("{name} does not hold the {size} bytes its header says"),
            ));
        }
        let digest = Digest::of(&bytes);
        let installed = match bytes.strip_prefix(b"#!python") {
            Some(rest) => {
                let rest = rest.strip_prefix(b"w").unwrap_or(rest);
                let shebang = self.layout.python.shebang(self.layout.image_prefix);
                [shebang.as_bytes(), rest].concat()
            }
            None => bytes,
        };
        self.write_prefix_file(target, &installed, 0o755)?;
        Ok(digest)
    }

    /// Writes `bytes` at `target` (relative to the prefix) and lists it.
    fn write_prefix_file(
        &mut self,
        target: &Path,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), PypiError> {
        let mut file = self.create(target, mode)?;
        file.write_all(bytes).map_err(|source| PypiError::Io {
            path: self.staging.join(target),
            source,
        })?;
        self.rows
            .push(self.row(target, &Digest::of(bytes), bytes.len() as u64));
        Ok(())
    }

    /// Writes `bytes` at `name`, relative to site-packages.
    fn write_new(&mut self, name: &str, bytes: &[u8], mode: u32) -> Result<(), PypiError> {
        let target = self.site_packages().join(name);
        self.write_prefix_file(&target, bytes, mode)
    }

    /// Fails when `RECORD` gives entry `name` a sha256 its bytes do not have.
    fn check_hash(&self, name: &str, digest: &Digest) -> Result<(), PypiError> {
        let Some(listed) = self.wheel.record.get(name) else {
            return Ok(());
        };
        let Some(sha256) = listed.strip_prefix("sha256=") else {
            return Ok(());
        };
        if sha256.trim_end_matches('=') != URL_SAFE_NO_PAD.encode(digest.as_bytes()) {
            return Err(bad(
                &self.name,
                format!("{name} does not have the sha256 its RECORD lists"),
            ));
        }
        Ok(())
    }

    /// The console and GUI scripts, written for the image's python as
    /// conda writes a noarch package's entry points.
    fn entry_points(&mut self) -> Result<(), PypiError> {
        let python = self.layout.python;
        for entry in std::mem::take(&mut self.wheel.entry_points) {
            let script =
                python_entry_point_template(self.layout.image_prefix, false, &entry, python);
            let target = python.bin_dir.join(&entry.command);
            self.write_prefix_file(&target, script.as_bytes(), 0o755)?;
        }
        Ok(())
    }

    /// The `RECORD` row of a file at `target` (relative to the prefix).
    fn row(&self, target: &Path, digest: &Digest, size: u64) -> Row {
        let path = match target.strip_prefix(self.site_packages()) {
            Ok(inside) => inside.to_path_buf(),
            Err(_) => {
                let up = self.site_packages().components().count();
                let mut path: PathBuf = std::iter::repeat_n("..", up).collect();
                path.push(target);
                path
            }
        };
        Row {
            path: path.to_string_lossy().into_owned(),
            hash: format!("sha256={}", URL_SAFE_NO_PAD.encode(digest.as_bytes())),
            size,
        }
    }

    /// `RECORD`, listing every installed file (itself without a hash), in
    /// path order.
    fn write_record(mut self) -> Result<(), PypiError> {
        let own = format!("{}/RECORD", self.wheel.dist_info);
        self.rows.sort_by(|a, b| a.path.cmp(&b.path));
        let mut text = String::new();
        for row in &self.rows {
            text.push_str(&format!("{},{},{}\n", csv(&row.path), row.hash, row.size));
        }
        text.push_str(&format!("{},,\n", csv(&own)));
        let target = self.site_packages().join(&own);
        let mut file = self.create(&target, 0o644)?;
        file.write_all(text.as_bytes())
            .map_err(|source| PypiError::Io {
                path: self.staging.join(&target),
                source,
            })
    }
}

/// What is wrong with wheel `name`.
fn bad(name: &str, why: impl Into<String>) -> PypiError {
    PypiError::Bad {
        wheel: name.to_owned(),
        why: why.into(),
    }
}

/// A CSV field, quoted when it must be.
fn csv(field: &str) -> String {
    match field.contains([',', '"', '\n']) {
        true => format!("\"{}\"", field.replace('"', "\"\"")),
        false => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use zip::write::SimpleFileOptions;

    /// A wheel `bad-1.0-py3-none-any.whl` holding `entries` (name, bytes,
    /// symlink?) besides a WHEEL file and an empty RECORD.
    fn wheel(dir: &Path, entries: &[(&str, &[u8], bool)], record: &str) -> PathBuf {
        let path = dir.join("bad-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let mut all: Vec<(&str, &[u8], bool)> = vec![
            ("bad-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n", false),
            ("bad-1.0.dist-info/RECORD", record.as_bytes(), false),
        ];
        all.extend_from_slice(entries);
        for (name, bytes, link) in all {
            let options = SimpleFileOptions::default();
            match link {
                true => zip.add_symlink(name, "/etc", options).unwrap(),
                false => {
                    zip.start_file(name, options).unwrap();
                    zip.write_all(bytes).unwrap();
                }
            }
        }
        zip.finish().unwrap();
        path
    }

    /// Installs `entries` as a wheel; the error's text, or `None`.
    fn try_install(entries: &[(&str, &[u8], bool)], record: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = wheel(dir.path(), entries, record);
        let python = PythonInfo::from_version(
            &"3.11.7".parse().unwrap(),
            None,
            rattler_conda_types::Subdir::Linux64,
        )
        .unwrap();
        let layout = Layout {
            python: &python,
            image_prefix: "/opt/conda",
        };
        let locked = LockedWheel {
            name: "bad".into(),
            version: "1.0".into(),
            url: "https://example.com/bad-1.0-py3-none-any.whl"
                .parse()
                .unwrap(),
            file_name: "bad-1.0-py3-none-any.whl".into(),
            sha256: [0; 32],
            requested: false,
        };
        let staging = dir.path().join("prefix");
        let result = install(&path, &locked, &layout, &staging);
        // Whatever the wheel says, nothing lands outside the staging folder.
        let outside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "prefix" && n != "bad-1.0-py3-none-any.whl")
            .collect();
        assert!(outside.is_empty(), "{outside:?}");
        result.err().map(|e| e.to_string())
    }

    #[test]
    fn hostile_wheels_are_refused() {
        assert_eq!(try_install(&[("bad/__init__.py", b"", false)], ""), None);
        for (entries, record, why) in [
            (vec![("../escape.py", b"" as &[u8], false)], "", "`..`"),
            (vec![("/abs.py", b"", false)], "", "absolute"),
            (vec![("bad/link", b"", true)], "", "symlink"),
            (
                vec![("bad-1.0.data/unknown/x", b"", false)],
                "",
                "unknown scheme",
            ),
            (
                vec![("bad/__init__.py", b"x", false)],
                "bad/__init__.py,sha256=AAAA,1\n",
                "does not have the sha256",
            ),
            (
                vec![
                    ("bad/a.py", b"", false),
                    ("bad-1.0.data/purelib/bad/a.py", b"", false),
                ],
                "",
                "twice",
            ),
            (
                vec![("other-1.0.dist-info/METADATA", b"", false)],
                "",
                ".dist-info folders",
            ),
        ] {
            let err = try_install(&entries, record).unwrap_or_else(|| panic!("{why}: installed"));
            assert!(err.contains(why), "{why}: {err}");
            assert!(err.starts_with("wheel bad-1.0-py3-none-any.whl"), "{err}");
        }
    }
}
