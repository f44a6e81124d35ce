//! A second network namespace with an address of its own, joined to ours
//! by a veth pair, and `docker-registry` servers inside it: registries that
//! are not on loopback, for the rule that those are spoken to only over
//! verified TLS unless `--insecure`.
//!
//! Needs root and `ip` (iproute2). Addresses are `10.200.N.1` (our end)
//! and `10.200.N.2` (the namespace's), `N` from the process id, so test
//! runs side by side do not meet. The namespace (and with it both veth
//! ends) is deleted on drop; the servers are killed by their PIDs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::process::run;
use super::registry::{RegistryRequest, parse_access_log_line, self_signed_cert};
use super::tools::{expect_tool, is_root, skip_or_panic, tool};

/// A network namespace with the address [`Netns::address`].
pub struct Netns {
    ip: PathBuf,
    name: String,
    host_link: String,
    octet: usize,
}

impl Netns {
    /// Creates the namespace and its veth pair; `None` (skip printed, or a
    /// panic when tools are required) without root or `ip`.
    pub fn create() -> Option<Netns> {
        if !is_root() {
            skip_or_panic("a network namespace needs root");
            return None;
        }
        let ip = tool("ip")?;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let octet = 20 + (std::process::id() as usize * 7 + n) % 200;
        let netns = Netns {
            name: format!("cdk-{}-{n}", std::process::id()),
            host_link: format!("cdkh{octet}"),
            octet,
            ip,
        };
        let peer = format!("cdkp{octet}");
        // A pair left by a run that was killed would be in the way.
        let _ = Command::new(&netns.ip)
            .args(["link", "del", &netns.host_link])
            .stderr(Stdio::null())
            .status();
        netns.ip(&["netns", "add", &netns.name]);
        netns.ip(&[
            "link",
            "add",
            &netns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        netns.ip(&["link", "set", &peer, "netns", &netns.name]);
        netns.ip(&[
            "addr",
            "add",
            &format!("10.200.{octet}.1/30"),
            "dev",
            &netns.host_link,
        ]);
        netns.ip(&["link", "set", &netns.host_link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns.name, "ip"];
            all.extend_from_slice(args);
            netns.ip(&all);
        };
        inside(&["addr", "add", &format!("10.200.{octet}.2/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        Some(netns)
    }

    fn ip(&self, args: &[&str]) {
        run(Command::new(&self.ip).args(args));
    }

    /// The namespace's address, `10.200.N.2`.
    pub fn address(&self) -> String {
        format!("10.200.{}.2", self.octet)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end inside it, and so
        // the pair; the explicit delete covers a half-made one.
        let _ = Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new(&self.ip)
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

/// A `docker-registry` listening on `ADDRESS:port` inside a [`Netns`],
/// plain HTTP or TLS with a self-signed certificate for that address;
/// no auth. Killed by its PID on drop.
pub struct NetnsRegistry {
    child: Child,
    root: PathBuf,
    host: String,
    cert_dir: Option<PathBuf>,
}

impl NetnsRegistry {
    /// Starts it under `dir` (needs `docker-registry`, and `openssl` for
    /// TLS: guard the test with `require_tools!`).
    pub fn start(netns: &Netns, dir: &Path, port: u16, tls: bool) -> NetnsRegistry {
        let registry = expect_tool("docker-registry");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let host = format!("{}:{port}", netns.address());
        let mut config = json!({
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": false}},
            "storage": {"filesystem": {"rootdirectory": dir.join("data")}},
            "http": {"secret": "any", "addr": host},
        });
        let mut cert_dir = None;
        if tls {
            let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
            let address = netns.address();
            self_signed_cert(
                &key,
                &cert,
                &format!("/CN={address}"),
                Some(&format!("subjectAltName=IP:{address}")),
            );
            let certs = dir.join("certs");
            std::fs::create_dir_all(&certs).unwrap();
            std::fs::copy(&cert, certs.join("ca.crt")).unwrap();
            config["http"]["tls"] = json!({"certificate": cert, "key": key});
            cert_dir = Some(certs);
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
        let child = Command::new(&netns.ip)
            .args(["netns", "exec", &netns.name])
            .arg(registry)
            .arg("serve")
            .arg(&config_path)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("access.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("start docker-registry in the namespace");
        let started = NetnsRegistry {
            child,
            root: dir.to_owned(),
            host,
            cert_dir,
        };
        started.wait_listening();
        started
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let listening = format!("listening on {}", self.host);
        while !self.log().contains(&listening) {
            assert!(
                Instant::now() < deadline,
                "docker-registry on {} did not start:\n{}",
                self.host,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ADDRESS:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A folder holding its certificate as `ca.crt` (TLS only).
    pub fn cert_dir(&self) -> Option<&Path> {
        self.cert_dir.as_deref()
    }

    /// Every request its access log shows.
    pub fn requests(&self) -> Vec<RegistryRequest> {
        std::fs::read_to_string(self.root.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(parse_access_log_line)
            .collect()
    }

    /// Its own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for NetnsRegistry {
    fn drop(&mut self) {
        // `ip netns exec` execs the registry: this PID is the registry's.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
