//! Drop rates on a veth: one generator thread in the "internet" namespace sends UDP to a closed
//! port of the node for a fixed time, through a filter on the node's uplink.

use std::{
    ffi::CStr,
    os::fd::AsFd as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, ensure};
use gridnet_agent::plan::NodePlan;
use gridnet_tests::{RawSender, Uplinked, ip, run_in, unique_id, uplinked, within};

use super::{
    bpf::{Pin, Raw},
    frame::{self, Ip, Transport},
};

/// The port the generator aims at: nobody listens, nothing allows it.
pub const TARGET_PORT: u16 = 9;
/// The nftables table the benchmark creates in the node's namespace (which goes with it).
const NFT_TABLE: &str = "gridnet_bench";

/// How the generator's frames reach the node's uplink.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// From an AF_PACKET socket straight into the uplink's peer: socket-built buffers, which a
    /// veth copies before XDP may see them (their head is not a page fragment and has less
    /// than XDP's 256 bytes of headroom), and which reach nftables as they are.
    Socket,
    /// First through a second veth whose XDP program redirects them to the uplink's peer: they
    /// arrive as XDP frames in page buffers, as from a NIC's receive ring. The copy happens on
    /// the generator's side, the same for every filter; XDP on the uplink runs on the buffer
    /// itself, and anything else gets an skb built around it.
    Redirected,
}

/// What stands on the node's uplink.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// An nftables rule at the netdev ingress hook.
    Nftables,
    /// An XDP program that only returns `XDP_DROP`, in the driver (native).
    Floor,
    /// The guard as the agent attaches it (native XDP on a veth).
    Guard,
    /// The guard as generic XDP, which runs on the skb, where nftables' hook does.
    GuardGeneric,
    /// Nothing: the UDP stack discards the datagrams (closed port).
    Stack,
}

/// What one run measured.
#[derive(Clone, Copy)]
pub struct Rate {
    pub sent: u64,
    pub dropped: u64,
    /// Nanoseconds per run of the guard by the kernel's own accounting (`BPF_ENABLE_STATS`).
    pub program_ns: Option<f64>,
}

/// Blasts a fresh node with `filter` on its uplink for `duration`, fed by `feed`.
pub fn measure(filter: Filter, feed: Feed, duration: Duration) -> anyhow::Result<Rate> {
    let up = uplinked()?;
    let node = up.node.ns.name();
    match filter {
        Filter::Nftables => nftables(node)?,
        Filter::Floor => attach(node, "up0", &Raw::Drop, "xdpdrv")?,
        Filter::Guard | Filter::GuardGeneric => {
            up.node
                .apply_with(&NodePlan::default(), &["--uplink", "up0"])?;
            if filter == Filter::GuardGeneric {
                generic(&up)?;
            }
        }
        Filter::Stack => {}
    }
    let interface = match feed {
        Feed::Socket => c"inet0",
        Feed::Redirected => {
            if matches!(filter, Filter::Nftables | Filter::Stack) {
                // A veth takes XDP frames only while an XDP program runs on it.
                attach(node, "up0", &Raw::Pass, "xdpdrv")?;
            }
            redirected(&up)?
        }
    };
    let guarded = matches!(filter, Filter::Guard | Filter::GuardGeneric);
    // The kernel times programs while this descriptor is open (and stops when it closes).
    let timing = guarded
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .context("BPF_ENABLE_STATS")?;
    let sent = blast(&up, interface, duration)?;
    drop(timing);
    Ok(match filter {
        Filter::Nftables => Rate {
            sent,
            dropped: nft_dropped(node)?,
            program_ns: None,
        },
        Filter::Guard | Filter::GuardGeneric => {
            let stats = up.node.bpf_stats()?;
            let program = stats["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "xdp_uplink")
                .context("xdp_uplink is not pinned")?;
            let runs = program["run_count"].as_u64().unwrap_or(0);
            let time = program["run_time_ns"].as_u64().unwrap_or(0);
            Rate {
                sent,
                dropped: gridnet_tests::xdp_drops(&stats, None),
                program_ns: Some(time as f64 / runs.max(1) as f64),
            }
        }
        // Nothing counts: every frame sent arrives (a full receive ring refuses the send
        // instead) and is dropped.
        Filter::Floor | Filter::Stack => Rate {
            sent,
            dropped: sent,
            program_ns: None,
        },
    })
}

fn nft(node: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = run_in(node, "nft", args)?;
    ensure!(
        out.status.success(),
        "nft {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A counting drop rule for the generator's port at the earliest hook nftables has.
fn nftables(node: &str) -> anyhow::Result<()> {
    nft(node, &["add", "table", "netdev", NFT_TABLE])?;
    nft(
        node,
        &[
            "add",
            "chain",
            "netdev",
            NFT_TABLE,
            "in",
            "{ type filter hook ingress device up0 priority 0 ; }",
        ],
    )?;
    let port = TARGET_PORT.to_string();
    nft(
        node,
        &[
            "add", "rule", "netdev", NFT_TABLE, "in", "udp", "dport", &port, "counter", "drop",
        ],
    )?;
    Ok(())
}

fn nft_dropped(node: &str) -> anyhow::Result<u64> {
    let listing = nft(node, &["list", "table", "netdev", NFT_TABLE])?;
    listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok())
        .context("no nftables counter")
}

/// Loads a raw program and attaches it to `device` in namespace `ns` (`mode`: `xdpdrv` or
/// `xdpgeneric`). The device holds the program from then on; the pin `ip` needs goes at once.
fn attach(ns: &str, device: &str, program: &Raw, mode: &str) -> anyhow::Result<()> {
    let loaded = program.load()?;
    let pin = Pin::new(
        loaded.as_fd(),
        &Path::new("/sys/fs/bpf").join(format!("gridnet-bench-{}", unique_id())),
    )?;
    attach_pinned(ns, device, pin.path(), mode)
}

fn attach_pinned(ns: &str, device: &str, pin: &Path, mode: &str) -> anyhow::Result<()> {
    let pin = pin.to_str().context("pin path")?;
    ip(ns, &["link", "set", "dev", device, mode, "pinned", pin])
}

/// How long the guard's native link may linger after its pin is gone: bpffs drops a pinned
/// link's last reference only after an RCU grace period, so the detach lands a moment after
/// the unpin.
const LINK_RELEASE: Duration = Duration::from_secs(2);

/// Moves the guard from its native link to a generic XDP attachment.
fn generic(up: &Uplinked) -> anyhow::Result<()> {
    // Unpinning the link detaches it; the program stays pinned and keeps its maps.
    gridnet_agent::dataplane::detach_xdp(&up.node.pin_root, "up0")?;
    let program = gridnet_agent::dataplane::pins::program_pin(
        &up.node.pin_root,
        gridnet_common::verdict::Program::XdpUplink,
    );
    let deadline = std::time::Instant::now() + LINK_RELEASE;
    loop {
        // The kernel refuses generic XDP while the native attachment is still there.
        match attach_pinned(up.node.ns.name(), "up0", &program, "xdpgeneric") {
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

/// A second veth in the internet namespace, `gen0` to `gen1`, whose XDP program redirects
/// every frame to `inet0`; returns the interface to send into.
fn redirected(up: &Uplinked) -> anyhow::Result<&'static CStr> {
    let inet = up.inet.name();
    ip(
        inet,
        &[
            "link", "add", "gen0", "type", "veth", "peer", "name", "gen1",
        ],
    )?;
    for device in ["gen0", "gen1"] {
        ip(inet, &["link", "set", device, "up"])?;
    }
    // SAFETY: a NUL-terminated name; `if_nametoindex` only reads it.
    let uplink_peer = within(inet, || unsafe { libc::if_nametoindex(c"inet0".as_ptr()) })?;
    ensure!(uplink_peer != 0, "no inet0 in {inet}");
    attach(inet, "gen1", &Raw::Redirect(uplink_peer), "xdpdrv")?;
    Ok(c"gen0")
}

/// Sends UDP frames to the node's closed port out of `interface` (in the internet namespace) as
/// fast as one thread can for `duration`; returns how many.
fn blast(up: &Uplinked, interface: &'static CStr, duration: Duration) -> anyhow::Result<u64> {
    let node_mac = mac_of(up.node.ns.name(), "up0")?;
    let inet_mac = mac_of(up.inet.name(), "inet0")?;
    let frame = frame::frame(inet_mac, node_mac, Ip::V4, Transport::Udp(TARGET_PORT))?;
    // The socket is opened inside the internet namespace; the loop runs on a thread of its own.
    let sender = within(up.inet.name(), move || RawSender::open(interface))??;
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
