//! A real etcd for ledger tests: Debian's etcd-server on loopback or in a namespace, with its
//! own data directory.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};

use crate::{in_netns, names, wait, within};

/// How long etcd may take to answer after it is started: about a second on this kind of machine;
/// the margin is for a loaded machine and for emulated kernels.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a probe waits for a connection: loopback or one veth away, an etcd that listens
/// accepts at once.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// How long an HTTP request to etcd may take: its answers are small and local.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// A real etcd server on loopback with its own data directory, stopped and removed on drop.
pub struct Etcd {
    child: Option<std::process::Child>,
    pub client_url: String,
    peer_url: String,
    name: String,
    dir: PathBuf,
    /// The namespace etcd runs in (None: the test's own, on loopback).
    ns: Option<String>,
}

impl Etcd {
    /// Starts etcd (Debian's etcd-server) on two free loopback ports.
    pub fn start() -> anyhow::Result<Self> {
        let free = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let name = names::unique_name("etcd");
        let mut etcd = Self {
            child: None,
            client_url: format!("http://127.0.0.1:{}", free()?),
            peer_url: format!("http://127.0.0.1:{}", free()?),
            dir: names::scratch(&name),
            name,
            ns: None,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// Starts etcd inside namespace `ns`, listening on `ip` (an address of that namespace).
    pub fn start_in(ns: &str, ip: &str) -> anyhow::Result<Self> {
        let name = names::unique_name("etcd");
        let mut etcd = Self {
            child: None,
            client_url: format!("http://{ip}:2379"),
            peer_url: format!("http://{ip}:2380"),
            dir: names::scratch(&name),
            name,
            ns: Some(ns.to_owned()),
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    fn log_path(&self) -> PathBuf {
        names::scratch(&format!("{}.log", self.name))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log_path())?;
        let mut command = Command::new("etcd");
        if let Some(ns) = &self.ns {
            in_netns(&mut command, ns)?;
        }
        let child = command
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.client_url,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
            ])
            .args([
                "--initial-cluster",
                &format!("{}={}", self.name, self.peer_url),
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("etcd (apt package etcd-server) must be installed")?;
        let log = self.log_path();
        let child = self.child.insert(child);
        // Ready when it answers on its client port.
        let addr: std::net::SocketAddr = self.client_url.trim_start_matches("http://").parse()?;
        let ns = self.ns.as_deref();
        wait::until(
            START_TIMEOUT,
            &format!("etcd to answer on {}", self.client_url),
            || {
                if let Some(status) = child.try_wait()? {
                    bail!("etcd exited ({status}); see {}", log.display());
                }
                // Probe from the namespace etcd runs in: its address means nothing elsewhere.
                let probe = move || TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok();
                Ok(match ns {
                    Some(ns) => within(ns, probe)?,
                    None => probe(),
                })
            },
            |&up| up,
        )?;
        Ok(())
    }

    /// How many watches etcd holds (its `etcd_debugging_mvcc_watcher_total` gauge): a watch
    /// counts from the moment etcd has registered it, before any event reaches the watcher.
    pub fn watchers(&self) -> anyhow::Result<u64> {
        let metrics = self.http_get("/metrics")?;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
            .context("etcd reports no etcd_debugging_mvcc_watcher_total")
    }

    /// The body of `GET <path>` on etcd's client URL (which serves HTTP/1 besides gRPC), asked
    /// from the namespace etcd runs in.
    fn http_get(&self, path: &str) -> anyhow::Result<String> {
        let addr: SocketAddr = self.client_url.trim_start_matches("http://").parse()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let get = move || -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
            stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
            stream.write_all(request.as_bytes())?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        };
        let response = match &self.ns {
            Some(ns) => within(ns, get)?,
            None => get(),
        }
        .with_context(|| format!("GET {}{path}", self.client_url))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("GET {}{path}: not an HTTP response", self.client_url))?;
        ensure!(
            head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"),
            "GET {}{path}: {}",
            self.client_url,
            head.lines().next().unwrap_or_default()
        );
        Ok(body.to_owned())
    }

    /// Kills etcd as a crash would, keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.log_path());
    }
}
