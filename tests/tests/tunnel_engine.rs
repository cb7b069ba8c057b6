//! The userspace WireGuard engine (`gridnet_agent::tunnel`) between "node" namespaces joined by
//! veths: traffic crosses it in both families, the underlay only ever sees WireGuard, a stock
//! `wireguard-go` peer interoperates, allowed IPs are enforced on receipt, peers change without
//! disturbing the others, a dead endpoint fails over, and a restart takes the device over.
//!
//! Each node's `Tunnels` lives on a thread that entered the node's namespace, with a tokio
//! runtime of its own, so its TUN device and socket are created there.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    str::FromStr as _,
    sync::mpsc,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::{
    netlink::Netns,
    plan::WgKey,
    tunnel::{PeerSpec, PeerStatus, TunnelSpec, TunnelStatus, Tunnels},
};
use gridnet_tests::{
    Capture, TempDir, TestNetns, in_netns, ip, ping, ping_from, proto::WIREGUARD_PORT,
    read_capture, run_in, unique_id, wait, within,
};

/// The network every test tunnel belongs to.
const NETWORK: &str = "alice/overlay";
/// The TUN device of a gridnet node (namespaces keep same-named devices apart).
const TUN: &str = "gnt0";
/// The tunnel MTU: a 1500-byte underlay less IPv6 + UDP + WireGuard.
const MTU: u16 = 1420;
/// The TCP port of the echo servers.
const ECHO_PORT: u16 = 7007;
/// How long a handshake may take when both sides are up: it is one round trip on a veth; the
/// rest is margin for a loaded machine.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a node's thread gets to answer a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Written through the tunnels; must never be seen on the underlay.
const MARKER: &[u8] = b"GRIDNET-CLEARTEXT-MARKER";

/// What a test asks of a node's `Tunnels`.
enum Ask {
    Ensure(TunnelSpec, mpsc::Sender<Result<(), String>>),
    Remove(String, mpsc::Sender<Result<(), String>>),
    Status(mpsc::Sender<Vec<TunnelStatus>>),
}

/// A gridnet node's tunnels: a thread inside the node's namespace owning a `Tunnels` and a
/// current-thread tokio runtime. Dropping it stops the tunnels the way an exiting agent does:
/// the runtime goes, the descriptors close, the persistent devices stay.
struct TunnelNode {
    commands: Option<tokio::sync::mpsc::UnboundedSender<Ask>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TunnelNode {
    fn start(ns: &str, private_key: [u8; 32]) -> anyhow::Result<Self> {
        let netns = Netns::open(ns)?;
        let (commands, mut inbox) = tokio::sync::mpsc::unbounded_channel();
        let (started, ready) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let entered = netns.enter(|| {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                runtime.block_on(async move {
                    let mut tunnels = Tunnels::new(private_key, None);
                    while let Some(command) = inbox.recv().await {
                        match command {
                            Ask::Ensure(spec, reply) => {
                                let done = tunnels.ensure(&spec).await;
                                let _ = reply.send(
                                    done.map_err(|e| format!("{:#}", anyhow::Error::from(e))),
                                );
                            }
                            Ask::Remove(network, reply) => {
                                let done = tunnels.remove(&network).await;
                                let _ = reply.send(
                                    done.map_err(|e| format!("{:#}", anyhow::Error::from(e))),
                                );
                            }
                            Ask::Status(reply) => {
                                let _ = reply.send(tunnels.status());
                            }
                        }
                    }
                });
            });
            if let Err(e) = entered {
                let _ = started.send(Err(e.to_string()));
            }
        });
        ready
            .recv_timeout(COMMAND_TIMEOUT)
            .context("node thread did not start")?
            .map_err(anyhow::Error::msg)
            .context("start a node thread")?;
        Ok(Self {
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    fn ask<T>(&self, command: impl FnOnce(mpsc::Sender<T>) -> Ask) -> anyhow::Result<T> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .as_ref()
            .context("node stopped")?
            .send(command(reply))
            .map_err(|_| anyhow::anyhow!("node thread is gone"))?;
        answer
            .recv_timeout(COMMAND_TIMEOUT)
            .context("node thread did not answer")
    }

    fn ensure(&self, spec: &TunnelSpec) -> anyhow::Result<()> {
        let spec = spec.clone();
        self.ask(|reply| Ask::Ensure(spec, reply))?
            .map_err(anyhow::Error::msg)
    }

    fn remove(&self, network: &str) -> anyhow::Result<()> {
        let network = network.to_owned();
        self.ask(|reply| Ask::Remove(network, reply))?
            .map_err(anyhow::Error::msg)
    }

    fn status(&self) -> anyhow::Result<TunnelStatus> {
        self.ask(Ask::Status)?
            .into_iter()
            .find(|s| s.network == NETWORK)
            .context("no tunnel running")
    }

    fn peer(&self, key: &[u8; 32]) -> anyhow::Result<PeerStatus> {
        self.status()?
            .peer(key)
            .cloned()
            .with_context(|| format!("no peer {}", WgKey(*key)))
    }

    /// Waits until the peer has a session; returns its status then.
    fn handshaken(&self, key: &[u8; 32]) -> anyhow::Result<PeerStatus> {
        wait::until(
            HANDSHAKE,
            "a handshake with the peer",
            || self.peer(key),
            |p| p.last_handshake.is_some(),
        )
    }
}

impl Drop for TunnelNode {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A node of a test: its namespace, key and overlay subnet number.
struct Site {
    ns: TestNetns,
    private_key: [u8; 32],
    public_key: [u8; 32],
    /// The node's overlay subnets are 10.9.n.0/24 and fd09:n::/64; its TUN has `.1` / `::1`.
    n: u8,
}

impl Site {
    fn new(n: u8) -> anyhow::Result<Self> {
        let mut private_key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut private_key)?;
        let ns = TestNetns::new("tun")?;
        ip(ns.name(), &["link", "set", "lo", "up"])?;
        Ok(Self {
            ns,
            public_key: Tunnels::new(private_key, None).public_key(),
            private_key,
            n,
        })
    }

    fn name(&self) -> &str {
        self.ns.name()
    }

    fn start(&self) -> anyhow::Result<TunnelNode> {
        TunnelNode::start(self.name(), self.private_key)
    }

    fn v4(&self) -> String {
        format!("10.9.{}.1", self.n)
    }

    fn v6(&self) -> String {
        format!("fd09:{}::1", self.n)
    }

    /// How other nodes list this one.
    fn as_peer(&self, endpoints: Vec<SocketAddr>) -> PeerSpec {
        PeerSpec {
            public_key: self.public_key,
            endpoints,
            allowed_ips: vec![
                format!("10.9.{}.0/24", self.n).parse().expect("net"),
                format!("fd09:{}::/64", self.n).parse().expect("net"),
            ],
            keepalive: None,
        }
    }

    /// The overlay addresses on the TUN device, and routes to the other nodes through it; what
    /// the agent's reconcile does around a tunnel, done by hand here.
    fn address_tun(&self) -> anyhow::Result<()> {
        let ns = self.name();
        ip(
            ns,
            &["addr", "add", &format!("{}/32", self.v4()), "dev", TUN],
        )?;
        ip(
            ns,
            &[
                "addr",
                "add",
                &format!("{}/128", self.v6()),
                "dev",
                TUN,
                "nodad",
            ],
        )?;
        ip(ns, &["route", "add", "10.9.0.0/16", "dev", TUN])?;
        ip(ns, &["route", "add", "fd09::/16", "dev", TUN])?;
        Ok(())
    }
}

/// Joins two sites with veth `ul<l>` on both sides: `a` holds 10.100.l.1 and fd00:100:l::1,
/// `b` the `.2` / `::2`. Returns the WireGuard endpoints of `a` and `b` on it (IPv6, IPv4).
fn link(a: &Site, b: &Site, l: u8) -> anyhow::Result<[[SocketAddr; 2]; 2]> {
    let dev = format!("ul{l}");
    ip(
        a.name(),
        &[
            "link",
            "add",
            &dev,
            "type",
            "veth",
            "peer",
            "name",
            &dev,
            "netns",
            b.name(),
        ],
    )?;
    for (site, side) in [(a, 1), (b, 2)] {
        let ns = site.name();
        ip(
            ns,
            &["addr", "add", &format!("10.100.{l}.{side}/24"), "dev", &dev],
        )?;
        ip(
            ns,
            &[
                "addr",
                "add",
                &format!("fd00:100:{l}::{side}/64"),
                "dev",
                &dev,
                "nodad",
            ],
        )?;
        ip(ns, &["link", "set", &dev, "up"])?;
    }
    let endpoint = |side: u8| -> anyhow::Result<[SocketAddr; 2]> {
        Ok([
            format!("[fd00:100:{l}::{side}]:{WIREGUARD_PORT}").parse()?,
            format!("10.100.{l}.{side}:{WIREGUARD_PORT}").parse()?,
        ])
    };
    Ok([endpoint(1)?, endpoint(2)?])
}

fn spec(peers: Vec<PeerSpec>) -> TunnelSpec {
    TunnelSpec {
        network: NETWORK.into(),
        ifname: TUN.into(),
        listen_port: WIREGUARD_PORT,
        mtu: MTU,
        peers,
    }
}

/// Two gridnet nodes on one veth, tunnels up and addressed: `a` lists `b`'s IPv6 endpoint, `b`
/// lists none for `a` (it learns it from `a`'s handshake).
struct Pair {
    // Fields drop in order: the node threads go before their namespaces.
    node_a: TunnelNode,
    node_b: TunnelNode,
    a: Site,
    b: Site,
    endpoints: [[SocketAddr; 2]; 2],
}

fn pair() -> anyhow::Result<Pair> {
    let a = Site::new(1)?;
    let b = Site::new(2)?;
    let endpoints = link(&a, &b, 1)?;
    let node_a = a.start()?;
    let node_b = b.start()?;
    node_b.ensure(&spec(vec![a.as_peer(Vec::new())]))?;
    node_a.ensure(&spec(vec![b.as_peer(vec![endpoints[1][0]])]))?;
    a.address_tun()?;
    b.address_tun()?;
    Ok(Pair {
        node_a,
        node_b,
        a,
        b,
        endpoints,
    })
}

fn pings(ns: &str, target: &str) -> anyhow::Result<()> {
    wait::until(
        HANDSHAKE,
        &format!("{target} to answer pings from {ns}"),
        || ping(ns, target, 1),
        |ok| *ok,
    )?;
    Ok(())
}

/// A TCP server in `ns` on [`ECHO_PORT`] (both families) that sends back everything it reads,
/// once the client has finished writing.
fn echo_server(ns: &str) -> anyhow::Result<()> {
    let listener = within(ns, || TcpListener::bind(("::", ECHO_PORT)))??;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut all = Vec::new();
            if stream.read_to_end(&mut all).is_ok() {
                let _ = stream.write_all(&all);
            }
        }
    });
    Ok(())
}

/// Sends `payload` to the echo server at `addr` from `ns`; returns what came back.
fn echo(ns: &str, addr: SocketAddr, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = within(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })?
    .with_context(|| format!("connect to {addr} from {ns}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(payload)?;
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    Ok(back)
}

/// A megabyte of numbered lines, each starting with [`MARKER`].
fn marked_payload() -> Vec<u8> {
    let mut payload = Vec::new();
    let mut line = 0u32;
    while payload.len() < 1 << 20 {
        payload.extend_from_slice(MARKER);
        payload.extend_from_slice(format!(" {line:08}\n").as_bytes());
        line += 1;
    }
    payload
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn ping_and_tcp_cross_the_tunnel_in_both_families() -> anyhow::Result<()> {
    let p = pair()?;
    pings(p.a.name(), &p.b.v4())?;
    pings(p.a.name(), &p.b.v6())?;
    pings(p.b.name(), &p.a.v6())?;
    echo_server(p.b.name())?;
    let payload = marked_payload();
    for target in [p.b.v4(), p.b.v6()] {
        let addr = SocketAddr::new(target.parse()?, ECHO_PORT);
        let back = echo(p.a.name(), addr, &payload)?;
        ensure!(
            back == payload,
            "{addr}: {} bytes came back for {} sent, or different ones",
            back.len(),
            payload.len()
        );
    }
    // Status is published on the timer tick: wait for the one after the transfers.
    let b_seen_by_a = wait::until(
        Duration::from_secs(2),
        "the transfers counted",
        || p.node_a.peer(&p.b.public_key),
        |b| b.rx_bytes > 2 << 20 && b.tx_bytes > 2 << 20,
    )?;
    ensure!(
        b_seen_by_a.endpoint == Some(p.endpoints[1][0]),
        "{b_seen_by_a:?}"
    );
    let a_seen_by_b = p.node_b.peer(&p.a.public_key)?;
    ensure!(
        a_seen_by_b.endpoint == Some(p.endpoints[0][0]),
        "b learned a's endpoint from its handshake: {a_seen_by_b:?}"
    );
    ensure!(a_seen_by_b.drops.total() == 0, "{a_seen_by_b:?}");
    Ok(())
}

#[test]
fn the_underlay_carries_only_wireguard_udp_never_the_payload() -> anyhow::Result<()> {
    let p = pair()?;
    pings(p.a.name(), &p.b.v4())?;
    echo_server(p.b.name())?;
    let dir = TempDir::new("capture")?;
    let underlay = Capture::start(p.a.name(), "ul1", dir.path().join("underlay.pcap"))?;
    let overlay = Capture::start(p.a.name(), TUN, dir.path().join("overlay.pcap"))?;
    let payload = marked_payload();
    for target in [p.b.v4(), p.b.v6()] {
        let back = echo(
            p.a.name(),
            SocketAddr::new(target.parse()?, ECHO_PORT),
            &payload,
        )?;
        ensure!(back == payload, "the transfer to {target} failed");
    }
    let underlay = underlay.stop()?;
    let overlay = overlay.stop()?;

    let wireguard = read_capture(&underlay, &format!("udp port {WIREGUARD_PORT}"))?;
    ensure!(
        wireguard.len() > 100,
        "the transfer should show on the underlay: {} packets",
        wireguard.len()
    );
    // The link's own control traffic (ARP; ICMPv6 neighbour discovery and multicast listener
    // reports, the latter behind a hop-by-hop header) is not the tunnel's; everything else must
    // be WireGuard.
    let other = read_capture(
        &underlay,
        // ARP, neighbour discovery and IGMP membership reports are the underlay's own link
        // control, not traffic between the tunnels.
        &format!("not (udp port {WIREGUARD_PORT} or arp or igmp or ip6 protochain 58)"),
    )?;
    ensure!(
        other.is_empty(),
        "not WireGuard on the underlay: {other:#?}"
    );
    ensure!(
        !contains(&std::fs::read(&underlay)?, MARKER),
        "the payload crossed the underlay in clear"
    );
    // The same search finds the payload where it is in clear: the check above can fail.
    ensure!(
        contains(&std::fs::read(&overlay)?, MARKER),
        "the payload should be readable on the TUN device"
    );
    Ok(())
}

/// A `wireguard-go` process serving interface `name` in a namespace, killed on drop.
struct WireguardGo {
    child: Child,
    name: String,
    dir: TempDir,
}

impl WireguardGo {
    fn start(ns: &str) -> anyhow::Result<Self> {
        // The UAPI socket is /var/run/wireguard/<name>.sock, shared by all namespaces: the
        // name must be unique on the machine.
        let name = format!("gw{}", unique_id());
        let mut command = Command::new("wireguard-go");
        command
            .args(["-f", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        in_netns(&mut command, ns)?;
        let child = command
            .spawn()
            .context("cannot run wireguard-go (is it installed?)")?;
        let go = Self {
            child,
            dir: TempDir::new("wg-go")?,
            name,
        };
        let socket = PathBuf::from(format!("/var/run/wireguard/{}.sock", go.name));
        wait::until(
            Duration::from_secs(10),
            "wireguard-go's UAPI socket",
            || Ok(socket.exists()),
            |up| *up,
        )?;
        Ok(go)
    }

    /// Runs `wg ARGS` (in the namespace, though `wg` only talks to the UAPI socket).
    fn wg(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = run_in(ns, "wg", args)?;
        ensure!(
            out.status.success(),
            "wg {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Gives the interface a fresh key, port and one peer; returns its public key.
    fn configure(
        &self,
        ns: &str,
        peer: &[u8; 32],
        allowed: &str,
        endpoint: SocketAddr,
    ) -> anyhow::Result<[u8; 32]> {
        let key_file = self.dir.path().join("private");
        let key = self.wg(ns, &["genkey"])?;
        std::fs::write(&key_file, format!("{key}\n"))?;
        let key_path = key_file.to_str().context("path")?;
        let port = WIREGUARD_PORT.to_string();
        let peer = WgKey(*peer).to_string();
        let endpoint = endpoint.to_string();
        self.wg(
            ns,
            &[
                "set",
                &self.name,
                "listen-port",
                &port,
                "private-key",
                key_path,
                "peer",
                &peer,
                "allowed-ips",
                allowed,
                "endpoint",
                &endpoint,
            ],
        )?;
        let public = self.wg(ns, &["show", &self.name, "public-key"])?;
        Ok(WgKey::from_str(&public)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .0)
    }
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
    }
}

/// A gridnet node (`a`, overlay 10.9.1.0/24) and a `wireguard-go` node (overlay 10.9.3.1, and
/// 10.66.0.1, which gridnet does not allow it) on one veth.
struct Interop {
    node_a: TunnelNode,
    go: WireguardGo,
    a: Site,
    w: Site,
    go_key: [u8; 32],
}

fn interop() -> anyhow::Result<Interop> {
    let a = Site::new(1)?;
    let w = Site::new(3)?;
    let endpoints = link(&a, &w, 1)?;
    let go = WireguardGo::start(w.name())?;
    let go_key = go.configure(
        w.name(),
        &a.public_key,
        "10.9.0.0/16,fd09::/16",
        endpoints[0][1],
    )?;
    let ns = w.name();
    ip(ns, &["addr", "add", "10.9.3.1/32", "dev", &go.name])?;
    ip(ns, &["addr", "add", "10.66.0.1/32", "dev", &go.name])?;
    ip(ns, &["link", "set", &go.name, "up"])?;
    ip(ns, &["route", "add", "10.9.0.0/16", "dev", &go.name])?;
    let node_a = a.start()?;
    node_a.ensure(&spec(vec![PeerSpec {
        public_key: go_key,
        ..w.as_peer(vec![endpoints[1][1]])
    }]))?;
    a.address_tun()?;
    Ok(Interop {
        node_a,
        go,
        a,
        w,
        go_key,
    })
}

#[test]
fn wireguard_go_handshakes_and_pings_with_a_gridnet_node() -> anyhow::Result<()> {
    let i = interop()?;
    let seen = i.node_a.handshaken(&i.go_key)?;
    ensure!(seen.handshake_rtt.is_some(), "gridnet initiated: {seen:?}");
    pings(i.a.name(), "10.9.3.1")?;
    pings(i.w.name(), &i.a.v4())?;
    let handshakes =
        i.go.wg(i.w.name(), &["show", &i.go.name, "latest-handshakes"])?;
    let when: u64 = handshakes
        .split_whitespace()
        .nth(1)
        .context("a peer line")?
        .parse()?;
    ensure!(when > 0, "wireguard-go saw no handshake: {handshakes}");
    Ok(())
}

#[test]
fn a_wireguard_go_peer_sending_from_outside_its_allowed_ips_is_dropped_and_counted()
-> anyhow::Result<()> {
    let i = interop()?;
    pings(i.w.name(), &i.a.v4())?;
    let before = i.node_a.peer(&i.go_key)?.drops.allowed_ips;
    let target = i.a.v4();
    ensure!(
        !ping_from(i.w.name(), "10.66.0.1", &target, 3)?,
        "a ping from 10.66.0.1 was answered"
    );
    wait::until(
        Duration::from_secs(5),
        "the three spoofed pings counted",
        || Ok(i.node_a.peer(&i.go_key)?.drops.allowed_ips),
        |n| *n >= before + 3,
    )?;
    // The peer itself is still welcome from its own addresses.
    pings(i.w.name(), &i.a.v4())?;
    Ok(())
}

/// Three gridnet nodes: `a` in the middle, a peer of `b` (link 1) and of `c` (link 2).
#[test]
fn updating_one_peer_leaves_the_other_peers_session_alone() -> anyhow::Result<()> {
    let a = Site::new(1)?;
    let b = Site::new(2)?;
    let c = Site::new(3)?;
    let ab = link(&a, &b, 1)?;
    let ac = link(&a, &c, 2)?;
    let (node_a, node_b, node_c) = (a.start()?, b.start()?, c.start()?);
    node_b.ensure(&spec(vec![a.as_peer(Vec::new())]))?;
    node_c.ensure(&spec(vec![a.as_peer(Vec::new())]))?;
    let b_peer = b.as_peer(vec![ab[1][0]]);
    let c_peer = c.as_peer(vec![ac[1][0]]);
    node_a.ensure(&spec(vec![b_peer.clone(), c_peer.clone()]))?;
    for site in [&a, &b, &c] {
        site.address_tun()?;
    }
    pings(a.name(), &b.v4())?;
    pings(a.name(), &c.v4())?;
    let b_before = node_a.handshaken(&b.public_key)?;
    let c_before = node_a.handshaken(&c.public_key)?;

    // b moves to its IPv4 endpoint and takes one more prefix.
    ip(b.name(), &["addr", "add", "10.19.2.1/32", "dev", TUN])?;
    ip(a.name(), &["route", "add", "10.19.2.0/24", "dev", TUN])?;
    let mut b_moved = b_peer;
    b_moved.endpoints = vec![ab[1][1]];
    b_moved.allowed_ips.push("10.19.2.0/24".parse()?);
    node_a.ensure(&spec(vec![b_moved, c_peer]))?;
    let b_now = node_a.peer(&b.public_key)?;
    ensure!(
        b_now.endpoint == Some(ab[1][1]),
        "a sends to b's new endpoint: {b_now:?}"
    );
    pings(a.name(), "10.19.2.1")?;
    pings(a.name(), &c.v4())?;

    let c_after = wait::until(
        Duration::from_secs(2),
        "the last pings to c counted",
        || node_a.peer(&c.public_key),
        |c| c.rx_bytes > c_before.rx_bytes,
    )?;
    ensure!(
        c_after.last_handshake == c_before.last_handshake,
        "c's session was renewed: {c_before:?} -> {c_after:?}"
    );
    let b_after = node_a.peer(&b.public_key)?;
    ensure!(
        b_after.last_handshake == b_before.last_handshake,
        "b's session survives its own update too: {b_before:?} -> {b_after:?}"
    );
    Ok(())
}

#[test]
fn a_dead_first_endpoint_fails_over_to_the_next() -> anyhow::Result<()> {
    let a = Site::new(1)?;
    let b = Site::new(2)?;
    let endpoints = link(&a, &b, 1)?;
    let (node_a, node_b) = (a.start()?, b.start()?);
    // b cannot initiate (it lists no endpoint for a): only a's choice of endpoint can connect.
    node_b.ensure(&spec(vec![a.as_peer(Vec::new())]))?;
    let dead: SocketAddr = format!("10.100.1.99:{WIREGUARD_PORT}").parse()?;
    node_a.ensure(&spec(vec![b.as_peer(vec![dead, endpoints[1][0]])]))?;
    let started = SystemTime::now();
    // One handshake retry is due 5 s (REKEY_TIMEOUT) after the first try; the second goes to
    // the next endpoint.
    let seen = wait::until(
        Duration::from_secs(20),
        "a handshake over b's second endpoint",
        || node_a.peer(&b.public_key),
        |p| p.last_handshake.is_some(),
    )?;
    ensure!(seen.endpoint == Some(endpoints[1][0]), "{seen:?}");
    let took = seen
        .last_handshake
        .context("handshake")?
        .duration_since(started)
        .unwrap_or_default();
    ensure!(
        took >= Duration::from_secs(4),
        "the dead endpoint was tried first: connected after {took:?}"
    );
    a.address_tun()?;
    b.address_tun()?;
    pings(a.name(), &b.v6())?;
    Ok(())
}

#[test]
fn a_restarted_engine_takes_over_the_persistent_device_and_handshakes_again() -> anyhow::Result<()>
{
    // Bound in this order so that the node threads stop before their namespaces go.
    let Pair {
        a,
        b,
        endpoints,
        node_a,
        node_b,
    } = pair()?;
    pings(a.name(), &b.v4())?;
    let ifindex = node_a.status()?.ifindex;
    let first = node_b.handshaken(&a.public_key)?;

    // The agent exits: its descriptors close, the device stays with its addresses and routes.
    drop(node_a);
    ip(a.name(), &["link", "show", TUN]).context("the TUN device outlives the engine")?;

    let node_a = a.start()?;
    node_a.ensure(&spec(vec![b.as_peer(vec![endpoints[1][0]])]))?;
    ensure!(
        node_a.status()?.ifindex == ifindex,
        "the same device was taken over"
    );
    pings(a.name(), &b.v4())?;
    wait::until(
        HANDSHAKE,
        "b to see a new handshake",
        || node_b.peer(&a.public_key),
        |p| p.last_handshake > first.last_handshake,
    )?;
    node_a.handshaken(&b.public_key)?;

    // Removing the tunnel deletes the device.
    node_a.remove(NETWORK)?;
    ensure!(
        ip(a.name(), &["link", "show", TUN]).is_err(),
        "the TUN device is gone after remove"
    );
    ensure!(node_a.ask(Ask::Status)?.is_empty());
    Ok(())
}

#[test]
fn a_tunnel_whose_device_was_deleted_is_started_again_by_the_next_ensure() -> anyhow::Result<()> {
    let p = pair()?;
    pings(p.a.name(), &p.b.v4())?;
    ip(p.a.name(), &["link", "del", TUN])?;
    wait::until(
        Duration::from_secs(5),
        "the tunnel to stop running",
        || p.node_a.ask(Ask::Status),
        |running| running.is_empty(),
    )?;
    p.node_a
        .ensure(&spec(vec![p.b.as_peer(vec![p.endpoints[1][0]])]))?;
    p.a.address_tun()?;
    pings(p.a.name(), &p.b.v4())?;
    Ok(())
}

#[test]
fn an_interface_that_is_not_a_tun_device_is_refused() -> anyhow::Result<()> {
    let a = Site::new(1)?;
    let b = Site::new(2)?;
    link(&a, &b, 1)?;
    let node_a = a.start()?;
    let mut taken = spec(Vec::new());
    taken.ifname = "ul1".into();
    let Err(e) = node_a.ensure(&taken) else {
        bail!("a veth was taken as a TUN device");
    };
    ensure!(e.to_string().contains("ul1"), "{e}");
    ensure!(
        ip(a.name(), &["link", "show", "ul1"]).is_ok(),
        "the veth is untouched"
    );
    Ok(())
}
