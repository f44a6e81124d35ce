//! Progress of pulls and pushes (`pull`, `copy`, `build --push`) when
//! stderr is not a terminal: one line per layer, naming its digest, size
//! and what became of it; `-q` prints none. (The bars on a terminal are
//! checked by hand with `script`.)

use crate::common::{
    self, CacheLayout, CondaChannel, Registry, install_env, isolated_conda_docker, require_tools,
};
use crate::fixtures::{busybox_app, busybox_base};

/// The layer digests of `name`'s manifest in `registry`.
fn manifest_layers(registry: &Registry, name: &str) -> Vec<String> {
    registry.inspect(name, &["--raw"])["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks that `err` has exactly one `[verb i/N] DIGEST (x MB) how` line
/// per layer of `layers`, numbered 1 to N in some order, and that every
/// other line is not progress.
fn one_line_per_layer(err: &str, verb: &str, layers: &[String], how: &str) {
    let n = layers.len();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(&format!("[{verb} ")))
        .collect();
    assert_eq!(lines.len(), n, "one line per layer:\n{err}");
    let mut counts: Vec<usize> = lines
        .iter()
        .map(|l| {
            let count = l[verb.len() + 2..].split(']').next().unwrap();
            assert!(count.ends_with(&format!("/{n}")), "{l}");
            count.split('/').next().unwrap().parse().unwrap()
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "{err}");
    for digest in layers {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("] {digest} (")))
            .unwrap_or_else(|| panic!("no line for {digest}:\n{err}"));
        assert!(line.ends_with(&format!(" MB) {how}")), "{line}");
    }
}

#[test]
fn pulls_and_pushes_print_a_line_per_layer_and_nothing_with_q() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let layout = dir.path().join("app-oci");
    let app = busybox_app(&dir.path().join("app"), "app:1");
    app.write(&format!("oci:{}:app", layout.display())).unwrap();
    let source = format!("oci:{}:app", layout.display());
    let home = dir.path().join("home");

    // A push from a layout: each layer uploaded.
    let pushed = common::run(isolated_conda_docker(&home).args([
        "copy",
        &source,
        &format!("docker://{}", registry.image("prog/app:1")),
    ]));
    let layers = manifest_layers(&registry, "prog/app:1");
    assert_eq!(layers.len(), 3);
    one_line_per_layer(&common::stderr(&pushed), "push", &layers, "uploaded");

    // A pull into an empty cache downloads each layer; the next finds
    // them in the cache.
    let out = dir.path().join("pulled.tar");
    let pull = || {
        common::run(
            isolated_conda_docker(&home)
                .args(["pull", &registry.image("prog/app:1"), "-o"])
                .arg(&out),
        )
    };
    let first = common::stderr(&pull());
    one_line_per_layer(&first, "pull", &layers, "downloaded");
    assert!(
        first.lines().last().unwrap().starts_with("wrote "),
        "{first}"
    );
    one_line_per_layer(
        &common::stderr(&pull()),
        "pull",
        &layers,
        "already in the cache",
    );

    // A copy between repositories of one registry: read from the cache,
    // mounted.
    let copied = common::run(isolated_conda_docker(&home).args([
        "copy",
        &format!("docker://{}", registry.image("prog/app:1")),
        &format!("docker://{}", registry.image("prog/copy:1")),
    ]));
    one_line_per_layer(
        &common::stderr(&copied),
        "pull",
        &layers,
        "already in the cache",
    );
    one_line_per_layer(
        &common::stderr(&copied),
        "push",
        &layers,
        "mounted from another repository",
    );

    // -q: nothing on stderr, the pushed NAME@DIGEST still on stdout.
    let quiet_pull = common::run(
        isolated_conda_docker(&home)
            .args(["pull", "-q", &registry.image("prog/app:1"), "-o"])
            .arg(dir.path().join("quiet.tar")),
    );
    assert_eq!(common::stderr(&quiet_pull), "");
    let quiet_copy = common::run(isolated_conda_docker(&home).args([
        "copy",
        "-q",
        &source,
        &format!("docker://{}", registry.image("prog/quiet:1")),
    ]));
    assert_eq!(common::stderr(&quiet_copy), "");
    assert!(common::stdout(&quiet_copy).starts_with(&registry.image("prog/quiet@sha256:")));
}

#[test]
fn build_push_prints_a_line_per_layer_and_nothing_with_q() {
    require_tools!("docker-registry", "skopeo", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::plain(&dir.path().join("registry")) else {
        return;
    };
    let base = dir.path().join("base.tar");
    busybox_base(&dir.path().join("base"))
        .write_file(&base)
        .unwrap();
    let channel = CondaChannel::build_without_binary(&dir.path().join("channel"));
    let env = install_env(&channel, &["cd-text"], CacheLayout::Rattler, dir.path());
    let home = dir.path().join("home");
    let build = |name: &str, quiet: &[&str]| {
        common::run(
            isolated_conda_docker(&home)
                .env("RATTLER_CACHE_DIR", env.cache_dir.parent().unwrap())
                .args(["build", "-p"])
                .arg(&env.prefix)
                .arg("-b")
                .arg(format!("docker-archive:{}", base.display()))
                .args(["--push", "-i", &registry.image(name)])
                .args(quiet),
        )
    };
    let err = common::stderr(&build("prog/env:1", &[]));
    let layers = manifest_layers(&registry, "prog/env:1");
    assert!(layers.len() >= 3, "{layers:?}");
    one_line_per_layer(&err, "push", &layers, "uploaded");
    assert!(err.lines().last().unwrap().starts_with("pushed "), "{err}");

    let quiet = build("prog/env:2", &["-q"]);
    assert_eq!(common::stderr(&quiet), "");
    assert!(common::stdout(&quiet).starts_with(&registry.image("prog/env@sha256:")));
}
