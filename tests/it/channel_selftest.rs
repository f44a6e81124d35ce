//! Proves the multi-platform conda channel fixture and the [`ChannelServer`]
//! serving it: the bytes on the wire are the files on disk, their sha256 is
//! what the repodata lists, downloads are counted, corruption really
//! changes the bytes, and an independent conda client (py-rattler) solves
//! and installs from the channel by `http://` and by `file://` URL.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rattler_conda_types::RepoDataRecord;
use rattler_conda_types::package::IndexJson;
use rattler_package_streaming::seek::read_package_file;
use serde_json::json;

use crate::common::{
    self, ARCH_SUBDIRS, CD_ARCH, CD_DATA, CD_LIB, CD_LIB_VERSIONS, CD_NOARCH, ChannelServer,
    CondaChannel, MULTI_PLATFORM_PACKAGES, MULTI_PLATFORM_SUBDIRS, PYTHON, PyRattlerSolve,
    SolvedRecord,
};

const AARCH64: &str = "linux-aarch64";

/// Layout, repodata and contents: every subdir has a `repodata.json`, every
/// archive matches its entry, and the arch packages name their platform.
#[test]
fn channel_multi_platform_layout_and_contents() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    assert_eq!(channel.subdirs(), MULTI_PLATFORM_SUBDIRS.map(String::from));
    let names: BTreeSet<&str> = channel
        .records
        .iter()
        .map(|r| r.package_record.name.as_normalized())
        .collect();
    assert_eq!(names, MULTI_PLATFORM_PACKAGES.into());
    // 4 packages in each arch subdir (cd-lib twice), 2 in noarch.
    assert_eq!(channel.records.len(), 2 * 4 + 2);

    let url = channel.url();
    assert!(url.starts_with("file:///") && url.ends_with('/'), "{url}");
    for subdir in MULTI_PLATFORM_SUBDIRS {
        let repodata = channel.repodata(subdir);
        assert_eq!(repodata["info"]["subdir"], subdir);
        let listed = repodata["packages"].as_object().unwrap().len()
            + repodata["packages.conda"].as_object().unwrap().len();
        assert_eq!(listed, channel.records_in(subdir).len(), "{subdir}");
        for record in channel.records_in(subdir) {
            let file_name = record.identifier.to_file_name();
            let key = if file_name.ends_with(".conda") {
                "packages.conda"
            } else {
                "packages"
            };
            let entry = &repodata[key][&file_name];
            let archive = CondaChannel::archive_of(record);
            assert_eq!(archive, channel.dir.join(subdir).join(&file_name));
            let sha256 = common::sha256_file_hex(&archive);
            assert_eq!(entry["sha256"], sha256.as_str(), "{subdir}/{file_name}");
            assert_eq!(CondaChannel::sha256_of(record), sha256);
            assert_eq!(entry["md5"], CondaChannel::md5_of(record).as_str());
            assert_eq!(entry["size"], fs::metadata(&archive).unwrap().len());
            assert_eq!(entry["subdir"], subdir);
            let relative = CondaChannel::relative_path(record);
            assert_eq!(relative, format!("{subdir}/{file_name}"));
            assert_eq!(record.url.as_str(), format!("{url}{relative}"));
            assert_eq!(
                CondaChannel::package_url("http://h:1", record),
                format!("http://h:1/{relative}")
            );
            let index: IndexJson = read_package_file(&archive).unwrap();
            assert_eq!(index.subdir.as_deref(), Some(subdir));
        }
    }

    let tmp = dir.path().join("x");
    let mut arch_hashes = BTreeSet::new();
    for (subdir, arch) in ARCH_SUBDIRS.into_iter().zip(["x86_64", "aarch64"]) {
        let names: Vec<String> = channel
            .records_in(subdir)
            .iter()
            .map(|r| {
                format!(
                    "{}-{}",
                    r.package_record.name.as_normalized(),
                    r.package_record.version
                )
            })
            .collect();
        assert_eq!(
            names,
            ["cd-arch-1.0", "cd-lib-1.0", "cd-lib-2.0", "python-3.12.0"]
        );
        let cd_arch = channel.record_in(subdir, CD_ARCH);
        arch_hashes.insert(CondaChannel::sha256_of(cd_arch));
        let depends = &cd_arch.package_record.depends;
        assert_eq!(depends, &["cd-lib >=1".to_string(), CD_DATA.to_string()]);
        let index: IndexJson = read_package_file(CondaChannel::archive_of(cd_arch)).unwrap();
        assert_eq!(index.arch.as_deref(), Some(arch));
        assert_eq!(index.platform.as_deref(), Some("linux"));
        let extracted = extract(cd_arch, &tmp.join(subdir));
        assert_eq!(
            fs::read_to_string(extracted.join("share/cd-arch/platform.txt")).unwrap(),
            common::cd_arch_output(subdir)
        );
        let script = fs::read_to_string(extracted.join("bin/cd-arch")).unwrap();
        assert!(script.contains(common::PLACEHOLDER), "{script}");
        for version in CD_LIB_VERSIONS {
            let lib = channel.record_version(subdir, CD_LIB, version);
            let extracted = extract(lib, &tmp.join(subdir).join(version));
            assert_eq!(
                fs::read_to_string(extracted.join("share/cd-lib/version.txt")).unwrap(),
                common::cd_lib_version_text(version, subdir)
            );
        }
        assert_eq!(
            channel
                .record_in(subdir, CD_LIB)
                .package_record
                .version
                .to_string(),
            "2.0",
            "the highest version"
        );
        let python = extract(channel.record_in(subdir, PYTHON), &tmp.join(subdir));
        let stand_in = fs::read_to_string(python.join("bin/python3.12")).unwrap();
        assert!(stand_in.contains(subdir), "{stand_in}");
        // Both archive formats in each arch subdir.
        let formats: BTreeSet<bool> = channel
            .records_in(subdir)
            .iter()
            .map(|r| r.identifier.to_file_name().ends_with(".conda"))
            .collect();
        assert_eq!(formats.len(), 2);
    }
    assert_eq!(
        arch_hashes.len(),
        2,
        "the platforms' cd-arch archives differ"
    );

    let data: IndexJson =
        read_package_file(CondaChannel::archive_of(channel.record(CD_DATA))).unwrap();
    assert_eq!(serde_json::to_value(data.noarch).unwrap(), json!("generic"));
    assert_eq!(channel.record(CD_NOARCH).package_record.subdir, "noarch");

    // The fixture's own closure, highest versions, noarch filled in.
    let closure: Vec<String> = channel
        .with_dependencies_in(AARCH64, &[CD_ARCH, CD_NOARCH])
        .iter()
        .map(|r| {
            let p = &r.package_record;
            format!("{}/{}-{}", p.subdir, p.name.as_normalized(), p.version)
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        closure,
        [
            "linux-aarch64/cd-arch-1.0",
            "linux-aarch64/cd-lib-2.0",
            "linux-aarch64/python-3.12.0",
            "noarch/cd-data-1.0",
            "noarch/cd-noarch-1.0",
        ]
    );
}

/// `record(name)` refuses a name the channel holds several times, rather
/// than answering with one of them at random.
#[test]
#[should_panic(expected = "several \"cd-arch\" packages")]
fn channel_record_refuses_ambiguous_names() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    channel.record(CD_ARCH);
}

/// Repodata and archives over HTTP: the bytes equal the files, the sha256
/// equals the repodata's, and every request is recorded.
#[test]
fn channel_server_serves_channel_files() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let host = server.host();
    assert_eq!(server.url(), format!("http://{host}/"));

    let reply = common::http_request(&host, "GET", "/linux-aarch64/repodata.json", &[], &[]);
    assert_eq!(reply.status, 200);
    let on_disk = fs::read(channel.dir.join("linux-aarch64/repodata.json")).unwrap();
    assert_eq!(reply.body, on_disk);
    assert_eq!(
        reply.header("content-length"),
        Some(on_disk.len().to_string().as_str())
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let repodata = reply.json();
    assert_eq!(repodata["info"]["subdir"], AARCH64);

    // A .conda and a .tar.bz2, checked against the served repodata.
    let conda_name = "cd-arch-1.0-0.conda";
    let bz2_name = "cd-lib-1.0-0.tar.bz2";
    let mut fetched = Vec::new();
    for (key, file_name) in [("packages.conda", conda_name), ("packages", bz2_name)] {
        let path = format!("/{AARCH64}/{file_name}");
        let reply = common::http_request(&host, "GET", &path, &[], &[]);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(reply.body, fs::read(channel.dir.join(&path[1..])).unwrap());
        let sha256 = common::sha256_hex(&reply.body);
        assert_eq!(
            repodata[key][file_name]["sha256"],
            sha256.as_str(),
            "{path}"
        );
        assert_eq!(repodata[key][file_name]["size"], reply.body.len());
        fetched.push(reply.body);
    }
    let record = channel.record_in(AARCH64, CD_ARCH);
    assert_eq!(
        CondaChannel::sha256_of(record),
        common::sha256_hex(&fetched[0])
    );
    assert_eq!(
        CondaChannel::package_url(&server.url(), record),
        format!("{}{AARCH64}/{conda_name}", server.url())
    );

    // HEAD: the length, no body; not a download.
    let head = common::http_request(&host, "HEAD", &format!("/{AARCH64}/{conda_name}"), &[], &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(fetched[0].len().to_string().as_str())
    );

    // What is not a file under the root.
    for path in [
        "/linux-aarch64/missing.conda",
        "/linux-aarch64/",
        "/linux-aarch64/repodata.json.zst",
        "/../channel/noarch/repodata.json",
        "/noarch/%2e%2e/noarch/repodata.json",
    ] {
        let reply = common::http_request(&host, "GET", path, &[], &[]);
        assert_eq!(reply.status, 404, "{path}");
    }
    let query = common::http_request(&host, "GET", "/noarch/repodata.json?x=1", &[], &[]);
    assert_eq!(query.status, 200);
    let post = common::http_request(&host, "POST", "/noarch/repodata.json", &[], b"{}");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    assert_eq!(server.downloads(".conda"), 1);
    assert_eq!(server.downloads(".tar.bz2"), 1);
    assert_eq!(
        server.downloads("/repodata.json"),
        2,
        "the query is ignored"
    );
    assert_eq!(server.downloads(".zst"), 0, "404s are no downloads");
    let requests = server.requests();
    let expected = [
        ("GET", "/linux-aarch64/repodata.json", 200),
        ("GET", "/linux-aarch64/cd-arch-1.0-0.conda", 200),
        ("GET", "/linux-aarch64/cd-lib-1.0-0.tar.bz2", 200),
        ("HEAD", "/linux-aarch64/cd-arch-1.0-0.conda", 200),
        ("GET", "/linux-aarch64/missing.conda", 404),
        ("GET", "/linux-aarch64/", 404),
        ("GET", "/linux-aarch64/repodata.json.zst", 404),
        ("GET", "/../channel/noarch/repodata.json", 404),
        ("GET", "/noarch/%2e%2e/noarch/repodata.json", 404),
        ("GET", "/noarch/repodata.json?x=1", 200),
        ("POST", "/noarch/repodata.json", 405),
    ]
    .map(|(m, p, s)| (m.to_string(), p.to_string(), s));
    assert_eq!(requests, expected);
}

/// `corrupt` flips one byte of exactly the chosen file (same length, other
/// sha256); `restore` undoes it.
#[test]
fn channel_server_corrupts_chosen_files() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let host = server.host();
    let target = channel.record_in(AARCH64, CD_ARCH);
    let other = channel.record_in("linux-64", CD_ARCH);
    let get = |record: &RepoDataRecord| {
        let path = format!("/{}", CondaChannel::relative_path(record));
        let reply = common::http_request(&host, "GET", &path, &[], &[]);
        assert_eq!(reply.status, 200);
        reply.body
    };

    server.corrupt(&CondaChannel::relative_path(target));
    let corrupted = get(target);
    let original = fs::read(CondaChannel::archive_of(target)).unwrap();
    assert_eq!(corrupted.len(), original.len());
    let differing = corrupted
        .iter()
        .zip(&original)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 1);
    assert_ne!(
        common::sha256_hex(&corrupted),
        CondaChannel::sha256_of(target)
    );
    // The same file name in another subdir is left alone.
    assert_eq!(
        common::sha256_hex(&get(other)),
        CondaChannel::sha256_of(other)
    );
    let head = common::http_request(
        &host,
        "HEAD",
        &format!("/{}", CondaChannel::relative_path(target)),
        &[],
        &[],
    );
    assert_eq!(
        head.header("content-length"),
        Some(original.len().to_string().as_str())
    );

    server.restore(&CondaChannel::relative_path(target));
    assert_eq!(get(target), original);
    assert_eq!(
        server.downloads(".conda"),
        3,
        "a corrupted answer is a download too"
    );
}

/// Many sequential requests, concurrent clients, a client that never sends
/// its request, and a prompt stop on drop.
#[test]
fn channel_server_handles_many_clients_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let host = server.host();
    let expected = fs::read(channel.dir.join("noarch/repodata.json")).unwrap();

    // Idle and half-sent connections hold no one up.
    let idle = TcpStream::connect(&host).unwrap();
    let mut half = TcpStream::connect(&host).unwrap();
    half.write_all(b"GET /noarch/repodata.json HTTP/1.1\r\nHost: x\r\n")
        .unwrap();

    for _ in 0..30 {
        let reply = common::http_request(&host, "GET", "/noarch/repodata.json", &[], &[]);
        assert_eq!(reply.body, expected);
    }
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for subdir in MULTI_PLATFORM_SUBDIRS {
                    let path = format!("/{subdir}/repodata.json");
                    let reply = common::http_request(&host, "GET", &path, &[], &[]);
                    assert_eq!(reply.status, 200);
                    assert_eq!(reply.body, fs::read(channel.dir.join(&path[1..])).unwrap());
                }
            });
        }
    });
    assert_eq!(server.downloads("/repodata.json"), 30 + 8 * 3);

    // A raw exchange without `Connection: close`: the server closes anyway.
    let mut raw = TcpStream::connect(&host).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET /noarch/repodata.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(reply.ends_with(&expected));

    let port = server.port();
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drop took {:?} with idle connections open",
        started.elapsed()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
    // The idle clients were hung up on.
    let mut rest = Vec::new();
    half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        half.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0),
        0
    );
    drop(idle);
}

/// py-rattler solves the channel by `http://` and by `file://` URL: for
/// linux-aarch64 it picks the aarch64 packages plus noarch, the highest
/// `cd-lib` unless a spec caps it, and the hashes the repodata lists.
#[test]
fn channel_is_solvable_by_py_rattler() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    for (n, url) in [server.url(), channel.url()].iter().enumerate() {
        let solve = |specs: &[&str], platform: &str| {
            let cache = dir
                .path()
                .join(format!("cache-{n}-{}", common::unique_name("s")));
            PyRattlerSolve {
                channels: &[url],
                specs,
                platforms: &[platform, "noarch"],
                cache_dir: &cache,
                install: None,
            }
            .run()
        };
        let Some(solved) = solve(&[CD_ARCH], AARCH64) else {
            return;
        };
        let solved = solved.unwrap_or_else(|e| panic!("solve against {url}: {e}"));
        check_solution(&channel, url, &solved, AARCH64, "2.0");
        let capped = solve(&[CD_ARCH, "cd-lib <2"], AARCH64).unwrap().unwrap();
        check_solution(&channel, url, &capped, AARCH64, "1.0");
        let x86 = solve(&[CD_ARCH], "linux-64").unwrap().unwrap();
        check_solution(&channel, url, &x86, "linux-64", "2.0");
        let noarch = solve(&[CD_NOARCH], AARCH64).unwrap().unwrap();
        let got: Vec<String> = noarch
            .iter()
            .map(|r| format!("{}/{}", r.subdir, r.file_name))
            .collect();
        assert_eq!(
            got,
            [
                "noarch/cd-noarch-1.0-0.tar.bz2",
                "linux-aarch64/python-3.12.0-0.conda"
            ]
        );
        let missing = solve(&["cd-arch >=2"], AARCH64).unwrap();
        assert!(missing.is_err(), "no cd-arch 2 in the channel");
    }
    // The HTTP solves read both subdirs' repodata and fetched no archive.
    let requests = server.requests();
    for subdir in [AARCH64, "linux-64", "noarch"] {
        let path = format!("/{subdir}/repodata.json");
        assert!(
            requests
                .iter()
                .any(|(m, p, s)| m == "GET" && *p == path && *s == 200),
            "{path} not fetched: {requests:?}"
        );
    }
    assert_eq!(server.downloads(".conda") + server.downloads(".tar.bz2"), 0);
    eprintln!("py-rattler's requests: {requests:?}");
}

/// py-rattler installs the linux-aarch64 solution over HTTP (the relocated
/// script prints its platform), downloading each archive once; with one
/// archive corrupted on the wire, a fresh install refuses it. (The
/// flipped middle byte of cd-arch lands in a tar header inside it, so
/// reading the archive fails before its sha256 is compared.)
#[test]
fn channel_is_installable_by_py_rattler_and_corruption_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let channel = CondaChannel::build_multi_platform(&dir.path().join("channel"));
    let server = ChannelServer::serve(&channel.dir);
    let url = server.url();
    let install = |name: &str| {
        let prefix = dir.path().join(name).join("env");
        let result = PyRattlerSolve {
            channels: &[&url],
            specs: &[CD_ARCH],
            platforms: &[AARCH64, "noarch"],
            cache_dir: &dir.path().join(name).join("repodata-cache"),
            install: Some((&prefix, &dir.path().join(name).join("pkgs"))),
        }
        .run();
        (prefix, result)
    };
    let (prefix, result) = install("good");
    let Some(result) = result else {
        return;
    };
    let solved = result.unwrap_or_else(|e| panic!("install from {url}: {e}"));
    check_solution(&channel, &url, &solved, AARCH64, "2.0");
    let output = common::run(&mut Command::new(prefix.join("bin/cd-arch")));
    assert_eq!(common::stdout(&output), common::cd_arch_output(AARCH64));
    assert_eq!(
        fs::read_to_string(prefix.join("share/cd-lib/version.txt")).unwrap(),
        common::cd_lib_version_text("2.0", AARCH64)
    );
    assert!(prefix.join("share/cd-data/data.txt").is_file());
    assert_eq!(server.downloads(".conda"), 2, "cd-arch and cd-lib 2.0");
    assert_eq!(server.downloads(".tar.bz2"), 1, "cd-data");

    let target = channel.record_in(AARCH64, CD_ARCH);
    server.corrupt(&CondaChannel::relative_path(target));
    let (_, result) = install("corrupt");
    let error = result
        .unwrap()
        .expect_err("a corrupted archive must not install");
    assert!(
        error.contains("failed to fetch cd-arch-1.0-0.conda")
            && error.contains("when getting cksum"),
        "{error}"
    );
    assert!(server.downloads("linux-aarch64/cd-arch-1.0-0.conda") >= 2);
}

/// The py-rattler solution for `cd-arch` on `subdir`: exactly cd-arch and
/// cd-lib of `subdir` (cd-lib at `lib_version`) and noarch cd-data, with
/// the repodata's sha256 and URLs under the channel URL solved against.
fn check_solution(
    channel: &CondaChannel,
    url: &str,
    solved: &[SolvedRecord],
    subdir: &str,
    lib_version: &str,
) {
    let got: Vec<(&str, &str, &str)> = solved
        .iter()
        .map(|r| (r.name.as_str(), r.version.as_str(), r.subdir.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (CD_ARCH, "1.0", subdir),
            (CD_DATA, "1.0", "noarch"),
            (CD_LIB, lib_version, subdir)
        ],
        "against {url}"
    );
    for record in solved {
        let ours = channel.record_version(&record.subdir, &record.name, &record.version);
        assert_eq!(
            record.sha256,
            CondaChannel::sha256_of(ours),
            "{}",
            record.name
        );
        assert_eq!(record.file_name, ours.identifier.to_file_name());
        assert_eq!(record.url, CondaChannel::package_url(url, ours));
        assert_eq!(record.depends, ours.package_record.depends);
    }
}

fn extract(record: &RepoDataRecord, tmp: &Path) -> std::path::PathBuf {
    let dest = tmp.join(record.identifier.to_file_name());
    rattler_package_streaming::fs::extract(&CondaChannel::archive_of(record), &dest).unwrap();
    dest
}
