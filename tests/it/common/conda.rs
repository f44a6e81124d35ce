//! Real conda packages, a local channel and installed environments, offline.
//!
//! Product tests need genuine conda environments (archives, `conda-meta/`,
//! package caches) but these machines reach no conda channel. So we write a
//! small channel of real `.conda` / `.tar.bz2` archives with
//! `rattler_package_streaming`, index it ourselves, and install from it with
//! rattler's `Installer` through `file://` URLs: real linking, real prefix
//! replacement, a real `conda-meta/`.
//!
//! Every file that needs relocation uses [`PLACEHOLDER`], a 132-character
//! prefix in the style of conda-build's padded build prefix: binary
//! replacement can only shrink a C string, so the placeholder must be longer
//! than both `/opt/conda` and any temp-dir prefix a test installs into.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use rattler::install::Installer;
use rattler::package_cache::PackageCache;
use rattler::validation::ValidationMode;
use rattler_conda_types::compression_level::CompressionLevel;
use rattler_conda_types::package::FileMode;
use rattler_conda_types::{
    Channel, MatchSpec, PackageRecord, ParseStrictness, PrefixRecord, RepoData, RepoDataRecord,
    Subdir,
};
use rattler_digest::{Md5, Sha256, compute_bytes_digest, compute_file_digest};
use rattler_lock::{LockFile, PlatformData};
use rattler_package_streaming::write::{write_conda_package, write_tar_bz2_package};
use serde_json::{Value, json};

use super::process::run;
use super::tools::tool;

/// The build prefix baked into every relocatable file of the fixture
/// packages: conda-build's classic `/opt/anaconda1anaconda2anaconda3`,
/// padded the way conda-build pads `_h_env_placehold...` prefixes.
pub const PLACEHOLDER: &str = concat!(
    "/opt/anaconda1anaconda2anaconda3",
    "_placehold_placehold_placehold_placehold_placehold",
    "_placehold_placehold_placehold_placehold_placehold",
);

/// `share/cd-text/config.txt` (`root=<PLACEHOLDER>/share`, a text
/// placeholder) and `bin/cd-show`, a `#!/bin/sh` script that `cat`s it from
/// the placeholder path: running `cd-show` prints `root=<prefix>/share` only
/// when both files were relocated. `.tar.bz2`.
pub const CD_TEXT: &str = "cd-text";
/// `bin/cd-binary`, a static C program holding [`PLACEHOLDER`] in a char
/// array (a binary placeholder); it prints `<prefix>/etc/cd.conf`. Built
/// with `gcc -static` by [`CondaChannel::build`]. Depends on `cd-text`.
/// `.conda`.
pub const CD_BINARY: &str = "cd-binary";
/// `lib/libcd.so.1` (a file) and `lib/libcd.so -> libcd.so.1` (a softlink
/// entry in `paths.json`). `.tar.bz2`.
pub const CD_LINK: &str = "cd-link";
/// A STAND-IN for CPython 3.12.0, not an interpreter: `bin/python3.12` is a
/// tiny `#!/bin/sh` script, `bin/python` and `bin/python3` link to it. It
/// exists so rattler knows the Python version (site-packages path, entry
/// point shebang) when installing `cd-noarch`. `.conda`.
pub const PYTHON: &str = "python";
/// A `noarch: python` package: `site-packages/cdpkg/__init__.py` (with
/// `def main()`) and the entry point `cd-entry = cdpkg:main` in
/// `info/link.json`. Depends on `python`. `.tar.bz2`.
pub const CD_NOARCH: &str = "cd-noarch";
/// One small file, `share/cd-leaf/leaf.txt`; depends on `cd-text`. Product
/// tests add it to check that a new leaf package does not reorder the layers
/// of the others. `.conda`.
pub const CD_LEAF: &str = "cd-leaf";

/// Multi-platform channel ([`CondaChannel::build_multi_platform`]): built
/// once per arch subdir, `share/cd-arch/platform.txt` holds the subdir
/// (`linux-64` or `linux-aarch64`) and `bin/cd-arch`, a `#!/bin/sh` script
/// reading it from the placeholder path, prints it ([`cd_arch_output`]).
/// Version 1.0, depends on `cd-lib >=1` and `cd-data`. `.conda`. It also
/// holds [`CD_ARCH_ELF`].
pub const CD_ARCH: &str = "cd-arch";
/// A real executable of [`CD_ARCH`]'s platform, written by hand (a static
/// ELF64 of a few hundred bytes, no cross compiler): it prints
/// [`cd_arch_output`] too.
pub const CD_ARCH_ELF: &str = "bin/cd-arch-elf";
/// Multi-platform channel: versions 1.0 (`.tar.bz2`) and 2.0 (`.conda`) in
/// each arch subdir; `share/cd-lib/version.txt` reads `cd-lib VERSION
/// SUBDIR` ([`cd_lib_version_text`]). A solve for `cd-arch` picks 2.0,
/// one for `cd-arch` + `cd-lib <2` picks 1.0.
pub const CD_LIB: &str = "cd-lib";
/// Multi-platform channel: a `noarch: generic` package (no `link.json`),
/// `share/cd-data/data.txt`. `.tar.bz2`.
pub const CD_DATA: &str = "cd-data";

/// The arch subdirs of [`CondaChannel::build_multi_platform`].
pub const ARCH_SUBDIRS: [&str; 2] = [LINUX_64, LINUX_AARCH64];
/// Every subdir of [`CondaChannel::build_multi_platform`] (each with a
/// `repodata.json`).
pub const MULTI_PLATFORM_SUBDIRS: [&str; 3] = [LINUX_64, LINUX_AARCH64, NOARCH];
/// The package names of [`CondaChannel::build_multi_platform`].
pub const MULTI_PLATFORM_PACKAGES: [&str; 5] = [CD_ARCH, CD_LIB, CD_DATA, PYTHON, CD_NOARCH];
/// The versions of [`CD_LIB`] in each arch subdir, oldest first.
pub const CD_LIB_VERSIONS: [&str; 2] = ["1.0", "2.0"];

const LINUX_64: &str = "linux-64";
const LINUX_AARCH64: &str = "linux-aarch64";
const LINUX_PPC64LE: &str = "linux-ppc64le";
const NOARCH: &str = "noarch";

/// The arch subdirs of [`CondaChannel::build_three_platform`].
pub const THREE_ARCH_SUBDIRS: [&str; 3] = [LINUX_64, LINUX_AARCH64, LINUX_PPC64LE];

/// The subdirs of the channels of [`CondaChannel::build`] and
/// [`CondaChannel::build_without_binary`].
const SINGLE_PLATFORM_SUBDIRS: [&str; 2] = [LINUX_64, NOARCH];

/// Every package of the channel built by [`CondaChannel::build`].
pub const ALL_PACKAGES: [&str; 6] = [CD_TEXT, CD_BINARY, CD_LINK, PYTHON, CD_NOARCH, CD_LEAF];
/// The packages of [`CondaChannel::build_without_binary`] (no gcc needed).
pub const PACKAGES_WITHOUT_BINARY: [&str; 5] = [CD_TEXT, CD_LINK, PYTHON, CD_NOARCH, CD_LEAF];

/// What `bin/cd-show` prints when the env lives at `prefix`.
pub fn cd_show_output(prefix: &str) -> String {
    format!("root={prefix}/share\n")
}

/// What `bin/cd-arch` prints (and `share/cd-arch/platform.txt` holds) for
/// the package of `subdir` (`linux-64` or `linux-aarch64`).
pub fn cd_arch_output(subdir: &str) -> String {
    format!("{subdir}\n")
}

/// The text of `share/cd-lib/version.txt` in `cd-lib` `version` of `subdir`.
pub fn cd_lib_version_text(version: &str, subdir: &str) -> String {
    format!("cd-lib {version} {subdir}\n")
}

/// What `bin/cd-binary` prints when the env lives at `prefix`.
pub fn cd_binary_output(prefix: &str) -> String {
    format!("{prefix}/etc/cd.conf\n")
}

/// Fixed build time of every package (ms since the epoch), so `index.json`
/// and `repodata.json` do not change from one run to the next.
const TIMESTAMP_MS: u64 = 1_700_000_000_000;

/// The C source of `cd-binary`. The prefix lives in a writable global array
/// so the compiler cannot fold it into the format string: the placeholder
/// stays a NUL-terminated string of its own, as in real binaries.
const CD_BINARY_C: &str = r#"#include <stdio.h>
char cd_prefix[] = "@PLACEHOLDER@";
int main(void) {
    printf("%s/etc/cd.conf\n", cd_prefix);
    return 0;
}
"#;

// ---------------------------------------------------------------------------
// The channel
// ---------------------------------------------------------------------------

/// A local conda channel on disk: `linux-64/` and `noarch/` (plus
/// `linux-aarch64/` for [`CondaChannel::build_multi_platform`]), each with
/// its archives and a `repodata.json`.
pub struct CondaChannel {
    /// The channel root (the `file://` channel URL points here).
    pub dir: PathBuf,
    /// Every package, as rattler reads it back from the `repodata.json`
    /// files: `url` is the archive's `file://` URL, `channel` the channel's.
    pub records: Vec<RepoDataRecord>,
}

impl CondaChannel {
    /// Writes the whole channel ([`ALL_PACKAGES`]) under `dir` (created).
    ///
    /// `None`, after printing why, when gcc is missing (it compiles
    /// `cd-binary`); under `CONDA_DOCKER_REQUIRE_TOOLS=1` that panics.
    pub fn build(dir: &Path) -> Option<Self> {
        let gcc = tool("gcc")?;
        let work = absolute(dir).join(".work");
        let binary = compile_cd_binary(&gcc, &work);
        Some(Self::write(
            dir,
            package_specs(Some(binary)),
            &SINGLE_PLATFORM_SUBDIRS,
        ))
    }

    /// Writes every package but `cd-binary` ([`PACKAGES_WITHOUT_BINARY`]):
    /// for tests that do not run a relocated binary, so they need no gcc.
    pub fn build_without_binary(dir: &Path) -> Self {
        Self::write(dir, package_specs(None), &SINGLE_PLATFORM_SUBDIRS)
    }

    /// Writes a channel for two platforms under `dir` (created; no tool
    /// needed): `linux-64/`, `linux-aarch64/` and `noarch/`, each with a
    /// `repodata.json`. Each arch subdir holds [`CD_ARCH`] 1.0, [`CD_LIB`]
    /// 1.0 and 2.0 and a [`PYTHON`] stand-in, whose files name the subdir;
    /// `noarch/` holds [`CD_DATA`] and [`CD_NOARCH`]. Several records share
    /// a name: pick them with [`CondaChannel::record_in`] /
    /// [`CondaChannel::record_version`].
    pub fn build_multi_platform(dir: &Path) -> Self {
        Self::write(
            dir,
            multi_platform_specs(&ARCH_SUBDIRS),
            &MULTI_PLATFORM_SUBDIRS,
        )
    }

    /// [`CondaChannel::build_multi_platform`] with a third arch subdir,
    /// `linux-ppc64le/` ([`THREE_ARCH_SUBDIRS`]), holding the same packages.
    pub fn build_three_platform(dir: &Path) -> Self {
        let subdirs = [LINUX_64, LINUX_AARCH64, LINUX_PPC64LE, NOARCH];
        Self::write(dir, multi_platform_specs(&THREE_ARCH_SUBDIRS), &subdirs)
    }

    /// The channel's URL, `file:///.../` (with a trailing slash).
    pub fn url(&self) -> String {
        self.records[0]
            .channel
            .clone()
            .expect("records read from repodata carry their channel")
    }

    /// The record of the package called `name`; panics when there is none,
    /// or several (several versions or subdirs of the multi-platform
    /// channel: use [`CondaChannel::record_in`]).
    pub fn record(&self, name: &str) -> &RepoDataRecord {
        let mut found = self
            .records
            .iter()
            .filter(|r| r.package_record.name.as_normalized() == name);
        let record = found
            .next()
            .unwrap_or_else(|| panic!("the fixture channel has no package {name:?}"));
        assert!(
            found.next().is_none(),
            "the fixture channel has several {name:?} packages: use record_in(subdir, name)"
        );
        record
    }

    /// The archive of package `name` in the channel directory.
    pub fn archive(&self, name: &str) -> PathBuf {
        archive_path(self.record(name))
    }

    /// The subdirs of the channel (those holding a `repodata.json`), sorted.
    pub fn subdirs(&self) -> Vec<String> {
        let mut subdirs: Vec<String> = fs::read_dir(&self.dir)
            .expect("read channel dir")
            .map(|e| e.expect("channel dir entry").path())
            .filter(|p| p.join("repodata.json").is_file())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        subdirs.sort();
        subdirs
    }

    /// The records of `subdir` (`linux-64`, `linux-aarch64`, `noarch`),
    /// sorted by name, then version.
    pub fn records_in(&self, subdir: &str) -> Vec<&RepoDataRecord> {
        let mut records: Vec<&RepoDataRecord> = self
            .records
            .iter()
            .filter(|r| r.package_record.subdir == subdir)
            .collect();
        records.sort_by(|a, b| {
            let key = |r: &RepoDataRecord| {
                (
                    r.package_record.name.clone(),
                    r.package_record.version.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        records
    }

    /// The highest version of `name` in `subdir`; panics when there is none.
    pub fn record_in(&self, subdir: &str, name: &str) -> &RepoDataRecord {
        self.records
            .iter()
            .filter(|r| r.package_record.subdir == subdir)
            .filter(|r| r.package_record.name.as_normalized() == name)
            .max_by(|a, b| a.package_record.version.cmp(&b.package_record.version))
            .unwrap_or_else(|| panic!("the fixture channel has no {name:?} in {subdir}"))
    }

    /// Package `name` at exactly `version` (e.g. `"1.0"`) in `subdir`;
    /// panics when there is none.
    pub fn record_version(&self, subdir: &str, name: &str, version: &str) -> &RepoDataRecord {
        self.records
            .iter()
            .find(|r| {
                let p = &r.package_record;
                p.subdir == subdir
                    && p.name.as_normalized() == name
                    && p.version.to_string() == version
            })
            .unwrap_or_else(|| panic!("the fixture channel has no {name:?} {version} in {subdir}"))
    }

    /// The archive of `record` in the channel directory.
    pub fn archive_of(record: &RepoDataRecord) -> PathBuf {
        archive_path(record)
    }

    /// Where `record`'s archive lives relative to the channel root, as a
    /// URL path: `SUBDIR/FILE_NAME`, e.g. `linux-aarch64/cd-arch-1.0-0.conda`.
    pub fn relative_path(record: &RepoDataRecord) -> String {
        format!(
            "{}/{}",
            record.package_record.subdir,
            record.identifier.to_file_name()
        )
    }

    /// `record`'s archive under another channel URL: `base` (with or
    /// without a trailing slash, e.g. a [`super::ChannelServer::url`])
    /// joined with [`CondaChannel::relative_path`].
    pub fn package_url(base: &str, record: &RepoDataRecord) -> String {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            Self::relative_path(record)
        )
    }

    /// The lowercase hex sha256 the repodata lists for `record`.
    pub fn sha256_of(record: &RepoDataRecord) -> String {
        hex::encode(
            record
                .package_record
                .sha256
                .expect("fixture repodata lists a sha256"),
        )
    }

    /// The lowercase hex md5 the repodata lists for `record`.
    pub fn md5_of(record: &RepoDataRecord) -> String {
        hex::encode(
            record
                .package_record
                .md5
                .expect("fixture repodata lists an md5"),
        )
    }

    /// `SUBDIR/repodata.json`, parsed as plain JSON (exactly what clients
    /// download); panics when the subdir has none.
    pub fn repodata(&self, subdir: &str) -> Value {
        read_json(&self.dir.join(subdir).join("repodata.json"))
    }

    /// The records for `names` plus everything they depend on (the fixture
    /// needs no solver: each dependency names exactly one package), sorted
    /// dependencies first.
    pub fn with_dependencies(&self, names: &[&str]) -> Vec<RepoDataRecord> {
        let mut wanted = BTreeSet::new();
        let mut todo: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        while let Some(name) = todo.pop() {
            if wanted.insert(name.clone()) {
                let depends = &self.record(&name).package_record.depends;
                todo.extend(depends.iter().map(|d| dep_name(d)));
            }
        }
        let records = wanted.iter().map(|n| self.record(n).clone()).collect();
        PackageRecord::sort_topologically(records)
    }

    /// Like [`CondaChannel::with_dependencies`] for the packages of one
    /// arch `subdir` (and `noarch`): each name, and each dependency, is the
    /// highest version there. For a spec such as `cd-lib <2`, pick records
    /// with [`CondaChannel::record_version`] instead.
    pub fn with_dependencies_in(&self, subdir: &str, names: &[&str]) -> Vec<RepoDataRecord> {
        let find = |name: &str| {
            let here = self.records.iter().any(|r| {
                r.package_record.subdir == subdir && r.package_record.name.as_normalized() == name
            });
            self.record_in(if here { subdir } else { NOARCH }, name)
        };
        let mut wanted = BTreeSet::new();
        let mut records = Vec::new();
        let mut todo: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        while let Some(name) = todo.pop() {
            if wanted.insert(name.clone()) {
                let record = find(&name);
                todo.extend(record.package_record.depends.iter().map(|d| dep_name(d)));
                records.push(record.clone());
            }
        }
        PackageRecord::sort_topologically(records)
    }

    fn write(dir: &Path, specs: Vec<PackageSpec>, subdirs: &[&str]) -> Self {
        // The archive writers panic on paths that are not absolute.
        let dir = &absolute(dir);
        let staging = dir.join(".work");
        let built: Vec<BuiltPackage> = specs
            .iter()
            .map(|spec| write_package(spec, &staging, dir))
            .collect();
        for subdir in subdirs {
            write_repodata(dir, subdir, &built);
        }
        fs::remove_dir_all(&staging).expect("remove channel staging dir");
        Self {
            dir: dir.to_path_buf(),
            records: read_channel(dir, subdirs),
        }
    }
}

fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).expect("absolute channel dir")
}

/// The package name of a dependency spec such as `python >=3.12`.
fn dep_name(spec: &str) -> String {
    spec.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Where a record's `file://` URL points.
fn archive_path(record: &RepoDataRecord) -> PathBuf {
    record
        .url
        .to_file_path()
        .expect("fixture records have file:// URLs")
}

/// Reads the subdirs back through rattler's own repodata parser, which
/// also proves the `repodata.json` files are well formed.
fn read_channel(dir: &Path, subdirs: &[&str]) -> Vec<RepoDataRecord> {
    let channel = Channel::try_from_directory(dir).expect("channel from directory");
    let mut records = Vec::new();
    for subdir in subdirs {
        let path = dir.join(subdir).join("repodata.json");
        let repodata =
            RepoData::from_path(&path).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        records.extend(repodata.into_repo_data_records(&channel));
    }
    records.sort_by(|a, b| a.package_record.name.cmp(&b.package_record.name));
    records
}

// ---------------------------------------------------------------------------
// Package contents
// ---------------------------------------------------------------------------

/// The archive format a package is written in (the fixture mixes both, as
/// real environments do).
#[derive(Clone, Copy)]
enum Format {
    Conda,
    TarBz2,
}

/// One package to write: metadata plus its files.
struct PackageSpec {
    name: &'static str,
    version: &'static str,
    depends: &'static [&'static str],
    format: Format,
    /// Which subdir the package belongs to, and how it is noarch.
    kind: Kind,
    entries: Vec<Entry>,
}

/// A package's platform: an architecture-specific subdir, or `noarch`.
#[derive(Clone, Copy)]
enum Kind {
    /// Built for this subdir (`linux-64`, `linux-aarch64`).
    Arch(&'static str),
    /// `noarch: python` with these entry points (`name = module:func`).
    NoArchPython(&'static [&'static str]),
    /// `noarch: generic`: plain files, the same on every platform.
    NoArchGeneric,
}

/// A path in the package, relative to the prefix.
struct Entry {
    path: &'static str,
    content: Content,
}

enum Content {
    /// A regular file; `placeholder` says whether (and how) it embeds
    /// [`PLACEHOLDER`].
    File {
        bytes: Vec<u8>,
        executable: bool,
        placeholder: Option<FileMode>,
    },
    /// A symlink with this (relative) target.
    Symlink(&'static str),
}

impl PackageSpec {
    const BUILD: &'static str = "0";

    fn dist(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, Self::BUILD)
    }

    fn subdir(&self) -> &'static str {
        match self.kind {
            Kind::Arch(subdir) => subdir,
            Kind::NoArchPython(_) | Kind::NoArchGeneric => "noarch",
        }
    }

    fn file_name(&self) -> String {
        let ext = match self.format {
            Format::Conda => ".conda",
            Format::TarBz2 => ".tar.bz2",
        };
        format!("{}{ext}", self.dist())
    }
}

fn file(path: &'static str, text: &str) -> Entry {
    Entry {
        path,
        content: Content::File {
            bytes: text.as_bytes().to_vec(),
            executable: false,
            placeholder: None,
        },
    }
}

/// `entry` with a text placeholder declared in `paths.json`.
fn relocatable(mut entry: Entry) -> Entry {
    if let Content::File { placeholder, .. } = &mut entry.content {
        *placeholder = Some(FileMode::Text);
    }
    entry
}

fn script(path: &'static str, text: &str, placeholder: Option<FileMode>) -> Entry {
    Entry {
        path,
        content: Content::File {
            bytes: text.as_bytes().to_vec(),
            executable: true,
            placeholder,
        },
    }
}

fn link(path: &'static str, target: &'static str) -> Entry {
    Entry {
        path,
        content: Content::Symlink(target),
    }
}

/// The fixture packages; `cd-binary` only when its compiled bytes are given.
fn package_specs(cd_binary: Option<Vec<u8>>) -> Vec<PackageSpec> {
    let mut specs = vec![cd_text(), cd_link(), python(), cd_noarch(), cd_leaf()];
    specs.extend(cd_binary.map(cd_binary_spec));
    specs
}

fn cd_text() -> PackageSpec {
    let config = format!("root={PLACEHOLDER}/share\n");
    let show = format!("#!/bin/sh\ncat {PLACEHOLDER}/share/cd-text/config.txt\n");
    PackageSpec {
        name: CD_TEXT,
        version: "1.0",
        depends: &[],
        format: Format::TarBz2,
        kind: Kind::Arch(LINUX_64),
        entries: vec![
            relocatable(file("share/cd-text/config.txt", &config)),
            script("bin/cd-show", &show, Some(FileMode::Text)),
        ],
    }
}

fn cd_binary_spec(bytes: Vec<u8>) -> PackageSpec {
    PackageSpec {
        name: CD_BINARY,
        version: "1.0",
        depends: &[CD_TEXT],
        format: Format::Conda,
        kind: Kind::Arch(LINUX_64),
        entries: vec![Entry {
            path: "bin/cd-binary",
            content: Content::File {
                bytes,
                executable: true,
                placeholder: Some(FileMode::Binary),
            },
        }],
    }
}

fn cd_link() -> PackageSpec {
    PackageSpec {
        name: CD_LINK,
        version: "1.0",
        depends: &[],
        format: Format::TarBz2,
        kind: Kind::Arch(LINUX_64),
        entries: vec![
            file(
                "lib/libcd.so.1",
                "cd-link 1.0: not really a shared object\n",
            ),
            link("lib/libcd.so", "libcd.so.1"),
        ],
    }
}

fn python() -> PackageSpec {
    let stand_in = "#!/bin/sh\n# Stand-in for CPython 3.12.0 (conda-docker test fixture).\n\
                    echo \"stand-in python 3.12.0 $*\"\n";
    PackageSpec {
        name: PYTHON,
        version: "3.12.0",
        depends: &[],
        format: Format::Conda,
        kind: Kind::Arch(LINUX_64),
        entries: vec![
            script("bin/python3.12", stand_in, None),
            link("bin/python", "python3.12"),
            link("bin/python3", "python3.12"),
        ],
    }
}

fn cd_noarch() -> PackageSpec {
    PackageSpec {
        name: CD_NOARCH,
        version: "1.0",
        depends: &["python >=3.12"],
        format: Format::TarBz2,
        kind: Kind::NoArchPython(&["cd-entry = cdpkg:main"]),
        entries: vec![file(
            "site-packages/cdpkg/__init__.py",
            "def main():\n    print(\"entry\")\n",
        )],
    }
}

fn cd_leaf() -> PackageSpec {
    PackageSpec {
        name: CD_LEAF,
        version: "1.0",
        depends: &[CD_TEXT],
        format: Format::Conda,
        kind: Kind::Arch(LINUX_64),
        entries: vec![
            file("share/cd-leaf/leaf.txt", "leaf\n"),
            // A shebang naming the prefix: installed at a long prefix it
            // passes the kernel's 127 bytes and becomes `#!/usr/bin/env`.
            script(
                "bin/cd-leaf-tool",
                &format!("#!{PLACEHOLDER}/bin/python3.12 -u\nprint('leaf')\n"),
                Some(FileMode::Text),
            ),
        ],
    }
}

/// The packages of [`CondaChannel::build_multi_platform`], for the arch
/// subdirs `arch_subdirs`.
fn multi_platform_specs(arch_subdirs: &[&'static str]) -> Vec<PackageSpec> {
    let mut specs = Vec::new();
    for &subdir in arch_subdirs {
        specs.push(cd_arch(subdir));
        specs.push(cd_lib(subdir, CD_LIB_VERSIONS[0], Format::TarBz2));
        specs.push(cd_lib(subdir, CD_LIB_VERSIONS[1], Format::Conda));
        specs.push(python_for(subdir));
    }
    specs.push(cd_data());
    specs.push(cd_noarch());
    specs
}

fn cd_arch(subdir: &'static str) -> PackageSpec {
    let show = format!("#!/bin/sh\ncat {PLACEHOLDER}/share/cd-arch/platform.txt\n");
    PackageSpec {
        name: CD_ARCH,
        version: "1.0",
        depends: &["cd-lib >=1", CD_DATA],
        format: Format::Conda,
        kind: Kind::Arch(subdir),
        entries: vec![
            file("share/cd-arch/platform.txt", &cd_arch_output(subdir)),
            script("bin/cd-arch", &show, Some(FileMode::Text)),
            Entry {
                path: CD_ARCH_ELF,
                content: Content::File {
                    bytes: super::elf::hello(subdir, &cd_arch_output(subdir))
                        .expect("an ELF for every arch subdir"),
                    executable: true,
                    placeholder: None,
                },
            },
        ],
    }
}

fn cd_lib(subdir: &'static str, version: &'static str, format: Format) -> PackageSpec {
    PackageSpec {
        name: CD_LIB,
        version,
        depends: &[],
        format,
        kind: Kind::Arch(subdir),
        entries: vec![file(
            "share/cd-lib/version.txt",
            &cd_lib_version_text(version, subdir),
        )],
    }
}

/// The [`PYTHON`] stand-in of the multi-platform channel: it also names its
/// subdir.
fn python_for(subdir: &'static str) -> PackageSpec {
    let stand_in = format!(
        "#!/bin/sh\n# Stand-in for CPython 3.12.0 on {subdir} (conda-docker test fixture).\n\
         echo \"stand-in python 3.12.0 {subdir} $*\"\n"
    );
    PackageSpec {
        name: PYTHON,
        version: "3.12.0",
        depends: &[],
        format: Format::Conda,
        kind: Kind::Arch(subdir),
        entries: vec![
            script("bin/python3.12", &stand_in, None),
            link("bin/python", "python3.12"),
            link("bin/python3", "python3.12"),
        ],
    }
}

fn cd_data() -> PackageSpec {
    PackageSpec {
        name: CD_DATA,
        version: "1.0",
        depends: &[],
        format: Format::TarBz2,
        kind: Kind::NoArchGeneric,
        entries: vec![file("share/cd-data/data.txt", "cd-data 1.0 noarch\n")],
    }
}

/// Compiles `cd-binary` with `gcc -static -O1` in `work` and returns it.
fn compile_cd_binary(gcc: &Path, work: &Path) -> Vec<u8> {
    fs::create_dir_all(work).expect("create channel work dir");
    let source = work.join("cd-binary.c");
    let output = work.join("cd-binary");
    fs::write(&source, CD_BINARY_C.replace("@PLACEHOLDER@", PLACEHOLDER))
        .expect("write cd-binary.c");
    run(Command::new(gcc)
        .args(["-static", "-O1", "-o"])
        .arg(&output)
        .arg(&source));
    let bytes = fs::read(&output).expect("read compiled cd-binary");
    assert!(
        contains(&bytes, PLACEHOLDER.as_bytes()),
        "gcc dropped the placeholder from cd-binary"
    );
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Writing archives and repodata
// ---------------------------------------------------------------------------

/// A written archive and the metadata its repodata entry needs.
struct BuiltPackage {
    subdir: &'static str,
    file_name: String,
    format: Format,
    index: Value,
    archive: PathBuf,
}

/// Stages `spec` under `staging/<dist>/` and writes its archive into
/// `channel/<subdir>/`.
fn write_package(spec: &PackageSpec, staging: &Path, channel: &Path) -> BuiltPackage {
    // The same dist can exist in several subdirs.
    let base = staging.join(spec.subdir()).join(spec.dist());
    let paths_json: Vec<Value> = spec.entries.iter().map(|e| write_entry(&base, e)).collect();
    let index = index_json(spec);
    write_info(&base, spec, &index, paths_json);
    let archive = channel.join(spec.subdir()).join(spec.file_name());
    write_archive(spec, &base, &archive);
    BuiltPackage {
        subdir: spec.subdir(),
        file_name: spec.file_name(),
        format: spec.format,
        index,
        archive,
    }
}

/// Writes one entry into the staging dir and returns its `paths.json` entry.
fn write_entry(base: &Path, entry: &Entry) -> Value {
    let path = base.join(entry.path);
    fs::create_dir_all(path.parent().expect("entry has a parent")).expect("create entry dir");
    match &entry.content {
        Content::File {
            bytes,
            executable,
            placeholder,
        } => {
            fs::write(&path, bytes).expect("write package file");
            let mode = if *executable { 0o755 } else { 0o644 };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            file_paths_entry(entry.path, bytes, *placeholder)
        }
        Content::Symlink(target) => {
            symlink(target, &path).expect("create package symlink");
            // Like conda-build: the hash and size of what the link points to.
            let bytes = fs::read(&path).expect("read symlink target");
            json!({
                "_path": entry.path,
                "path_type": "softlink",
                "sha256": sha256_hex(&bytes),
                "size_in_bytes": bytes.len(),
            })
        }
    }
}

fn file_paths_entry(path: &str, bytes: &[u8], placeholder: Option<FileMode>) -> Value {
    let mut entry = json!({
        "_path": path,
        "path_type": "hardlink",
        "sha256": sha256_hex(bytes),
        "size_in_bytes": bytes.len(),
    });
    if let Some(mode) = placeholder {
        entry["prefix_placeholder"] = json!(PLACEHOLDER);
        entry["file_mode"] = json!(mode);
    }
    entry
}

fn index_json(spec: &PackageSpec) -> Value {
    let mut index = json!({
        "build": PackageSpec::BUILD,
        "build_number": 0,
        "depends": spec.depends,
        "license": "BSD-3-Clause",
        "name": spec.name,
        "subdir": spec.subdir(),
        "timestamp": TIMESTAMP_MS,
        "version": spec.version,
    });
    match spec.kind {
        Kind::NoArchPython(_) => index["noarch"] = json!("python"),
        Kind::NoArchGeneric => index["noarch"] = json!("generic"),
        Kind::Arch(subdir) => {
            let (platform, arch) = subdir.split_once('-').expect("subdir is PLATFORM-ARCH");
            let arch = match arch {
                "64" => "x86_64",
                other => other,
            };
            index["arch"] = json!(arch);
            index["platform"] = json!(platform);
        }
    }
    index
}

/// Writes `info/index.json`, `info/paths.json`, `info/files` and, for
/// noarch python, `info/link.json`.
fn write_info(base: &Path, spec: &PackageSpec, index: &Value, paths: Vec<Value>) {
    let info = base.join("info");
    fs::create_dir_all(&info).expect("create info/");
    write_json(&info.join("index.json"), index);
    write_json(
        &info.join("paths.json"),
        &json!({"paths": paths, "paths_version": 1}),
    );
    let files: String = spec
        .entries
        .iter()
        .map(|e| format!("{}\n", e.path))
        .collect();
    fs::write(info.join("files"), files).expect("write info/files");
    if let Kind::NoArchPython(entry_points) = spec.kind {
        let link = json!({
            "noarch": {"type": "python", "entry_points": entry_points},
            "package_metadata_version": 1,
        });
        write_json(&info.join("link.json"), &link);
    }
}

/// Archives everything under `base` into `archive`.
///
/// The write functions want absolute paths under `base` (they panic on
/// anything else) and no directories (they add parents themselves).
fn write_archive(spec: &PackageSpec, base: &Path, archive: &Path) {
    let paths = files_under(base);
    fs::create_dir_all(archive.parent().expect("archive has a parent")).expect("create subdir");
    let out = File::create(archive).expect("create archive");
    // Level 1: the files are tiny, and tests run unoptimised.
    let level = CompressionLevel::Numeric(1);
    match spec.format {
        Format::Conda => {
            write_conda_package(out, base, &paths, level, Some(1), &spec.dist(), None, None)
        }
        Format::TarBz2 => write_tar_bz2_package(out, base, &paths, level, None, None),
    }
    .unwrap_or_else(|e| panic!("write {}: {e}", archive.display()));
}

/// Every non-directory below `dir` (symlinks not followed), absolute.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read staging dir") {
        let path = entry.expect("staging dir entry").path();
        if path.symlink_metadata().expect("lstat").is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Writes `<channel>/<subdir>/repodata.json` for the packages of `subdir`,
/// the way conda-index lays it out (`packages` for `.tar.bz2`,
/// `packages.conda` for `.conda`, keyed by file name).
fn write_repodata(channel: &Path, subdir: &str, built: &[BuiltPackage]) {
    let (mut tar_bz2, mut conda) = (serde_json::Map::new(), serde_json::Map::new());
    for package in built.iter().filter(|p| p.subdir == subdir) {
        let mut entry = package.index.clone();
        entry["md5"] = json!(hex::encode(
            compute_file_digest::<Md5>(&package.archive).expect("md5")
        ));
        entry["sha256"] = json!(sha256_file_hex(&package.archive));
        entry["size"] = json!(fs::metadata(&package.archive).expect("stat archive").len());
        let map = match package.format {
            Format::Conda => &mut conda,
            Format::TarBz2 => &mut tar_bz2,
        };
        map.insert(package.file_name.clone(), entry);
    }
    let repodata = json!({
        "info": {"subdir": subdir},
        "packages": tar_bz2,
        "packages.conda": conda,
        "removed": [],
        "repodata_version": 1,
    });
    let dir = channel.join(subdir);
    fs::create_dir_all(&dir).expect("create subdir");
    write_json(&dir.join("repodata.json"), &repodata);
}

// ---------------------------------------------------------------------------
// Installing environments
// ---------------------------------------------------------------------------

/// Which package cache an environment is installed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheLayout {
    /// A rattler package cache, written by rattler itself: extracted
    /// `name-ver-build/` folders with `name-ver-build.lock` files and a
    /// `.cache.lock`; no archives, no `urls.txt`, no
    /// `info/repodata_record.json`. The prefix is exactly what rattler
    /// writes, including its `CACHEDIR.TAG`.
    Rattler,
    /// A STAND-IN for a conda `pkgs` dir and a conda-made prefix (conda
    /// cannot be installed here): archives, extracted `name-ver-build/`
    /// folders with `info/repodata_record.json`, and `urls.txt`; the
    /// prefix is linked from those folders by rattler, then its
    /// `conda-meta/*.json` are rewritten the way conda 24+ writes them, a
    /// `conda-meta/history` is added and rattler's `CACHEDIR.TAG` removed.
    /// Not written: pyc files (the python is a stand-in), `pkgs/cache/`,
    /// conda's exact JSON key order.
    Conda,
}

/// An installed environment and the cache it was linked from.
pub struct CondaEnv {
    /// The prefix (the environment's root, holding `conda-meta/`).
    pub prefix: PathBuf,
    /// The rattler cache or conda `pkgs` dir the prefix was linked from.
    pub cache_dir: PathBuf,
    pub layout: CacheLayout,
    /// `conda-meta/*.json` read back by rattler, sorted by name.
    pub records: Vec<PrefixRecord>,
}

impl CondaEnv {
    /// The installed record of `name`; panics when it is not installed.
    pub fn record(&self, name: &str) -> &PrefixRecord {
        self.records
            .iter()
            .find(|r| r.repodata_record.package_record.name.as_normalized() == name)
            .unwrap_or_else(|| panic!("{name:?} is not installed in {}", self.prefix.display()))
    }

    /// The installed packages' repodata records (for [`explicit_file`]).
    pub fn repodata_records(&self) -> Vec<RepoDataRecord> {
        self.records
            .iter()
            .map(|r| r.repodata_record.clone())
            .collect()
    }
}

/// Installs `names` (and their dependencies) from `channel` into
/// `root/env`, using the cache `root/pkgs` ([`CacheLayout::Conda`]) or
/// `root/rattler-cache` ([`CacheLayout::Rattler`]).
pub fn install_env(
    channel: &CondaChannel,
    names: &[&str],
    layout: CacheLayout,
    root: &Path,
) -> CondaEnv {
    let cache_dir = match layout {
        CacheLayout::Rattler => root.join("rattler-cache"),
        CacheLayout::Conda => root.join("pkgs"),
    };
    install_env_at(channel, names, layout, &root.join("env"), &cache_dir)
}

/// Like [`install_env`], with the prefix and cache dir chosen by the caller
/// (two envs may share one cache). The prefix must be new or empty.
pub fn install_env_at(
    channel: &CondaChannel,
    names: &[&str],
    layout: CacheLayout,
    prefix: &Path,
    cache_dir: &Path,
) -> CondaEnv {
    let records = channel.with_dependencies(names);
    match layout {
        CacheLayout::Rattler => link_rattler(&records, names, prefix, cache_dir),
        CacheLayout::Conda => link_conda(&records, names, prefix, cache_dir),
    }
    let mut installed = PrefixRecord::collect_from_prefix::<PrefixRecord>(prefix)
        .unwrap_or_else(|e| panic!("read conda-meta of {}: {e}", prefix.display()));
    installed.sort_by(|a, b| {
        let name = |r: &PrefixRecord| r.repodata_record.package_record.name.clone();
        name(a).cmp(&name(b))
    });
    CondaEnv {
        prefix: prefix.to_path_buf(),
        cache_dir: cache_dir.to_path_buf(),
        layout,
        records: installed,
    }
}

/// Installs with rattler, its cache filled from the `file://` URLs.
fn link_rattler(records: &[RepoDataRecord], names: &[&str], prefix: &Path, cache: &Path) {
    rattler_install(records, names, prefix, PackageCache::new(cache));
}

/// Fills a conda-style pkgs dir, links the prefix from it, then makes the
/// prefix's metadata look conda-made.
fn link_conda(records: &[RepoDataRecord], names: &[&str], prefix: &Path, pkgs: &Path) {
    for record in records {
        add_to_pkgs_dir(pkgs, record);
    }
    // rattler trusts a cache entry only when its `.lock` file vouches for
    // the record's sha256, and conda writes no such file: without a sha256
    // the extracted folder itself is accepted (index.json present), so
    // rattler links from `pkgs/` instead of extracting again. The scratch
    // layer comes first so rattler's `.cache.lock` lands there, not in pkgs.
    let unhashed: Vec<RepoDataRecord> = records.iter().cloned().map(without_sha256).collect();
    let scratch = tempfile::tempdir().expect("scratch rattler cache");
    let cache = PackageCache::new_layered(
        [scratch.path().to_path_buf(), pkgs.to_path_buf()],
        false,
        ValidationMode::Skip,
    );
    rattler_install(&unhashed, names, prefix, cache);
    for record in records {
        rewrite_conda_meta(prefix, pkgs, record, names);
    }
    write_history(prefix, records, names);
    // rattler tags every prefix it creates as a cache dir; conda does not.
    fs::remove_file(prefix.join("CACHEDIR.TAG")).expect("remove rattler's CACHEDIR.TAG");
}

fn without_sha256(mut record: RepoDataRecord) -> RepoDataRecord {
    record.package_record.sha256 = None;
    record
}

/// Runs rattler's `Installer` (no link scripts, linux-64) on its own
/// single-threaded runtime: tests run in parallel, each with its own.
fn rattler_install(records: &[RepoDataRecord], names: &[&str], prefix: &Path, cache: PackageCache) {
    let specs = names
        .iter()
        .map(|n| MatchSpec::from_str(n, ParseStrictness::Strict).expect("match spec"))
        .collect();
    let installer = Installer::new()
        .with_package_cache(cache)
        .with_target_platform(Subdir::Linux64)
        .with_execute_link_scripts(false)
        .with_requested_specs(specs);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(installer.install(prefix, records.to_vec()))
        .unwrap_or_else(|e| panic!("install into {}: {e:?}", prefix.display()));
}

/// Adds one package to a conda pkgs dir as conda does after a download: the
/// archive, its extracted folder with `info/repodata_record.json`, and its
/// URL appended to `urls.txt`. Packages already there are left alone.
fn add_to_pkgs_dir(pkgs: &Path, record: &RepoDataRecord) {
    let archive = pkgs.join(record.identifier.to_file_name());
    if archive.exists() {
        return;
    }
    fs::create_dir_all(pkgs).expect("create pkgs dir");
    fs::copy(archive_path(record), &archive).expect("copy archive into pkgs");
    let extracted = pkgs.join(dist_name(record));
    rattler_package_streaming::fs::extract(&archive, &extracted)
        .unwrap_or_else(|e| panic!("extract {}: {e}", archive.display()));
    write_json(
        &extracted.join("info/repodata_record.json"),
        &serde_json::to_value(record).expect("serialize repodata record"),
    );
    let mut urls = fs::read_to_string(pkgs.join("urls.txt")).unwrap_or_default();
    urls.push_str(&format!("{}\n", record.url));
    fs::write(pkgs.join("urls.txt"), urls).expect("write urls.txt");
}

/// `name-version-build`: the extracted folder and `conda-meta` file stem.
fn dist_name(record: &RepoDataRecord) -> String {
    let p = &record.package_record;
    format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build)
}

/// Turns the `conda-meta` record rattler wrote into the one conda writes
/// (conda's `CreatePrefixRecordAction`): the full repodata record (with
/// sha256; the channel URL ending in the subdir), `extracted_package_dir`, `package_tarball_full_path` and
/// `link.source` in the pkgs dir, `requested_spec(s)`, and `paths_data`
/// entries carrying `sha256_in_prefix` as conda's link actions add it.
fn rewrite_conda_meta(prefix: &Path, pkgs: &Path, record: &RepoDataRecord, names: &[&str]) {
    let dist = dist_name(record);
    let meta_path = prefix.join("conda-meta").join(format!("{dist}.json"));
    let mut meta = read_json(&meta_path);
    let extracted = pkgs.join(&dist);
    assert_eq!(
        meta["extracted_package_dir"].as_str().map(Path::new),
        Some(extracted.as_path()),
        "rattler linked {dist} from elsewhere than the conda pkgs dir"
    );
    let repodata = serde_json::to_value(record).expect("serialize repodata record");
    for (key, value) in repodata.as_object().expect("record is an object") {
        meta[key] = value.clone();
    }
    // conda records the channel with the subdir on the end.
    let channel = record.channel.as_deref().unwrap_or_default();
    meta["channel"] = json!(format!(
        "{}/{}",
        channel.trim_end_matches('/'),
        record.package_record.subdir
    ));
    meta["package_tarball_full_path"] = json!(pkgs.join(record.identifier.to_file_name()));
    meta["link"] = json!({"source": extracted, "type": 1});
    set_requested_spec(&mut meta, record, names);
    for entry in meta["paths_data"]["paths"]
        .as_array_mut()
        .expect("paths_data.paths")
    {
        conda_path_entry(prefix, entry);
    }
    write_json(&meta_path, &meta);
}

/// Requested packages carry the spec the user typed; dependencies carry
/// none (conda 24+: no `requested_spec`, empty `requested_specs`).
fn set_requested_spec(meta: &mut Value, record: &RepoDataRecord, names: &[&str]) {
    let name = record.package_record.name.as_normalized();
    let object = meta
        .as_object_mut()
        .expect("conda-meta record is an object");
    if names.contains(&name) {
        object.insert("requested_spec".into(), json!(name));
        object.insert("requested_specs".into(), json!([name]));
    } else {
        object.remove("requested_spec");
        object.insert("requested_specs".into(), json!([]));
    }
}

/// conda records `sha256_in_prefix` for every linked file (the hash after
/// prefix replacement; rattler only writes it when it differs), none for
/// softlinks, and only `_path`, `path_type` and `size_in_bytes` for the
/// entry points it generates (rattler adds a sha256).
fn conda_path_entry(prefix: &Path, entry: &mut Value) {
    let path_type = entry["path_type"].as_str().unwrap_or_default().to_string();
    let object = entry
        .as_object_mut()
        .expect("paths_data entry is an object");
    object.remove("sha256_in_prefix");
    match path_type.as_str() {
        "hardlink" => {
            let rel = object["_path"].as_str().expect("_path").to_string();
            let hash = sha256_file_hex(&prefix.join(rel));
            object.insert("sha256_in_prefix".into(), json!(hash));
        }
        "unix_python_entry_point" => {
            object.remove("sha256");
        }
        _ => {}
    }
}

/// Writes `conda-meta/history` as conda does for `conda create`: its
/// existence is what marks a directory as a conda environment.
fn write_history(prefix: &Path, records: &[RepoDataRecord], names: &[&str]) {
    let mut text = String::from("==> 2024-01-01 00:00:00 <==\n");
    text.push_str(&format!(
        "# cmd: conda create --prefix {} {}\n",
        prefix.display(),
        names.join(" ")
    ));
    text.push_str("# conda version: 24.11.3\n");
    for record in records {
        let channel = record.channel.as_deref().unwrap_or_default();
        let channel = channel.trim_end_matches('/');
        let subdir = &record.package_record.subdir;
        text.push_str(&format!("+{channel}/{subdir}::{}\n", dist_name(record)));
    }
    let specs: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    text.push_str(&format!("# update specs: [{}]\n", specs.join(", ")));
    fs::write(prefix.join("conda-meta/history"), text).expect("write conda-meta/history");
}

// ---------------------------------------------------------------------------
// Explicit spec files
// ---------------------------------------------------------------------------

/// Writes `path` as `conda list --explicit --md5` prints it: conda's header
/// comments, `@EXPLICIT`, then `url#md5` lines, dependencies first, and a
/// final newline.
pub fn explicit_file(records: &[RepoDataRecord], path: &Path) {
    let mut text = String::from(
        "# This file may be used to create an environment using:\n\
         # $ conda create --name <env> --file <this file>\n\
         # platform: linux-64\n\
         # created-by: conda 24.11.3\n\
         @EXPLICIT\n",
    );
    for record in PackageRecord::sort_topologically(records.to_vec()) {
        let md5 = record.package_record.md5.expect("fixture records have md5");
        text.push_str(&format!("{}#{}\n", record.url, hex::encode(md5)));
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A `pixi.lock` at `path`, written by rattler_lock, for the one platform
/// `subdir` (e.g. `"linux-64"`): every environment of `environments` uses
/// the channel `channel_url`; the first locks `records` for `subdir`, the
/// others lock nothing.
pub fn write_pixi_lock(
    path: &Path,
    subdir: &str,
    environments: &[&str],
    channel_url: &str,
    records: &[RepoDataRecord],
) {
    let subdir: Subdir = subdir.parse().expect("a known subdir");
    let mut builder = LockFile::builder()
        .with_platforms(vec![PlatformData {
            name: (&subdir).into(),
            subdir,
            virtual_packages: Vec::new(),
        }])
        .expect("one platform");
    for environment in environments {
        builder = builder.with_channels(*environment, [channel_url]);
    }
    let first = environments.first().expect("at least one environment");
    for record in records {
        builder
            .add_conda_package(*first, subdir.as_str(), record.clone().into())
            .expect("lock a record");
    }
    builder
        .finish()
        .to_path(path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(compute_bytes_digest::<Sha256>(bytes))
}

/// Lowercase hex sha256 of the file at `path` (following symlinks).
pub fn sha256_file_hex(path: &Path) -> String {
    let digest = compute_file_digest::<Sha256>(path)
        .unwrap_or_else(|e| panic!("hash {}: {e}", path.display()));
    hex::encode(digest)
}

/// Writes `value` as conda does: JSON indented by two spaces.
fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serialize json");
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}
