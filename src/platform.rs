//! Image platforms (`linux/arm64/v8`) and how conda platforms map to them.
//!
//! Users speak conda (`--platform linux-aarch64`), registries speak OCI
//! (`os`/`architecture`/`variant`); this is the one place that translates,
//! and the one place that picks an image out of a multi-platform index.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Descriptor;
use rattler_conda_types::Subdir;

/// An OCI platform: what an image runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// A `--platform` that names no Linux platform we can build for.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown platform `{0}`: expected a conda platform (linux-64, linux-aarch64, linux-ppc64le, linux-s390x) or OS/ARCH[/VARIANT] such as linux/arm64/v8"
)]
pub struct PlatformError(String);

impl Platform {
    /// `os`/`architecture`/`variant` as in an image config.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The platform images of conda platform `subdir` run on, or `None` for
    /// a platform that has no Linux images (osx-64, win-64, noarch, ...).
    pub fn from_subdir(subdir: Subdir) -> Option<Self> {
        let (arch, variant) = match subdir {
            Subdir::Linux64 => ("amd64", None),
            Subdir::LinuxAarch64 => ("arm64", Some("v8")),
            Subdir::LinuxPpc64le => ("ppc64le", None),
            Subdir::LinuxS390X => ("s390x", None),
            Subdir::LinuxArmV7l => ("arm", Some("v7")),
            Subdir::Linux32 => ("386", None),
            _ => return None,
        };
        Some(Platform::new("linux", arch, variant))
    }

    /// The conda platform whose packages run here, if there is one.
    pub fn subdir(&self) -> Option<Subdir> {
        if self.os != "linux" {
            return None;
        }
        Some(match (self.architecture.as_str(), self.variant()) {
            ("amd64", _) => Subdir::Linux64,
            ("arm64", _) => Subdir::LinuxAarch64,
            ("ppc64le", _) => Subdir::LinuxPpc64le,
            ("s390x", _) => Subdir::LinuxS390X,
            ("arm", Some("v7") | None) => Subdir::LinuxArmV7l,
            ("386", _) => Subdir::Linux32,
            _ => return None,
        })
    }

    /// The os (`linux`).
    pub fn os(&self) -> &str {
        &self.os
    }

    /// The architecture (`amd64`, `arm64`, ...).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The variant (`v8` for arm64), if any.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// Whether an image of `os`/`architecture`/`variant` runs here. A missing
    /// variant matches, as in containerd: most arm64 images do not state `v8`.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && match (self.variant(), variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Picks this platform's image out of the entries of an image index,
    /// skipping attestations (`unknown/unknown`). An index with a single
    /// entry that states no platform is taken as it is. On failure, returns
    /// the platforms on offer, for the error message.
    pub fn pick<'a>(&self, entries: &'a [Descriptor]) -> Result<&'a Descriptor, String> {
        let images: Vec<&Descriptor> = entries
            .iter()
            .filter(|d| {
                d.platform()
                    .as_ref()
                    .is_none_or(|p| p.os().to_string() != "unknown")
            })
            .collect();
        if let [only] = images.as_slice()
            && only.platform().is_none()
        {
            return Ok(only);
        }
        if let Some(found) = images.iter().find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                self.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        }) {
            return Ok(found);
        }
        let offered: Vec<String> = images
            .iter()
            .filter_map(|d| d.platform().as_ref())
            .map(|p| {
                let mut s = format!("{}/{}", p.os(), p.architecture());
                if let Some(v) = p.variant() {
                    s.push('/');
                    s.push_str(v);
                }
                s
            })
            .collect();
        Err(if offered.is_empty() {
            "none".into()
        } else {
            offered.join(", ")
        })
    }
}

impl Default for Platform {
    /// linux/amd64, conda's `linux-64`.
    fn default() -> Self {
        Platform::new("linux", "amd64", None)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// A conda platform (`linux-aarch64`) or `OS/ARCH[/VARIANT]`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || PlatformError(text.to_owned());
        if let Ok(subdir) = text.parse::<Subdir>() {
            return Platform::from_subdir(subdir).ok_or_else(bad);
        }
        let parts: Vec<&str> = text.split('/').collect();
        let ok = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conda_names_map_to_oci() {
        let p: Platform = "linux-aarch64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!("linux-64".parse::<Platform>().unwrap(), Platform::default());
        assert_eq!(
            "linux/ppc64le".parse::<Platform>().unwrap().to_string(),
            "linux/ppc64le"
        );
        assert!("osx-64".parse::<Platform>().is_err());
        assert!("linux".parse::<Platform>().is_err());
        for name in ["linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x"] {
            let p: Platform = name.parse().unwrap();
            assert_eq!(p.subdir().unwrap().to_string(), name);
        }
    }

    #[test]
    fn a_missing_variant_matches() {
        let p: Platform = "linux-aarch64".parse().unwrap();
        assert!(p.matches("linux", "arm64", None));
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "arm64", Some("v7")));
        assert!(!p.matches("linux", "amd64", None));
    }
}
