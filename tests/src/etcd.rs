//! A real etcd for ledger tests: Debian's etcd-server on loopback or in a namespace, with its
//! own data directory.
//!
//! On loopback, etcd gets ports that were free a moment before it binds them: it has to be told
//! its URLs up front (it advertises them), and it cannot take over a socket the test bound. In
//! between, another test may take one (another etcd, or any connection that draws it as its
//! source port). No choice of ports closes that window, so the fixture makes a collision
//! harmless instead: etcd refuses to start on a taken port (it logs `address already in use`
//! and exits), and etcd counts as started only once *this* process holds the listening socket,
//! read from `/proc` (a probe that merely connected could reach another test's etcd on the same
//! port and take it for this one). A collision thus shows as an early exit, and the fixture
//! starts etcd again on fresh ports.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    TempDir, in_netns, listens_on, names,
    proto::{ETCD_CLIENT_PORT, ETCD_PEER_PORT},
    wait, within,
};

/// How many times [`Etcd::start`] draws fresh ports after finding one taken. A collision needs
/// another process to bind the very port drawn in the moment before etcd does; several in a row
/// mean something else is wrong, which should fail rather than spin.
const START_ATTEMPTS: u32 = 5;

/// How long etcd may take to serve after it is started: about a second on this kind of machine;
/// the margin is for a loaded machine and for emulated kernels.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a probe waits for a connection: loopback or one veth away, an etcd that listens
/// accepts at once.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// How long an HTTP request to etcd may take: its answers are small and local.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// What etcd logs before it exits when one of its ports is taken (Go's text for EADDRINUSE).
const PORT_TAKEN: &str = "address already in use";

/// Lines of etcd's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// A real etcd server with its own data directory, stopped and removed on drop.
pub struct Etcd {
    child: Option<Child>,
    pub client_url: String,
    peer_url: String,
    name: String,
    /// Holds the data directory and the log.
    dir: TempDir,
    /// The namespace etcd runs in (None: the test's own, on loopback).
    ns: Option<String>,
}

/// How one start of etcd ended.
enum Started {
    Serving,
    /// One of its ports was taken: nothing of this start is left behind.
    PortTaken,
}

/// What a look at a starting etcd found.
#[derive(Debug)]
enum Observed {
    /// Running, but not listening on its client port yet.
    Starting,
    /// Listening on its client port, but not healthy (yet): what its health check said.
    Unhealthy(
        #[expect(
            dead_code,
            reason = "read through Debug, in the message of a start that timed out"
        )]
        String,
    ),
    Healthy,
    Exited(ExitStatus),
}

impl Etcd {
    /// Starts etcd (Debian's etcd-server) on free loopback ports, drawing fresh ones when
    /// another process takes one first (see the module's documentation).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_drawing(free_ports)
    }

    /// [`Etcd::start`] with the loopback ports (client, peer) of each attempt drawn by `draw`:
    /// lets a test hand it a taken port and see it recover.
    pub fn start_drawing(
        mut draw: impl FnMut() -> anyhow::Result<(u16, u16)>,
    ) -> anyhow::Result<Self> {
        let mut etcd = Self::unstarted(None)?;
        for _ in 0..START_ATTEMPTS {
            let (client, peer) = draw()?;
            etcd.client_url = format!("http://127.0.0.1:{client}");
            etcd.peer_url = format!("http://127.0.0.1:{peer}");
            match etcd.spawn()? {
                Started::Serving => return Ok(etcd),
                // etcd binds before it writes any data; cleared all the same, so the next try
                // cannot find a member of the cluster this one meant to start.
                Started::PortTaken => {
                    let _ = std::fs::remove_dir_all(etcd.data_dir());
                }
            }
        }
        bail!(
            "etcd found its loopback ports taken {START_ATTEMPTS} times in a row; last try:\n{}",
            etcd.log_tail()
        )
    }

    /// Starts etcd inside namespace `ns`, listening on `ip` (an address of that namespace) on
    /// etcd's standard ports: in a namespace of the test's own, nothing else can hold them.
    pub fn start_in(ns: &str, ip: &str) -> anyhow::Result<Self> {
        let mut etcd = Self::unstarted(Some(ns))?;
        etcd.client_url = format!("http://{ip}:{ETCD_CLIENT_PORT}");
        etcd.peer_url = format!("http://{ip}:{ETCD_PEER_PORT}");
        match etcd.spawn()? {
            Started::Serving => Ok(etcd),
            Started::PortTaken => bail!(
                "etcd's ports on {ip} are taken in namespace {ns}: give etcd a namespace of its own"
            ),
        }
    }

    fn unstarted(ns: Option<&str>) -> anyhow::Result<Self> {
        let name = names::unique_name("etcd");
        Ok(Self {
            child: None,
            client_url: String::new(),
            peer_url: String::new(),
            dir: TempDir::new("etcd")?,
            name,
            ns: ns.map(str::to_owned),
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The end of etcd's log, for messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Runs etcd on the URLs set and waits until it serves them, or finds a port taken.
    fn spawn(&mut self) -> anyhow::Result<Started> {
        // Appended to, so a restart or a retry keeps the story of the runs before; this run's
        // part starts at `log_start`.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let log_start = log.metadata()?.len() as usize;
        let mut command = Command::new("etcd");
        if let Some(ns) = &self.ns {
            in_netns(&mut command, ns)?;
        }
        let child = command
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.data_dir())
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
        let (url, ns) = (self.client_url.clone(), self.ns.clone());
        let port = client_addr(&url)?.port();
        let child = self.child.insert(child);
        let pid = child.id();
        let outcome = wait::until(
            START_TIMEOUT,
            &format!("etcd to serve on {url}"),
            || {
                if let Some(status) = child.try_wait()? {
                    return Ok(Observed::Exited(status));
                }
                // Only this process's socket counts: while another process holds a port drawn
                // for this one, it answers there until this one gives up and exits.
                match listens_on(pid, port) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Observed::Starting),
                    // It may have exited between the two looks, taking its /proc entry along.
                    Err(e) => {
                        return match child.try_wait()? {
                            Some(status) => Ok(Observed::Exited(status)),
                            None => Err(e),
                        };
                    }
                }
                Ok(match http_get(&url, ns.as_deref(), "/health") {
                    Ok(body) if body.contains(r#""health":"true""#) => Observed::Healthy,
                    Ok(body) => Observed::Unhealthy(body),
                    Err(e) => Observed::Unhealthy(format!("{e:#}")),
                })
            },
            |seen| matches!(seen, Observed::Healthy | Observed::Exited(_)),
        );
        match outcome {
            Ok(Observed::Healthy) => Ok(Started::Serving),
            Ok(Observed::Exited(status)) => {
                self.child = None;
                let log = std::fs::read(self.log_path())?;
                let this_run = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default());
                if this_run.contains(PORT_TAKEN) {
                    return Ok(Started::PortTaken);
                }
                bail!("etcd exited ({status}):\n{}", self.log_tail())
            }
            Ok(other) => bail!("etcd's start ended at {other:?}"),
            Err(e) => {
                self.kill();
                bail!("{e:#}\netcd's log:\n{}", self.log_tail())
            }
        }
    }

    /// How many watches etcd holds (its `etcd_debugging_mvcc_watcher_total` gauge): a watch
    /// counts from the moment etcd has registered it, before any event reaches the watcher.
    pub fn watchers(&self) -> anyhow::Result<u64> {
        let metrics = http_get(&self.client_url, self.ns.as_deref(), "/metrics")?;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
            .context("etcd reports no etcd_debugging_mvcc_watcher_total")
    }

    /// Kills etcd as a crash would, keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data (that is what a restart means to its
    /// clients). On loopback another test may have taken a port while it was down, which fails
    /// here; an etcd in a namespace of its own ([`Etcd::start_in`]) always gets its ports back.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        match self.spawn()? {
            Started::Serving => Ok(()),
            Started::PortTaken => bail!(
                "etcd cannot restart on {}: another process took a port while it was down",
                self.client_url
            ),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Before `dir` goes, so etcd is not writing into it.
        self.kill();
    }
}

/// Two loopback ports free right now, and different from each other (both are held until both
/// are drawn).
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let client = TcpListener::bind("127.0.0.1:0").context("draw a free loopback port")?;
    let peer = TcpListener::bind("127.0.0.1:0").context("draw a free loopback port")?;
    Ok((client.local_addr()?.port(), peer.local_addr()?.port()))
}

fn client_addr(url: &str) -> anyhow::Result<SocketAddr> {
    url.trim_start_matches("http://")
        .parse()
        .with_context(|| format!("etcd URL {url}"))
}

/// The body of `GET <path>` on etcd's client URL `url` (which serves HTTP/1 besides gRPC), asked
/// from the namespace `ns` etcd runs in (its address means nothing elsewhere).
fn http_get(url: &str, ns: Option<&str>, path: &str) -> anyhow::Result<String> {
    let addr = client_addr(url)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let get = move || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    let response = match ns {
        Some(ns) => within(ns, get)?,
        None => get(),
    }
    .with_context(|| format!("GET {url}{path}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {url}{path}: not an HTTP response"))?;
    ensure!(
        head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"),
        "GET {url}{path}: {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}
