//! An isolated podman per test, and a Docker-API service on top of it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::{run, run_unchecked, run_unchecked_timeout, stdout};
use super::tools::{is_root, skip_or_panic, tool};

/// The machine needs these (no CAP_SYS_RESOURCE, hybrid cgroups, crun
/// broken, no journald): see shared/test-rig.md.
const BASE_CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"#;

/// A podman whose storage, runtime state, locks and network config all live
/// in its own temp dir, so parallel tests never see each other's images,
/// containers or networks.
///
/// Dropping it runs `podman system reset -f` (unmounts and deletes storage),
/// then removes the temp dir.
pub struct Podman {
    podman: PathBuf,
    dir: TempDir,
}

impl Podman {
    /// A podman with overlay storage; `None` (after a skip message) when
    /// podman or runc is missing or we are not root.
    ///
    /// Overlay rather than vfs: vfs copies every lower layer into each new
    /// layer, which for many-layer conda images costs ~3x the time and ~5x
    /// the disk. Use [`Podman::with_driver`]`("vfs")` to avoid host mounts.
    pub fn new() -> Option<Podman> {
        Podman::with_driver("overlay")
    }

    /// A podman using storage driver `driver` (`"overlay"` or `"vfs"`).
    pub fn with_driver(driver: &str) -> Option<Podman> {
        let podman = tool("podman")?;
        tool("runc")?;
        if !is_root() {
            skip_or_panic("podman tests need root (rootless podman is not set up here)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("podman-")
            .tempdir()
            .expect("podman temp dir");
        write_configs(dir.path(), driver);
        Some(Podman { podman, dir })
    }

    /// A `podman` command pointed at this instance's configuration.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.podman);
        let dir = self.dir.path();
        cmd.env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
            .env("TMPDIR", dir.join("tmp"));
        cmd
    }

    /// `podman load -i TAR`; returns the loaded image's name (or its id when
    /// the archive names none).
    pub fn load(&self, tar: &Path) -> String {
        let output = run(self.command().arg("load").arg("-i").arg(tar));
        loaded_image(&output)
    }

    /// `podman run --rm --network none IMAGE ARGS...`; returns stdout.
    pub fn run(&self, image: &str, args: &[&str]) -> String {
        let output = run(&mut self.run_command(&[], image, args));
        stdout(&output)
    }

    /// Like [`Podman::run`] with extra `flags` before the image (e.g.
    /// `--entrypoint`, `-e K=V`), returning the output unchecked, for tests
    /// that expect a failure or look at stderr.
    pub fn run_output(&self, flags: &[&str], image: &str, args: &[&str]) -> Output {
        run_unchecked(&mut self.run_command(flags, image, args))
    }

    /// `podman pull -q EXTRA... REFERENCE`; returns the image id. Pass
    /// `--tls-verify=false` for a plain-HTTP loopback registry.
    pub fn pull(&self, reference: &str, extra: &[&str]) -> String {
        let output = run(self
            .command()
            .args(["pull", "-q"])
            .args(extra)
            .arg(reference));
        stdout(&output).trim().to_string()
    }

    /// `podman image inspect IMAGE`, the first (only) element.
    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let output = run(self.command().args(["image", "inspect", image]));
        let all: serde_json::Value = serde_json::from_slice(&output.stdout).expect("inspect JSON");
        all[0].clone()
    }

    /// Starts `podman system service` on a socket in this instance's temp dir
    /// and waits until it answers; `None` (skip) when the docker CLI is
    /// missing.
    pub fn docker_service(&self) -> Option<DockerService<'_>> {
        let docker = tool("docker")?;
        Some(DockerService::start(self, docker))
    }

    fn run_command(&self, flags: &[&str], image: &str, args: &[&str]) -> Command {
        let mut cmd = self.command();
        cmd.args(["run", "--rm", "--network", "none"])
            .args(flags)
            .arg(image)
            .args(args);
        cmd
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Never panic here: we may already be unwinding from a failed test.
        let output = run_unchecked_timeout(
            self.command().args(["system", "reset", "--force"]),
            Duration::from_secs(60),
        );
        if !output.status.success() {
            eprintln!(
                "podman system reset failed in {}: {}",
                self.dir.path().display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Writes `containers.conf` and `storage.conf` under `dir`.
///
/// Beyond the test-rig settings, everything podman would share is moved into
/// `dir`: `tmp_dir` and `lock_type = "file"` (with the default shared
/// `/dev/shm/libpod_lock`, a fresh instance "refreshes" and frees every lock,
/// including those of instances still running in other tests), and
/// `network_config_dir` (`system reset` deletes every network it finds
/// there, which in `/etc/cni/net.d` would include a developer's own).
fn write_configs(dir: &Path, driver: &str) {
    for sub in ["tmp", "copy-tmp", "networks"] {
        std::fs::create_dir(dir.join(sub)).expect("podman sub dir");
    }
    let isolation = format!(
        "tmp_dir = {:?}\nlock_type = \"file\"\nimage_copy_tmp_dir = {:?}\n\
         [network]\nnetwork_config_dir = {:?}\n",
        dir.join("libpod"),
        dir.join("copy-tmp"),
        dir.join("networks")
    );
    let containers = format!("{BASE_CONTAINERS_CONF}{isolation}");
    let storage = format!(
        "[storage]\ndriver = {driver:?}\ngraphroot = {:?}\nrunroot = {:?}\n",
        dir.join("graph"),
        dir.join("run")
    );
    std::fs::write(dir.join("containers.conf"), containers).expect("containers.conf");
    std::fs::write(dir.join("storage.conf"), storage).expect("storage.conf");
}

/// The image named by `podman load`/`docker load`: `Loaded image: NAME` (or
/// `Loaded image(s): A,B`, of which the first).
fn loaded_image(output: &Output) -> String {
    let text = stdout(output);
    text.lines()
        .find_map(|line| line.strip_prefix("Loaded image"))
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(_, names)| names.split(',').next())
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|| panic!("no `Loaded image` line in: {text}"))
}

/// `podman system service` speaking the Docker API on a unix socket; killed
/// by its PID on drop. Borrows the [`Podman`] so it stops before the
/// storage under it is reset.
pub struct DockerService<'p> {
    podman: &'p Podman,
    docker: PathBuf,
    child: Child,
    socket: PathBuf,
}

impl<'p> DockerService<'p> {
    /// How long the service may take to answer `/_ping` after starting.
    const READY_DEADLINE: Duration = Duration::from_secs(30);

    fn start(podman: &'p Podman, docker: PathBuf) -> DockerService<'p> {
        let socket = podman.dir.path().join("podman.sock");
        let log = std::fs::File::create(podman.dir.path().join("service.log")).expect("log");
        let child = podman
            .command()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start podman system service");
        let mut service = DockerService {
            podman,
            docker,
            child,
            socket,
        };
        service.wait_ready();
        service
    }

    /// A `docker` command talking to this service, with its own (empty)
    /// client config so a developer's contexts and credentials stay out.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env(
                "DOCKER_CONFIG",
                self.podman.dir.path().join("docker-config"),
            )
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        cmd
    }

    /// `docker load -i TAR`; returns the loaded image's name or id.
    pub fn load(&self, tar: &Path) -> String {
        loaded_image(&run(self.docker().arg("load").arg("-i").arg(tar)))
    }

    /// `docker run --rm --network none IMAGE ARGS...`; returns stdout.
    pub fn run(&self, image: &str, args: &[&str]) -> String {
        let output = run(self
            .docker()
            .args(["run", "--rm", "--network", "none", image])
            .args(args));
        stdout(&output)
    }

    /// Polls `GET /_ping` until it answers `OK`; panics with the service log
    /// when the service dies or the deadline passes.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Self::READY_DEADLINE;
        while !self.ping() {
            if let Some(status) = self.child.try_wait().expect("poll service") {
                panic!("podman system service exited ({status}):\n{}", self.log());
            }
            if Instant::now() >= deadline {
                panic!("podman system service not ready in time:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let timeout = Some(Duration::from_secs(5));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        let mut reply = String::new();
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            .and_then(|()| stream.read_to_string(&mut reply))
            .is_ok_and(|_| reply.starts_with("HTTP/1.") && reply.ends_with("OK"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.podman.dir.path().join("service.log")).unwrap_or_default()
    }
}

impl Drop for DockerService<'_> {
    fn drop(&mut self) {
        // Child::kill signals exactly our child's PID; never kill by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
