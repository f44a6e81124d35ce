//! Config edits, annotations and every way to add a layer, as container
//! tools see them; and the `modify_image` example end to end.

use std::fs;

use crate::common::{self, Podman, require_tools};
use crate::fixtures::{busybox_base, example};

#[test]
fn config_edits_reach_the_container() {
    require_tools!("busybox", "podman", "runc", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let mut image = busybox_base(dir.path());

    // A layer from a ready tar stream, made here by the tar crate.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "work/from-tar", &b"tarred"[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    image
        .add_layer_tar(&tar[..], "test: add_layer_tar")
        .unwrap();

    let config = image.config_mut();
    config.set_entrypoint(Some(vec!["/bin/sh".into(), "-c".into()]));
    config.set_cmd(Some(vec!["echo cmd ran".into()]));
    config.set_working_dir("/work");
    config.set_user("1000:1000");
    config.set_label("org.example.team", "data");
    config.add_exposed_port("8080");
    config.add_volume("/data");
    config.set_stop_signal("SIGINT");
    config.set_env("GREETING", "hi");
    config.set_env("GREETING", "hello");
    image.add_annotation(
        "org.opencontainers.image.source",
        "https://example.invalid/repo",
    );
    let name = common::unique_name("cd-edits");
    image.set_name(&name).unwrap();

    let tar_path = dir.path().join("edits.tar");
    image.write_file(&tar_path).unwrap();
    let podman = Podman::new().unwrap();
    podman.load(&tar_path);
    let out = podman.run(&name, &["pwd; id -u; echo $GREETING; cat from-tar"]);
    assert_eq!(out, "/work\n1000\nhello\ntarred");
    let out = podman.run(&name, &[]);
    assert_eq!(out, "cmd ran\n");
    let inspect = podman.inspect(&name);
    let config = &inspect["Config"];
    assert_eq!(config["Labels"]["org.example.team"], "data");
    assert_eq!(config["StopSignal"], "SIGINT");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert!(config["Volumes"].get("/data").is_some(), "{config}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        env.iter().filter(|e| e.starts_with("GREETING=")).count(),
        1,
        "{env:?}"
    );

    let layout = dir.path().join("layout");
    image
        .write(&format!("oci:{}:edits", layout.display()))
        .unwrap();
    let raw = common::skopeo_inspect(&format!("oci:{}:edits", layout.display()), &["--raw"]);
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.source"],
        "https://example.invalid/repo"
    );
    let config = common::skopeo_inspect(&format!("oci:{}:edits", layout.display()), &["--config"]);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["created_by"], "test: add_layer_tar");
    assert_eq!(history.len(), image.layers().len());
}

#[test]
fn modify_image_example_matches_the_original_readme() {
    require_tools!("busybox", "podman", "runc");
    let dir = tempfile::tempdir().unwrap();
    let mut base = busybox_base(dir.path());
    base.add_layer_contents([("removed/by/example", b"top layer".as_slice())])
        .unwrap();
    let base_tar = dir.path().join("base.tar");
    base.write_file(&base_tar).unwrap();

    let cwd = dir.path().join("project");
    fs::create_dir_all(&cwd).unwrap();
    fs::write(cwd.join("app.py"), "print('hi')\n").unwrap();
    let out = dir.path().join("out.tar");
    common::run(
        example("modify_image")
            .current_dir(&cwd)
            .arg(format!("docker-archive:{}", base_tar.display()))
            .arg(&out),
    );

    let podman = Podman::new().unwrap();
    let loaded = podman.load(&out);
    assert!(loaded.ends_with("this-is-a-test:latest"), "{loaded}");
    let out = podman.run(
        "this-is-a-test:latest",
        &["sh", "-c", "cat /this/is/a/test1; echo; cat /this/is/a/test2; echo; echo $FOO; cat /app.py; test -e /removed || echo removed"],
    );
    assert_eq!(
        out,
        "this is test 1\nthis is test 2\nBAR\nprint('hi')\nremoved\n"
    );
}
