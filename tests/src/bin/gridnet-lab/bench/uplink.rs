//! The XDP uplink guard's cost: its own time per packet inside the kernel (`BPF_PROG_TEST_RUN`,
//! against the least an XDP program can do), and its drop rate against an nftables rule doing
//! the same job at the earliest hook nftables has (netdev ingress), fed by the same generator.

mod bpf;
mod frame;
mod veth;

use std::{fmt::Write as _, os::fd::AsFd as _, time::Duration};

use anyhow::Context as _;
use gridnet_agent::plan::{NetworkPlan, NodePlan};
use gridnet_tests::{test_network, uplinked, within};

use super::Section;
use bpf::{XDP_DROP, XDP_PASS};
use frame::{Ip, PAYLOAD, Transport};
use veth::{Feed, Filter, Rate, TARGET_PORT};

/// The WireGuard listen port of the node whose program is timed: an allowed port.
const WG_PORT: u16 = 51820;
/// A port inside Linux's default ephemeral range (32768-60999) with no connection on it.
const EPHEMERAL_PORT: u16 = 45000;
/// TCP flags of a bare acknowledgement.
const TCP_ACK: u8 = 0x10;
/// Drop-rate measurements per filter, interleaved; the best counts (other load on the machine
/// only ever lowers a rate, and it comes and goes on a shared machine).
const VETH_ROUNDS: usize = 3;

pub fn run(seconds: u64) -> anyhow::Result<Section> {
    let duration = Duration::from_secs(seconds);
    println!(
        "bench: uplink guard, BPF_PROG_TEST_RUN against an XDP_DROP floor ({} and {} runs x {} rounds)",
        bpf::REPEAT,
        bpf::LONG_REPEAT,
        bpf::ROUNDS
    );
    let timed = program_time()?;
    println!(
        "bench: uplink guard (XDP) vs nftables netdev ingress drop, {seconds} s each, {VETH_ROUNDS} rounds"
    );
    let runs = [
        (Filter::Nftables, Feed::Socket),
        (Filter::Floor, Feed::Socket),
        (Filter::Guard, Feed::Socket),
        (Filter::GuardGeneric, Feed::Socket),
        (Filter::Stack, Feed::Socket),
        (Filter::Nftables, Feed::Redirected),
        (Filter::Floor, Feed::Redirected),
        (Filter::Guard, Feed::Redirected),
    ];
    let mut best: Vec<Option<Rate>> = vec![None; runs.len()];
    for _ in 0..VETH_ROUNDS {
        for (slot, &(filter, feed)) in best.iter_mut().zip(&runs) {
            let rate = veth::measure(filter, feed, duration)?;
            if slot.is_none_or(|b| rate.dropped > b.dropped) {
                *slot = Some(rate);
            }
        }
    }
    let best: Vec<Rate> = best.into_iter().flatten().collect();
    let (Ok(socket), Ok(redirected)) = (
        <[Rate; 5]>::try_from(&best[..5]),
        <[Rate; 3]>::try_from(&best[5..]),
    ) else {
        anyhow::bail!("a measurement is missing");
    };

    let mut body = String::new();
    program_table(&mut body, &timed);
    socket_table(&mut body, &socket, duration);
    redirected_table(&mut body, &redirected, duration);
    Ok(Section {
        title: "Uplink guard: XDP vs nftables",
        body,
    })
}

/// The guard's time on one frame, against the floor's.
struct Timed {
    what: &'static str,
    verdict: u32,
    guard: bpf::Time,
    floor: bpf::Time,
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
    let frame = |ip, transport| frame::frame(inet_mac, node_mac, ip, transport);
    let frames = [
        (
            "UDP to a closed port (the generator's frame below)",
            frame(Ip::V4, Transport::Udp(TARGET_PORT))?,
            XDP_DROP,
        ),
        (
            "UDP to the WireGuard port",
            frame(Ip::V4, Transport::Udp(WG_PORT))?,
            XDP_PASS,
        ),
        (
            "IPv6 UDP to a closed port",
            frame(Ip::V6, Transport::Udp(TARGET_PORT))?,
            XDP_DROP,
        ),
        (
            "UDP to a closed port, IPv4 with options (the general path)",
            frame(Ip::V4WithOptions, Transport::Udp(TARGET_PORT))?,
            XDP_DROP,
        ),
        (
            "TCP ACK to an ephemeral port, no connection (a socket lookup)",
            frame(Ip::V4, Transport::Tcp(EPHEMERAL_PORT, TCP_ACK))?,
            XDP_DROP,
        ),
    ];
    // Inside the node's namespace: a test run gives the program that namespace's loopback
    // device, so the guard's socket lookups search the node's sockets, as on its uplink.
    within(up.node.ns.name(), move || -> anyhow::Result<Vec<Timed>> {
        let guard = bpf::open_pinned(&pin)?;
        let floor = bpf::Raw::Drop.load()?;
        frames
            .into_iter()
            .map(|(what, frame, verdict)| {
                let (guard, floor) = bpf::compare(guard.as_fd(), floor.as_fd(), &frame, verdict)
                    .with_context(|| format!("time the guard on: {what}"))?;
                Ok(Timed {
                    what,
                    verdict,
                    guard,
                    floor,
                })
            })
            .collect()
    })?
}

fn program_table(body: &mut String, timed: &[Timed]) {
    body.push_str(
        "Program time per packet, by `BPF_PROG_TEST_RUN`: the kernel runs the pinned guard over one \
         frame again and again; the floor is an XDP program that only returns `XDP_DROP`, run the \
         same way on the same frame, so what the kernel's test loop itself costs per run is in \
         both.\n\n\
         | frame | guard's verdict | guard | floor | guard / floor | as the kernel reports it (whole ns): guard / floor |\n\
         |---|---|---|---|---|---|\n",
    );
    for t in timed {
        let verdict = if t.verdict == XDP_DROP {
            "drop"
        } else {
            "pass"
        };
        let _ = writeln!(
            body,
            "| {} | {verdict} | {:.2} ns | {:.2} ns | **{:.2}x** | {} ns / {} ns = {:.2}x |",
            t.what,
            t.guard.per_run_ns,
            t.floor.per_run_ns,
            t.guard.per_run_ns / t.floor.per_run_ns.max(0.01),
            t.guard.kernel_ns,
            t.floor.kernel_ns,
            f64::from(t.guard.kernel_ns) / f64::from(t.floor.kernel_ns.max(1)),
        );
    }
    let _ = write!(
        body,
        "\nThe kernel reports a mean in whole nanoseconds, rounded down (last column: the fastest of \
         {rounds} calls of {repeat} runs); at these times rounding alone moves a ratio by up to 20%. \
         The guard and floor columns are the same means to a hundredth of a nanosecond: a call of \
         {long} runs less a call of 2, timed from userspace, over the difference in runs, which \
         takes out what a call costs whatever its runs; the median of {rounds} rounds, guard and \
         floor interleaved.\n\n",
        rounds = bpf::ROUNDS,
        repeat = bpf::REPEAT,
        long = bpf::LONG_REPEAT,
    );
}

/// Packets per second.
fn pps(n: u64, duration: Duration) -> f64 {
    n as f64 / duration.as_secs_f64()
}

/// One table row: what, sent and dropped per second, the guard's own time if measured.
fn row(body: &mut String, what: &str, rate: &Rate, duration: Duration) {
    let time = rate
        .program_ns
        .map_or_else(|| "-".to_owned(), |ns| format!("{ns:.0} ns"));
    let _ = writeln!(
        body,
        "| {what} | {:.0} | {:.0} | {time} |",
        pps(rate.sent, duration),
        pps(rate.dropped, duration),
    );
}

/// `a / b` in dropped packets per second.
fn ratio(a: &Rate, b: &Rate) -> f64 {
    a.dropped as f64 / (b.dropped as f64).max(1.0)
}

const TABLE_HEAD: &str =
    "| path | sent pps | dropped pps | program time per packet |\n|---|---|---|---|\n";

fn socket_table(body: &mut String, rates: &[Rate; 5], duration: Duration) {
    let [nft, floor, guard, generic, stack] = rates;
    let _ = write!(
        body,
        "Generator: one AF_PACKET sender in an \"internet\" namespace, {PAYLOAD}-byte UDP payloads \
         to a closed port, over a veth into the node; the node drops them. Each rate is the best of \
         {VETH_ROUNDS} runs, every filter's runs interleaved with the others'.\n\n{TABLE_HEAD}"
    );
    let rule = format!("nftables `netdev ingress ... udp dport {TARGET_PORT} drop`");
    row(body, &rule, nft, duration);
    row(
        body,
        "the floor (only `XDP_DROP`), native XDP on the veth",
        floor,
        duration,
    );
    row(
        body,
        "gridnet `xdp_uplink` (native XDP on the veth, as the agent attaches it)",
        guard,
        duration,
    );
    row(
        body,
        "gridnet `xdp_uplink` forced to generic XDP",
        generic,
        duration,
    );
    row(
        body,
        "no filter: the UDP stack discards them (closed port)",
        stack,
        duration,
    );
    let _ = write!(
        body,
        "\n**Ratio, XDP guard / nftables, dropped packets per second: {:.2}x** (the floor / \
         nftables: {:.2}x; guard / floor: {:.2}x; generic XDP / nftables: {:.2}x; no filter / \
         nftables: {:.2}x).\n\n",
        ratio(guard, nft),
        ratio(floor, nft),
        ratio(guard, floor),
        ratio(generic, nft),
        ratio(stack, nft),
    );
    body.push_str(
        "The program time is the kernel's own accounting (`BPF_ENABLE_STATS`, on only during the \
         guard's runs; it includes the cost of the timing itself). On a veth the sender's CPU also \
         runs the receive path, so every per-packet cost lowers the generator's rate. The floor \
         row is the ceiling of native XDP on this feed: no program, however short, drops faster. \
         Per the kernel source, a veth hands XDP a buffer of its own, and a frame built by a \
         socket has neither XDP's 256 bytes of headroom nor a page-fragment head, so the veth \
         copies every one before the program runs (generic XDP copies it too), while nftables' \
         ingress hook reads the skb in place.\n\n",
    );
}

fn redirected_table(body: &mut String, rates: &[Rate; 3], duration: Duration) {
    let [nft, floor, guard] = rates;
    let _ = write!(
        body,
        "The same generator, its frames first redirected by XDP through a second veth, so they \
         reach the node's uplink as XDP frames in page buffers, as from a NIC's receive ring: the \
         copy happens on the generator's side, the same for every filter.\n\n{TABLE_HEAD}"
    );
    row(
        body,
        "nftables, same rule (behind an `XDP_PASS` program: a veth takes XDP frames only with one)",
        nft,
        duration,
    );
    row(body, "the floor, native XDP", floor, duration);
    row(body, "gridnet `xdp_uplink`, native XDP", guard, duration);
    let _ = write!(
        body,
        "\n**Ratio, XDP guard / nftables, dropped packets per second: {:.2}x** (the floor / \
         nftables: {:.2}x; guard / floor: {:.2}x).\n\n",
        ratio(guard, nft),
        ratio(floor, nft),
        ratio(guard, floor),
    );
    body.push_str(
        "Here XDP runs on the buffer as it arrived and a drop frees it at once, while nftables \
         needs an skb built around it first: what a physical NIC's driver does too, which is \
         where the guard is meant to pay off.\n",
    );
}
