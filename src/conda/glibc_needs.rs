//! Whether an environment needs glibc, and which versions it accepts.
//!
//! A conda-forge environment on a base without glibc (`scratch`, busybox,
//! alpine) builds fine and then cannot start a single program
//! (`exec /opt/conda/bin/python: no such file or directory`: the kernel
//! finds no loader). Two signs tell before that: a `__glibc` dependency in
//! a record (conda-forge's compilers add one to every package they build),
//! and an executable in a package's `bin/` whose ELF interpreter is glibc's
//! loader.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rattler_conda_types::{MatchSpec, ParseStrictness, PrefixRecord, Version};

use super::cache::dist_name;

/// What an environment asks of the base's C library.
#[derive(Debug, Default)]
pub struct GlibcNeeds {
    /// `(package, spec)` for every `__glibc` dependency.
    specs: Vec<(String, MatchSpec)>,
    /// The first executable found whose loader is glibc's: `(package,
    /// file, loader)`.
    loader: Option<(String, String, String)>,
}

impl GlibcNeeds {
    /// Reads the needs of `records`, whose packages are in `package_dirs`
    /// (same order).
    pub fn of(records: &[PrefixRecord], package_dirs: &[PathBuf]) -> Self {
        let mut needs = GlibcNeeds::default();
        for (record, dir) in records.iter().zip(package_dirs) {
            let dist = dist_name(&record.repodata_record);
            for depend in &record.repodata_record.package_record.depends {
                if depend.split_whitespace().next() != Some("__glibc") {
                    continue;
                }
                if let Ok(spec) = MatchSpec::from_str(depend, ParseStrictness::Lenient) {
                    needs.specs.push((dist.clone(), spec));
                }
            }
            if needs.loader.is_none()
                && let Some((file, loader)) = glibc_executable(dir)
            {
                needs.loader = Some((dist, file, loader));
            }
        }
        needs
    }

    /// Whether anything in the environment needs glibc.
    pub fn any(&self) -> bool {
        !self.specs.is_empty() || self.loader.is_some()
    }

    /// What a base with `glibc` (`None`: no glibc at all) cannot give, said
    /// in a few words; `None` when it gives everything.
    pub fn unmet(&self, glibc: Option<&str>) -> Option<String> {
        let Some(have) = glibc else {
            if let Some((dist, spec)) = self.specs.first() {
                return Some(format!("{dist} depends on `{spec}`"));
            }
            return self
                .loader
                .as_ref()
                .map(|(dist, file, loader)| format!("{file} of {dist} is loaded by {loader}"));
        };
        let have = Version::from_str(have).ok()?;
        self.specs.iter().find_map(|(dist, spec)| {
            let fits = spec.version.as_ref().is_none_or(|v| v.matches(&have));
            (!fits).then(|| format!("{dist} depends on `{spec}`"))
        })
    }
}

/// The first regular file in `dir/bin` whose ELF interpreter is glibc's
/// loader (`ld-linux*.so`, `ld64.so`): `(bin/NAME, loader)`. Only each
/// file's first 4 KiB are read: that is where the program headers and the
/// interpreter's name are.
fn glibc_executable(dir: &Path) -> Option<(String, String)> {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("bin"))
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let mut head = Vec::with_capacity(4096);
        std::fs::File::open(dir.join("bin").join(&name))
            .ok()?
            .take(4096)
            .read_to_end(&mut head)
            .ok()?;
        let loader = elf_interpreter(&head)?;
        let file = Path::new(&loader)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        (file.starts_with("ld-linux") || file.starts_with("ld64.so"))
            .then(|| (format!("bin/{}", name.to_string_lossy()), loader))
    })
}

/// The `PT_INTERP` of a little-endian 64-bit ELF file, from its first
/// bytes; `None` for anything else or when the headers lie past `head`.
pub fn elf_interpreter(head: &[u8]) -> Option<String> {
    const PT_INTERP: u32 = 3;
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let field = |at: usize, len: usize| head.get(at..at.checked_add(len)?);
    let u16_at = |at: usize| Some(u16::from_le_bytes(field(at, 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(field(at, 4)?.try_into().ok()?));
    let u64_at = |at: usize| {
        let value = u64::from_le_bytes(field(at, 8)?.try_into().ok()?);
        usize::try_from(value).ok()
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, usize::from(u16_at(0x36)?), u16_at(0x38)?);
    (0..usize::from(phnum)).find_map(|i| {
        let header = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(header)? != PT_INTERP {
            return None;
        }
        let (offset, size) = (
            u64_at(header.checked_add(8)?)?,
            u64_at(header.checked_add(32)?)?,
        );
        let bytes = head.get(offset..offset.checked_add(size)?)?;
        let name = bytes.split(|&b| b == 0).next()?;
        Some(String::from_utf8_lossy(name).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with one PT_INTERP program header.
    fn elf_with_interpreter(loader: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x200];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        bytes[0x40..0x44].copy_from_slice(&3u32.to_le_bytes());
        bytes[0x48..0x50].copy_from_slice(&0x100u64.to_le_bytes());
        bytes[0x60..0x68].copy_from_slice(&(loader.len() as u64 + 1).to_le_bytes());
        bytes[0x100..0x100 + loader.len()].copy_from_slice(loader.as_bytes());
        bytes
    }

    #[test]
    fn reads_the_interpreter_and_never_panics() {
        let elf = elf_with_interpreter("/lib64/ld-linux-x86-64.so.2");
        assert_eq!(
            elf_interpreter(&elf).as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        for cut in 0..elf.len() {
            let _ = elf_interpreter(&elf[..cut]);
        }
        let mut lying = elf.clone();
        lying[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(elf_interpreter(&lying), None);
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn unmet_names_the_package_and_the_spec() {
        let needs = GlibcNeeds {
            specs: vec![(
                "numpy-2.0-0".into(),
                MatchSpec::from_str("__glibc >=2.28,<3.0.a0", ParseStrictness::Lenient).unwrap(),
            )],
            loader: None,
        };
        assert!(needs.unmet(Some("2.36")).is_none());
        let why = needs.unmet(Some("2.17")).unwrap();
        assert!(
            why.contains("numpy-2.0-0 depends on `__glibc >=2.28,<3.0.a0`"),
            "{why}"
        );
        assert!(needs.unmet(None).unwrap().contains("numpy-2.0-0"));
    }
}
