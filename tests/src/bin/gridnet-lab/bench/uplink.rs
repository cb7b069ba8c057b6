//! The XDP uplink guard's cost: its own time per packet inside the kernel (`BPF_PROG_TEST_RUN`,
//! against the least an XDP program can do), and its drop rate against an nftables rule doing
//! the same job at the earliest hook nftables has (netdev ingress), fed by the same generator.

use std::{
    fmt::Write as _,
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, ensure};
use gridnet_agent::plan::{NetworkPlan, NodePlan};
use gridnet_common::packet::{IPPROTO_TCP, IPPROTO_UDP};
use gridnet_tests::{
    INET_IP, NODE_IP, RawSender, Uplinked, run_in, test_network, uplinked, within,
};

use super::Section;

mod prog_run;

/// The port the generator aims at: nobody listens, nothing allows it.
const TARGET_PORT: u16 = 9;
/// UDP payload bytes per generated packet: small packets stress per-packet cost.
const PAYLOAD: usize = 18;
/// The WireGuard listen port of the node whose program is timed: an allowed port.
const WG_PORT: u16 = 51820;
/// A port inside Linux's default ephemeral range (32768-60999) with no connection on it.
const EPHEMERAL_PORT: u16 = 45000;
/// TCP flags of a bare acknowledgement.
const TCP_ACK: u8 = 0x10;

pub fn run(seconds: u64) -> anyhow::Result<Section> {
    let duration = Duration::from_secs(seconds);
    println!(
        "bench: uplink guard, BPF_PROG_TEST_RUN against an XDP_DROP floor ({} runs x {} rounds)",
        prog_run::REPEAT,
        prog_run::ROUNDS
    );
    let timed = program_time()?;
    println!("bench: uplink guard (XDP) vs nftables netdev ingress drop, {seconds} s each");

    let nft = {
        let up = uplinked()?;
        let node = up.node.ns.name();
        let table = "gridnet_bench";
        let nft = |args: &str| -> anyhow::Result<String> {
            let out = run_in(node, "nft", &args.split(' ').collect::<Vec<_>>())?;
            ensure!(
                out.status.success(),
                "nft {args}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        nft(&format!("add table netdev {table}"))?;
        run_in(
            node,
            "nft",
            &[
                "add",
                "chain",
                "netdev",
                table,
                "in",
                "{ type filter hook ingress device up0 priority 0 ; }",
            ],
        )?;
        nft(&format!(
            "add rule netdev {table} in udp dport {TARGET_PORT} counter drop"
        ))?;
        let sent = blast(&up, duration)?;
        let listing = nft(&format!("list table netdev {table}"))?;
        let dropped = listing
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .context("no nftables counter")?;
        (sent, dropped, 0.0)
    };

    // The guard as the agent attaches it: native XDP (veth supports it).
    let xdp = guard(duration, false)?;
    // The same program in generic XDP, which runs where nftables' ingress hook runs: on the
    // skb, after the veth's ordinary receive path.
    let generic = guard(duration, true)?;
    // No filter at all: the frames climb the stack to a closed UDP port and die there.
    let stack = {
        let up = uplinked()?;
        let sent = blast(&up, duration)?;
        (sent, sent, 0.0)
    };

    let rate = |n: u64| n as f64 / duration.as_secs_f64();
    let ratio = rate(xdp.1) / rate(nft.1).max(1.0);
    let generic_ratio = rate(generic.1) / rate(nft.1).max(1.0);
    let stack_ratio = rate(stack.1) / rate(nft.1).max(1.0);
    let mut body = String::from(
        "Program time per packet, by `BPF_PROG_TEST_RUN`: the kernel runs the pinned guard over one \
         frame again and again and reports the mean time per run; the floor is an XDP program that \
         only returns `XDP_DROP`, run the same way on the same frame.\n\n\
         | frame | guard's verdict | guard | floor | guard / floor |\n|---|---|---|---|---|\n",
    );
    for t in &timed {
        let _ = writeln!(
            body,
            "| {} | {} | {} ns | {} ns | {:.2}x |",
            t.what,
            if t.verdict == prog_run::XDP_DROP {
                "drop"
            } else {
                "pass"
            },
            t.guard_ns,
            t.floor_ns,
            f64::from(t.guard_ns) / f64::from(t.floor_ns.max(1)),
        );
    }
    let _ = write!(
        body,
        "\nEach time is the fastest of {} rounds of {} runs, guard and floor interleaved.\n\n",
        prog_run::ROUNDS,
        prog_run::REPEAT
    );
    body += &format!(
        "Generator: one AF_PACKET sender in an \"internet\" namespace, {PAYLOAD}-byte UDP payloads to a \
         closed port, over a veth into the node; the node drops them.\n\n\
         | path | sent pps | dropped pps | program time per packet |\n|---|---|---|---|\n\
         | nftables `netdev ingress ... udp dport {TARGET_PORT} drop` | {:.0} | {:.0} | - |\n\
         | gridnet `xdp_uplink` (native XDP on the veth, as the agent attaches it) | {:.0} | {:.0} | {:.0} ns |\n\
         | gridnet `xdp_uplink` forced to generic XDP | {:.0} | {:.0} | {:.0} ns |\n\
         | no filter: the UDP stack discards them (closed port) | {:.0} | {:.0} | - |\n\n\
         **Ratio, XDP guard / nftables, dropped packets per second: {ratio:.2}x** \
         (generic XDP / nftables: {generic_ratio:.2}x; no filter / nftables: {stack_ratio:.2}x).\n\n\
         The program time is the kernel's own accounting (`BPF_ENABLE_STATS`, on only during the \
         guard's runs; it includes the cost of the timing itself). On a veth the sender's CPU also \
         runs the receive path, so every per-packet cost lowers the generator's rate. Generic XDP, \
         which runs on the skb where nftables' hook does, drops at about the rate native XDP does: on \
         a veth the attach mode is not what costs. What does is the guard's own work (three bounded \
         header reads through `bpf_xdp_load_bytes`, a port lookup, a per-CPU counter in a hash map) \
         and, per the kernel source, handing the program a buffer with XDP's 256 bytes of headroom, \
         which a frame sent from a socket lacks, so the kernel copies it. Both filters spare the \
         node the stack: unfiltered, it handles about half as many packets. On physical NICs native \
         XDP runs in the driver before any skb exists, which is where the guard is meant to pay \
         off; veths cannot show that.\n",
        rate(nft.0),
        rate(nft.1),
        rate(xdp.0),
        rate(xdp.1),
        xdp.2,
        rate(generic.0),
        rate(generic.1),
        generic.2,
        rate(stack.0),
        rate(stack.1),
    );
    Ok(Section {
        title: "Uplink guard: XDP vs nftables",
        body,
    })
}

/// The guard's time on one frame, against the floor's.
struct Timed {
    what: &'static str,
    verdict: u32,
    guard_ns: u32,
    floor_ns: u32,
}

/// Times the guard of a node with one WireGuard port open, with `BPF_PROG_TEST_RUN`.
fn program_time() -> anyhow::Result<Vec<Timed>> {
    let up = uplinked()?;
    let plan = NodePlan {
        networks: vec![NetworkPlan {
            wireguard_listen_port: WG_PORT,
            ..test_network("bench/a")
        }],
        ..NodePlan::default()
    };
    up.node.apply_with(&plan, &["--uplink", "up0"])?;
    let pin = gridnet_agent::dataplane::pins::program_pin(
        &up.node.pin_root,
        gridnet_common::verdict::Program::XdpUplink,
    );
    let (inet_mac, node_mac) = ([0x02, 0, 0, 0, 0, 2], [0x02, 0, 0, 0, 0, 1]);
    let frames = [
        (
            "UDP to a closed port (the generator's frame below)",
            udp_frame(inet_mac, node_mac)?,
            prog_run::XDP_DROP,
        ),
        (
            "UDP to the WireGuard port",
            ipv4_frame(inet_mac, node_mac, Transport::Udp(WG_PORT))?,
            prog_run::XDP_PASS,
        ),
        (
            "TCP ACK to an ephemeral port, no connection",
            ipv4_frame(inet_mac, node_mac, Transport::Tcp(EPHEMERAL_PORT, TCP_ACK))?,
            prog_run::XDP_DROP,
        ),
    ];
    // Inside the node's namespace: a test run gives the program that namespace's loopback
    // device, so the guard's socket lookups search the node's sockets, as on its uplink.
    within(up.node.ns.name(), move || -> anyhow::Result<Vec<Timed>> {
        let guard = prog_run::open_pinned(&pin)?;
        let floor = prog_run::load_floor()?;
        frames
            .into_iter()
            .map(|(what, frame, verdict)| {
                let (guard_ns, floor_ns) =
                    prog_run::compare(guard.as_fd(), floor.as_fd(), &frame, verdict)
                        .with_context(|| format!("time the guard on: {what}"))?;
                Ok(Timed {
                    what,
                    verdict,
                    guard_ns,
                    floor_ns,
                })
            })
            .collect()
    })?
}

/// Blasts a node whose uplink runs the guard; with `generic`, the guard's pinned program is
/// moved from its native link to a generic XDP attachment first. Returns (sent, dropped, ns the
/// program itself ran per packet).
fn guard(duration: Duration, generic: bool) -> anyhow::Result<(u64, u64, f64)> {
    let up = uplinked()?;
    up.node
        .apply_with(&NodePlan::default(), &["--uplink", "up0"])?;
    if generic {
        // Unpinning the link detaches it; the program stays pinned and keeps its maps.
        gridnet_agent::dataplane::detach_xdp(&up.node.pin_root, "up0")?;
        let program = gridnet_agent::dataplane::pins::program_pin(
            &up.node.pin_root,
            gridnet_common::verdict::Program::XdpUplink,
        );
        let program = program.to_str().context("pin path")?;
        let out = run_in(
            up.node.ns.name(),
            "ip",
            &["link", "set", "dev", "up0", "xdpgeneric", "pinned", program],
        )?;
        ensure!(
            out.status.success(),
            "ip link set xdpgeneric: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The kernel times programs while this descriptor is open (and stops when it closes).
    let timing = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let sent = blast(&up, duration)?;
    drop(timing);
    let stats = up.node.bpf_stats()?;
    let program = stats["programs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "xdp_uplink")
        .context("xdp_uplink is not pinned")?;
    let runs = program["run_count"].as_u64().unwrap_or(0);
    let ns_per_run = program["run_time_ns"].as_u64().unwrap_or(0) as f64 / runs.max(1) as f64;
    let dropped = gridnet_tests::xdp_drops(&stats, None);
    Ok((sent, dropped, ns_per_run))
}

/// Sends UDP frames from `inet0` as fast as one thread can for `duration`; returns how many.
fn blast(up: &Uplinked, duration: Duration) -> anyhow::Result<u64> {
    let node_mac = mac_of(up.node.ns.name(), "up0")?;
    let inet_mac = mac_of(&up.inet, "inet0")?;
    let frame = udp_frame(inet_mac, node_mac)?;
    // The socket is opened inside the internet namespace; the loop runs on a thread of its own.
    let sender = within(&up.inet, || RawSender::open(c"inet0"))??;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let sending = std::thread::spawn(move || {
        let mut sent = 0u64;
        while !stopped.load(Ordering::Relaxed) {
            for _ in 0..1024 {
                if sender.send(&frame).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    });
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    sending
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))
}

fn mac_of(ns: &str, dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = run_in(ns, "ip", &["-o", "link", "show", dev])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .context("no MAC")?;
    let mut bytes = [0u8; 6];
    for (byte, part) in bytes.iter_mut().zip(mac.split(':')) {
        *byte = u8::from_str_radix(part, 16)?;
    }
    Ok(bytes)
}

/// An Ethernet/IPv4/UDP frame from the internet side to the node's closed port.
fn udp_frame(src: [u8; 6], dst: [u8; 6]) -> anyhow::Result<Vec<u8>> {
    ipv4_frame(src, dst, Transport::Udp(TARGET_PORT))
}

/// What an [`ipv4_frame`] carries.
#[derive(Clone, Copy)]
enum Transport {
    /// A UDP datagram of [`PAYLOAD`] bytes to this port.
    Udp(u16),
    /// A TCP segment without data to this port, with these flags.
    Tcp(u16, u8),
}

/// An Ethernet/IPv4 frame from the internet side (source port 40000) to the node.
fn ipv4_frame(src: [u8; 6], dst: [u8; 6], transport: Transport) -> anyhow::Result<Vec<u8>> {
    let src_ip: std::net::Ipv4Addr = INET_IP.parse()?;
    let dst_ip: std::net::Ipv4Addr = NODE_IP.parse()?;
    let mut l4 = 40000u16.to_be_bytes().to_vec();
    let protocol = match transport {
        Transport::Udp(port) => {
            l4.extend(port.to_be_bytes());
            l4.extend((8 + PAYLOAD as u16).to_be_bytes());
            l4.extend([0, 0]);
            l4.extend([0u8; PAYLOAD]);
            IPPROTO_UDP
        }
        Transport::Tcp(port, flags) => {
            l4.extend(port.to_be_bytes());
            // Sequence and acknowledgement numbers, data offset 5 words, the flags, a window;
            // checksum and urgent pointer zero.
            l4.extend([0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            IPPROTO_TCP
        }
    };
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(src_ip.octets());
    ip.extend(dst_ip.octets());
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let checksum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = dst.to_vec();
    frame.extend(src);
    frame.extend(0x0800u16.to_be_bytes());
    frame.extend(ip);
    frame.extend(l4);
    Ok(frame)
}
