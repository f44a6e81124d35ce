//! Hostile registries and image archives (issue 12, findings 6, 8 and 9)
//! must not exhaust memory, disk or CPU, and every layer is checked against
//! its diff id when it is read. Hostile packages, records and lock files
//! are covered by `security.rs`.
//!
//! - 6: a registry on 127.0.0.1 (a [`LoopbackServer`] here) answers with
//!   an endless or huge manifest, an oversized config, and blobs that run
//!   past their declared size; on disk, a docker-archive's `manifest.json`
//!   and an OCI layout's `index.json` and config are over their caps.
//! - 8: docker-archives whose gzip layer does not match its diff id, or is
//!   random bytes after the gzip magic, are refused by `copy` and `build`.
//! - 9: a zstd bomb (a few hundred KB claiming more than 8 GiB) as the base
//!   of a build from specs stops the glibc scan with one line.
//!
//! Each failing command must print one error line naming the input, exit
//! with 1 (not 101: no panic), and leave its cache and output small.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::{self, CondaChannel, LoopbackServer, sha256_hex};
use crate::fixtures::conda_docker;

/// The most one connection of the hostile registry sends, whatever it
/// pretends: the test must not depend on the client to stop it.
const SERVER_SEND_CAP: u64 = 256 << 20;
/// The most the hostile registry answers before it stops accepting.
const SERVER_MAX_CONNECTIONS: usize = 64;

/// What the hostile registry answers to one request.
#[derive(Clone)]
enum Reply {
    /// A complete answer with a correct `Content-Length`.
    Bytes {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// 200 and bytes (`byte` repeated) without end: with a (false)
    /// `Content-Length`, chunked, or delimited by closing the connection.
    Endless { byte: u8, framing: Framing },
}

#[derive(Clone, Copy)]
enum Framing {
    ContentLength(u64),
    Chunked,
    UntilClose,
}

type Routes = dyn Fn(&str, &str) -> Reply + Send + Sync;

/// A registry on a free 127.0.0.1 port (a [`LoopbackServer`]) that answers
/// as `routes` says, one request per connection. Bound in connections,
/// bytes sent and time (each write times out); stopped and joined on drop.
struct HostileRegistry {
    server: LoopbackServer,
    state: Arc<ServerState>,
}

struct ServerState {
    routes: Box<Routes>,
    sent: AtomicU64,
    requests: Mutex<Vec<String>>,
}

impl HostileRegistry {
    fn serve(routes: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        let state = Arc::new(ServerState {
            routes: Box::new(routes),
            sent: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let server = {
            let state = state.clone();
            LoopbackServer::serve(Some(SERVER_MAX_CONNECTIONS), move |stream, stop| {
                answer(&state, stream, stop)
            })
        };
        HostileRegistry { server, state }
    }

    fn host(&self) -> String {
        self.server.host()
    }

    /// `docker://127.0.0.1:PORT/evil:TAG`.
    fn reference(&self, tag: &str) -> String {
        format!("docker://{}/evil:{tag}", self.host())
    }

    /// `METHOD PATH` of every request, in order.
    fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Body bytes sent so far, over all connections.
    fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }
}

/// Reads one request head and writes the reply `routes` gives for it.
fn answer(state: &ServerState, stream: TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    // (The accept loop keeps a handle on each stream, so hanging up takes
    // a shutdown, not just a drop.)
    if !reader
        .fill_buf()?
        .first()
        .is_some_and(u8::is_ascii_uppercase)
    {
        // A TLS hello (the client tries HTTPS first): hang up.
        return stream.shutdown(Shutdown::Both);
    }
    let mut line = String::new();
    reader.by_ref().take(8192).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(method, "GET" | "HEAD") {
        return stream.shutdown(Shutdown::Both);
    }
    loop {
        let mut header = String::new();
        if reader.by_ref().take(8192).read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {path}"));
    let mut out = stream;
    match (state.routes)(method, path) {
        Reply::Bytes {
            status,
            content_type,
            body,
        } => {
            write!(
                out,
                "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method == "GET" {
                out.write_all(&body)?;
                state.sent.fetch_add(body.len() as u64, Ordering::SeqCst);
            }
        }
        Reply::Endless { byte, framing } => {
            let length = match framing {
                Framing::ContentLength(n) => format!("Content-Length: {n}\r\n"),
                Framing::Chunked => "Transfer-Encoding: chunked\r\n".into(),
                Framing::UntilClose => String::new(),
            };
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{length}Connection: close\r\n\r\n"
            )?;
            if method == "GET" {
                let chunk = vec![byte; 64 << 10];
                let mut sent = 0;
                while sent < SERVER_SEND_CAP && !stop.load(Ordering::SeqCst) {
                    if matches!(framing, Framing::Chunked) {
                        write!(out, "{:x}\r\n", chunk.len())?;
                    }
                    out.write_all(&chunk)?;
                    if matches!(framing, Framing::Chunked) {
                        out.write_all(b"\r\n")?;
                    }
                    sent += chunk.len() as u64;
                    state.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
        }
    }
    out.flush()?;
    out.shutdown(Shutdown::Both)
}

fn not_found() -> Reply {
    Reply::Bytes {
        status: 404,
        content_type: "application/json",
        body: br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#.to_vec(),
    }
}

fn json_reply(value: &serde_json::Value, content_type: &'static str) -> Reply {
    Reply::Bytes {
        status: 200,
        content_type,
        body: serde_json::to_vec(value).unwrap(),
    }
}

/// `conda-docker` with its cache under `home` and nothing from the host.
pub(crate) fn cd(home: &Path) -> Command {
    let mut cmd = conda_docker();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CONDA_DOCKER_CACHE_DIR", home.join("cache"))
        .env("RATTLER_CACHE_DIR", home.join("rattler"));
    cmd
}

/// Runs a command that must fail cleanly: exit code 1 (a panic is 101),
/// one `error:` line on stderr. Returns that line.
pub(crate) fn fails(cmd: &mut Command) -> String {
    let output = common::run_unchecked(cmd);
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(output.status.code(), Some(1), "{cmd:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('[')).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

/// Bytes in the files under `dir` (0 when it does not exist).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub(crate) fn config_json(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn manifest_json(
    config: &[u8],
    config_size: u64,
    layer: &str,
    layer_size: u64,
) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(config)),
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer,
            "size": layer_size,
        }],
    })
}

/// Finding 6: a manifest over 4 MiB is refused by its Content-Length
/// before any of it is read, and a chunked one (no length) once 4 MiB have
/// arrived; the 2 GB manifest of the report drove RSS to 4.2 GB.
#[test]
fn manifests_over_the_cap_are_refused_before_being_read_whole() {
    let registry = HostileRegistry::serve(|method, path| match (method, path) {
        ("GET", "/v2/") => json_reply(&json!({}), "application/json"),
        ("GET", "/v2/evil/manifests/long") => Reply::Endless {
            byte: b' ',
            framing: Framing::ContentLength(5_000_000_000),
        },
        ("GET", "/v2/evil/manifests/chunked") => Reply::Endless {
            byte: b' ',
            framing: Framing::Chunked,
        },
        _ => not_found(),
    });
    let home = tempfile::tempdir().unwrap();
    let line = fails(cd(home.path()).args(["inspect", &registry.reference("long")]));
    let host = registry.host();
    assert!(
        line.contains(&format!(
            "the manifest of tag `long` from {host}/evil:long is larger than 4 MiB, the most a manifest may have"
        )),
        "{line}"
    );
    let line = fails(cd(home.path()).args(["inspect", &registry.reference("chunked")]));
    assert!(
        line.contains(&format!(
            "the manifest of tag `chunked` from {host}/evil:chunked is larger than 4 MiB"
        )),
        "{line}"
    );
    // The client hung up after about 4 MiB (plus what the sockets buffer),
    // long before the server's own cap.
    assert!(
        registry.sent() < 64 << 20,
        "{} bytes were sent",
        registry.sent()
    );
    assert!(dir_size(&home.path().join("cache")) < 1 << 20);
}

/// Finding 6: a blob download stops as soon as it passes the size its
/// descriptor declares (the report had 2.5 GB on disk for a layer declared
/// as 1,000 bytes), whether the registry announces more with
/// Content-Length or just keeps sending; a config declared over 8 MiB is
/// not fetched at all.
#[test]
fn blobs_stop_at_their_declared_size_and_configs_are_capped() {
    let layer = format!("sha256:{}", sha256_hex(b"the layer it claims to be"));
    let config = config_json(&[format!("sha256:{}", sha256_hex(b"tar"))]);
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let routes = {
        let layer = layer.clone();
        let config = config.clone();
        let config_digest = config_digest.clone();
        move |method: &str, path: &str| -> Reply {
            let manifest = |config_size| {
                json_reply(
                    &manifest_json(&config, config_size, &layer, 1000),
                    OCI_MANIFEST,
                )
            };
            match (method, path.split_once("/v2/evil/")) {
                ("GET", None) if path == "/v2/" => json_reply(&json!({}), "application/json"),
                ("GET", Some((_, "manifests/big-config"))) => manifest(100_000_000),
                ("GET", Some((_, "manifests/until-close"))) => manifest(config.len() as u64),
                ("GET", Some((_, blob))) if blob == format!("blobs/{config_digest}") => {
                    Reply::Bytes {
                        status: 200,
                        content_type: "application/octet-stream",
                        body: config.clone(),
                    }
                }
                ("GET", Some((_, blob))) if blob == format!("blobs/{layer}") => Reply::Endless {
                    byte: 0,
                    framing: Framing::UntilClose,
                },
                _ => not_found(),
            }
        }
    };
    let registry = HostileRegistry::serve(routes);
    let host = registry.host();
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out");

    let line = fails(
        cd(home.path())
            .args(["copy", &registry.reference("until-close")])
            .arg(format!("oci:{}", out.display())),
    );
    assert!(
        line.contains(&format!(
            "layer blob {layer} from {host}/evil:until-close is larger than the 1000 bytes its descriptor declares"
        )),
        "{line}"
    );
    assert!(!out.exists(), "{} was left behind", out.display());
    let cache = home.path().join("cache");
    assert!(
        dir_size(&cache) < 1 << 20,
        "the cache holds {} bytes",
        dir_size(&cache)
    );
    assert!(
        registry.sent() < 64 << 20,
        "{} bytes were sent",
        registry.sent()
    );
    let layer_gets =
        |r: &HostileRegistry| r.requests().iter().filter(|q| q.ends_with(&layer)).count();
    assert_eq!(layer_gets(&registry), 1, "not tried again");

    let config_gets = |r: &HostileRegistry| {
        r.requests()
            .iter()
            .filter(|q| q.ends_with(&config_digest))
            .count()
    };
    let before = config_gets(&registry);
    let line = fails(cd(home.path()).args(["inspect", &registry.reference("big-config")]));
    assert!(
        line.contains(&format!(
            "config {config_digest} from {host}/evil:big-config is larger than 8 MiB, the most a config may have"
        )),
        "{line}"
    );
    assert_eq!(config_gets(&registry), before, "the config was not fetched");
    drop(registry);

    // The same blob announced with a Content-Length of 10 GB: refused
    // before a byte of it is read.
    let long = HostileRegistry::serve({
        let layer = layer.clone();
        let config = config.clone();
        let config_digest = config_digest.clone();
        move |method: &str, path: &str| match method {
            "GET" if path == "/v2/" => json_reply(&json!({}), "application/json"),
            "GET" if path == "/v2/evil/manifests/long-blob" => json_reply(
                &manifest_json(&config, config.len() as u64, &layer, 1000),
                OCI_MANIFEST,
            ),
            "GET" if path == format!("/v2/evil/blobs/{config_digest}") => Reply::Bytes {
                status: 200,
                content_type: "application/octet-stream",
                body: config.clone(),
            },
            "GET" if path == format!("/v2/evil/blobs/{layer}") => Reply::Endless {
                byte: 0,
                framing: Framing::ContentLength(10_000_000_000),
            },
            _ => not_found(),
        }
    });
    let line = fails(
        cd(home.path())
            .args(["copy", &long.reference("long-blob")])
            .arg(format!("oci:{}", out.display())),
    );
    assert!(
        line.contains(&format!(
            "layer blob {layer} from {}/evil:long-blob is larger than the 1000 bytes its descriptor declares",
            long.host()
        )),
        "{line}"
    );
    assert!(dir_size(&cache) < 1 << 20);
    assert!(!out.exists());
}

/// A docker-archive at `path` with one layer of `layer` bytes whose config
/// lists `diff_id`; returns the layer's digest. `manifest_pad` and
/// `config_pad` add that many spaces to `manifest.json` and the config.
pub(crate) fn docker_archive(
    path: &Path,
    layer: &[u8],
    diff_id: &str,
    manifest_pad: usize,
    config_pad: usize,
) -> String {
    let mut config = config_json(&[diff_id.to_owned()]);
    config.extend(std::iter::repeat_n(b' ', config_pad));
    let config_name = format!("blobs/sha256/{}", sha256_hex(&config));
    let layer_hex = sha256_hex(layer);
    let layer_name = format!("blobs/sha256/{layer_hex}");
    let mut manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["hostile:1"],
        "Layers": [layer_name],
    }]))
    .unwrap();
    manifest.extend(std::iter::repeat_n(b' ', manifest_pad));
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in [
        (config_name.as_str(), config.as_slice()),
        (layer_name.as_str(), layer),
        ("manifest.json", manifest.as_slice()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, bytes).unwrap();
    }
    tar.finish().unwrap();
    format!("sha256:{layer_hex}")
}

/// A small layer tar holding `etc/hostname`.
fn small_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    tar.append_data(&mut header, "etc/hostname", &b"box\n"[..])
        .unwrap();
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `build -q --override-channels -c CHANNEL -b docker-archive:BASE cd-data
/// -o OUT`: a build from specs, which scans the base for glibc first.
fn build_on(home: &Path, channel: &CondaChannel, base: &Path, out: &Path) -> Command {
    let mut cmd = cd(home);
    cmd.args(["build", "-q", "--override-channels", "-c"])
        .arg(channel.url())
        .arg("-b")
        .arg(format!("docker-archive:{}", base.display()))
        .arg(common::CD_DATA)
        .arg("-o")
        .arg(out);
    cmd
}

/// Finding 8: a gzip layer whose tar is not the one its diff id names, and
/// one of random bytes after the gzip magic, were accepted by `copy` (only
/// an uncompressed layer was checked). Every layer is now decompressed and
/// hashed while it is copied, by `copy` and by builds, and a mismatch names
/// the archive, the layer and both diff ids. `inspect` reads metadata only.
#[test]
fn layers_not_matching_their_diff_id_are_refused_by_copy_and_build() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let tar = small_tar();
    let claimed = format!("sha256:{}", sha256_hex(b"some other tar"));
    let actual = format!("sha256:{}", sha256_hex(&tar));

    let mismatch = dir.path().join("mismatch.tar");
    let digest = docker_archive(&mismatch, &gzip(&tar), &claimed, 0, 0);
    let mut garbage = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    garbage.extend((0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let junk = dir.path().join("garbage.tar");
    let junk_digest = docker_archive(&junk, &garbage, &actual, 0, 0);

    let layer_of = |digest: &str, archive: &Path| {
        format!(
            "layer {digest} (blobs/sha256/{} in {})",
            digest.trim_start_matches("sha256:"),
            archive.display()
        )
    };
    let out = dir.path().join("out");
    for destination in [
        format!("oci:{}", out.display()),
        format!("docker-archive:{}.tar", out.display()),
    ] {
        let line = fails(
            cd(&home)
                .arg("copy")
                .arg(format!("docker-archive:{}", mismatch.display()))
                .arg(&destination),
        );
        assert!(
            line.contains(&format!(
                "{} does not match its diff id: expected {claimed}, got {actual}",
                layer_of(&digest, &mismatch)
            )),
            "{line}"
        );
        let line = fails(
            cd(&home)
                .arg("copy")
                .arg(format!("docker-archive:{}", junk.display()))
                .arg(&destination),
        );
        assert!(
            line.contains(&format!(
                "{} is not valid gzip data",
                layer_of(&junk_digest, &junk)
            )),
            "{line}"
        );
    }
    assert!(!out.exists() && !dir.path().join("out.tar").exists());

    // `inspect` reads metadata only: it does not decompress layers.
    common::run(
        cd(&home)
            .arg("inspect")
            .arg(format!("docker-archive:{}", mismatch.display())),
    );

    // Builds: the base's layers are checked as they are written out...
    let image = dir.path().join("image.tar");
    let line = fails(&mut build_on(&home, &channel, &mismatch, &image));
    assert!(
        line.contains(&format!(
            "{} does not match its diff id: expected {claimed}, got {actual}",
            layer_of(&digest, &mismatch)
        )),
        "{line}"
    );
    // ...and the glibc scan, which reads them first, names a layer it
    // cannot read instead of taking it for "no glibc".
    let line = fails(&mut build_on(&home, &channel, &junk, &image));
    assert!(
        line.contains(&format!(
            "cannot read layer {junk_digest} of docker-archive:{}: ",
            junk.display()
        )),
        "{line}"
    );
    assert!(!image.exists());
}

/// Finding 6, on disk: a docker-archive's `manifest.json` over 4 MiB or
/// config over 8 MiB, an OCI layout's `index.json` over 4 MiB, and a
/// config whose descriptor claims more than 8 MiB are refused before they
/// are read whole.
#[test]
fn metadata_files_over_the_cap_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let tar = small_tar();
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let copy = |source: String| {
        fails(
            cd(&home)
                .arg("copy")
                .arg(source)
                .arg(format!("oci:{}", dir.path().join("out").display())),
        )
    };

    let archive = dir.path().join("big-manifest.tar");
    docker_archive(&archive, &tar, &diff_id, 5 << 20, 0);
    let line = copy(format!("docker-archive:{}", archive.display()));
    assert!(
        line.ends_with(&format!(
            "{}: manifest.json is larger than 4 MiB, the most a manifest may have",
            archive.display()
        )),
        "{line}"
    );
    let archive = dir.path().join("big-config.tar");
    docker_archive(&archive, &tar, &diff_id, 0, 9 << 20);
    let line = copy(format!("docker-archive:{}", archive.display()));
    assert!(
        line.contains("is larger than 8 MiB, the most a config may have"),
        "{line}"
    );

    // An OCI layout of the same image, then broken two ways.
    let layout = dir.path().join("layout");
    let image = conda_docker::Image::open(&format!(
        "docker-archive:{}",
        dir.path().join("big-manifest.tar").display()
    ));
    assert!(image.is_err(), "the library refuses it too");
    let mut image = conda_docker::Image::scratch().unwrap();
    image
        .add_layer_contents([("etc/hostname", b"box\n".as_slice())])
        .unwrap();
    image.write(&format!("oci:{}:t", layout.display())).unwrap();
    let index_path = layout.join("index.json");
    let index = std::fs::read(&index_path).unwrap();
    let mut padded = index.clone();
    padded.extend(std::iter::repeat_n(b' ', 5 << 20));
    std::fs::write(&index_path, &padded).unwrap();
    let line = copy(format!("oci:{}:t", layout.display()));
    assert!(
        line.ends_with(&format!(
            "{}: index.json is larger than 4 MiB, the most an image index may have",
            layout.display()
        )),
        "{line}"
    );

    // A manifest whose config descriptor claims 9 MiB.
    let mut index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let blobs = layout.join("blobs/sha256");
    let manifest_hex = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&manifest_hex)).unwrap()).unwrap();
    manifest["config"]["size"] = json!(9 << 20);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    std::fs::write(blobs.join(sha256_hex(&manifest)), &manifest).unwrap();
    index["manifests"][0]["digest"] = json!(format!("sha256:{}", sha256_hex(&manifest)));
    index["manifests"][0]["size"] = json!(manifest.len());
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let line = copy(format!("oci:{}:t", layout.display()));
    assert!(
        line.ends_with(&format!(
            "{}: config {} is larger than 8 MiB, the most a config may have",
            layout.display(),
            image.config_digest()
        )),
        "{line}"
    );
}

/// Finding 9: a zstd layer of a few hundred KB that expands to more than
/// 8 GiB (the report's 16 MB one claimed 512 GB and took 21 s of CPU) as
/// the base of a build from specs: the glibc scan stops at its bound and
/// the build fails with one line naming the base and the way around it,
/// instead of solving for a guessed glibc.
#[test]
fn a_zstd_bomb_base_stops_the_glibc_scan() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    // One tar entry claiming 16 GiB, then 66 zstd frames of 128 MiB of
    // zeros each (8.25 GiB): frames in a row decode as one stream, so the
    // zeros are compressed once.
    let mut header = tar::Header::new_gnu();
    header.set_path("usr/share/bomb").unwrap();
    header.set_size(16 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    let mut layer = zstd::encode_all(header.as_bytes().as_slice(), 1).unwrap();
    let mut zeros = zstd::Encoder::new(Vec::new(), 1).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..128 {
        zeros.write_all(&block).unwrap();
    }
    let zeros = zeros.finish().unwrap();
    for _ in 0..66 {
        layer.extend_from_slice(&zeros);
    }
    assert!(layer.len() < 1 << 20, "{} bytes", layer.len());
    let bomb = dir.path().join("bomb.tar");
    // Its real diff id would take hashing 8 GiB; the scan fails first.
    let claimed = format!("sha256:{}", sha256_hex(b"unchecked"));
    docker_archive(&bomb, &layer, &claimed, 0, 0);

    let out = dir.path().join("out.tar");
    let line = fails(&mut build_on(&home, &channel, &bomb, &out));
    assert_eq!(
        line,
        format!(
            "error: docker-archive:{}: stopped looking for glibc after 8 GiB of decompressed layer data (a bound against decompression bombs); give the base's glibc version with --virtual-package __glibc=VERSION, e.g. __glibc=2.36",
            bomb.display()
        )
    );
    assert!(!out.exists());
}
