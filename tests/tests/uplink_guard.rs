//! The XDP uplink guard: a node reachable from an "internet" namespace only on WireGuard and
//! gateway ports, and by replies to its own connections.

use std::{
    net::{TcpListener, TcpStream},
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
    INET_IP, NODE_IP, TempDir, Uplinked, in_netns, ip,
    proto::{ETHERTYPE_IPV4, ETHERTYPE_LLDP, HTTPS_PORT, IPPROTO_TCP, WIREGUARD_PORT},
    test_network, unique_id, uplinked, wait, within,
};

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

fn connect_from_inet(up: &Uplinked, port: u16) -> anyhow::Result<bool> {
    let addr = format!("{NODE_IP}:{port}").parse()?;
    Ok(within(up.inet.name(), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1))
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

#[test]
fn connections_the_node_opens_still_work() -> anyhow::Result<()> {
    let up = uplinked()?;
    guard(&up, false)?;
    let server = within(up.inet.name(), || TcpListener::bind((INET_IP, 8080)))??;
    std::thread::spawn(move || {
        for mut stream in server.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, b"hello node");
        }
    });
    let addr = format!("{INET_IP}:8080").parse()?;
    let mut stream = within(up.node.ns.name(), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })??;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut stream, &mut reply)?;
    assert_eq!(reply, "hello node");
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
