//! Bad input: one clear line naming the input, a non-zero exit, no panic,
//! and nothing at the output path.

use std::fs;
use std::path::Path;

use conda_docker::Image;

use crate::fixtures::{conda_docker, example, failure};

/// Writes a small valid docker-archive and an OCI layout to break.
fn good_image(dir: &Path) -> Image {
    let mut image = Image::scratch().unwrap();
    image
        .add_layer_contents([("etc/hostname", b"box\n".as_slice())])
        .unwrap();
    image.set_name("good:1").unwrap();
    image.write_file(dir.join("good.tar")).unwrap();
    image
        .write(&format!("oci:{}:good", dir.join("layout").display()))
        .unwrap();
    image
}

/// `conda-docker copy SOURCE docker-archive:OUT` must fail with a message
/// containing `expected`, and leave no OUT.
fn copy_fails(dir: &Path, source: &str, expected: &str) {
    let out = dir.join("out.tar");
    let line = failure(
        conda_docker()
            .args(["copy", source])
            .arg(format!("docker-archive:{}", out.display())),
    );
    assert!(line.contains(expected), "{line}");
    assert!(!out.exists(), "{} was left behind", out.display());
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".conda-docker"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn truncated_tar() {
    let dir = tempfile::tempdir().unwrap();
    good_image(dir.path());
    let bytes = fs::read(dir.path().join("good.tar")).unwrap();
    let cut = dir.path().join("cut.tar");
    fs::write(&cut, &bytes[..bytes.len() / 2 + 100]).unwrap();
    copy_fails(dir.path(), cut.to_str().unwrap(), "cut.tar");
}

#[test]
fn manifest_naming_a_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    good_image(dir.path());
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    let image = Image::open(&format!("oci:{}:good", layout.display())).unwrap();
    fs::remove_file(blobs.join(image.layers()[0].digest().hex())).unwrap();
    copy_fails(
        dir.path(),
        &format!("oci:{}:good", layout.display()),
        "has no blobs/sha256/",
    );

    // The same in a docker-archive: rebuild the tar without the layer.
    let src = dir.path().join("good.tar");
    let broken = dir.path().join("broken.tar");
    let mut out = tar::Builder::new(fs::File::create(&broken).unwrap());
    let mut archive = tar::Archive::new(fs::File::open(src).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry
            .path()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(&image.layers()[0].digest().hex())
        {
            continue;
        }
        let header = entry.header().clone();
        out.append(&header, &mut entry).unwrap();
    }
    out.finish().unwrap();
    drop(out);
    copy_fails(
        dir.path(),
        broken.to_str().unwrap(),
        "is incomplete: it has no blobs/sha256/",
    );
}

#[test]
fn blob_not_matching_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let image = good_image(dir.path());
    let layout = dir.path().join("layout");
    let blob = layout
        .join("blobs/sha256")
        .join(image.layers()[0].digest().hex());
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    copy_fails(
        dir.path(),
        &format!("oci:{}:good", layout.display()),
        "does not match its digest",
    );

    let config = layout
        .join("blobs/sha256")
        .join(image.config_digest().hex());
    // Same size, other bytes: a digest mismatch.
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replacen("linux", "LINUX", 1)).unwrap();
    copy_fails(
        dir.path(),
        &format!("oci:{}:good", layout.display()),
        "config does not match its digest",
    );
    // Other size: named as such.
    fs::write(&config, b"{}").unwrap();
    copy_fails(
        dir.path(),
        &format!("oci:{}:good", layout.display()),
        "config has 2 bytes, but its descriptor states",
    );
}

#[test]
fn index_without_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    good_image(dir.path());
    let source = format!("oci:{}:nope", dir.path().join("layout").display());
    copy_fails(
        dir.path(),
        &source,
        "has no image tagged `nope` (tags: good)",
    );
}

#[test]
fn tar_that_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.tar");
    let mut builder = tar::Builder::new(fs::File::create(&plain).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", &b"hi\n"[..])
        .unwrap();
    builder.finish().unwrap();
    drop(builder);
    copy_fails(
        dir.path(),
        plain.to_str().unwrap(),
        "is not an image: it has no manifest.json",
    );
    let text = dir.path().join("text.tar");
    fs::write(&text, "not a tar at all\n".repeat(100)).unwrap();
    copy_fails(
        dir.path(),
        text.to_str().unwrap(),
        "text.tar is not an image",
    );
    copy_fails(
        dir.path(),
        "/no/such/file.tar",
        "cannot read /no/such/file.tar: no such file",
    );
}

#[test]
fn add_layer_path_on_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    good_image(dir.path());
    let mut image = Image::open(dir.path().join("good.tar").to_str().unwrap()).unwrap();
    let before = image.manifest_digest();
    let err = image
        .add_layer_path(dir.path().join("missing"), "/x", None)
        .unwrap_err();
    assert!(conda_docker::error_line(&err).contains("missing"), "{err}");
    assert_eq!(
        image.manifest_digest(),
        before,
        "a failed add leaves the image as it was"
    );

    // Through the example: an output in a missing directory.
    let out = dir.path().join("no/such/dir/out.tar");
    let line = failure(
        example("modify_image")
            .current_dir(dir.path())
            .arg("good.tar")
            .arg(&out),
    );
    assert!(line.contains("no/such/dir/out.tar"), "{line}");
    assert!(!out.exists());
}

#[test]
fn remove_layer_on_scratch_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    let line = failure(example("modify_image").arg("scratch").arg(&out));
    assert!(line.contains("no layer to remove"), "{line}");
    assert!(!out.exists());
    let line = failure(conda_docker().args([
        "copy",
        "scratch",
        "docker-archive:/tmp/x.tar",
        "-i",
        "Bad Name",
    ]));
    assert!(line.contains("invalid image reference"), "{line}");
}

#[test]
fn windows_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut image = conda_docker::Image::scratch().unwrap();
    image
        .add_layer_contents([("Files/hello.txt", b"hi".as_slice())])
        .unwrap();
    image.config_mut().set_platform("windows", "amd64", None);
    let layout = dir.path().join("win");
    image.write(&format!("oci:{}:w", layout.display())).unwrap();
    copy_fails(
        dir.path(),
        &format!("oci:{}:w", layout.display()),
        "it is a windows image; only Linux images can be used",
    );
}
