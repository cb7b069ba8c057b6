//! The XDP uplink guard: a node reachable from an "internet" namespace only on WireGuard and
//! gateway ports, and by replies to its own connections.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::plan::{GatewayMode, GatewayPlan, NetworkPlan, NodePlan};
use gridnet_tests::{
    INET_IP, NODE_IP, TempDir, Uplinked, bpftool, in_netns, ip,
    proto::{ETHERTYPE_IPV4, ETHERTYPE_LLDP, HTTPS_PORT, IPPROTO_TCP, WIREGUARD_PORT},
    test_network, unique_id, uplinked, wait, within,
};

/// The node's and the internet side's IPv6 addresses on the uplink (the harness sets up IPv4).
const NODE_IP6: &str = "fd00:200::1";
const INET_IP6: &str = "fd00:200::2";
/// A port in the node's ephemeral range (Linux's default, 32768-60999) that no socket uses.
const UNUSED_EPHEMERAL_PORT: u16 = 45000;

/// Adds the IPv6 addresses (without duplicate address detection, usable at once).
fn with_ipv6(up: &Uplinked) -> anyhow::Result<()> {
    ip(
        up.node.ns.name(),
        &[
            "-6",
            "addr",
            "add",
            &format!("{NODE_IP6}/64"),
            "dev",
            "up0",
            "nodad",
        ],
    )?;
    ip(
        up.inet.name(),
        &[
            "-6",
            "addr",
            "add",
            &format!("{INET_IP6}/64"),
            "dev",
            "inet0",
            "nodad",
        ],
    )
}

fn plan(gateway: bool) -> NodePlan {
    NodePlan {
        networks: vec![NetworkPlan {
            wireguard_listen_port: WIREGUARD_PORT,
            ..test_network("alice/a")
        }],
        containers: Vec::new(),
        gateways: if gateway {
            vec![GatewayPlan {
                name: "web".into(),
                network: "alice/a".into(),
                hostnames: vec!["web.example.org".into()],
                backends: Vec::new(),
                mode: GatewayMode::TlsPassthrough,
                public_ips: vec![NODE_IP.parse().expect("addr")],
                endpoint: "alice.gw".into(),
                proxy_protocol: false,
            }]
        } else {
            Vec::new()
        },
    }
}

fn guard(up: &Uplinked, gateway: bool) -> anyhow::Result<String> {
    up.node.apply_with(&plan(gateway), &["--uplink", "up0"])
}

/// A TCP listener in the node that counts the connections it accepts.
fn node_listener(up: &Uplinked, port: u16) -> anyhow::Result<Arc<AtomicU32>> {
    let listener = within(up.node.ns.name(), move || {
        TcpListener::bind(("0.0.0.0", port))
    })??;
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Ok(accepted)
}

/// How long the datapath and the listener thread get to account for traffic already sent: on a
/// veth it takes microseconds; the margin is for slow emulated kernels.
const SETTLE: Duration = Duration::from_secs(3);

/// Checks that exactly `expected` connections reached the listening socket, `expected` being
/// how many connects the internet side saw succeed.
///
/// Exact is sound here: a connect succeeds only once the handshake is complete, and each
/// complete handshake is one accept, which the listener thread counts a moment later, so the
/// count reaches `expected`; a connect that failed never completed a handshake (had its SYN
/// reached the socket, the node's SYN-ACK would have completed it), so it adds nothing, now or
/// later. Once the count reaches `expected` and every connect has returned, nothing can move it.
fn assert_accepted(accepted: &AtomicU32, expected: u32) -> anyhow::Result<()> {
    let seen = wait::until(
        SETTLE,
        &format!("{expected} accepted connections"),
        || Ok(accepted.load(Ordering::SeqCst)),
        |&n| n >= expected,
    )?;
    ensure!(
        seen == expected,
        "{seen} connections reached the socket, {expected} expected"
    );
    Ok(())
}

/// Whether a TCP connection from the internet side to the node's `port` opens. The wait covers
/// one retransmission of the SYN (Linux resends it after 1 s), so a first attempt lost on a busy
/// machine is not taken for a blocked port.
fn connect_from_inet(up: &Uplinked, port: u16) -> anyhow::Result<bool> {
    let addr = format!("{NODE_IP}:{port}").parse()?;
    Ok(within(up.inet.name(), move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(2500))
    })?
    .is_ok())
}

fn xdp_drops(up: &Uplinked, reason: &str) -> anyhow::Result<u64> {
    Ok(gridnet_tests::xdp_drops(
        &up.node.bpf_stats()?,
        Some(reason),
    ))
}

#[test]
fn unsolicited_connections_never_reach_a_listening_socket() -> anyhow::Result<()> {
    let up = uplinked()?;
    let accepted = node_listener(&up, 2222)?;
    ensure!(
        connect_from_inet(&up, 2222)?,
        "without the guard the service must be reachable"
    );
    assert_accepted(&accepted, 1)?;

    let applied = guard(&up, false)?;
    ensure!(
        applied.contains("attach the XDP guard to up0 (native)"),
        "veth runs native XDP:\n{applied}"
    );
    ensure!(
        !connect_from_inet(&up, 2222)?,
        "the guard let an unsolicited connection in"
    );
    assert_accepted(&accepted, 1).context("a blocked connection reached the socket")?;
    ensure!(
        xdp_drops(&up, "unsolicited")? > 0,
        "the drop was not counted"
    );
    assert_eq!(guard(&up, false)?.trim(), "no changes");
    Ok(())
}

/// A TCP server in the internet namespace that greets every connection and closes it.
fn greeting_server(up: &Uplinked, addr: SocketAddr) -> anyhow::Result<()> {
    let server = within(up.inet.name(), move || TcpListener::bind(addr))??;
    std::thread::spawn(move || {
        for mut stream in server.incoming().flatten() {
            let _ = stream.write_all(b"hello node");
        }
    });
    Ok(())
}

/// A UDP server in the internet namespace that sends every datagram back.
fn echo_server(up: &Uplinked, addr: SocketAddr) -> anyhow::Result<()> {
    let server = within(up.inet.name(), move || UdpSocket::bind(addr))??;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n], from);
        }
    });
    Ok(())
}

/// The node connects to `server` (its source port from the ephemeral range) and reads the
/// greeting.
fn greeted(up: &Uplinked, server: SocketAddr) -> anyhow::Result<String> {
    let mut stream = within(up.node.ns.name(), move || {
        TcpStream::connect_timeout(&server, Duration::from_secs(2))
    })?
    .with_context(|| format!("connect to {server}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// The node sends a datagram to `server` from an ephemeral port, on a connected socket or not,
/// and returns the echo.
fn echoed(up: &Uplinked, server: SocketAddr, connected: bool) -> anyhow::Result<Vec<u8>> {
    within(up.node.ns.name(), move || -> anyhow::Result<Vec<u8>> {
        let any: IpAddr = if server.is_ipv4() {
            "0.0.0.0".parse()?
        } else {
            "::".parse()?
        };
        let socket = UdpSocket::bind((any, 0))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        if connected {
            socket.connect(server)?;
            socket.send(b"ping over udp")?;
        } else {
            socket.send_to(b"ping over udp", server)?;
        }
        let mut buf = [0u8; 64];
        let n = socket
            .recv(&mut buf)
            .with_context(|| format!("no echo from {server} (connected socket: {connected})"))?;
        Ok(buf[..n].to_vec())
    })?
}

#[test]
fn connections_the_node_opens_still_work() -> anyhow::Result<()> {
    let up = uplinked()?;
    with_ipv6(&up)?;
    guard(&up, false)?;
    let before = xdp_drops(&up, "no_socket")?;
    for server in [INET_IP, INET_IP6] {
        let server: IpAddr = server.parse()?;
        greeting_server(&up, (server, 8080).into())?;
        echo_server(&up, (server, 5353).into())?;
        assert_eq!(greeted(&up, (server, 8080).into())?, "hello node");
        for connected in [false, true] {
            assert_eq!(
                echoed(&up, (server, 5353).into(), connected)?,
                b"ping over udp"
            );
        }
    }
    assert_eq!(
        xdp_drops(&up, "no_socket")?,
        before,
        "a reply to the node's own traffic found no socket"
    );
    // Echo replies are let in; echo requests are not.
    ensure!(
        gridnet_tests::ping(up.node.ns.name(), INET_IP, 2)?,
        "the node cannot ping out"
    );
    ensure!(
        !gridnet_tests::ping(up.inet.name(), NODE_IP, 2)?,
        "the node answers pings from outside"
    );
    Ok(())
}

/// A TCP segment without data from the internet side, IPv4 or IPv6 by the addresses given.
/// Checksums stay zero: the guard judges the frame before anything checks them.
fn segment(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut tcp = sport.to_be_bytes().to_vec();
    tcp.extend(dport.to_be_bytes());
    // Sequence and acknowledgement numbers, data offset 5 words, flags, window, checksum,
    // urgent pointer.
    tcp.extend([0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    let mut frame = vec![0xff; 6];
    frame.extend([0x02, 0, 0, 0, 0, 0x99]);
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend(0x0800u16.to_be_bytes());
            frame.extend([0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
            frame.extend(src.octets());
            frame.extend(dst.octets());
        }
        (src, dst) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            frame.extend(0x86ddu16.to_be_bytes());
            frame.extend([0x60, 0, 0, 0, 0, 20, 6, 64]);
            frame.extend(v6(src).octets());
            frame.extend(v6(dst).octets());
        }
    }
    frame.extend(tcp);
    frame
}

const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

#[test]
fn forged_replies_to_ephemeral_ports_are_dropped_and_counted() -> anyhow::Result<()> {
    let up = uplinked()?;
    with_ipv6(&up)?;
    guard(&up, false)?;
    let before = xdp_drops(&up, "no_socket")?;
    let mut frames = Vec::new();
    for (src, dst) in [(INET_IP, NODE_IP), (INET_IP6, NODE_IP6)] {
        for flags in [ACK, RST, RST | ACK, FIN | ACK, PSH | ACK] {
            frames.push(segment(
                src.parse()?,
                dst.parse()?,
                443,
                UNUSED_EPHEMERAL_PORT,
                flags,
            ));
        }
    }
    let forged = frames.len() as u64;
    send_raw(&up, frames)?;
    std::thread::sleep(Duration::from_millis(200));
    // Each frame is counted once, as passed or dropped: all of them here were dropped.
    assert_eq!(
        xdp_drops(&up, "no_socket")? - before,
        forged,
        "every forged segment is dropped as having no socket"
    );
    // `gridnet bpf-stats` shows the guard's counters as rows of program `xdp_uplink`, with no
    // network, and counts each frame's whole length.
    assert_eq!(before, 0);
    let bytes = forged / 2 * (14 + 20 + 20) + forged / 2 * (14 + 40 + 20);
    let table = up.node.bpf_stats_table()?;
    let row = format!("xdp_uplink - drop no_socket {forged} {bytes}");
    ensure!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == row),
        "no row `{row}` in:\n{table}"
    );
    let stats = up.node.bpf_stats()?;
    let counter = stats["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["program"] == "xdp_uplink" && c["reason"] == "no_socket")
        .context("no no_socket counter in the JSON")?;
    assert_eq!(counter["network_id"], 0);
    assert_eq!(counter["network"], "-");
    assert_eq!(counter["verdict"], "drop");
    assert_eq!(counter["bytes"], bytes);
    Ok(())
}

#[test]
fn only_a_connections_own_remote_end_reaches_it() -> anyhow::Result<()> {
    let up = uplinked()?;
    guard(&up, false)?;
    // A server that holds its connections open, so the node's end stays established.
    let server = within(up.inet.name(), || TcpListener::bind((INET_IP, 8081)))??;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in server.incoming().flatten() {
            held.push(stream);
        }
    });
    let addr: SocketAddr = format!("{INET_IP}:8081").parse()?;
    let stream = within(up.node.ns.name(), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })??;
    let local = stream.local_addr()?.port();
    let drops = |up: &Uplinked| -> anyhow::Result<(u64, u64)> {
        let stats = up.node.bpf_stats()?;
        Ok((
            gridnet_tests::xdp_drops(&stats, Some("no_socket")),
            gridnet_tests::xdp_drops(&stats, None),
        ))
    };
    let before = drops(&up)?;
    let (inet, node) = (INET_IP.parse()?, NODE_IP.parse()?);
    send_raw(
        &up,
        vec![
            // From another port of the same server, then with the connection's own tuple.
            segment(inet, node, 8082, local, ACK),
            segment(inet, node, 8081, local, ACK),
        ],
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let after = drops(&up)?;
    assert_eq!(
        after.0 - before.0,
        1,
        "the segment from another port of the server was not dropped"
    );
    // Nothing else the internet side sends here is dropped (ARP, neighbour discovery pass).
    assert_eq!(
        after.1 - before.1,
        1,
        "the segment of the connection itself was dropped"
    );
    drop(stream);
    Ok(())
}

#[test]
fn gateway_ports_open_and_close_with_the_plan() -> anyhow::Result<()> {
    let up = uplinked()?;
    let accepted = node_listener(&up, HTTPS_PORT)?;
    let opened = guard(&up, true)?;
    ensure!(opened.contains("open tcp port 443"), "{opened}");
    ensure!(
        connect_from_inet(&up, HTTPS_PORT)?,
        "the gateway port is closed"
    );
    let closed = guard(&up, false)?;
    ensure!(closed.contains("close tcp port 443"), "{closed}");
    ensure!(
        !connect_from_inet(&up, HTTPS_PORT)?,
        "the gateway port stayed open"
    );
    assert_accepted(&accepted, 1)?;
    Ok(())
}

/// The guard reads ports from a bitmap the agent keeps equal to its allow-list. A bit lost (an
/// agent stopped between the two writes, or an upgrade that finds the list but no bitmap) is
/// written again from the list as soon as the datapath opens.
#[test]
fn a_lost_port_bit_is_written_again_from_the_allow_list() -> anyhow::Result<()> {
    use gridnet_common::maps::{MAP_UPLINK_PORT_BITS, PortBit};
    let up = uplinked()?;
    let accepted = node_listener(&up, HTTPS_PORT)?;
    guard(&up, true)?;
    ensure!(
        connect_from_inet(&up, HTTPS_PORT)?,
        "the gateway port is closed"
    );

    let bit = PortBit::of(IPPROTO_TCP, HTTPS_PORT).context("a TCP port has a bit")?;
    let pin = up.node.pin_root.join("maps").join(MAP_UPLINK_PORT_BITS);
    let pin = pin.to_str().context("pin path")?;
    let mut args = vec!["map", "update", "pinned", pin, "key"];
    let key: Vec<String> = bit.word.to_le_bytes().iter().map(u8::to_string).collect();
    args.extend(key.iter().map(String::as_str));
    args.extend(["value", "0", "0", "0", "0", "0", "0", "0", "0"]);
    bpftool(&args)?;
    ensure!(
        !connect_from_inet(&up, HTTPS_PORT)?,
        "the guard does not read the bitmap"
    );
    // `gridnet bpf-stats` shows the bitmap out of step with the list: one port fewer.
    let (listed, in_bitmap) = port_fills(&up)?;
    ensure!(
        in_bitmap + 1 == listed,
        "bpf-stats: {listed} ports listed, {in_bitmap} in the bitmap"
    );

    // The same plan: nothing to change in the list, but opening the datapath mends the bitmap.
    guard(&up, true)?;
    ensure!(
        connect_from_inet(&up, HTTPS_PORT)?,
        "the bit was not written again"
    );
    let (listed, in_bitmap) = port_fills(&up)?;
    ensure!(
        listed >= 2 && in_bitmap == listed,
        "bpf-stats: {listed} ports listed, {in_bitmap} in the bitmap"
    );
    assert_accepted(&accepted, 2)?;
    Ok(())
}

/// The allowed ports as `gridnet bpf-stats` counts them: entries of the allow-list, and bits set
/// in the guard's bitmap.
fn port_fills(up: &Uplinked) -> anyhow::Result<(u64, u64)> {
    use gridnet_common::maps::{MAP_UPLINK_PORT_BITS, MAP_UPLINK_PORTS};
    let stats = up.node.bpf_stats()?;
    let fill = |name: &str| {
        stats["maps"]
            .as_array()
            .and_then(|maps| maps.iter().find(|m| m["name"] == name))
            .and_then(|m| m["entries"].as_u64())
            .with_context(|| format!("bpf-stats shows no map {name}: {stats}"))
    };
    Ok((fill(MAP_UPLINK_PORTS)?, fill(MAP_UPLINK_PORT_BITS)?))
}

/// A wireguard-go device in `ns`, stopped on drop.
struct WgDevice {
    name: String,
    child: Child,
}

impl Drop for WgDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
    }
}

/// How long wireguard-go may take to bring up a device: well under a second here; the margin is
/// for slow emulated kernels.
const WG_START: Duration = Duration::from_secs(5);

fn wg_device(ns: &str, name: &str, address: &str) -> anyhow::Result<WgDevice> {
    let mut command = Command::new("wireguard-go");
    command
        .args(["-f", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    in_netns(&mut command, ns)?;
    let child = command
        .spawn()
        .context("wireguard-go (apt package wireguard-go)")?;
    let mut device = WgDevice {
        name: name.to_owned(),
        child,
    };
    // The device exists once its UAPI socket does: wireguard-go creates the TUN first.
    let socket = std::path::PathBuf::from(format!("/var/run/wireguard/{name}.sock"));
    wait::until(
        WG_START,
        &format!("wireguard-go to create {}", socket.display()),
        || {
            if let Some(status) = device.child.try_wait()? {
                bail!("wireguard-go exited: {status}");
            }
            Ok(socket.exists())
        },
        |&up| up,
    )?;
    ip(ns, &["addr", "add", address, "dev", name])?;
    ip(ns, &["link", "set", name, "up"])?;
    Ok(device)
}

fn wg(args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(input) = input {
        std::io::Write::write_all(child.stdin.as_mut().context("stdin")?, input.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "wg {} failed", args.join(" "));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn wireguard_still_handshakes_through_the_guard() -> anyhow::Result<()> {
    let up = uplinked()?;
    guard(&up, false)?;
    let id = unique_id();
    let (node_if, inet_if) = (format!("wgn{id}"), format!("wgi{id}"));
    let node_wg = wg_device(up.node.ns.name(), &node_if, "10.201.0.1/24")?;
    let inet_wg = wg_device(up.inet.name(), &inet_if, "10.201.0.2/24")?;
    let dir = TempDir::new("wg")?;
    let keys = |who: &str| -> anyhow::Result<(std::path::PathBuf, String)> {
        let private = wg(&["genkey"], None)?;
        let path = dir.path().join(who);
        std::fs::write(&path, &private)?;
        Ok((path, wg(&["pubkey"], Some(&private))?))
    };
    let (node_key, node_pub) = keys("node")?;
    let (inet_key, inet_pub) = keys("inet")?;
    let port = WIREGUARD_PORT.to_string();
    wg(
        &[
            "set",
            &node_if,
            "listen-port",
            &port,
            "private-key",
            node_key.to_str().context("path")?,
            "peer",
            &inet_pub,
            "allowed-ips",
            "10.201.0.2/32",
        ],
        None,
    )?;
    let endpoint = format!("{NODE_IP}:{WIREGUARD_PORT}");
    wg(
        &[
            "set",
            &inet_if,
            "private-key",
            inet_key.to_str().context("path")?,
            "peer",
            &node_pub,
            "allowed-ips",
            "10.201.0.1/32",
            "endpoint",
            &endpoint,
        ],
        None,
    )?;
    let pinged = gridnet_tests::ping(up.inet.name(), "10.201.0.1", 3)?;
    let handshakes = wg(&["show", &inet_if, "latest-handshakes"], None)?;
    drop((node_wg, inet_wg));
    ensure!(pinged, "no traffic through the tunnel");
    let when: u64 = handshakes
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    ensure!(when > 0, "no handshake: {handshakes}");
    Ok(())
}

/// Sends raw Ethernet frames out of `inet0`.
fn send_raw(up: &Uplinked, frames: Vec<Vec<u8>>) -> anyhow::Result<()> {
    within(up.inet.name(), move || -> anyhow::Result<()> {
        let sender = gridnet_tests::RawSender::open(c"inet0")?;
        for frame in &frames {
            sender.send(frame).context("sendto")?;
        }
        Ok(())
    })?
}

#[test]
fn malformed_and_truncated_frames_are_dropped_without_harm() -> anyhow::Result<()> {
    let up = uplinked()?;
    let accepted = node_listener(&up, HTTPS_PORT)?;
    guard(&up, true)?;
    let eth = |ether_type: u16| {
        let mut f = vec![0xff; 6];
        f.extend([0x02, 0, 0, 0, 0, 0x99]);
        f.extend(ether_type.to_be_bytes());
        f
    };
    // A TCP SYN from the internet side to the gateway port, with the IPv4 header's first byte
    // (version and header length) and flags/fragment offset given.
    let ipv4 = |first: u8, frag: [u8; 2]| {
        let mut f = eth(ETHERTYPE_IPV4);
        f.extend([
            first,
            0,
            0,
            40,
            0,
            1,
            frag[0],
            frag[1],
            64,
            IPPROTO_TCP,
            0,
            0,
        ]);
        f.extend([10, 200, 0, 2, 10, 200, 0, 1]);
        f.extend(40000u16.to_be_bytes());
        f.extend(HTTPS_PORT.to_be_bytes());
        f.extend([0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0, 0, 0, 0, 0, 0]);
        f
    };
    let drops = || -> anyhow::Result<[u64; 3]> {
        let stats = up.node.bpf_stats()?;
        Ok(["malformed", "fragment", "unsupported_protocol"]
            .map(|reason| gridnet_tests::xdp_drops(&stats, Some(reason))))
    };
    let before = drops()?;
    let mut truncated = ipv4(0x45, [0x40, 0]);
    truncated.truncate(24);
    let frames = vec![
        truncated,
        ipv4(0x42, [0x40, 0]),    // header length below 20 bytes
        ipv4(0x45, [0x00, 0x10]), // a later fragment
        eth(ETHERTYPE_LLDP),
        eth(ETHERTYPE_IPV4),   // nothing after the Ethernet header
        ipv4(0x65, [0x40, 0]), // version 6 in an IPv4 frame
    ];
    let sent = frames.len() as u64;
    send_raw(&up, frames)?;
    // A veth hands frames to the peer's XDP program asynchronously. Once every frame sent is
    // counted, none is left in flight, so the counts are final and can be checked exactly.
    let counted = wait::until(
        SETTLE,
        &format!("{sent} frames counted as malformed, fragment or unsupported protocol"),
        || {
            let now = drops()?;
            Ok([0, 1, 2].map(|i| now[i].saturating_sub(before[i])))
        },
        |counted| counted.iter().sum::<u64>() >= sent,
    )?;
    assert_eq!(
        counted,
        [4, 1, 1],
        "malformed, fragment, unsupported protocol"
    );
    // No harm: the allowed service still works, and the node's own traffic too.
    ensure!(
        connect_from_inet(&up, HTTPS_PORT)?,
        "the gateway port stopped working"
    );
    assert_accepted(&accepted, 1)?;
    ensure!(gridnet_tests::ping(up.node.ns.name(), INET_IP, 1)?);
    Ok(())
}
