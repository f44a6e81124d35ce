//! Same inputs, same bytes: whatever the file system's order, mtimes or
//! owners, and whatever the temp dirs.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use conda_docker::Image;

use crate::common::{self, require_tools};
use crate::fixtures::example;

/// Creates the same tree in `root`, files made in the given order, with the
/// given mtime.
fn make_tree(root: &Path, order: &[usize], mtime: SystemTime) {
    // The deep path is longer than a tar header holds (GNU long names).
    let deep = "a/long/".repeat(20) + "deep.txt";
    let files = [
        ("b/z.txt", "z"),
        (deep.as_str(), "deep"),
        ("a/1.txt", "one"),
        ("c.bin", "\u{0}\u{1}binary"),
    ];
    for &i in order {
        let (path, content) = &files[i];
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    symlink("a/1.txt", root.join("link")).unwrap();
    fs::hard_link(root.join("a/1.txt"), root.join("b/hard.txt")).unwrap();
    if common::is_root() {
        for entry in ["a", "b/z.txt", "c.bin", "link"] {
            std::os::unix::fs::lchown(root.join(entry), Some(4321), Some(8765)).unwrap();
        }
    }
}

fn build(root: &Path) -> Image {
    let mut image = Image::scratch().unwrap();
    image.set_epoch(1_700_000_000);
    image.add_layer_path(root, "/opt/app", None).unwrap();
    image
        .add_layer_contents([("x/y", b"z".as_slice()), ("a", b"b".as_slice())])
        .unwrap();
    image.set_name("same:1").unwrap();
    image
}

#[test]
fn same_tree_gives_same_digests() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    make_tree(
        one.path(),
        &[0, 1, 2, 3],
        SystemTime::UNIX_EPOCH + Duration::from_secs(5),
    );
    make_tree(two.path(), &[3, 2, 1, 0], SystemTime::now());
    let (a, b) = (build(one.path()), build(two.path()));
    assert_eq!(a.manifest_digest(), b.manifest_digest());
    assert_eq!(a.config_digest(), b.config_digest());

    let out_a = one.path().join("out.tar");
    let out_b = two.path().join("out.tar");
    a.write_file(&out_a).unwrap();
    b.write_file(&out_b).unwrap();
    assert!(
        fs::read(out_a).unwrap() == fs::read(out_b).unwrap(),
        "archives differ"
    );
}

#[test]
fn filter_and_links_are_kept() {
    require_tools!("umoci");
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree, &[0, 1, 2, 3], SystemTime::now());
    let mut image = Image::scratch().unwrap();
    let no_bin = |p: &Path| p.extension().is_none_or(|e| e != "bin");
    image
        .add_layer_path(&tree, "/opt/app", Some(&no_bin))
        .unwrap();
    let layout = dir.path().join("layout");
    image.write(&format!("oci:{}:t", layout.display())).unwrap();
    let bundle = dir.path().join("bundle");
    common::umoci_unpack(&layout, "t", &bundle);
    let app = bundle.join("rootfs/opt/app");
    assert!(!app.join("c.bin").exists(), "the filter left c.bin out");
    assert_eq!(
        fs::read_link(app.join("link")).unwrap(),
        Path::new("a/1.txt")
    );
    use std::os::unix::fs::MetadataExt;
    let (one, hard) = (
        fs::metadata(app.join("a/1.txt")).unwrap(),
        fs::metadata(app.join("b/hard.txt")).unwrap(),
    );
    assert_eq!(one.ino(), hard.ino(), "the hardlink stayed a hardlink");
    assert_eq!((one.uid(), one.gid()), (0, 0));
}

#[test]
fn source_date_epoch_sets_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.tar");
    let mut image = Image::scratch().unwrap();
    image
        .add_layer_contents([("bottom", b"1".as_slice())])
        .unwrap();
    image
        .add_layer_contents([("top", b"2".as_slice())])
        .unwrap();
    image.write_file(&base).unwrap();
    let cwd = dir.path().join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    fs::write(cwd.join("f"), "f").unwrap();
    let out = dir.path().join("out.tar");
    let status = example("modify_image")
        .current_dir(&cwd)
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .arg(&base)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let image = Image::open(out.to_str().unwrap()).unwrap();
    let config = image.config().as_json();
    assert_eq!(config["created"], "2009-02-13T23:31:30Z");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "bottom, cwd, contents: {history:?}");
    // The base's own entry keeps its time; the two new ones get the epoch.
    assert!(
        history[1..]
            .iter()
            .all(|h| h["created"] == "2009-02-13T23:31:30Z")
    );
    let mut tar = tar::Archive::new(
        image.layers()[2]
            .blob()
            .open()
            .map(flate2::read::MultiGzDecoder::new)
            .unwrap(),
    );
    for entry in tar.entries().unwrap() {
        assert_eq!(entry.unwrap().header().mtime().unwrap(), 1_234_567_890);
    }
}
