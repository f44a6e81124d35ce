//! Differential test of relocation: for every package of the fixture
//! channel, the layer `conda-docker build` writes holds exactly the files,
//! symlinks, folders, executable bits and bytes that rattler's own linking
//! (`link_package_sync` into a real prefix, with the image prefix as its
//! target) gives for the same package, extracted here from its archive
//! independently of the build. The build stages with hard links and
//! streams from the cache; this checks that nothing of that shows.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use conda_docker::image::Image;
use rattler::install::{InstallOptions, PythonInfo, link_package_sync};
use rattler_conda_types::prefix::Prefix;
use rattler_conda_types::{Subdir, Version};

use crate::common::{self, ALL_PACKAGES, CacheLayout, CondaChannel, install_env};
use crate::fixtures::conda_docker;

/// The image prefix the build is given, and rattler links for.
const IMAGE_PREFIX: &str = "/opt/conda";

/// What a path holds, as both sides are compared.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File { executable: bool, bytes: Vec<u8> },
    Symlink(PathBuf),
}

#[test]
fn layers_hold_what_rattler_links() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(channel) = CondaChannel::build(&d.join("channel")) else {
        return;
    };
    let env = install_env(&channel, &ALL_PACKAGES, CacheLayout::Rattler, d);
    let out = d.join("layout");
    let mut cmd = conda_docker();
    cmd.env("HOME", d.join("home"))
        .env("CONDA_DOCKER_CACHE_DIR", d.join("cache"))
        .args([
            "build",
            "-q",
            "-b",
            "scratch",
            "--prefix-in-image",
            IMAGE_PREFIX,
        ])
        .arg("-p")
        .arg(&env.prefix)
        .arg("-o")
        .arg(format!("oci:{}", out.display()));
    common::run(&mut cmd);
    let image = Image::open(&format!("oci:{}", out.display())).unwrap();

    let mut compared = Vec::new();
    for layer in image.layers() {
        let Some(dist) = layer.annotations().get("org.conda-docker.packages") else {
            continue;
        };
        let name = &dist[..dist.rfind('-').and_then(|i| dist[..i].rfind('-')).unwrap()];
        let ours = layer_nodes(layer.uncompressed().unwrap());
        let theirs = rattler_nodes(&channel, name, &d.join("linked").join(name));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{dist}: the same paths"
        );
        for (path, node) in &theirs {
            assert_eq!(&ours[path], node, "{dist}: {}", path.display());
        }
        compared.push(name.to_owned());
    }
    compared.sort();
    let mut all = ALL_PACKAGES.map(str::to_owned).to_vec();
    all.sort();
    assert_eq!(compared, all, "every fixture package was compared");
}

/// The layer's entries below the image prefix, but the package's
/// `conda-meta` record (written fresh by the build, not linked).
fn layer_nodes(tar: impl Read) -> BTreeMap<PathBuf, Node> {
    let root = Path::new(IMAGE_PREFIX.trim_start_matches('/'));
    let mut nodes = BTreeMap::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() || rel.starts_with("conda-meta") {
            continue;
        }
        let mode = entry.header().mode().unwrap();
        let node = match entry.header().entry_type() {
            tar::EntryType::Directory => {
                assert_eq!(mode, 0o755, "{}", path.display());
                Node::Dir
            }
            tar::EntryType::Symlink => Node::Symlink(entry.link_name().unwrap().unwrap().into()),
            tar::EntryType::Regular => {
                assert!(
                    mode == 0o755 || mode == 0o644,
                    "{}: {mode:o}",
                    path.display()
                );
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                Node::File {
                    executable: mode == 0o755,
                    bytes,
                }
            }
            other => panic!("{}: unexpected {other:?}", path.display()),
        };
        nodes.insert(rel.to_owned(), node);
    }
    nodes
}

/// What rattler links for the package `name` of `channel`, extracted from
/// its archive into `work` and linked for [`IMAGE_PREFIX`].
fn rattler_nodes(channel: &CondaChannel, name: &str, work: &Path) -> BTreeMap<PathBuf, Node> {
    let package = work.join("package");
    rattler_package_streaming::fs::extract(&channel.archive(name), &package).unwrap();
    let prefix = Prefix::create(work.join("prefix")).unwrap();
    let python =
        PythonInfo::from_version(&"3.12.0".parse::<Version>().unwrap(), None, Subdir::Linux64)
            .unwrap();
    let options = InstallOptions {
        target_prefix: Some(IMAGE_PREFIX.into()),
        platform: Some(Subdir::Linux64),
        python_info: Some(python),
        allow_hard_links: Some(false),
        allow_ref_links: Some(false),
        allow_symbolic_links: Some(true),
        ..InstallOptions::default()
    };
    link_package_sync(&package, &prefix, Default::default(), options).unwrap();
    let mut nodes = BTreeMap::new();
    walk(prefix.path(), Path::new(""), &mut nodes);
    for made in ["CACHEDIR.TAG", "conda-meta"] {
        nodes.retain(|path, _| !path.starts_with(made));
    }
    nodes
}

fn walk(root: &Path, rel: &Path, nodes: &mut BTreeMap<PathBuf, Node>) {
    for entry in std::fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let node = if meta.is_symlink() {
            Node::Symlink(std::fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            walk(root, &rel, nodes);
            Node::Dir
        } else {
            Node::File {
                executable: meta.permissions().mode() & 0o111 != 0,
                bytes: std::fs::read(&path).unwrap(),
            }
        };
        nodes.insert(rel, node);
    }
}
