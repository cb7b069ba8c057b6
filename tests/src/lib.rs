//! Support for gridnet's privileged tests: every test builds its own node (a network namespace
//! with its own pin root and namespace prefix) and removes all of it on drop, even when the
//! test fails, so tests run in parallel and leave the machine as they found it.
//!
//! These tests need root and a kernel with BPF; they fail (never skip) without them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::{
    netlink::Netns,
    plan::{ContainerPlan, NetworkPlan, NodePlan},
};
use std::os::{fd::AsFd as _, unix::process::CommandExt as _};

/// The `gridnet` binary under test: `$GRIDNET_BIN`, else the one next to this test executable.
pub fn gridnet_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("GRIDNET_BIN") {
        return Ok(bin.into());
    }
    // target/<profile>/deps/<test> or target/<profile>/xtask -> target/<profile>/gridnet
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("odd executable path")?;
    let candidates = [
        dir.join("gridnet"),
        dir.parent().map(|d| d.join("gridnet")).unwrap_or_default(),
    ];
    candidates.into_iter().find(|bin| bin.is_file()).with_context(|| {
        format!("no gridnet binary next to {}: build it first (`cargo build -p gridnet-agent`) or set GRIDNET_BIN", exe.display())
    })
}

/// A short id unique to this process and call, for names of kernel objects.
pub fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}{:x}",
        std::process::id() % 0xfffff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test node: its namespace, pin root and container prefix, removed on drop.
pub struct Node {
    pub id: String,
    pub ns: Netns,
    pub pin_root: PathBuf,
    pub prefix: String,
    workdir: PathBuf,
}

impl Node {
    /// A node for a test.
    pub fn new() -> anyhow::Result<Self> {
        Self::labelled("test")
    }

    /// A node whose objects are named `gridnet-<label>-<id>` (namespace, pins, temp files) and
    /// whose containers' namespaces start with `<label>-<id>-`.
    pub fn labelled(label: &str) -> anyhow::Result<Self> {
        ensure!(
            nix::unistd::Uid::effective().is_root(),
            "namespaces and eBPF need root (CI runs as root)"
        );
        let id = unique_id();
        let ns =
            Netns::create(&format!("gridnet-{label}-{id}")).context("create the node namespace")?;
        let workdir = std::env::temp_dir().join(format!("gridnet-{label}-{id}"));
        std::fs::create_dir_all(&workdir)?;
        Ok(Self {
            pin_root: PathBuf::from(format!("/sys/fs/bpf/gridnet-{label}-{id}")),
            prefix: format!("{label}-{id}-"),
            ns,
            id,
            workdir,
        })
    }

    /// The namespace name of container `name` on this node.
    pub fn container_ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `gridnet <args>` run inside the node's network namespace.
    pub fn gridnet(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = Command::new(gridnet_bin()?);
        command.args(args);
        in_netns(&mut command, self.ns.name())?;
        Ok(command.output()?)
    }

    /// Applies a plan with `gridnet apply`; returns its stdout, failing on a non-zero exit.
    pub fn apply(&self, plan: &NodePlan) -> anyhow::Result<String> {
        self.apply_with(plan, &[])
    }

    /// [`Node::apply`] with extra `gridnet apply` arguments.
    pub fn apply_with(&self, plan: &NodePlan, extra: &[&str]) -> anyhow::Result<String> {
        let path = self.workdir.join("plan.yaml");
        std::fs::write(&path, serde_yaml::to_string(plan)?)?;
        let path = path.to_str().context("temp path")?.to_owned();
        let pin_root = self.pin_root.to_str().context("pin root")?.to_owned();
        let mut args = vec![
            "apply",
            &path,
            "--pin-root",
            &pin_root,
            "--netns-prefix",
            &self.prefix,
        ];
        args.extend_from_slice(extra);
        let out = self.gridnet(&args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "gridnet apply failed: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// `gridnet bpf-stats` (table) for this node's pins.
    pub fn bpf_stats_table(&self) -> anyhow::Result<String> {
        let pin_root = self.pin_root.to_str().context("pin root")?;
        let out = Command::new(gridnet_bin()?)
            .args(["bpf-stats", "--pin-root", pin_root])
            .output()?;
        ensure!(
            out.status.success(),
            "gridnet bpf-stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `gridnet bpf-stats --json` for this node's pins, parsed.
    pub fn bpf_stats(&self) -> anyhow::Result<serde_json::Value> {
        let pin_root = self.pin_root.to_str().context("pin root")?;
        let out = Command::new(gridnet_bin()?)
            .args(["bpf-stats", "--json", "--pin-root", pin_root])
            .output()?;
        ensure!(
            out.status.success(),
            "gridnet bpf-stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Containers first (their veths go with them), then the node, then the pins.
        if let Ok(names) = Netns::list(&self.prefix) {
            for name in names {
                let _ = Netns::delete(&name);
            }
        }
        let _ = Netns::delete(self.ns.name());
        let _ = remove_pins(&self.pin_root);
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Removes a pin directory tree (bpffs allows unlink and rmdir, not rename tricks).
fn remove_pins(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_pins(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Makes `command` run inside the named network namespace (only the network namespace:
/// unlike `ip netns exec`, mounts stay shared with the test).
pub fn in_netns(command: &mut Command, ns: &str) -> anyhow::Result<()> {
    let file = Netns::open(ns)?.file().try_clone()?;
    // SAFETY: the closure only calls setns(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    Ok(())
}

/// Runs a command inside a network namespace and returns its output.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = Command::new(program);
    command.args(args);
    in_netns(&mut command, ns)?;
    command
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))
}

/// `ping` from inside a namespace: true when replies came back.
pub fn ping(ns: &str, target: &str, count: u32) -> anyhow::Result<bool> {
    let count = count.to_string();
    let out = run_in(ns, "ping", &["-c", &count, "-i", "0.2", "-W", "1", target])?;
    Ok(out.status.success())
}

/// Runs `f` in a thread inside the namespace; sockets it creates stay there.
pub fn within<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let ns = Netns::open(ns)?;
    std::thread::spawn(move || ns.enter(f))
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
        .map_err(Into::into)
}

/// Packets `xdp_uplink` dropped, for one reason or (`None`) all, in a `bpf-stats --json`.
pub fn xdp_drops(stats: &serde_json::Value, reason: Option<&str>) -> u64 {
    stats["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["program"] == "xdp_uplink"
                && c["verdict"] == "drop"
                && reason.is_none_or(|r| c["reason"] == r)
        })
        .filter_map(|c| c["packets"].as_u64())
        .sum()
}

/// An AF_PACKET socket that sends whole Ethernet frames out of one interface, closed on drop.
/// Open it inside the namespace that holds the interface; it may then send from any thread.
pub struct RawSender {
    fd: std::os::fd::OwnedFd,
    addr: libc::sockaddr_ll,
}

impl RawSender {
    pub fn open(interface: &std::ffi::CStr) -> anyhow::Result<Self> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain socket calls with checked results; the descriptor is owned from here.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        ensure!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: a NUL-terminated name; `if_nametoindex` only reads it.
        let ifindex = unsafe { libc::if_nametoindex(interface.as_ptr()) };
        ensure!(ifindex != 0, "no interface {interface:?} here");
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        Ok(Self { fd, addr })
    }

    /// Sends one frame (its own Ethernet header included).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: the buffer and the address struct are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const self.addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The counter `packets` for a program, network, verdict and reason in a `bpf-stats --json`.
pub fn counter(
    stats: &serde_json::Value,
    network: &str,
    verdict: &str,
    reason: Option<&str>,
) -> (u64, u64) {
    let counters = stats["counters"].as_array().cloned().unwrap_or_default();
    counters
        .iter()
        .find(|c| {
            c["program"] == "tc_from_container"
                && c["network"] == network
                && c["verdict"] == verdict
                && c["reason"].as_str() == reason
        })
        .map_or((0, 0), |c| {
            (
                c["packets"].as_u64().unwrap_or(0),
                c["bytes"].as_u64().unwrap_or(0),
            )
        })
}

/// Starts a TCP server in container `container` of `node` that answers every connection with
/// `identity` and closes it; the thread lives as long as the process.
pub fn serve_identity(
    node: &Node,
    container: &str,
    port: u16,
    identity: &str,
) -> anyhow::Result<()> {
    let listener = within(&node.container_ns(container), move || {
        std::net::TcpListener::bind(("::", port))
    })??;
    let identity = identity.to_owned();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, identity.as_bytes());
        }
    });
    Ok(())
}

/// Connects from container `container` to `addr` and returns what the server said.
pub fn fetch(node: &Node, container: &str, addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = within(&node.container_ns(container), move || {
        std::net::TcpStream::connect_timeout(&addr, timeout)
    })?
    .with_context(|| format!("{container} -> {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text)?;
    Ok(text)
}

/// The node's address on its test uplink.
pub const NODE_IP: &str = "10.200.0.1";
/// The "internet" side's address.
pub const INET_IP: &str = "10.200.0.2";

/// A node with an uplink `up0` into an "internet" namespace (`inet0`), both removed on drop.
pub struct Uplinked {
    pub node: Node,
    /// The "internet" namespace.
    pub inet: String,
}

impl Drop for Uplinked {
    fn drop(&mut self) {
        let _ = Netns::delete(&self.inet);
    }
}

/// Runs `ip ARGS` in a namespace, failing with its error output.
pub fn ip(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = run_in(ns, "ip", args)?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A node whose uplink `up0` ({NODE_IP}/24) is a veth into a fresh "internet" namespace
/// (`inet0`, {INET_IP}/24).
pub fn uplinked() -> anyhow::Result<Uplinked> {
    let node = Node::new()?;
    let inet = format!("gridnet-inet-{}", unique_id());
    Netns::create(&inet)?;
    let up = Uplinked { node, inet };
    let node_ns = up.node.ns.name();
    ip(
        node_ns,
        &[
            "link", "add", "up0", "type", "veth", "peer", "name", "inet0", "netns", &up.inet,
        ],
    )?;
    for (ns, dev, addr) in [
        (node_ns, "up0", NODE_IP),
        (up.inet.as_str(), "inet0", INET_IP),
    ] {
        ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", dev])?;
        ip(ns, &["link", "set", dev, "up"])?;
        ip(ns, &["link", "set", "lo", "up"])?;
    }
    Ok(up)
}

/// A network on the ranges every test and demo uses: 10.1.0.0/16 and fd00:1::/48, with this
/// node's subnets 10.1.1.0/24 and fd00:1:0:1::/64. Networks may share them: that is the point.
pub fn test_network(name: &str) -> NetworkPlan {
    let v4 = |text: &str| text.parse().expect("literal prefix");
    let v6 = |text: &str| text.parse().expect("literal prefix");
    NetworkPlan::local(
        name,
        v4("10.1.0.0/16"),
        v6("fd00:1::/48"),
        v4("10.1.1.0/24"),
        v6("fd00:1:0:1::/64"),
    )
}

/// A container of a [`test_network`] at host number `host` (10.1.1.`host`, fd00:1:0:1::`host`).
pub fn test_container(name: &str, network: &str, host: u8) -> ContainerPlan {
    let ipv6 = format!("fd00:1:0:1::{host:x}")
        .parse()
        .expect("literal address");
    ContainerPlan::new(name, network, [10, 1, 1, host].into(), ipv6)
}

/// A ledger file that tests write entries to, signed with fixed twin keys.
pub struct TestLedger {
    pub file: gridnet_agent::ledger::file::LedgerFile,
    chain: gridnet_agent::ledger::Chain,
}

impl TestLedger {
    /// An empty ledger in `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let file = gridnet_agent::ledger::file::LedgerFile::new(&dir.join("ledger.yaml"));
        file.init()?;
        Ok(Self {
            file,
            chain: gridnet_agent::ledger::Chain::default(),
        })
    }

    /// The key of twin `name` (derived from the name: tests only).
    pub fn key(name: &str) -> gridnet_agent::ledger::SigningKey {
        let mut seed = [0u8; 32];
        for (i, b) in name.bytes().enumerate() {
            seed[i % 32] ^= b;
        }
        gridnet_agent::ledger::SigningKey::from_seed(seed)
    }

    /// Signs and appends an entry by `author`; fails if the ledger's rules refuse it.
    pub fn submit(
        &mut self,
        author: &str,
        body: gridnet_agent::ledger::Body,
    ) -> anyhow::Result<u64> {
        let entry = gridnet_agent::ledger::sign_next(&self.chain, author, body, &Self::key(author));
        self.chain
            .apply(&entry)
            .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
        self.file.append(&entry)?;
        Ok(entry.seq)
    }

    /// Appends an entry as is, without checking it (to test what the agent does with it).
    pub fn append_raw(
        &mut self,
        author: &str,
        body: gridnet_agent::ledger::Body,
        signer: &str,
    ) -> anyhow::Result<u64> {
        let entry = gridnet_agent::ledger::sign_next(&self.chain, author, body, &Self::key(signer));
        let _ = self.chain.apply(&entry);
        self.file.append(&entry)?;
        Ok(entry.seq)
    }

    /// Registers a twin.
    pub fn twin(&mut self, name: &str) -> anyhow::Result<()> {
        let public_key = Self::key(name).public();
        self.submit(
            name,
            gridnet_agent::ledger::Body::Twin {
                name: name.into(),
                public_key,
            },
        )?;
        Ok(())
    }
}

/// The `node` entry of node `node_id`, owned by twin `farmer`, reachable at `endpoint`.
pub fn node_entry(
    node_id: u32,
    endpoint: &str,
    public_ipv4: Option<&str>,
) -> anyhow::Result<gridnet_agent::ledger::Body> {
    Ok(gridnet_agent::ledger::Body::Node {
        node_id,
        farmer: "farmer".into(),
        wireguard_public_key: gridnet_agent::plan::WgKey([1; 32]),
        endpoints: vec![endpoint.parse()?],
        public_ipv4: public_ipv4.map(str::parse).transpose()?,
        public_ipv6: None,
    })
}

/// A `network` entry in 10.1.0.0/16 and fd00:1::/48 with one member, `node_id`, holding
/// 10.1.1.0/24 and fd00:1:0:1::/64 and listening on `port`.
pub fn network_entry(
    name: &str,
    node_id: u32,
    port: u16,
) -> anyhow::Result<gridnet_agent::ledger::Body> {
    Ok(gridnet_agent::ledger::Body::Network {
        name: name.into(),
        version: 1,
        ip_range: "10.1.0.0/16".parse()?,
        ipv6_range: "fd00:1::/48".parse()?,
        members: vec![gridnet_agent::ledger::model::Member {
            node_id,
            subnet: "10.1.1.0/24".parse()?,
            subnet_v6: "fd00:1:0:1::/64".parse()?,
            wireguard_listen_port: port,
        }],
    })
}

/// A running `gridnet run` in a node, stopped (SIGKILL) on drop.
pub struct Agent {
    child: std::process::Child,
    pub socket: PathBuf,
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the agent as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `gridnet status --json`, parsed.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let socket = self.socket.to_str().context("socket")?;
        let out = Command::new(gridnet_bin()?)
            .args(["status", "--json", "--socket", socket])
            .output()?;
        ensure!(
            out.status.success(),
            "gridnet status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits (up to `seconds`) until the status satisfies `ready`.
    pub fn wait_for(
        &self,
        seconds: u64,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            if let Ok(status) = self.status()
                && ready(&status)
            {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "the agent did not get there in {seconds} s; last status: {:?}",
                    self.status().ok()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts `gridnet run` for node `node_id` in this node, following the ledger file `ledger`.
    pub fn run_agent(
        &self,
        node_id: u32,
        ledger: &Path,
        extra_config: &str,
    ) -> anyhow::Result<Agent> {
        self.run_agent_with(
            node_id,
            &format!("ledger:\n  file: {}\n{extra_config}", ledger.display()),
        )
    }

    /// Starts `gridnet run` for node `node_id` with `extra_config` added to the node's settings
    /// (it must name the ledger).
    pub fn run_agent_with(&self, node_id: u32, extra_config: &str) -> anyhow::Result<Agent> {
        let key = self.workdir.join("node.key");
        if !key.exists() {
            gridnet_agent::ledger::keys::NodeKey::generate()?.write(&key)?;
        }
        let socket = self.workdir.join("agent.sock");
        let config = format!(
            "node_id: {node_id}\nkey_file: {}\npin_root: {}\nstate_dir: {}\nnetns_prefix: {}\ncontrol_socket: {}\n{extra_config}",
            key.display(),
            self.pin_root.display(),
            self.workdir.join("state").display(),
            self.prefix,
            socket.display(),
        );
        let path = self.workdir.join("node.yaml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(self.workdir.join("agent.log"))?;
        let mut command = Command::new(gridnet_bin()?);
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdout(log.try_clone()?)
            .stderr(log);
        in_netns(&mut command, self.ns.name())?;
        let child = command.spawn()?;
        Ok(Agent { child, socket })
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.workdir.join("agent.log")).unwrap_or_default()
    }

    /// The node's scratch directory (removed on drop).
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }
}

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
        let id = unique_id();
        let mut etcd = Self {
            child: None,
            client_url: format!("http://127.0.0.1:{}", free()?),
            peer_url: format!("http://127.0.0.1:{}", free()?),
            name: format!("gridnet-{id}"),
            dir: std::env::temp_dir().join(format!("gridnet-etcd-{id}")),
            ns: None,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// Starts etcd inside namespace `ns`, listening on `ip` (an address of that namespace).
    pub fn start_in(ns: &str, ip: &str) -> anyhow::Result<Self> {
        let id = unique_id();
        let mut etcd = Self {
            child: None,
            client_url: format!("http://{ip}:2379"),
            peer_url: format!("http://{ip}:2380"),
            name: format!("gridnet-{id}"),
            dir: std::env::temp_dir().join(format!("gridnet-etcd-{id}")),
            ns: Some(ns.to_owned()),
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{}.log", self.name)))?;
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
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.log", self.name)));
    }
}

/// A directory of the test's own under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("gridnet-{label}-{}", unique_id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
