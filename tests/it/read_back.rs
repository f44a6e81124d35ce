//! `packages`, `lock` and `diff`: an image's conda environments read back
//! from its layers (whiteouts and opaque folders applied), for our images
//! and for one whose prefix a single foreign layer holds, as a Dockerfile
//! running micromamba would make it.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use conda_docker::Image;
use serde_json::Value;

use crate::common::{
    self, CacheLayout, ChannelServer, CondaChannel, Registry, install_env, require_tools,
};
use crate::fixtures::{busybox_base, conda_docker, failure};

struct Scene {
    dir: tempfile::TempDir,
    server: ChannelServer,
    base: PathBuf,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
        let server = ChannelServer::serve(&channel.dir);
        let base = dir.path().join("base.tar");
        busybox_base(&dir.path().join("base"))
            .write_file(&base)
            .unwrap();
        Scene { dir, server, base }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cd(&self) -> Command {
        let mut cmd = conda_docker();
        let home = self.path("home");
        cmd.env("HOME", &home)
            .env("CONDA_DOCKER_CACHE_DIR", home.join("cd-cache"))
            .env("RATTLER_CACHE_DIR", home.join("rattler"));
        cmd
    }

    /// `build SPECS` (solved from the served channel) onto the busybox
    /// base into the OCI layout `out`; returns its `oci:` source.
    fn build(&self, out: &str, specs: &[&str]) -> String {
        let url = self.server.url();
        let mut args = vec!["--override-channels", "-c", &url];
        args.extend(specs);
        self.build_with(out, &args)
    }

    /// `build ARGS` onto the busybox base into the OCI layout `out`.
    fn build_with(&self, out: &str, args: &[&str]) -> String {
        let layout = format!("oci:{}", self.path(out).display());
        common::run(
            self.cd()
                .args(["build", "-q"])
                .arg("-b")
                .arg(format!("docker-archive:{}", self.base.display()))
                .args(["-o", &layout])
                .args(args),
        );
        layout
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&common::run(self.cd().args(args)).stdout).unwrap()
    }

    /// The stdout of `ARGS` and of `ARGS --read-layers`, which must be the
    /// same bytes.
    fn same_either_way(&self, args: &[&str]) -> Vec<u8> {
        let annotated = common::run(self.cd().args(args)).stdout;
        let read = common::run(self.cd().args(args).arg("--read-layers")).stdout;
        assert_eq!(
            String::from_utf8_lossy(&annotated),
            String::from_utf8_lossy(&read),
            "{args:?}"
        );
        annotated
    }

    /// Rewrites the manifest of the OCI layout `out` (as `build` made it)
    /// with `edit`, and points its index.json at the new one.
    fn edit_manifest(&self, out: &str, edit: impl FnOnce(&mut Value)) {
        let dir = self.path(out);
        let index_path = dir.join("index.json");
        let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
        let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        let blobs = dir.join("blobs/sha256");
        let blob = blobs.join(old.trim_start_matches("sha256:"));
        let mut manifest: Value = serde_json::from_slice(&fs::read(blob).unwrap()).unwrap();
        edit(&mut manifest);
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let hex = common::sha256_hex(&bytes);
        fs::write(blobs.join(&hex), &bytes).unwrap();
        index["manifests"][0]["digest"] = format!("sha256:{hex}").into();
        index["manifests"][0]["size"] = bytes.len().into();
        fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    }
}

/// The records annotation of our package layers.
const RECORDS: &str = "org.conda-docker.records";

/// The blob files, in the OCI layout `out`, of the layers with a records
/// annotation.
fn annotated_blobs(s: &Scene, source: &str, out: &str) -> Vec<PathBuf> {
    Image::open(source)
        .unwrap()
        .layers()
        .iter()
        .filter(|l| l.annotations().contains_key(RECORDS))
        .map(|l| s.path(out).join("blobs/sha256").join(l.digest().hex()))
        .collect()
}

/// `name-version-build` of every package `packages --json` lists, by prefix.
fn dists(listing: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for env in listing.as_array().unwrap() {
        for p in env["packages"].as_array().unwrap() {
            out.insert(format!(
                "{} {}-{}-{}",
                env["prefix"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["build"].as_str().unwrap()
            ));
        }
    }
    out
}

/// The digests of the layers that say which packages they hold.
fn package_layers(source: &str) -> Vec<String> {
    let image = Image::open(source).unwrap();
    image
        .layers()
        .iter()
        .filter(|l| l.annotations().contains_key("org.conda-docker.packages"))
        .map(|l| l.digest().to_string())
        .collect()
}

#[test]
fn an_image_lists_its_packages_and_locks_to_the_same_layers() {
    let s = Scene::new();
    let first = s.build("first", &["cd-arch"]);
    let listing = s.json(&["packages", "--json", &first]);
    let expected: BTreeSet<String> = ["cd-arch-1.0-0", "cd-data-1.0-0", "cd-lib-2.0-0"]
        .iter()
        .map(|d| format!("/opt/conda {d}"))
        .collect();
    assert_eq!(dists(&listing), expected);
    // Each package's record comes in the layer that says it holds it.
    let image = Image::open(&first).unwrap();
    for p in listing[0]["packages"].as_array().unwrap() {
        let layer = &image.layers()[p["layer_index"].as_u64().unwrap() as usize];
        assert_eq!(p["layer"], layer.digest().to_string());
        let holds = &layer.annotations()["org.conda-docker.packages"];
        assert!(holds.starts_with(p["name"].as_str().unwrap()), "{holds}");
        assert!(p["sha256"].as_str().is_some_and(|h| h.len() == 64), "{p}");
    }
    let table = String::from_utf8(common::run(s.cd().args(["packages", &first])).stdout).unwrap();
    assert!(
        table.starts_with("# /opt/conda (3 packages)\nNAME "),
        "{table}"
    );

    // The lock file builds the same package layers.
    let lock = s.path("image.lock");
    common::run(s.cd().args(["lock", &first, "-o"]).arg(&lock));
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(
        text.contains("@EXPLICIT\n") && text.contains("#sha256:"),
        "{text}"
    );
    let again = s.build_with("again", &["--file", lock.to_str().unwrap()]);
    assert_eq!(package_layers(&again), package_layers(&first));
    let yml = s.path("image.yml");
    common::run(
        s.cd()
            .args(["lock", &first, "--format", "environment", "-o"])
            .arg(&yml),
    );
    let yml = std::fs::read_to_string(&yml).unwrap();
    assert!(yml.contains("::cd-lib=2.0=0\"\n"), "{yml}");
}

#[test]
fn whiteouts_hide_records_and_diff_counts_what_changed() {
    let s = Scene::new();
    let first = s.build("first", &["cd-arch"]);
    // A layer on top deleting one record, as `RUN conda remove` would.
    let mut image = Image::open(&first).unwrap();
    image
        .add_layer_contents([("opt/conda/conda-meta/.wh.cd-data-1.0-0.json", b"")])
        .unwrap();
    let removed = format!("oci:{}", s.path("removed").display());
    image.write(&removed).unwrap();
    let listing: Value =
        serde_json::from_slice(&s.same_either_way(&["packages", "--json", &removed])).unwrap();
    assert!(!dists(&listing).iter().any(|d| d.contains("cd-data")));
    assert_eq!(dists(&listing).len(), 2);

    let diff = s.json(&["diff", "--json", &first, &removed]);
    assert_eq!(diff["changes"].as_array().unwrap().len(), 1, "{diff}");
    assert_eq!(diff["changes"][0]["change"], "removed");
    assert_eq!(diff["changes"][0]["dist"], "cd-data-1.0-0");
    let layers = Image::open(&first).unwrap().layers().len();
    assert_eq!(diff["shared_layers"], layers);

    // An opaque conda-meta/ hides every record below it.
    let mut image = Image::open(&first).unwrap();
    image
        .add_layer_contents([("opt/conda/conda-meta/.wh..wh..opq", b"")])
        .unwrap();
    let opaque = format!("oci:{}", s.path("opaque").display());
    image.write(&opaque).unwrap();
    for extra in [&[][..], &["--read-layers"]] {
        let err = failure(s.cd().args(["packages", &opaque]).args(extra));
        assert!(err.contains("holds no conda environment"), "{err}");
    }

    let other = s.build("other", &["cd-arch", "cd-lib<2"]);
    let text =
        String::from_utf8(common::run(s.cd().args(["diff", &first, &other])).stdout).unwrap();
    assert!(
        text.contains("~ /opt/conda cd-lib-2.0-0 -> cd-lib-1.0-0"),
        "{text}"
    );
}

#[test]
fn a_foreign_prefix_is_read_and_several_need_a_choice() {
    let s = Scene::new();
    let channel = CondaChannel::build_without_binary(&s.path("fixture"));
    let env = install_env(&channel, &["cd-leaf"], CacheLayout::Rattler, &s.path("env"));
    // One plain layer holding a whole prefix, at two places.
    let mut image = busybox_base(&s.path("base2"));
    image.add_layer_path(&env.prefix, "/srv/env", None).unwrap();
    image
        .add_layer_path(&env.prefix, "/opt/other", None)
        .unwrap();
    let foreign = format!("oci:{}", s.path("foreign").display());
    image.write(&foreign).unwrap();
    let listing = s.json(&["packages", "--json", &foreign]);
    let prefixes: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["/opt/other", "/srv/env"]);
    assert_eq!(dists(&listing).len(), 2 * env.records.len());

    let out = s.path("foreign.lock");
    let err = failure(s.cd().args(["lock", &foreign, "-o"]).arg(&out));
    assert!(
        err.contains("/opt/other, /srv/env") && err.contains("--prefix"),
        "{err}"
    );
    assert!(!out.exists());
    common::run(
        s.cd()
            .args(["lock", &foreign, "--prefix", "/srv/env", "-o"])
            .arg(&out),
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains("#sha256:")).count(),
        env.records.len(),
        "{text}"
    );
    let err = failure(
        s.cd()
            .args(["lock", &foreign, "--prefix", "/nope", "-o"])
            .arg(&out),
    );
    assert!(err.contains("no conda environment at /nope"), "{err}");
}

/// Issue 18: "Our own layers say which packages they hold in an
/// annotation, so ours need no unpacking". What `packages`, `lock` and
/// `diff` print from the annotations is what reading every layer gives,
/// byte for byte, and the annotated layers' blobs are never opened.
#[test]
fn annotated_layers_are_not_unpacked_and_read_the_same() {
    let s = Scene::new();
    let first = s.build("first", &["cd-arch"]);
    let other = s.build("other", &["cd-arch", "cd-lib<2"]);
    let listing = s.same_either_way(&["packages", "--json", &first]);
    s.same_either_way(&["packages", &first]);
    s.same_either_way(&["diff", "--json", &first, &other]);
    s.same_either_way(&["diff", &first, &other]);
    for format in ["explicit", "environment"] {
        let (a, b) = (s.path("a.lock"), s.path("b.lock"));
        common::run(
            s.cd()
                .args(["lock", &first, "--format", format, "-o"])
                .arg(&a),
        );
        common::run(
            s.cd()
                .args(["lock", &first, "--format", format, "--read-layers", "-o"])
                .arg(&b),
        );
        assert_eq!(
            fs::read_to_string(a).unwrap(),
            fs::read_to_string(b).unwrap()
        );
    }
    let image = Image::open(&first).unwrap();
    let annotated = annotated_blobs(&s, &first, "first");
    assert_eq!(annotated.len(), 3, "one layer per package");
    let value: Value = serde_json::from_str(&image.layers()[1].annotations()[RECORDS]).unwrap();
    assert_eq!(value["prefix"], "/opt/conda", "{value}");
    assert!(
        value["packages"][0]["record"]["sha256"].is_string(),
        "{value}"
    );

    // With those blobs' bytes gone (zeros of the same size, in a new file:
    // the layout shares the cached blobs' inodes), the read is the same;
    // reading every layer needs them.
    for blob in &annotated {
        let size = fs::metadata(blob).unwrap().len() as usize;
        fs::remove_file(blob).unwrap();
        fs::write(blob, vec![0; size]).unwrap();
    }
    let output = common::run(s.cd().args(["packages", "--json", &first]));
    assert_eq!(output.stdout, listing);
    let err = failure(s.cd().args(["packages", "--json", "--read-layers", &first]));
    assert!(err.contains("cannot read layer"), "{err}");
}

/// An annotation is the image's claim: one that is not what we write is a
/// warning and its layer is read; one that lies is believed (and
/// `--read-layers` is the way not to).
#[test]
fn a_hostile_records_annotation_is_a_warning_and_its_layer_is_read() {
    let s = Scene::new();
    let first = s.build("first", &["cd-arch"]);
    let expected = common::run(s.cd().args(["packages", "--json", "--read-layers", &first])).stdout;
    let huge = format!(
        "{{\"prefix\":\"/opt/conda\",\"x\":\"{}\"}}",
        "x".repeat(600 << 10)
    );
    let no_record = r#"{"prefix":"/opt/conda","packages":[{"conda_meta":"x.json","record":{}}]}"#;
    for bad in [
        "42",
        "{",
        "[]",
        huge.as_str(),
        r#"{"prefix":"/opt/../etc","packages":[]}"#,
        r#"{"prefix":"/opt/conda","packages":[{"conda_meta":"../x.json","record":{}}]}"#,
        no_record,
    ] {
        s.edit_manifest("first", |m| {
            for layer in m["layers"].as_array_mut().unwrap() {
                if layer["annotations"][RECORDS].is_string() {
                    layer["annotations"][RECORDS] = bad.into();
                }
            }
        });
        let output = common::run(s.cd().args(["packages", "--json", &first]));
        let log = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.stdout, expected, "{bad:.60}\n{log}");
        assert_eq!(
            log.matches("annotation is not used").count(),
            3,
            "{bad:.60}\n{log}"
        );
        assert!(!log.contains("panicked"), "{log}");
    }
    // A layer that claims to hold no records is believed.
    s.edit_manifest("first", |m| {
        for layer in m["layers"].as_array_mut().unwrap() {
            if layer["annotations"][RECORDS].is_string() {
                layer["annotations"][RECORDS] = r#"{"prefix":"/opt/conda","packages":[]}"#.into();
            }
        }
    });
    let err = failure(s.cd().args(["packages", &first]));
    assert!(err.contains("holds no conda environment"), "{err}");
    let output = common::run(s.cd().args(["packages", "--json", "--read-layers", &first]));
    assert_eq!(output.stdout, expected);
}

/// Issue 18: "reading only the layers it needs", from a registry: the
/// manifest and config first, then only the layers without a records
/// annotation. Each read starts with an empty blob store.
#[test]
fn a_registry_image_is_read_without_pulling_its_annotated_layers() {
    require_tools!("docker-registry");
    let s = Scene::new();
    let Some(registry) = Registry::plain(&s.path("registry")) else {
        return;
    };
    let mut pushed = Vec::new();
    for (out, specs) in [
        ("first", &["cd-arch"][..]),
        ("other", &["cd-arch", "cd-lib<2"]),
    ] {
        let layout = s.build(out, specs);
        let reference = registry.image(&format!("rb/{out}:1"));
        common::run(
            s.cd()
                .args(["copy", "-q", &layout, &format!("docker://{reference}")]),
        );
        pushed.push((layout, reference));
    }
    let [(first, a), (_, b)] = &pushed[..] else {
        unreachable!()
    };
    let annotated: Vec<String> = Image::open(first)
        .unwrap()
        .layers()
        .iter()
        .filter(|l| l.annotations().contains_key(RECORDS))
        .map(|l| format!("/v2/rb/first/blobs/{}", l.digest()))
        .collect();
    assert_eq!(annotated.len(), 3);
    let blob_gets = |since: usize| -> Vec<String> {
        registry.requests()[since..]
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
            .map(|r| r.path.clone())
            .collect()
    };
    let mut fresh = 0;
    let mut read = |args: &[&str]| {
        fresh += 1;
        let since = registry.requests().len();
        let mut cmd = s.cd();
        cmd.env("CONDA_DOCKER_CACHE_DIR", s.path(&format!("reader-{fresh}")));
        let output = common::run(cmd.args(args));
        (output.stdout, blob_gets(since))
    };

    let (listing, gets) = read(&["packages", "--json", a]);
    assert!(
        !gets.is_empty(),
        "the base and the environment layer are pulled"
    );
    for path in &annotated {
        assert!(!gets.contains(path), "{path} pulled: {gets:#?}");
    }
    let (all, gets) = read(&["packages", "--json", "--read-layers", a]);
    assert_eq!(
        String::from_utf8_lossy(&listing),
        String::from_utf8_lossy(&all)
    );
    for path in &annotated {
        assert!(gets.contains(path), "{path} not pulled: {gets:#?}");
    }
    let listing: Value = serde_json::from_slice(&listing).unwrap();
    assert_eq!(dists(&listing).len(), 3, "{listing:#}");

    let (diff, gets) = read(&["diff", "--json", a, b]);
    assert!(gets.iter().all(|p| !annotated.contains(p)), "{gets:#?}");
    assert_eq!(diff, read(&["diff", "--json", "--read-layers", a, b]).0);
    let (annotated_lock, all_lock) = (s.path("a.lock"), s.path("b.lock"));
    let gets = read(&["lock", a, "-o", annotated_lock.to_str().unwrap()]).1;
    assert!(gets.iter().all(|p| !annotated.contains(p)), "{gets:#?}");
    read(&["lock", a, "--read-layers", "-o", all_lock.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(annotated_lock).unwrap(),
        fs::read_to_string(all_lock).unwrap()
    );
}
