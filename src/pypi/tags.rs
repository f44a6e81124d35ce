//! Whether a wheel's tags (its file name's python, ABI and platform) suit
//! the image: the environment's CPython, the base's glibc and the image's
//! architecture, as pip's tag list for that interpreter would say.

/// What a wheel must suit.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The environment's python, `(3, 11)`.
    pub python: (u64, u64),
    /// The base image's glibc, `(2, 36)`; `None` when it has none.
    pub glibc: Option<(u32, u32)>,
    /// The image's architecture as wheel tags name it (`x86_64`).
    pub arch: String,
}

impl Target {
    /// The wheel tag architecture of an image architecture (`amd64`).
    pub(crate) fn wheel_arch(image_arch: &str, variant: Option<&str>) -> String {
        match (image_arch, variant) {
            ("amd64", _) => "x86_64".into(),
            ("arm64", _) => "aarch64".into(),
            ("386", _) => "i686".into(),
            ("arm", Some("v6")) => "armv6l".into(),
            ("arm", _) => "armv7l".into(),
            (other, _) => other.into(),
        }
    }
}

/// Checks the tags of the wheel `file_name` against `target`; the error
/// says which tag does not fit and what the image has.
pub(crate) fn check_tags(file_name: &str, target: &Target) -> Result<(), String> {
    let stem = file_name
        .strip_suffix(".whl")
        .ok_or("its file name does not end in .whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !(5..=6).contains(&parts.len()) {
        return Err("its file name is not NAME-VERSION(-BUILD)-PYTHON-ABI-PLATFORM.whl".to_owned());
    }
    let [python, abi, platform] = [
        parts[parts.len() - 3],
        parts[parts.len() - 2],
        parts[parts.len() - 1],
    ];
    let (major, minor) = target.python;
    let fits = python.split('.').any(|py| {
        abi.split('.')
            .any(|abi| python_fits(py, abi, target.python))
    });
    if !fits {
        return Err(format!(
            "it is built for python {python} with ABI {abi}, and the environment's python is {major}.{minor} (cp{major}{minor})"
        ));
    }
    let mut why = None;
    for platform in platform.split('.') {
        match platform_fits(platform, target) {
            Ok(()) => return Ok(()),
            Err(reason) => {
                why.get_or_insert(reason);
            }
        }
    }
    Err(why.unwrap_or_else(|| "it names no platform".into()))
}

/// Whether the python tag `py` with ABI tag `abi` runs on CPython
/// `major.minor`: `cpXY-cpXY` for exactly it, `cpXY-abi3` for an older or
/// equal 3.x, `pyX`/`pyXY`/`cpXY` with ABI `none`.
fn python_fits(py: &str, abi: &str, (major, minor): (u64, u64)) -> bool {
    let own = format!("cp{major}{minor}");
    let older_or_same = |tag: &str, prefix: &str| {
        tag.strip_prefix(prefix)
            .and_then(|v| v.strip_prefix(&major.to_string()))
            .is_some_and(|m| m.parse::<u64>().is_ok_and(|m| m <= minor))
    };
    match abi {
        "none" => py == own || py == format!("py{major}") || older_or_same(py, "py"),
        "abi3" => major == 3 && older_or_same(py, "cp"),
        abi => py == own && (abi == own || abi == format!("{own}m")),
    }
}

/// Whether the platform tag fits the image, or why not.
fn platform_fits(platform: &str, target: &Target) -> Result<(), String> {
    if platform == "any" {
        return Ok(());
    }
    let arch_of = |rest: &str| {
        if rest == target.arch {
            Ok(())
        } else {
            Err(format!(
                "it is built for {rest}, and the image is {}",
                target.arch
            ))
        }
    };
    let legacy = [
        ("manylinux1_", (2, 5)),
        ("manylinux2010_", (2, 12)),
        ("manylinux2014_", (2, 17)),
    ];
    for (prefix, needs) in legacy {
        if let Some(arch) = platform.strip_prefix(prefix) {
            arch_of(arch)?;
            return glibc_fits(platform, needs, target.glibc);
        }
    }
    if let Some(rest) = platform.strip_prefix("manylinux_") {
        let (needs, arch) = version_and_arch(rest)
            .ok_or_else(|| format!("its platform tag {platform} is not manylinux_X_Y_ARCH"))?;
        arch_of(arch)?;
        return glibc_fits(platform, needs, target.glibc);
    }
    if platform.starts_with("musllinux_") {
        return Err(match target.glibc {
            Some((major, minor)) => format!(
                "{platform} is for musl libc, and the base image has glibc {major}.{minor}; use a manylinux wheel"
            ),
            None => format!(
                "{platform} is for musl libc, which this tool does not install; use a pure-python wheel"
            ),
        });
    }
    if let Some(arch) = platform.strip_prefix("linux_") {
        return arch_of(arch);
    }
    Err(format!(
        "its platform {platform} is not linux; the image is linux/{}",
        target.arch
    ))
}

/// `2_17_x86_64` → `((2, 17), "x86_64")`.
fn version_and_arch(rest: &str) -> Option<((u32, u32), &str)> {
    let mut parts = rest.splitn(3, '_');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(((major, minor), parts.next()?))
}

fn glibc_fits(platform: &str, needs: (u32, u32), has: Option<(u32, u32)>) -> Result<(), String> {
    match has {
        Some(has) if has >= needs => Ok(()),
        Some((major, minor)) => Err(format!(
            "{platform} needs glibc {}.{} or newer, and the base image has glibc {major}.{minor}",
            needs.0, needs.1
        )),
        None => Err(format!(
            "{platform} needs glibc {}.{}, and the base image has no glibc",
            needs.0, needs.1
        )),
    }
}

/// A glibc version string (`2.36`) as `(major, minor)`.
pub(crate) fn parse_glibc(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(glibc: Option<(u32, u32)>) -> Target {
        Target {
            python: (3, 11),
            glibc,
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn python_and_abi_tags() {
        let t = target(Some((2, 36)));
        for good in [
            "a-1-py3-none-any.whl",
            "a-1-py2.py3-none-any.whl",
            "a-1-py310-none-any.whl",
            "a-1-cp311-cp311-manylinux_2_17_x86_64.whl",
            "a-1-cp38-abi3-manylinux2014_x86_64.whl",
            "a-1-1build-cp311-none-linux_x86_64.whl",
        ] {
            assert_eq!(check_tags(good, &t), Ok(()), "{good}");
        }
        for bad in [
            "a-1-cp312-cp312-manylinux_2_17_x86_64.whl",
            "a-1-cp310-cp310-manylinux_2_17_x86_64.whl",
            "a-1-py2-none-any.whl",
            "a-1-cp312-abi3-manylinux_2_17_x86_64.whl",
            "a-1-py312-none-any.whl",
        ] {
            let err = check_tags(bad, &t).unwrap_err();
            assert!(err.contains("python is 3.11"), "{bad}: {err}");
        }
    }

    #[test]
    fn platform_tags() {
        let t = target(Some((2, 17)));
        assert_eq!(
            check_tags("a-1-cp311-cp311-manylinux1_x86_64.whl", &t),
            Ok(())
        );
        let err = check_tags("a-1-cp311-cp311-manylinux_2_28_x86_64.whl", &t).unwrap_err();
        assert!(err.contains("needs glibc 2.28"), "{err}");
        let err = check_tags("a-1-cp311-cp311-manylinux_2_17_aarch64.whl", &t).unwrap_err();
        assert!(err.contains("built for aarch64"), "{err}");
        let err = check_tags("a-1-cp311-cp311-musllinux_1_1_x86_64.whl", &t).unwrap_err();
        assert!(err.contains("musl"), "{err}");
        let err = check_tags("a-1-cp311-cp311-macosx_11_0_arm64.whl", &t).unwrap_err();
        assert!(err.contains("not linux"), "{err}");
        let err =
            check_tags("a-1-cp311-cp311-manylinux2014_x86_64.whl", &target(None)).unwrap_err();
        assert!(err.contains("no glibc"), "{err}");
        assert_eq!(
            check_tags(
                "a-1-cp311-cp311-manylinux_2_28_x86_64.manylinux_2_17_x86_64.whl",
                &t
            ),
            Ok(())
        );
        assert!(check_tags("a-1-py3-none-any.tar.gz", &t).is_err());
        assert!(check_tags("a-py3-none-any.whl", &t).is_err());
    }
}
