//! The virtual packages a solve sees: those of a Linux container of the
//! image's platform (never this machine's), then what the user says, by
//! conda's rules and in its order of strength:
//!
//! ```text
//! --virtual-package __NAME=VERSION   (strongest)
//! CONDA_OVERRIDE_<NAME>=VALUE        conda's variables; empty removes it
//! override_virtual_packages:         .condarc (conda ≥ 25.11; alias virtual_packages)
//! the base image's glibc             __glibc
//! the defaults                       __unix, __linux, __archspec (weakest)
//! ```
//!
//! `--virtual-package __cuda=host` asks for this machine's NVIDIA driver
//! version (for a build on the GPU machine the image will run on): the one
//! way a host value reaches the image's solve.

use std::collections::BTreeMap;
use std::str::FromStr;

use rattler_conda_types::package::BuildString;
use rattler_conda_types::{GenericVirtualPackage, PackageName, Subdir, Version};

use super::solve::SolveError;

/// The kernel version stated for `__linux` (the host kernel is unknown at
/// build time; this is what conda-forge packages ask for at most today).
const LINUX_VERSION: &str = "5.10";

/// The virtual packages conda lets a variable or `.condarc` override, and
/// which part of each the value sets.
const OVERRIDABLE: [(&str, Part); 4] = [
    ("cuda", Part::Version),
    ("glibc", Part::Version),
    ("linux", Part::Version),
    ("archspec", Part::Build),
];

/// The part of a virtual package an override sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Version,
    Build,
}

/// What the user says of virtual packages, merged from every source:
/// `__name` → the value, or `None` where it is removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides(BTreeMap<String, Option<String>>);

impl Overrides {
    /// Merges, weakest first, `.condarc`'s `override_virtual_packages`
    /// (`condarc`), the `CONDA_OVERRIDE_<NAME>` variables (`var`) and the
    /// `--virtual-package` values (`flags`). `cuda_host` tells this
    /// machine's driver version, asked only for `__cuda=host`.
    pub fn gather(
        flags: &[String],
        var: &dyn Fn(&str) -> Option<String>,
        condarc: &BTreeMap<String, Option<String>>,
        cuda_host: &dyn Fn() -> Option<Version>,
    ) -> Result<Self, SolveError> {
        let mut said = BTreeMap::new();
        for (name, _) in OVERRIDABLE {
            let from_rc = condarc
                .get(name)
                .or_else(|| condarc.get(&format!("__{name}")))
                .cloned()
                .flatten();
            let from_var = var(&format!("CONDA_OVERRIDE_{}", name.to_ascii_uppercase()));
            if let Some(value) = from_var.or(from_rc) {
                let value = value.trim();
                said.insert(
                    format!("__{name}"),
                    (!value.is_empty()).then(|| value.into()),
                );
            }
        }
        for text in flags {
            let (name, value) = text
                .split_once('=')
                .filter(|(n, v)| n.starts_with("__") && n.len() > 2 && !v.is_empty())
                .ok_or_else(|| SolveError::BadVirtualPackage(text.clone()))?;
            let name = name.to_ascii_lowercase();
            let value = match (name.as_str(), value) {
                ("__cuda", "host") => cuda_host().ok_or(SolveError::NoCudaDriver)?.to_string(),
                (_, "host") => return Err(SolveError::HostOnlyForCuda(text.clone())),
                _ => value.to_owned(),
            };
            said.insert(name, Some(value));
        }
        let overrides = Overrides(said);
        overrides.packages(Subdir::Linux64, None).map(|_| overrides)
    }

    /// What the user's configuration says (the `CONDA_OVERRIDE_*` variables,
    /// `.condarc`, `flags`), detecting the host's CUDA driver only if asked.
    pub fn from_config(flags: &[String]) -> Result<Self, SolveError> {
        let rc = super::condarc::CondaRc::load();
        Overrides::gather(
            flags,
            &|name| std::env::var(name).ok(),
            &rc.override_virtual_packages,
            &|| rattler_virtual_packages::cuda::cuda_version(None),
        )
    }

    /// The glibc the user states (`Some(None)`: none at all), if any: it
    /// replaces the base image's.
    pub fn glibc(&self) -> Option<Option<&str>> {
        self.0.get("__glibc").map(Option::as_deref)
    }

    /// The virtual packages of a Linux container on `platform` whose base
    /// has `glibc` (`None`: no glibc, so packages that need it do not
    /// solve), with the overrides applied.
    pub fn packages(
        &self,
        platform: Subdir,
        glibc: Option<&str>,
    ) -> Result<Vec<GenericVirtualPackage>, SolveError> {
        // conda's name of the architecture, rattler's table.
        let arch = platform
            .arch()
            .map_or_else(|| "x86".to_owned(), |arch| arch.to_string());
        let mut packages: BTreeMap<String, (String, String)> = [
            ("__unix", "0", "0"),
            ("__linux", LINUX_VERSION, "0"),
            ("__archspec", "1", arch.as_str()),
        ]
        .into_iter()
        .chain(glibc.map(|version| ("__glibc", version, "0")))
        .map(|(n, v, b)| (n.to_owned(), (v.to_owned(), b.to_owned())))
        .collect();
        for (name, value) in &self.0 {
            let Some(value) = value else {
                packages.remove(name);
                continue;
            };
            let part = OVERRIDABLE
                .iter()
                .find(|(n, _)| name.strip_prefix("__") == Some(n))
                .map_or(Part::Version, |(_, part)| *part);
            let entry = packages
                .entry(name.clone())
                .or_insert_with(|| ("0".into(), "0".into()));
            match part {
                Part::Version => entry.0.clone_from(value),
                Part::Build => entry.1.clone_from(value),
            }
        }
        packages
            .into_iter()
            .map(|(name, (version, build))| {
                let bad = || SolveError::BadVirtualPackage(format!("{name}={version}"));
                Ok(GenericVirtualPackage {
                    name: PackageName::from_str(&name).map_err(|_| bad())?,
                    version: Version::from_str(&version).map_err(|_| bad())?,
                    build_string: BuildString::new_unchecked(&build),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(
        flags: &[&str],
        vars: &[(&str, &str)],
        rc: &[(&str, Option<&str>)],
    ) -> Result<Overrides, SolveError> {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let rc = rc
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect();
        Overrides::gather(&flags, &|n| vars.get(n).cloned(), &rc, &|| {
            Some(Version::from_str("12.8").unwrap())
        })
    }

    fn find(packages: &[GenericVirtualPackage], name: &str) -> Option<(String, String)> {
        packages
            .iter()
            .find(|p| p.name.as_normalized() == name)
            .map(|p| (p.version.to_string(), p.build_string.to_string()))
    }

    #[test]
    fn the_defaults_describe_the_target() {
        let v = Overrides::default()
            .packages(Subdir::LinuxAarch64, None)
            .unwrap();
        assert_eq!(find(&v, "__archspec"), Some(("1".into(), "aarch64".into())));
        assert_eq!(
            find(&v, "__glibc"),
            None,
            "no glibc in the base, no __glibc"
        );
        assert_eq!(find(&v, "__cuda"), None, "never the host's driver");
        let v = Overrides::default()
            .packages(Subdir::Linux64, Some("2.41"))
            .unwrap();
        assert_eq!(find(&v, "__glibc"), Some(("2.41".into(), "0".into())));
    }

    #[test]
    fn flags_beat_variables_beat_condarc_beat_the_base() {
        let rc = [("cuda", Some("11.8")), ("glibc", Some("2.28"))];
        let o = gather(&[], &[], &rc).unwrap();
        let v = o.packages(Subdir::Linux64, Some("2.41")).unwrap();
        assert_eq!(find(&v, "__cuda").unwrap().0, "11.8");
        assert_eq!(find(&v, "__glibc").unwrap().0, "2.28");
        let vars = [
            ("CONDA_OVERRIDE_CUDA", "12.4"),
            ("CONDA_OVERRIDE_ARCHSPEC", "haswell"),
        ];
        let o = gather(&[], &vars, &rc).unwrap();
        let v = o.packages(Subdir::Linux64, Some("2.41")).unwrap();
        assert_eq!(find(&v, "__cuda").unwrap().0, "12.4");
        assert_eq!(find(&v, "__archspec"), Some(("1".into(), "haswell".into())));
        let o = gather(&["__cuda=12.6", "__GLIBC=2.17"], &vars, &rc).unwrap();
        let v = o.packages(Subdir::Linux64, Some("2.41")).unwrap();
        assert_eq!(find(&v, "__cuda").unwrap().0, "12.6");
        assert_eq!(find(&v, "__glibc").unwrap().0, "2.17");
        assert_eq!(o.glibc(), Some(Some("2.17")));
    }

    #[test]
    fn an_empty_value_removes_the_package() {
        let o = gather(&[], &[("CONDA_OVERRIDE_GLIBC", "")], &[("cuda", Some(" "))]).unwrap();
        let v = o.packages(Subdir::Linux64, Some("2.41")).unwrap();
        assert_eq!(find(&v, "__glibc"), None);
        assert_eq!(find(&v, "__cuda"), None);
        assert_eq!(o.glibc(), Some(None));
        let o = gather(&[], &[], &[("glibc", None)]).unwrap();
        assert_eq!(o.glibc(), None, "a null in .condarc says nothing");
    }

    #[test]
    fn host_is_for_cuda_and_needs_a_driver() {
        let o = gather(&["__cuda=host"], &[], &[]).unwrap();
        let v = o.packages(Subdir::Linux64, None).unwrap();
        assert_eq!(find(&v, "__cuda").unwrap().0, "12.8");
        assert!(matches!(
            gather(&["__glibc=host"], &[], &[]),
            Err(SolveError::HostOnlyForCuda(_))
        ));
        let none = Overrides::gather(
            &["__cuda=host".into()],
            &|_| None,
            &BTreeMap::new(),
            &|| None,
        );
        assert!(matches!(none, Err(SolveError::NoCudaDriver)));
    }

    #[test]
    fn bad_values_are_refused() {
        for flag in ["cuda", "__cuda", "__cuda=", "__=1", "__cuda=not a version"] {
            assert!(gather(&[flag], &[], &[]).is_err(), "{flag}");
        }
        assert!(gather(&[], &[("CONDA_OVERRIDE_CUDA", "x y")], &[]).is_err());
    }
}
