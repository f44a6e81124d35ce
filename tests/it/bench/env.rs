//! The benchmark's environment: real conda packages written here, their
//! payloads copied from big host trees (the Rust toolchain, JDKs, LLVM,
//! `/usr/lib/<triplet>`, Python and its `dist-packages`, headers, locales,
//! docs), installed by rattler into a conda-style `pkgs` dir and prefix.
//!
//! No conda channel is reachable, so this is as real as it gets: a few
//! packages of 100-550 MiB, many small ones, some `noarch: python` ones with
//! entry points, text and binary placeholders, activation scripts,
//! dependencies, and a few files no package owns. Every file is a copy, so
//! no two packages share one by hard link. `BENCH_SCALE` keeps that share
//! of the files (picked by a hash of their path), for a quick run.
//!
//! A second prefix differs in one small package only (another version of it,
//! with another file), for the "one package changed" rebuild.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rattler_conda_types::compression_level::CompressionLevel;
use rattler_conda_types::package::FileMode;
use rattler_conda_types::{Channel, RepoData, RepoDataRecord};
use rattler_digest::{Md5, compute_file_digest};
use rattler_package_streaming::write::{write_conda_package, write_tar_bz2_package};
use serde_json::{Map, Value, json};

use crate::common::{
    CacheLayout, CondaChannel, PLACEHOLDER, install_env_at, sha256_file_hex, sha256_hex,
};

pub(super) const MIB: u64 = 1 << 20;
/// Package payloads below this are written as `.tar.bz2` (bzip2 is slow),
/// the rest as `.conda`.
const TAR_BZ2_BELOW: u64 = 8 * MIB;
/// Every this many-th ELF file gets a binary placeholder, as do all ELF
/// files above [`BINARY_PLACEHOLDER_ABOVE`] (big libraries that embed
/// their prefix, like libLLVM or rustc's driver).
const BINARY_PLACEHOLDER_EVERY: usize = 5;
const BINARY_PLACEHOLDER_ABOVE: u64 = 100 * MIB;
/// Text files up to this size with these extensions that mention `/usr`
/// get it replaced by the placeholder (a text placeholder).
const TEXT_PLACEHOLDER_MAX: u64 = MIB;
const TEXT_PLACEHOLDER_EXTENSIONS: [&str; 6] = ["pc", "la", "cmake", "sh", "py", "cfg"];
const TIMESTAMP_MS: u64 = 1_700_000_000_000;

/// `(installed size, name)` of every package, from its extracted folder in
/// `pkgs`, largest first.
pub(super) fn package_sizes(channel: &CondaChannel, pkgs: &Path) -> Vec<(u64, String)> {
    let mut sizes: Vec<(u64, String)> = channel
        .records
        .iter()
        .map(|r| {
            let p = &r.package_record;
            let dist = format!("{}-{}-{}", p.name.as_normalized(), p.version, p.build);
            (
                tree_size(&pkgs.join(&dist)).1,
                p.name.as_normalized().to_owned(),
            )
        })
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    sizes
}

/// How many packages of which size, and the largest ones.
pub(super) fn describe_sizes(sizes: &[(u64, String)]) -> String {
    let count = |low: u64, high: u64| sizes.iter().filter(|s| (low..high).contains(&s.0)).count();
    let largest: Vec<String> = sizes
        .iter()
        .take(6)
        .map(|(size, name)| format!("{name} {}", human(*size)))
        .collect();
    format!(
        "{} >= 100 MiB, {} of 10-100 MiB, {} of 1-10 MiB, {} < 1 MiB; largest: {}",
        count(100 * MIB, u64::MAX),
        count(10 * MIB, 100 * MIB),
        count(MIB, 10 * MIB),
        count(0, MIB),
        largest.join(", ")
    )
}

// ---------------------------------------------------------------------------
// What goes into the environment
// ---------------------------------------------------------------------------

/// One package to write.
#[derive(Clone)]
struct Package {
    name: String,
    version: String,
    depends: Vec<String>,
    noarch_python: bool,
    /// `name = module:func` (noarch python only).
    entry_points: Vec<String>,
    files: Vec<PackageFile>,
}

/// A path in the package (as in `paths.json`) and where its content is.
#[derive(Clone)]
struct PackageFile {
    path: PathBuf,
    content: Content,
}

#[derive(Clone)]
enum Content {
    /// A copy of this host file (maybe given a placeholder on the way).
    Host(PathBuf),
    /// A symlink with this relative target (inside the package).
    Symlink(PathBuf),
    /// A script written here; `true` if it holds [`PLACEHOLDER`].
    Script(String, bool),
}

impl Package {
    fn new(name: &str, version: &str) -> Self {
        Package {
            name: name.to_owned(),
            version: version.to_owned(),
            depends: Vec::new(),
            noarch_python: false,
            entry_points: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Adds the host tree (or file) `host` at `dest` in the package.
    fn add_tree(&mut self, host: &Path, dest: &Path) {
        let Ok(meta) = host.symlink_metadata() else {
            return;
        };
        let name = host.file_name().unwrap_or_default().to_string_lossy();
        // A sandbox's own certificate hook has no business in a benchmark.
        if name.starts_with("_sandboxing") {
            return;
        }
        let content = if meta.is_dir() {
            let mut children: Vec<PathBuf> = match fs::read_dir(host) {
                Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
                Err(_) => return,
            };
            children.sort();
            for child in children {
                self.add_tree(&child, &dest.join(child.file_name().expect("child name")));
            }
            return;
        } else if meta.is_symlink() {
            match fs::read_link(host) {
                Ok(target) if target.is_relative() => Content::Symlink(target),
                _ => return,
            }
        } else if meta.is_file() {
            Content::Host(host.to_path_buf())
        } else {
            return;
        };
        self.files.push(PackageFile {
            path: dest.to_path_buf(),
            content,
        });
    }

    /// Where `path` lands in the prefix (noarch python: under the python's
    /// `site-packages`).
    fn installed_path(&self, path: &Path, python: &str) -> PathBuf {
        match path.strip_prefix("site-packages") {
            Ok(rest) if self.noarch_python => Path::new("lib")
                .join(format!("python{python}"))
                .join("site-packages")
                .join(rest),
            _ => path.to_path_buf(),
        }
    }

    fn build(&self) -> String {
        format!("h{}_0", &sha256_hex(self.name.as_bytes())[..8])
    }

    fn dist(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.build())
    }

    fn subdir(&self) -> &'static str {
        if self.noarch_python {
            "noarch"
        } else {
            "linux-64"
        }
    }
}

/// Every package of the environment, from whatever host trees exist.
fn plan(scale: f64) -> Vec<Package> {
    let mut packages = Vec::new();
    let triplet = Path::new("/usr/lib/x86_64-linux-gnu");
    let lib_base = split(&mut packages, "lib", triplet, "lib", 6 * MIB);
    let with_lib = |p: &mut Package| p.depends.extend(lib_base.clone());

    if let Some((version, stdlib)) = python() {
        let mut python = Package::new("python", &format!("{version}.0"));
        python.add_tree(&stdlib, &Path::new("lib").join(stdlib.file_name().unwrap()));
        python.add_tree(
            &Path::new("/usr/bin").join(format!("python{version}")),
            &Path::new("bin").join(format!("python{version}")),
        );
        for link in ["python", "python3"] {
            python.files.push(PackageFile {
                path: Path::new("bin").join(link),
                content: Content::Symlink(format!("python{version}").into()),
            });
        }
        with_lib(&mut python);
        packages.push(python);
        noarch_python(&mut packages, Path::new("/usr/lib/python3/dist-packages"));
    }

    rust(&mut packages, &lib_base);
    // One JDK (a second would put the environment well past 2 GB).
    if let Some(jdk) = real_dirs(Path::new("/usr/lib/jvm")).first() {
        let dir_name = jdk.file_name().unwrap().to_string_lossy().into_owned();
        let name = format!("openjdk-{}", sanitize(&dir_name));
        let mut openjdk = Package::new(&name, "17.0.0");
        openjdk.add_tree(jdk, &Path::new("lib/jvm").join(&dir_name));
        let script = format!("export JAVA_HOME=\"$CONDA_PREFIX/lib/jvm/{dir_name}\"\n");
        openjdk.files.push(activate_script(&name, script, false));
        with_lib(&mut openjdk);
        packages.push(openjdk);
    }
    // Go's standard library: many small source files.
    if let Some(go) = real_dirs(Path::new("/usr/share"))
        .into_iter()
        .rfind(|d| file_name(d).starts_with("go-") && d.join("src").is_dir())
    {
        split(
            &mut packages,
            "go",
            &go.join("src"),
            "share/go/src",
            12 * MIB,
        );
    }
    let headers = split(
        &mut packages,
        "headers",
        Path::new("/usr/include"),
        "include",
        6 * MIB,
    );
    if let Some(headers) = packages
        .iter_mut()
        .find(|p| Some(&p.name) == headers.as_ref())
    {
        with_lib(headers);
    }
    split(
        &mut packages,
        "locale",
        Path::new("/usr/share/locale"),
        "share/locale",
        6 * MIB,
    );
    split(
        &mut packages,
        "doc",
        Path::new("/usr/share/doc"),
        "share/doc",
        6 * MIB,
    );
    split(
        &mut packages,
        "man",
        Path::new("/usr/share/man"),
        "share/man",
        6 * MIB,
    );
    finish(&mut packages, scale);
    packages
}

/// The Rust toolchain running this: `rust` (its `bin/` and `lib/`) and
/// `libllvm-rust` (its LLVM library, a big package of its own).
fn rust(packages: &mut Vec<Package>, lib_base: &Option<String>) {
    let Ok(output) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return;
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !output.status.success() || !sysroot.join("lib").is_dir() {
        return;
    }
    let mut rust = Package::new("rust", "1.0.0");
    let mut llvm = Package::new("libllvm-rust", "1.0.0");
    rust.add_tree(&sysroot.join("bin"), Path::new("bin"));
    rust.add_tree(&sysroot.join("lib"), Path::new("lib"));
    let (libllvm, rest) = rust
        .files
        .drain(..)
        .partition(|f| file_name(&f.path).starts_with("libLLVM"));
    (llvm.files, rust.files) = (libllvm, rest);
    let script = format!("export RUST_SYSROOT=\"{PLACEHOLDER}\"\n");
    rust.files.push(activate_script("rust", script, true));
    llvm.depends.extend(lib_base.clone());
    rust.depends.push(llvm.name.clone());
    packages.push(llvm);
    packages.push(rust);
}

/// The newest `/usr/lib/python3.N` with a stdlib: `("3.N", dir)`.
fn python() -> Option<(String, PathBuf)> {
    real_dirs(Path::new("/usr/lib"))
        .into_iter()
        .filter(|d| d.join("os.py").is_file())
        .filter_map(|d| {
            let name = d.file_name()?.to_string_lossy().into_owned();
            let minor: u32 = name.strip_prefix("python3.")?.parse().ok()?;
            Some((minor, d))
        })
        .max()
        .map(|(minor, d)| (format!("3.{minor}"), d))
}

/// A script in `etc/conda/activate.d/`.
fn activate_script(name: &str, text: String, placeholder: bool) -> PackageFile {
    PackageFile {
        path: Path::new("etc/conda/activate.d").join(format!("{name}.sh")),
        content: Content::Script(text, placeholder),
    }
}

/// Subdirectories of `dir` that are not symlinks, sorted.
fn real_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Splits the children of `host` (copied to `dest`) into packages of about
/// `target` bytes, named `{group}-{first stem}`: children sharing a stem
/// (`libfoo.so`, `libfoo.so.1`, `libfoo.a`) stay together, stems of
/// `target` or more get a package of their own, smaller ones are pooled.
/// Every package depends on the first, whose name is returned.
fn split(
    packages: &mut Vec<Package>,
    group: &str,
    host: &Path,
    dest: &str,
    target: u64,
) -> Option<String> {
    let mut children: Vec<PathBuf> = fs::read_dir(host)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| file_name(p) != "__pycache__")
        .collect();
    children.sort_by_key(|c| file_name(c).to_lowercase());
    let mut stems: Vec<(String, Vec<PathBuf>, u64)> = Vec::new();
    for child in children {
        let stem = stem(&file_name(&child));
        let size = tree_size(&child).1;
        match stems.last_mut() {
            Some((last, members, total)) if *last == stem => {
                members.push(child);
                *total += size;
            }
            _ => stems.push((stem, vec![child], size)),
        }
    }
    let mut chunks: Vec<(String, Vec<PathBuf>, u64)> = Vec::new();
    let mut pooling = false;
    for (stem, members, size) in stems {
        match chunks.last_mut() {
            Some((_, pool, total)) if pooling && size < target => {
                pool.extend(members);
                *total += size;
            }
            _ => chunks.push((stem, members, size)),
        }
        pooling = chunks.last().is_some_and(|c| c.2 < target);
    }
    let mut base = None;
    for (stem, members, _) in chunks {
        let mut package = Package::new(&format!("{group}-{}", sanitize(&stem)), "1.0");
        for member in members {
            package.add_tree(&member, &Path::new(dest).join(file_name(&member)));
        }
        package.depends.extend(base.clone());
        base.get_or_insert_with(|| package.name.clone());
        packages.push(package);
    }
    base
}

/// `noarch: python` packages from a `dist-packages` dir, ~256 KiB each, an
/// entry point for each that starts with an importable package.
fn noarch_python(packages: &mut Vec<Package>, dist_packages: &Path) {
    let first = packages.len();
    split(packages, "py", dist_packages, "site-packages", MIB / 4);
    for package in &mut packages[first..] {
        package.noarch_python = true;
        // conda compiles noarch python at install time; packages ship no pyc.
        package
            .files
            .retain(|f| !f.path.iter().any(|part| part == "__pycache__"));
        package.depends.retain(|d| !d.starts_with("py-"));
        package.depends.push("python >=3".into());
        let module = package.files.iter().find_map(|f| {
            let mut parts = f.path.iter().skip(1);
            let module = parts.next()?.to_string_lossy().into_owned();
            let is_init = parts.next()? == "__init__.py" && parts.next().is_none();
            let identifier = module
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
            (is_init && identifier).then_some(module)
        });
        if let Some(module) = module {
            let entry = format!("{}-cli = {module}:main", package.name);
            package.entry_points.push(entry);
        }
    }
}

/// Keeps `scale` of the host files; drops what would not survive as a conda
/// package: symlinks whose target is not in their own package, paths
/// another package already installs, empty packages and dependencies on
/// them.
fn finish(packages: &mut Vec<Package>, scale: f64) {
    let python = packages
        .iter()
        .find(|p| p.name == "python")
        .map(|p| p.version.rsplit_once('.').unwrap().0.to_owned())
        .unwrap_or_default();
    let mut taken = HashSet::new();
    for package in packages.iter_mut() {
        sample(&mut package.files, scale);
        keep_inner_symlinks(&mut package.files);
        let files = std::mem::take(&mut package.files);
        package.files = files
            .into_iter()
            .filter(|f| taken.insert(package.installed_path(&f.path, &python)))
            .collect();
    }
    packages.retain(|p| !p.files.is_empty());
    let names: HashSet<String> = packages.iter().map(|p| p.name.clone()).collect();
    assert_eq!(names.len(), packages.len(), "package names are unique");
    for package in packages.iter_mut() {
        package
            .depends
            .retain(|d| names.contains(d.split_whitespace().next().unwrap_or_default()));
    }
}

/// Keeps `scale` of the host files of `files` (those whose path hashes
/// below it: the same files in every run) and the smallest, so that the
/// package stays, but none above `scale` × 100 MiB (one 200 MiB library
/// would outweigh the rest of a small run); files written here stay too.
fn sample(files: &mut Vec<PackageFile>, scale: f64) {
    if scale >= 1.0 {
        return;
    }
    let size = |f: &PackageFile| match &f.content {
        Content::Host(host) => host.symlink_metadata().map_or(u64::MAX, |m| m.len()),
        _ => u64::MAX,
    };
    let smallest = files
        .iter()
        .filter(|f| matches!(f.content, Content::Host(_)))
        .min_by_key(|f| size(f))
        .map(|f| f.path.clone());
    let largest = (scale * 100.0 * MIB as f64) as u64;
    files.retain(|f| {
        let hash = sha256_hex(f.path.as_os_str().as_encoded_bytes());
        let fraction =
            u32::from_str_radix(&hash[..8], 16).expect("hex") as f64 / f64::from(u32::MAX);
        let chosen = fraction < scale || Some(&f.path) == smallest.as_ref();
        !matches!(f.content, Content::Host(_)) || (chosen && size(f) <= largest)
    });
}

/// Keeps the symlinks that resolve (lexically) to a file, or a kept
/// symlink, of the same package.
fn keep_inner_symlinks(files: &mut Vec<PackageFile>) {
    let mut kept: HashSet<PathBuf> = files
        .iter()
        .filter(|f| !matches!(f.content, Content::Symlink(_)))
        .map(|f| f.path.clone())
        .collect();
    loop {
        let before = kept.len();
        for file in files.iter() {
            if let Content::Symlink(target) = &file.content {
                let parent = file.path.parent().unwrap_or(Path::new(""));
                if resolve(parent, target).is_some_and(|t| kept.contains(&t)) {
                    kept.insert(file.path.clone());
                }
            }
        }
        if kept.len() == before {
            break;
        }
    }
    files.retain(|f| kept.contains(&f.path));
}

/// `dir/target` with `.` and `..` folded; `None` if it leaves the root.
fn resolve(dir: &Path, target: &Path) -> Option<PathBuf> {
    let mut parts: Vec<_> = dir.components().collect();
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(_) => parts.push(component),
            _ => return None,
        }
    }
    Some(parts.iter().collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// `libfoo` of `libfoo.so.1`, `PyYAML` of `PyYAML-6.0.dist-info`.
fn stem(name: &str) -> String {
    let stem = name.split(['.', '-']).next().unwrap_or(name);
    if stem.is_empty() { name } else { stem }.to_lowercase()
}

/// A valid conda package name part: lowercase `[a-z0-9_.-]`.
fn sanitize(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            '+' => 'p',
            _ => '-',
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Writing the channel
// ---------------------------------------------------------------------------

/// The benchmark's prefixes under `BENCH_DIR`, and what they hold.
pub(super) struct Environments {
    /// The environment every case builds.
    pub(super) prefix: PathBuf,
    /// The same environment but for one small package at another version.
    pub(super) changed_prefix: PathBuf,
    /// The conda-style package cache both were installed from.
    pub(super) pkgs: PathBuf,
    /// Its size, file and package counts, for the report.
    pub(super) description: Vec<String>,
}

/// Writes the channels and installs both prefixes under `bench`, unless a
/// previous run at the same `scale` did.
pub(super) fn prepare(bench: &Path, scale: f64) -> Environments {
    let started = Instant::now();
    // What the host trees give now: a change to them, or to the plan,
    // makes the environments again.
    let packages = plan(scale);
    let files: usize = packages.iter().map(|p| p.files.len()).sum();
    let bytes: u64 = packages.iter().map(host_bytes).sum();
    let stamp = format!(
        "scale {scale}: {} packages, {files} paths, {bytes} bytes\n",
        packages.len()
    );
    let (channel, changed_channel, changed_package) = channels(bench, &packages, &stamp);
    let pkgs = bench.join("pkgs");
    let prefix = bench.join("env");
    let changed_prefix = bench.join("env-changed");
    if fs::read_to_string(bench.join(".installed")).ok() != Some(stamp.clone()) {
        for dir in [&prefix, &changed_prefix, &pkgs] {
            remove(dir);
        }
        install(&channel, &prefix, &pkgs);
        install(&changed_channel, &changed_prefix, &pkgs);
        fs::write(bench.join(".installed"), &stamp).expect("mark environments installed");
    }
    let (files, installed) = tree_size(&prefix);
    let sizes = package_sizes(&channel, &pkgs);
    let description = vec![
        format!(
            "{} packages, {files} files, {} installed (scale {scale}; made in {:.0?} or by an earlier run)",
            channel.records.len(),
            human(installed),
            started.elapsed(),
        ),
        format!("packages: {}", describe_sizes(&sizes)),
        format!("changed for the one-package rebuild: {changed_package}"),
    ];
    Environments {
        prefix,
        changed_prefix,
        pkgs,
        description,
    }
}

/// The channel of `packages` in `bench/channel`, and the other version of
/// one small package in `bench/channel-changed`; written unless a
/// previous run left them with the same `stamp`. Returns both channels
/// (the second with every package of the first but that one) and the
/// package's name.
fn channels(
    bench: &Path,
    packages: &[Package],
    stamp: &str,
) -> (CondaChannel, CondaChannel, String) {
    let (base, changed) = (bench.join("channel"), bench.join("channel-changed"));
    let done = base.join(".complete");
    if fs::read_to_string(&done).ok().as_deref() != Some(stamp) {
        remove(&base);
        remove(&changed);
        eprintln!("bench: writing {} to {}", stamp.trim(), base.display());
        write_channel(&base, packages);
        write_channel(&changed, &[other_version(packages)]);
        fs::write(&done, stamp).expect("mark channel complete");
    }
    let base = CondaChannel {
        records: read_channel(&base),
        dir: base,
    };
    let other = read_channel(&changed);
    let name = other[0].package_record.name.as_normalized().to_owned();
    let records = base
        .records
        .iter()
        .filter(|r| r.package_record.name.as_normalized() != name)
        .cloned()
        .chain(other)
        .collect();
    let changed = CondaChannel {
        dir: changed,
        records,
    };
    (base, changed, name)
}

/// Another version of a small leaf package (the first quartile of the
/// non-noarch leaves by size), with one more file.
fn other_version(packages: &[Package]) -> Package {
    let depended: HashSet<&str> = packages
        .iter()
        .flat_map(|p| &p.depends)
        .filter_map(|d| d.split_whitespace().next())
        .collect();
    let mut leaves: Vec<(u64, &Package)> = packages
        .iter()
        .filter(|p| !p.noarch_python && !depended.contains(p.name.as_str()))
        .map(|p| (host_bytes(p), p))
        .collect();
    leaves.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    let mut package = leaves[leaves.len() / 4].1.clone();
    package.version = format!("{}.1", package.version);
    package.files.push(PackageFile {
        path: Path::new("share/bench-changed").join(format!("{}.txt", package.name)),
        content: Content::Script(format!("{} {}\n", package.name, package.version), false),
    });
    package
}

/// The size of the host files `package` copies.
fn host_bytes(package: &Package) -> u64 {
    package
        .files
        .iter()
        .filter_map(|f| match &f.content {
            Content::Host(host) => host.symlink_metadata().ok().map(|m| m.len()),
            _ => None,
        })
        .sum()
}

/// Writes `packages` and their `repodata.json` into the channel `dir`.
fn write_channel(dir: &Path, packages: &[Package]) {
    let staging = dir.join(".work");
    let mut elf_files = 0;
    let written: Vec<(&str, String, Value)> = packages
        .iter()
        .map(|package| {
            let (file_name, entry) = write_package(package, &staging, dir, &mut elf_files);
            (package.subdir(), file_name, entry)
        })
        .collect();
    for subdir in ["linux-64", "noarch"] {
        // conda-index's layout: `packages` for .tar.bz2, `packages.conda`.
        let (mut tar_bz2, mut conda) = (Map::new(), Map::new());
        for (_, file_name, entry) in written.iter().filter(|w| w.0 == subdir) {
            let map = if file_name.ends_with(".conda") {
                &mut conda
            } else {
                &mut tar_bz2
            };
            map.insert(file_name.clone(), entry.clone());
        }
        let repodata = json!({
            "info": {"subdir": subdir},
            "packages": tar_bz2,
            "packages.conda": conda,
            "removed": [],
            "repodata_version": 1,
        });
        let text = serde_json::to_string_pretty(&repodata).expect("repodata json");
        fs::create_dir_all(dir.join(subdir)).expect("create subdir");
        fs::write(dir.join(subdir).join("repodata.json"), text).expect("write repodata");
    }
    remove(&staging);
}

/// Reads both subdirs back through rattler's repodata parser.
fn read_channel(dir: &Path) -> Vec<RepoDataRecord> {
    let channel = Channel::try_from_directory(dir).expect("channel from directory");
    let mut records = Vec::new();
    for subdir in ["linux-64", "noarch"] {
        let path = dir.join(subdir).join("repodata.json");
        let repodata =
            RepoData::from_path(&path).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        records.extend(repodata.into_repo_data_records(&channel));
    }
    records.sort_by(|a, b| a.package_record.name.cmp(&b.package_record.name));
    records
}

/// Stages `package` under `staging`, archives it into `channel/<subdir>/`
/// and returns its file name and repodata entry.
fn write_package(
    package: &Package,
    staging: &Path,
    channel: &Path,
    elf_files: &mut usize,
) -> (String, Value) {
    let base = staging.join(package.dist());
    // Symlinks last: their entries hash what they point to.
    let (links, files): (Vec<_>, Vec<_>) = package
        .files
        .iter()
        .partition(|f| matches!(f.content, Content::Symlink(_)));
    let mut paths: Vec<Value> = files
        .iter()
        .map(|f| stage_file(&base, f, elf_files))
        .collect();
    for link in &links {
        if let Content::Symlink(target) = &link.content {
            let staged = base.join(&link.path);
            fs::create_dir_all(staged.parent().expect("parent")).expect("create staging dir");
            symlink(target, &staged).expect("create package symlink");
        }
    }
    paths.extend(links.iter().map(|link| {
        // Like conda-build: the hash and size of what the link points to.
        let staged = base.join(&link.path);
        json!({
            "_path": link.path,
            "path_type": "softlink",
            "sha256": sha256_file_hex(&staged),
            "size_in_bytes": fs::metadata(&staged).expect("stat link target").len(),
        })
    }));
    paths.sort_by(|a, b| a["_path"].as_str().cmp(&b["_path"].as_str()));
    let payload: u64 = paths
        .iter()
        .filter_map(|p| p["size_in_bytes"].as_u64())
        .sum();

    let mut index = json!({
        "build": package.build(),
        "build_number": 0,
        "depends": package.depends,
        "license": "LicenseRef-host-files",
        "name": package.name,
        "subdir": package.subdir(),
        "timestamp": TIMESTAMP_MS,
        "version": package.version,
    });
    if package.noarch_python {
        index["noarch"] = json!("python");
    } else {
        index["arch"] = json!("x86_64");
        index["platform"] = json!("linux");
    }
    let info = base.join("info");
    fs::create_dir_all(&info).expect("create info/");
    let write = |name: &str, value: &Value| {
        let text = serde_json::to_string_pretty(value).expect("json");
        fs::write(info.join(name), text).expect("write info file");
    };
    write("index.json", &index);
    let files: String = paths
        .iter()
        .map(|p| format!("{}\n", p["_path"].as_str().expect("_path")))
        .collect();
    fs::write(info.join("files"), files).expect("write info/files");
    write("paths.json", &json!({"paths": paths, "paths_version": 1}));
    if package.noarch_python {
        let link = json!({
            "noarch": {"type": "python", "entry_points": package.entry_points},
            "package_metadata_version": 1,
        });
        write("link.json", &link);
    }

    let conda = payload >= TAR_BZ2_BELOW;
    let file_name = format!(
        "{}{}",
        package.dist(),
        if conda { ".conda" } else { ".tar.bz2" }
    );
    let archive = channel.join(package.subdir()).join(&file_name);
    fs::create_dir_all(archive.parent().unwrap()).expect("create subdir");
    let out = File::create(&archive).expect("create archive");
    let contents: Vec<PathBuf> = walk(&base)
        .into_iter()
        .filter(|p| !p.symlink_metadata().expect("lstat").is_dir())
        .collect();
    let level = CompressionLevel::Numeric(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    if conda {
        let dist = package.dist();
        write_conda_package(
            out,
            &base,
            &contents,
            level,
            Some(threads),
            &dist,
            None,
            None,
        )
    } else {
        write_tar_bz2_package(out, &base, &contents, level, None, None)
    }
    .unwrap_or_else(|e| panic!("write {}: {e}", archive.display()));
    fs::remove_dir_all(&base).expect("remove package staging dir");

    index["md5"] = json!(hex::encode(
        compute_file_digest::<Md5>(&archive).expect("md5")
    ));
    index["sha256"] = json!(sha256_file_hex(&archive));
    index["size"] = json!(fs::metadata(&archive).expect("stat archive").len());
    (file_name, index)
}

/// Writes one file (not a symlink) of a package into its staging dir and
/// returns its `paths.json` entry.
fn stage_file(base: &Path, file: &PackageFile, elf_files: &mut usize) -> Value {
    let staged = base.join(&file.path);
    fs::create_dir_all(staged.parent().expect("parent")).expect("create staging dir");
    let placeholder = match &file.content {
        Content::Symlink(_) => unreachable!("symlinks are staged apart"),
        Content::Script(text, placeholder) => {
            fs::write(&staged, text).expect("write script");
            fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).expect("chmod");
            placeholder.then_some(FileMode::Text)
        }
        Content::Host(host) => copy_with_placeholder(host, &staged, elf_files),
    };
    let mut entry = json!({
        "_path": file.path,
        "path_type": "hardlink",
        "sha256": sha256_file_hex(&staged),
        "size_in_bytes": fs::metadata(&staged).expect("stat staged file").len(),
    });
    if let Some(mode) = placeholder {
        entry["prefix_placeholder"] = json!(PLACEHOLDER);
        entry["file_mode"] = json!(mode);
    }
    entry
}

/// Copies `host` to `staged`, giving some files a placeholder the way real
/// packages have them: `/usr` in build-system and python text files
/// becomes the placeholder; some ELF files get a NUL-terminated copy of
/// it (as a data path) appended.
fn copy_with_placeholder(host: &Path, staged: &Path, elf_files: &mut usize) -> Option<FileMode> {
    let meta = fs::metadata(host).expect("stat host file");
    let mode = fs::Permissions::from_mode((meta.mode() & 0o755) | 0o644);
    let text_candidate = host
        .extension()
        .is_some_and(|e| TEXT_PLACEHOLDER_EXTENSIONS.contains(&e.to_string_lossy().as_ref()))
        && meta.len() <= TEXT_PLACEHOLDER_MAX;
    let mut placeholder = None;
    if text_candidate {
        let bytes = fs::read(host).expect("read host file");
        if let Ok(text) = std::str::from_utf8(&bytes)
            && !text.contains('\0')
            && text.contains("/usr")
        {
            fs::write(staged, text.replace("/usr", PLACEHOLDER)).expect("write text file");
            placeholder = Some(FileMode::Text);
        }
    } else if is_elf(host) {
        *elf_files += 1;
        if (*elf_files).is_multiple_of(BINARY_PLACEHOLDER_EVERY)
            || meta.len() > BINARY_PLACEHOLDER_ABOVE
        {
            let mut bytes = fs::read(host).expect("read host file");
            bytes.push(0);
            bytes.extend_from_slice(PLACEHOLDER.as_bytes());
            bytes.extend_from_slice(b"/share/data\0");
            fs::write(staged, bytes).expect("write binary file");
            placeholder = Some(FileMode::Binary);
        }
    }
    if placeholder.is_none() {
        fs::copy(host, staged).expect("copy host file");
    }
    fs::set_permissions(staged, mode).expect("chmod");
    placeholder
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

// ---------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------

/// Installs every package of `channel` into `prefix` from the conda-style
/// `pkgs` dir (shared by both prefixes); adds a few files no package owns.
fn install(channel: &CondaChannel, prefix: &Path, pkgs: &Path) {
    // Request only the leaves, as a user would; the rest come as dependencies.
    let depended: BTreeSet<String> = channel
        .records
        .iter()
        .flat_map(|r| &r.package_record.depends)
        .filter_map(|d| d.split_whitespace().next().map(str::to_owned))
        .collect();
    let leaves: Vec<&str> = channel
        .records
        .iter()
        .map(|r| r.package_record.name.as_normalized())
        .filter(|n| !depended.contains(*n))
        .collect();
    eprintln!(
        "bench: installing {} packages ({} requested) into {}",
        channel.records.len(),
        leaves.len(),
        prefix.display()
    );
    let env = install_env_at(channel, &leaves, CacheLayout::Conda, prefix, pkgs);
    assert_eq!(
        env.records.len(),
        channel.records.len(),
        "everything installed"
    );

    // What `pip install` or a user leaves behind.
    let own = prefix.join("share/bench-untracked");
    fs::create_dir_all(&own).expect("create untracked dir");
    let config = format!("data={}/share/bench-untracked\n", prefix.display());
    fs::write(own.join("config.txt"), config).expect("write untracked file");
    fs::write(own.join("notes.txt"), "no prefix here\n").expect("write untracked file");
    symlink("config.txt", own.join("current")).expect("untracked symlink");
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Everything below `dir` (not `dir` itself), symlinks not followed.
pub(super) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return out;
    }
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Regular files in `path` (a file or a tree) and their total size.
pub(super) fn tree_size(path: &Path) -> (u64, u64) {
    let mut paths = walk(path);
    paths.push(path.to_path_buf());
    paths
        .iter()
        .filter_map(|p| p.symlink_metadata().ok())
        .filter(|m| m.is_file())
        .fold((0, 0), |(n, size), m| (n + 1, size + m.len()))
}

pub(super) fn remove(path: &Path) {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            panic!("remove {}: {e}", path.display())
        }
        _ => {}
    }
}

pub(super) fn human(bytes: u64) -> String {
    let bytes = bytes as f64;
    let mib = bytes / MIB as f64;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}
