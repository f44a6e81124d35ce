//! Image references (`name[:tag][@digest]`), parsed like docker does.
//!
//! Parsing does no I/O. `ubuntu` means `docker.io/library/ubuntu:latest`;
//! the first path component is a registry host only if it contains `.` or
//! `:` or is `localhost`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A string that is not an image reference.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid image reference `{input}`: {reason} (expected NAME[:TAG][@sha256:DIGEST], e.g. `debian:stable-slim` or `ghcr.io/org/img:1.0`)"
)]
pub struct ReferenceError {
    input: String,
    reason: &'static str,
}

fn valid_component(part: &str) -> bool {
    // [a-z0-9]+ joined by `.`, `_`, `__` or runs of `-`.
    let bytes = part.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    if part.contains("..") || part.contains("___") || part.contains("._") || part.contains("_.") {
        return false;
    }
    bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ReferenceError {
            input: input.to_owned(),
            reason,
        };
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(digest.parse::<Digest>().map_err(|_| fail("bad digest"))?),
            ),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(fail("bad tag"));
        }
        if name.is_empty() {
            return Err(fail("empty name"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_host(first) {
                    return Err(fail("bad registry host"));
                }
                (first.to_owned(), path)
            }
            _ => (DOCKER_HUB.to_owned(), name),
        };
        if !path.split('/').all(valid_component) {
            return Err(fail(
                "names use lowercase letters, digits and `._-` separated by `/`",
            ));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl Reference {
    /// The registry host (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/ubuntu`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` when neither tag nor digest was given.
    pub fn tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// The pinned digest, if any.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// `name:tag` in docker's familiar form (what `docker save` puts in
    /// `RepoTags`), or `None` for a digest-only reference.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag()
            .map(|tag| format!("{}:{tag}", self.familiar_name()))
    }

    /// The name as docker shows it, without tag or digest: Docker Hub's
    /// `library/` and host left out (`ubuntu`, `user/app`,
    /// `ghcr.io/a/b`), however it was typed, as docker's `RepoTags` have it.
    pub fn familiar_name(&self) -> String {
        if self.registry != DOCKER_HUB {
            return format!("{}/{}", self.registry, self.repository);
        }
        self.repository
            .strip_prefix("library/")
            .filter(|rest| !rest.contains('/'))
            .unwrap_or(&self.repository)
            .to_owned()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = self.tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn familiar_names_are_dockers_however_typed() {
        let familiar = |s: &str| s.parse::<Reference>().unwrap().familiar_tagged().unwrap();
        for (typed, shown) in [
            ("ubuntu", "ubuntu:latest"),
            ("docker.io/library/ubuntu:22.04", "ubuntu:22.04"),
            ("index.docker.io/user/app:1", "user/app:1"),
            ("ghcr.io/a/b:t", "ghcr.io/a/b:t"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
        ] {
            assert_eq!(familiar(typed), shown, "{typed}");
        }
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(full("ubuntu"), "docker.io/library/ubuntu:latest");
        assert_eq!(
            full("frolvlad/alpine-glibc"),
            "docker.io/frolvlad/alpine-glibc:latest"
        );
        assert_eq!(full("ghcr.io/org/img:1.0"), "ghcr.io/org/img:1.0");
        assert_eq!(full("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        let d = Digest::of(b"x");
        assert_eq!(full(&format!("a@{d}")), format!("docker.io/library/a@{d}"));
        assert_eq!(
            full(&format!("a:t@{d}")),
            format!("docker.io/library/a:t@{d}")
        );
        let r: Reference = "this-is-a-test".parse().unwrap();
        assert_eq!(r.familiar_tagged().unwrap(), "this-is-a-test:latest");
    }

    /// Found by the `reference` fuzz target (its assumption, not a bug
    /// here): a reference without a tag prints with `latest`, so printing
    /// is a fixed point, not parsing.
    #[test]
    fn printing_is_a_fixed_point() {
        let pinned = format!("ghcr.io/o/i:v1@sha256:{}", "ab".repeat(32));
        for typed in [
            "docker.io/library/busybox",
            "busybox",
            "localhost:5000/a/b",
            &pinned,
        ] {
            let printed = typed.parse::<Reference>().unwrap().to_string();
            assert_eq!(printed.parse::<Reference>().unwrap().to_string(), printed);
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "UPPER",
            "a:",
            "a:b:c",
            "a@sha256:12",
            "-a",
            "a//b",
            ":tag",
        ] {
            let err = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(err.contains("expected NAME"), "{bad}: {err}");
        }
    }
}
