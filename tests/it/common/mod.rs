//! Integration-test harness: real external tools, isolated per test.
//!
//! Every test may run in parallel with every other (`cargo test` default), so
//! nothing here shares mutable state between tests: each helper works in the
//! caller's temp dirs, each [`Podman`] has its own storage, and servers are
//! killed by PID. Every external command runs with a timeout.
//!
//! # Finding tools: skip or fail
//! - [`tool`]`(name) -> Option<PathBuf>`: an executable on `PATH`. When it is
//!   missing it prints `skipping: NAME not found ...` and returns `None`, or
//!   panics naming the apt package when `CONDA_DOCKER_REQUIRE_TOOLS=1` (CI).
//!   `busybox` only counts when statically linked (package `busybox-static`).
//! - [`require_tools!`]`("podman", "skopeo")`: returns early from the test
//!   when any tool is missing (after printing why). Use it as
//!   `common::require_tools!(...)`.
//! - [`skip_or_panic`]`(msg)`: the same policy for other missing prerequisites.
//! - [`expect_tool`]`(name) -> PathBuf`: panics when missing (for helpers).
//! - [`is_root`]`()`: whether we run as root (CI does).
//!
//! # Running commands
//! - [`run`]`(&mut Command) -> Output`: 120 s timeout ([`DEFAULT_TIMEOUT`]);
//!   panics with command line, exit status, stdout and stderr on failure.
//! - [`run_unchecked`]: same, but returns the `Output` whatever the status.
//! - [`run_timeout`], [`run_unchecked_timeout`]: with an explicit timeout.
//! - [`stdout`]`(&Output) -> String`: lossy UTF-8 stdout.
//! - [`unique_name`]`(prefix)`: a lowercase name unique in this run (image
//!   names, repositories, tags).
//!
//! # Fixtures
//! - [`busybox_rootfs`]`(dir)`: `bin/busybox` + relative applet symlinks
//!   ([`BUSYBOX_APPLETS`]), `etc/passwd`, `etc/group`; everything owned by
//!   [`FIXTURE_UID`]:[`FIXTURE_GID`] (when root) with fixed, differing mtimes
//!   ([`FIXTURE_MTIMES`]), so tests can prove owners/mtimes are normalised.
//! - [`legacy_conda_docker_tar`]`(out, layer_dir) -> Option<()>`: a legacy
//!   docker v1 tar written by the real Python conda-docker 0.0.3 (venv built
//!   once under `target/tmp`); [`legacy_conda_docker_tar_layers`] for several
//!   layers and a chosen name/tag. `None` = skipped (no python3/pip).
//!
//! # Independent consumers and producers
//! - [`skopeo_inspect`]`(reference, extra) -> serde_json::Value`, e.g.
//!   `skopeo_inspect(&format!("docker-archive:{}", p.display()), &["--raw"])`.
//! - [`skopeo_copy`]`(src, dst, extra)` (always `--insecure-policy`).
//! - [`umoci_unpack`]`(layout, tag, bundle)`: checks digests while unpacking.
//! - [`umoci_layout_from_rootfs`]`(rootfs, layout, tag)`: an OCI layout written
//!   by umoci (`init`/`new`/`unpack`/`repack`: `umoci insert` writes a
//!   truncated layer tar in 0.4.7).
//! - [`Podman`]: `new()` (overlay storage) / `with_driver("vfs")` ->
//!   `Option<Podman>`; `command()`, `load(tar) -> String` (image name or id),
//!   `run(image, args) -> String` (stdout, always `--rm --network none`),
//!   `run_output(flags, image, args) -> Output` (unchecked), `pull(reference,
//!   extra) -> String` (image id), `inspect(image) -> Value`,
//!   `docker_service() -> Option<DockerService>`. Each instance keeps its
//!   storage, runtime dir, locks and network config in its own temp dir, and
//!   runs `podman system reset` on drop. Root only (skips otherwise).
//! - [`DockerService`]: a `podman system service` on a unix socket, killed by
//!   PID on drop; `docker() -> Command` (DOCKER_HOST set), `load(tar)`,
//!   `run(image, args)` mirroring [`Podman`].
//!
//! # Conda packages and environments (offline)
//! - [`CondaChannel`]`::build(dir) -> Option<CondaChannel>`: a local channel
//!   of real `.conda`/`.tar.bz2` packages ([`ALL_PACKAGES`]: [`CD_TEXT`],
//!   [`CD_BINARY`], [`CD_LINK`], [`PYTHON`] (a stand-in), [`CD_NOARCH`],
//!   [`CD_LEAF`]) with `repodata.json`; `None` (skip printed) without gcc,
//!   which builds `cd-binary`. `build_without_binary(dir)` needs no tool.
//!   `.records`, `.record(name)`, `.archive(name)`, `.url()`,
//!   `.with_dependencies(names)`. Relocatable files embed [`PLACEHOLDER`];
//!   [`cd_show_output`]`(prefix)` / [`cd_binary_output`]`(prefix)` are what
//!   the relocated programs print.
//! - [`install_env`]`(&channel, names, `[`CacheLayout`]`, root) -> `[`CondaEnv`]:
//!   real rattler linking into `root/env` from a rattler cache
//!   (`root/rattler-cache`) or a conda-style pkgs dir (`root/pkgs`, with a
//!   conda-style `conda-meta/`); [`install_env_at`] picks both paths.
//! - [`explicit_file`]`(records, path)`: an `@EXPLICIT` file as
//!   `conda list --explicit --md5` writes it.
//! - [`write_pixi_lock`]`(path, subdir, environments, channel_url, records)`:
//!   a `pixi.lock` written by rattler_lock for one platform; each
//!   environment uses `channel_url`, the first locks `records`.
//! - [`HostilePackage`]`::new(work, name)`: a package folder whose files,
//!   symlinks and `paths.json`/`index.json`/`link.json` the test writes as
//!   it likes; [`hostile_channel`]`(dir, packages)` archives and
//!   indexes them with true hashes. [`Canary`]: a folder outside the build
//!   whose `assert_untouched()` proves nothing was written, changed or
//!   removed there; `climb(file)` is a `../…` path that lands in it.
//! - [`CondaChannel`]`::build_multi_platform(dir) -> CondaChannel` (no tool
//!   needed): `linux-64/`, `linux-aarch64/` and `noarch/`, each with a
//!   `repodata.json` ([`MULTI_PLATFORM_SUBDIRS`]). Each arch subdir holds
//!   [`CD_ARCH`] 1.0 (depends `cd-lib >=1`, `cd-data`; `bin/cd-arch` prints
//!   the subdir, [`cd_arch_output`], and so does [`CD_ARCH_ELF`], a static
//!   ELF of the subdir's architecture written by hand), [`CD_LIB`] 1.0 and 2.0
//!   ([`CD_LIB_VERSIONS`], [`cd_lib_version_text`]) and a [`PYTHON`]
//!   stand-in; `noarch/` holds [`CD_DATA`] (`noarch: generic`) and
//!   [`CD_NOARCH`]. `::build_three_platform(dir)` adds `linux-ppc64le/`
//!   with the same packages ([`THREE_ARCH_SUBDIRS`]). Names repeat across
//!   subdirs, so pick records with
//!   `.record_in(subdir, name)` (highest version), `.record_version(subdir,
//!   name, version)`, `.records_in(subdir)`, `.with_dependencies_in(subdir,
//!   names)`; `.record(name)` panics when the name is ambiguous. For any
//!   channel: `.subdirs()`, `.repodata(subdir) -> Value`, and as the
//!   repodata lists them `CondaChannel::sha256_of(record)`, `md5_of`,
//!   `relative_path(record)` (`SUBDIR/FILE`), `package_url(base, record)`,
//!   `archive_of(record)` (the file on disk).
//! - [`PyRattlerSolve`]`{channels, specs, platforms, cache_dir, install}.run()
//!   -> Option<Result<Vec<`[`SolvedRecord`]`>, String>>`: an independent
//!   client, py-rattler ([`PY_RATTLER_REQUIREMENT`], venv built once under
//!   `target/tmp`; [`py_rattler_python`]) solving against channel URLs
//!   (`http://`, `file://`) with fixed Linux virtual packages, optionally
//!   installing the solution for `platforms[0]`. `None` = skipped (no
//!   python3/pip), `Err(status, stdout, stderr)` = py-rattler failed (no
//!   solution, a download failing its sha256 check: `Invalid checksum`).
//!
//! # PyPI wheels and a real CPython
//! - [`vanilla_cpython`]`() -> Option<`[`CPython`]`>`: the machine's
//!   vanilla CPython 3.11 (pyenv's; not Debian's, whose `site.py` uses
//!   `dist-packages`): `python3`'s `sys.base_prefix`, else
//!   `~/.pyenv/versions/3.11.*`; `None` after a skip (a failure under
//!   `CONDA_DOCKER_REQUIRE_TOOLS=1`). `.home`, `.short`, `.version`,
//!   `.include()`, `.tag()` (`cp311`).
//! - [`cpython_channel`]`(&cpython, dir)`: that CPython as the linux-64
//!   conda package `python` (interpreter, libpython, the stdlib without
//!   tests/byte code/GUI modules, site-packages with pip only; the
//!   interpreter carries the build prefix as a binary placeholder) plus
//!   `repodata.json`; [`channel_records`]`(dir, url)`
//!   reads its records as served at `url`.
//! - [`glibc_base`]`(dir, binaries) -> Image`: busybox plus the host's
//!   glibc loader and every library `ldd` lists for `binaries`, at the
//!   paths `ldd` names; [`python_binaries`]`(&cpython)` lists the
//!   interpreter, libpython and extension modules.
//! - [`write_wheel`]`(dir, (name, version, tag), files, entry_points) ->
//!   (path, sha256)`: a real wheel (zip) with `METADATA`, `WHEEL`,
//!   `entry_points.txt` and a true `RECORD`; [`WheelFile`] is one file.
//! - [`write_pixi_lock_v6`]`(path, channel_url, records, pypi)`: a v6
//!   `pixi.lock` (environment `default`, linux-64) written as text, with
//!   conda `records` and [`PypiEntry`]s (any location: wheel or sdist URL,
//!   git URL, path; sha256 optional).
//!
//! # Servers on loopback
//! - [`LoopbackServer`]`::serve(max_connections, handler)`: binds a free
//!   127.0.0.1 port and runs `handler(stream, &stop)` on its own thread for
//!   each connection (at most `max_connections` when `Some`); `port()`,
//!   `host()`. Drop stops and joins it like a [`ChannelServer`]. The base
//!   of [`ChannelServer`] and of the hostile registry in
//!   `security_images.rs`.
//!
//! # Serving a channel over HTTP
//! - [`ChannelServer`]`::serve(root) -> ChannelServer`: a std-only static
//!   file server on a free 127.0.0.1 port (an accept thread, a thread per
//!   connection; `GET`/`HEAD`, `Content-Length`, 404 for anything not a
//!   file under `root`, `Connection: close`, no `Range`). `url()`
//!   (`http://127.0.0.1:PORT/`), `host()`, `port()`, `root()`.
//! - Observe: `requests() -> Vec<(method, path, status)>` (path as sent,
//!   recorded before the answer is written), `downloads(suffix)` (200 `GET`s
//!   whose path ends with `suffix`, e.g. `".conda"`).
//! - Fault injection: `corrupt(path_suffix)` serves matching files with
//!   their middle byte flipped (same length, wrong sha256), `restore(
//!   path_suffix)` undoes it.
//! - Drop sets a stop flag, wakes `accept` with a connection, shuts down
//!   open connections and joins every thread.
//!
//! # Faults on loopback
//! - [`FaultProxy`]`::start(upstream)`: an HTTP proxy on 127.0.0.1 in front
//!   of `upstream` (`HOST:PORT`), one request per connection; `host()`,
//!   `inject(method, path_contains, `[`Fault`]`, times)` (`Reset`,
//!   `Truncate`, `Flip`, `Stall(d)`, `Status(n)`, `TooMany(retry_after)`,
//!   `Redirect(base)`), `clear()`, `injected()`.
//! - [`FailingStore`]`::start(status)`: answers everything with `status`
//!   (a redirect target that fails); `base()`, `authorized()`.
//!
//! # Registries on loopback
//! - [`Registry`]: a real `docker-registry` on a free 127.0.0.1 port, its
//!   config, storage, logs and keys in a fresh dir under the caller's dir,
//!   killed by PID on drop. `plain(dir)`, `basic(dir, user, password)`
//!   (htpasswd, bcrypt), `tls_basic(dir, user, password)` (self-signed for
//!   127.0.0.1/localhost + htpasswd), `token(dir, user, password)` (bearer
//!   tokens from a token service the harness runs on another port: valid
//!   credentials get what they ask, anonymous `pull` only, wrong ones 401;
//!   OAuth2 POST with `grant_type=password` or `refresh_token` =
//!   `identity_token()`) -> `Option<Registry>` (`None` = skipped: no
//!   docker-registry / htpasswd / openssl).
//! - Where: `host()` (`127.0.0.1:PORT`), `image(name)` (`HOST/name`),
//!   `reference(name)` (`docker://HOST/name`), `scheme()`, `cert_dir()`
//!   (TLS: a dir with `ca.crt`), `credentials()`, `creds()` (`user:pass`),
//!   `token_host()`, `token_realm()`, `dir()`.
//! - Flags: `tls_flags(prefix)` (`--{prefix}tls-verify=false` or
//!   `--{prefix}cert-dir DIR`), `flags(prefix)` (+ `--{prefix}creds`),
//!   `skopeo_dest_flags()`, `skopeo_src_flags()`, `client_flags()` (skopeo
//!   inspect, podman pull); `docker_config(identity) -> Value` (a
//!   `config.json`/`--authfile` with `auth`, or `identitytoken`).
//! - Use: `push(src, name)` (skopeo copy), `try_push(src, name, flags) ->
//!   Output` (unchecked), `inspect(name, extra) -> Value`.
//! - Observe: `requests() -> Vec<`[`RegistryRequest`]`>` (method, path with
//!   query, status, user agent; from the access log, readiness probes left
//!   out), `served(method, path, status)`, `log()`, `tokens_issued()`,
//!   `tokens() -> Vec<`[`IssuedToken`]`>` (grant, subject, granted scopes, the token).
//! - [`Netns`]`::create()` (root and `ip`, else skipped): a network
//!   namespace at `address()` (`10.200.N.2`) joined by a veth pair, deleted
//!   on drop; [`NetnsRegistry`]`::start(netns, dir, port, tls)`: a registry
//!   in it, off loopback (`host()`, `cert_dir()`, `requests()`).
//! - [`RecordingProxy`]`::start(route)`: a host of its own on loopback that
//!   records each request's method, path and `Authorization` (`seen()`),
//!   then redirects it or forwards it to a registry ([`Route`]), optionally
//!   with its own login and the answer's upload `Location` moved elsewhere.
//! - [`http_request`]`(host, method, path, headers, body) -> `[`HttpResponse`]:
//!   one plain HTTP/1.1 exchange (registry or token service);
//!   [`parse_access_log_line`], [`base64_encode`], [`base64url`],
//!   [`base64_decode`]; [`TOKEN_SERVICE`], [`TOKEN_ISSUER`], [`IDENTITY_TOKEN`].
//!
//! Helpers that need a tool (`skopeo_*`, `umoci_*`, [`busybox_rootfs`]) panic
//! when it is missing: guard the test with [`require_tools!`] first.

// Each test file uses only some helpers (and re-exports); the rest would
// warn as dead code or unused imports.
#![allow(dead_code, unused_imports)]

mod conda;
mod elf;
mod faults;
mod hostile;
mod legacy;
mod netns;
mod oci;
mod podman;
mod process;
mod proxy;
mod pypi;
mod pyrattler;
mod registry;
mod rootfs;
mod serve;
mod tools;
mod venv;
pub use venv::Venv;

pub use conda::{
    ALL_PACKAGES, ARCH_SUBDIRS, CD_ARCH, CD_ARCH_ELF, CD_BINARY, CD_DATA, CD_LEAF, CD_LIB,
    CD_LIB_VERSIONS, CD_LINK, CD_NOARCH, CD_TEXT, CacheLayout, CondaChannel, CondaEnv,
    MULTI_PLATFORM_PACKAGES, MULTI_PLATFORM_SUBDIRS, PACKAGES_WITHOUT_BINARY, PLACEHOLDER, PYTHON,
    THREE_ARCH_SUBDIRS, cd_arch_output, cd_binary_output, cd_lib_version_text, cd_show_output,
    explicit_file, install_env, install_env_at, sha256_file_hex, sha256_hex, write_pixi_lock,
};
pub use faults::{FailingStore, Fault, FaultProxy};
pub use hostile::{Canary, HostilePackage, hostile_channel};
pub use legacy::{legacy_conda_docker_tar, legacy_conda_docker_tar_layers};
pub use netns::{Netns, NetnsRegistry};
pub use oci::{skopeo_copy, skopeo_inspect, umoci_layout_from_rootfs, umoci_unpack};
pub use podman::{DockerService, Podman};
pub use process::{
    DEFAULT_TIMEOUT, isolated_conda_docker, run, run_timeout, run_unchecked, run_unchecked_timeout,
    stderr, stdout, unique_name,
};
pub use proxy::{RecordingProxy, Route, Seen};
pub use pypi::{
    CPython, PypiEntry, WheelFile, channel_records, cpython_channel, glibc_base, python_binaries,
    vanilla_cpython, write_pixi_lock_v6, write_wheel,
};
pub use pyrattler::{PY_RATTLER_REQUIREMENT, PyRattlerSolve, SolvedRecord, py_rattler_python};
pub use registry::*;
pub use rootfs::{BUSYBOX_APPLETS, FIXTURE_GID, FIXTURE_MTIMES, FIXTURE_UID, busybox_rootfs};
pub use serve::*;
pub use tools::{REQUIRE_TOOLS_ENV, expect_tool, is_root, skip_or_panic, tool};

/// Returns early from the calling test when any listed tool is missing.
///
/// All tools are checked (not just the first missing one), so the printed
/// reason names everything the machine lacks in one go.
macro_rules! require_tools {
    ($($name:expr),+ $(,)?) => {
        let mut missing = false;
        $( missing |= $crate::common::tool($name).is_none(); )+
        if missing {
            return;
        }
    };
}
pub(crate) use require_tools;
