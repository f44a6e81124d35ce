//! Where images come from and go to, named with skopeo's transports.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::oci_layout::{self, Store};
use super::tar_index::TarIndex;
use super::{Image, ImageError, docker_archive, legacy};
use crate::platform::Platform;
use crate::reference::Reference;

/// An image to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// No layers: `scratch`.
    Scratch,
    /// `docker-archive:PATH`: `docker save` output (or the legacy v1 layout).
    DockerArchive(PathBuf),
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick.
        tag: Option<String>,
    },
    /// `oci-archive:PATH[:TAG]`: an OCI image layout in a tar.
    OciArchive {
        /// The tar file.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick.
        tag: Option<String>,
    },
    /// A bare path: a directory is an OCI layout, a tar is sniffed.
    Path(PathBuf),
    /// `docker://REF`, or a bare reference that is not a path: an image in
    /// a registry (`debian:stable-slim`, `ghcr.io/org/img@sha256:...`).
    Registry(Reference),
}

/// An image output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageDestination {
    /// `docker-archive:PATH`: loadable by `docker load` and `podman load`.
    DockerArchive(PathBuf),
    /// `oci:DIR[:TAG]`: an OCI layout directory (created, or added to).
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The tag to record.
        tag: Option<String>,
    },
    /// `oci-archive:PATH[:TAG]`: an OCI layout as a tar.
    OciArchive {
        /// The tar file.
        path: PathBuf,
        /// The tag to record.
        tag: Option<String>,
    },
}

impl ImageDestination {
    /// The file or directory written.
    pub fn path(&self) -> &Path {
        match self {
            ImageDestination::DockerArchive(path) => path,
            ImageDestination::Oci { dir, .. } => dir,
            ImageDestination::OciArchive { path, .. } => path,
        }
    }
}

fn with_tag(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    path: &Path,
    tag: &Option<String>,
) -> fmt::Result {
    write!(f, "{kind}:{}", path.display())?;
    match tag {
        Some(tag) => write!(f, ":{tag}"),
        None => Ok(()),
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Scratch => write!(f, "scratch"),
            ImageSource::DockerArchive(path) => write!(f, "docker-archive:{}", path.display()),
            ImageSource::Oci { dir, tag } => with_tag(f, "oci", dir, tag),
            ImageSource::OciArchive { path, tag } => with_tag(f, "oci-archive", path, tag),
            ImageSource::Path(path) => write!(f, "{}", path.display()),
            ImageSource::Registry(reference) => write!(f, "docker://{reference}"),
        }
    }
}

impl fmt::Display for ImageDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageDestination::DockerArchive(path) => write!(f, "docker-archive:{}", path.display()),
            ImageDestination::Oci { dir, tag } => with_tag(f, "oci", dir, tag),
            ImageDestination::OciArchive { path, tag } => with_tag(f, "oci-archive", path, tag),
        }
    }
}

/// `PATH[:TAG]` split at the first colon, as skopeo does.
fn path_and_tag(rest: &str) -> (PathBuf, Option<String>) {
    match rest.split_once(':') {
        Some((path, tag)) if !tag.is_empty() => (PathBuf::from(path), Some(tag.to_owned())),
        Some((path, _)) => (PathBuf::from(path), None),
        None => (PathBuf::from(rest), None),
    }
}

impl FromStr for ImageSource {
    type Err = ImageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ImageError::BadSource(text.to_owned());
        if text == "scratch" {
            return Ok(ImageSource::Scratch);
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            return match rest {
                "" => Err(bad()),
                _ => Ok(ImageSource::DockerArchive(rest.into())),
            };
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            let (dir, tag) = path_and_tag(rest);
            return if rest.is_empty() {
                Err(bad())
            } else {
                Ok(ImageSource::Oci { dir, tag })
            };
        }
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            let (path, tag) = path_and_tag(rest);
            return if rest.is_empty() {
                Err(bad())
            } else {
                Ok(ImageSource::OciArchive { path, tag })
            };
        }
        if let Some(rest) = text.strip_prefix("docker://") {
            return Ok(ImageSource::Registry(rest.parse()?));
        }
        if text.is_empty() {
            return Err(bad());
        }
        if Path::new(text).exists() || looks_like_path(text) {
            return Ok(ImageSource::Path(text.into()));
        }
        text.parse().map(ImageSource::Registry).map_err(|_| bad())
    }
}

impl FromStr for ImageDestination {
    type Err = ImageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ImageError::BadDestination(text.to_owned());
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "docker-archive" => Ok(ImageDestination::DockerArchive(rest.into())),
            "oci" => {
                let (dir, tag) = path_and_tag(rest);
                Ok(ImageDestination::Oci { dir, tag })
            }
            "oci-archive" => {
                let (path, tag) = path_and_tag(rest);
                Ok(ImageDestination::OciArchive { path, tag })
            }
            _ => Err(bad()),
        }
    }
}

/// Whether a string that names no existing file is still meant as one
/// (so a typo in a path is reported as a missing file, not a failed pull).
fn looks_like_path(text: &str) -> bool {
    text.starts_with(['/', '.', '~'])
        || [".tar", ".tgz", ".tar.gz"]
            .iter()
            .any(|ext| text.ends_with(ext))
}

/// Opens a docker-archive. Docker 25 and this tool put an OCI layout
/// beside `manifest.json`; its manifest is the image's exact one
/// (annotations, media types), so it is read when it is whole, else
/// `manifest.json` is (or a legacy `repositories`).
fn open_docker_archive(index: TarIndex, platform: &Platform) -> Result<Image, ImageError> {
    if index.contains("manifest.json") {
        if index.contains("index.json")
            && index.contains("oci-layout")
            && let Ok(image) = oci_layout::read(Store::Tar(index.clone()), None, platform)
        {
            return Ok(image);
        }
        docker_archive::read(&index)
    } else if index.contains("repositories") {
        legacy::read(&index)
    } else {
        Err(ImageError::NotAnImage {
            path: index.path().to_owned(),
            reason: "it has no manifest.json or repositories (not a docker-archive)".into(),
        })
    }
}

/// Opens a tar whose kind is judged from its members.
fn open_tar(path: &Path, tag: Option<&str>, platform: &Platform) -> Result<Image, ImageError> {
    let index = TarIndex::open(path)?;
    if index.contains("manifest.json") || index.contains("repositories") {
        open_docker_archive(index, platform)
    } else if index.contains("index.json") {
        oci_layout::read(Store::Tar(index), tag, platform)
    } else {
        Err(ImageError::NotAnImage {
            path: path.to_owned(),
            reason: "it has no manifest.json, repositories or index.json".into(),
        })
    }
}

impl ImageSource {
    /// Reads the image from its file or folder (linux/amd64 from a
    /// multi-platform one).
    pub fn open(&self) -> Result<Image, ImageError> {
        self.open_local(&Platform::default())
    }

    /// Reads the image from its file or folder, taking `platform` from a
    /// multi-platform one. The image model never reaches the network: a
    /// registry reference is [`ImageError::InRegistry`], opened by
    /// `registry::open` instead.
    pub fn open_local(&self, platform: &Platform) -> Result<Image, ImageError> {
        tracing::info!("opening {self}");
        match self {
            ImageSource::Scratch => Image::scratch(),
            ImageSource::DockerArchive(path) => {
                open_docker_archive(TarIndex::open(path)?, platform)
            }
            ImageSource::Oci { dir, tag } => {
                oci_layout::read(Store::Dir(dir.clone()), tag.as_deref(), platform)
            }
            ImageSource::OciArchive { path, tag } => {
                oci_layout::read(Store::Tar(TarIndex::open(path)?), tag.as_deref(), platform)
            }
            ImageSource::Path(path) if path.is_dir() => {
                oci_layout::read(Store::Dir(path.clone()), None, platform)
            }
            ImageSource::Path(path) if path.is_file() => open_tar(path, None, platform),
            ImageSource::Path(path) => Err(ImageError::Read {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            }),
            ImageSource::Registry(reference) => Err(ImageError::InRegistry(reference.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        assert_eq!(
            "scratch".parse::<ImageSource>().unwrap(),
            ImageSource::Scratch
        );
        assert_eq!(
            "oci:/a/b:v1".parse::<ImageSource>().unwrap(),
            ImageSource::Oci {
                dir: "/a/b".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci-archive:x.tar".parse::<ImageDestination>().unwrap(),
            ImageDestination::OciArchive {
                path: "x.tar".into(),
                tag: None
            }
        );
        assert!("docker-archive:".parse::<ImageSource>().is_err());
        let err = "Not An Image!".parse::<ImageSource>().unwrap_err();
        assert!(err.to_string().contains("an image reference"), "{err}");
        let err = "docker://UPPER/x".parse::<ImageSource>().unwrap_err();
        assert!(err.to_string().contains("expected NAME[:TAG]"), "{err}");
        assert!(matches!(
            "debian:stable-slim".parse::<ImageSource>().unwrap(),
            ImageSource::Registry(_)
        ));
        assert!(matches!(
            "./base.tar".parse::<ImageSource>().unwrap(),
            ImageSource::Path(_)
        ));
        assert!("tarball:x".parse::<ImageDestination>().is_err());
        assert!("x.tar".parse::<ImageDestination>().is_err());
    }
}
