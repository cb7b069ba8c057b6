//! A real etcd for ledger tests: Debian's etcd-server on loopback or in a namespace, with its
//! own data directory.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::{in_netns, names, within};

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
        self.child = Some(child);
        // Ready when it answers on its client port.
        let addr: std::net::SocketAddr = self.client_url.trim_start_matches("http://").parse()?;
        for _ in 0..100 {
            // Probe from the namespace etcd runs in: its address means nothing elsewhere.
            let probe = move || {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100))
                    .is_ok()
            };
            let up = match &self.ns {
                Some(ns) => within(ns, probe)?,
                None => probe(),
            };
            if up {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bail!("etcd did not start on {}", self.client_url)
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
