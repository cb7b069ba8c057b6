//! gridnet's tunnel between two nodes against two stock userspace WireGuard devices between two
//! namespaces on the same kind of underlay: wireguard-go and boringtun-cli. TCP throughput
//! (iperf3, one and four streams) and request/response round trips, the paths measured in turn.

mod measure;
mod reference;

use std::{fmt::Write as _, time::Duration};

use anyhow::{Context as _, ensure};
use gridnet_tests::{Grid, ping, proto::WIREGUARD_PORT, run_in, wait};
use measure::{Ends, ROUND_TRIPS, WARMUP_ROUND_TRIPS};
use reference::{Implementation, ReferencePair};

use super::Section;

/// Times each path is measured. Paths take turns, and each round starts with a different one,
/// so a machine that slows down or speeds up during the run does not favour one path; three
/// rounds give a median that one disturbed run cannot move.
const ROUNDS: usize = 3;

/// Parallel TCP streams of the second throughput measurement: more than the two cores, so a
/// tunnel that can spread its work over both gets to.
const STREAMS: u32 = 4;

/// The label of the path without a tunnel.
const UNDERLAY: &str = "underlay, no tunnel";

/// How long a path may take to carry its first packet: the first WireGuard handshake, which a
/// userspace device starts when the first packet waits; seconds at most.
const FIRST_PACKET: Duration = Duration::from_secs(20);

/// A path under test and how to check that its traffic crossed the tunnel.
enum Tunnel {
    Gridnet(Grid),
    Reference(ReferencePair),
    /// No tunnel: the baselines' underlay itself, between the wireguard-go pair's namespaces
    /// (which that pair's path owns), as the floor every tunnel adds its cost to.
    None,
}

struct Path {
    label: &'static str,
    ends: Ends,
    tunnel: Tunnel,
    one: Vec<f64>,
    many: Vec<f64>,
    round_trips: Vec<Duration>,
    /// Each round's median round trip, in microseconds: how far the rounds disagree.
    round_medians: Vec<f64>,
    /// Bytes iperf3 delivered over this path, all runs together.
    delivered: u64,
    retransmits: u64,
}

impl Path {
    fn new(label: &'static str, ends: Ends, tunnel: Tunnel) -> Self {
        Self {
            label,
            ends,
            tunnel,
            one: Vec::new(),
            many: Vec::new(),
            round_trips: Vec::new(),
            round_medians: Vec::new(),
            delivered: 0,
            retransmits: 0,
        }
    }

    fn measure(&mut self, seconds: u64) -> anyhow::Result<()> {
        let one = measure::iperf3(&self.ends, 1, seconds)
            .with_context(|| format!("{}: iperf3, one stream", self.label))?;
        let many = measure::iperf3(&self.ends, STREAMS, seconds)
            .with_context(|| format!("{}: iperf3, {STREAMS} streams", self.label))?;
        let round_trips = measure::round_trips(&self.ends)
            .with_context(|| format!("{}: round trips", self.label))?;
        let round_median = micros(measure::percentile(&round_trips, 50));
        println!(
            "bench: {}: {:.2} Gbit/s (1 stream, {} retransmits), {:.2} Gbit/s ({STREAMS} streams, \
             {} retransmits), round trip median {:.1} us, p99 {:.1} us",
            self.label,
            one.gbps,
            one.retransmits,
            many.gbps,
            many.retransmits,
            round_median,
            micros(measure::percentile(&round_trips, 99)),
        );
        self.one.push(one.gbps);
        self.many.push(many.gbps);
        self.round_trips.extend(round_trips);
        self.round_medians.push(round_median);
        self.delivered += one.bytes + many.bytes;
        self.retransmits += one.retransmits + many.retransmits;
        self.check_alive()
    }

    /// Fails if the tunnel's daemon died or the agent reports a failure: numbers from a path
    /// that broke mid-run mean nothing.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match &mut self.tunnel {
            Tunnel::Gridnet(grid) => {
                for id in [1, 2] {
                    let status = grid.agent(id)?.status()?;
                    ensure!(
                        gridnet_tests::healthy(&status),
                        "gridnet on node {id} reports a failure: {status:#}"
                    );
                }
                Ok(())
            }
            Tunnel::Reference(pair) => pair.check_running(),
            Tunnel::None => Ok(()),
        }
    }

    /// Bytes the server end's tunnel received (`None` without a tunnel): at least what iperf3
    /// delivered, or the traffic went some other way.
    fn tunnel_received(&self) -> anyhow::Result<Option<u64>> {
        match &self.tunnel {
            Tunnel::Gridnet(grid) => {
                let status = grid.agent(2)?.status()?;
                let tunnel = gridnet_tunnel(&status)?;
                Ok(Some(
                    tunnel["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|peer| peer["rx_bytes"].as_u64())
                        .sum(),
                ))
            }
            Tunnel::Reference(pair) => pair.server_received().map(Some),
            Tunnel::None => Ok(None),
        }
    }

    fn summary(&self) -> anyhow::Result<Summary> {
        let median = |values: &[f64]| measure::median(values).context("no measurement");
        Ok(Summary {
            one: median(&self.one)?,
            many: median(&self.many)?,
            median_us: micros(measure::percentile(&self.round_trips, 50)),
            p99_us: micros(measure::percentile(&self.round_trips, 99)),
            round_medians_us: self.round_medians.clone(),
        })
    }
}

/// A path's results: medians over the rounds for throughput, percentiles over every round's
/// samples for round trips.
struct Summary {
    one: f64,
    many: f64,
    median_us: f64,
    p99_us: f64,
    round_medians_us: Vec<f64>,
}

fn micros(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// alice/web's tunnel in an agent's status.
fn gridnet_tunnel(status: &serde_json::Value) -> anyhow::Result<&serde_json::Value> {
    status["tunnels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["network"] == "alice/web")
        .with_context(|| format!("no alice/web tunnel in the status: {status:#}"))
}

/// Two nodes with alice/web, one container on each (10.1.1.2 on node 1, 10.1.2.2 on node 2),
/// the agents running as an operator runs them (guarding the uplink).
fn gridnet() -> anyhow::Result<(Grid, Ends)> {
    let mut grid = Grid::new("bench-tun", 2)?;
    grid.network("alice", "web", &[1, 2], WIREGUARD_PORT)?;
    grid.container("alice", "w1", "web", 1, 2)?;
    let seq = grid.container("alice", "w2", "web", 2, 2)?;
    grid.start("uplinks: [up0]\n", seq)?;
    let ends = Ends {
        client: grid.node(1).container_ns("alice.w1"),
        server: grid.node(2).container_ns("alice.w2"),
        server_ip: "10.1.2.2".parse()?,
    };
    Ok((grid, ends))
}

/// The MTU of gridnet's tunnel device on node 1, which the baselines' devices get too, so every
/// path carries segments of one size.
fn gridnet_mtu(grid: &Grid) -> anyhow::Result<u32> {
    let status = grid.agent(1)?.status()?;
    let ifname = gridnet_tunnel(&status)?["ifname"]
        .as_str()
        .context("tunnel without ifname")?
        .to_owned();
    let out = run_in(
        grid.node(1).ns.name(),
        "ip",
        &["-j", "link", "show", &ifname],
    )?;
    ensure!(out.status.success(), "ip link show {ifname}");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mtu = links[0]["mtu"].as_u64().context("ip -j link: no mtu")?;
    Ok(u32::try_from(mtu)?)
}

pub fn run(seconds: u64) -> anyhow::Result<Section> {
    println!("bench: gridnet tunnel vs wireguard-go and boringtun-cli");
    // Found (or installed) before anything is built: the install takes minutes.
    let boringtun = reference::boringtun_cli();
    if let Err(e) = &boringtun {
        println!("bench: boringtun-cli left out: {e:#}");
    }

    let (grid, ends) = gridnet()?;
    let mtu = gridnet_mtu(&grid)?;
    let mut paths = vec![Path::new("gridnet", ends, Tunnel::Gridnet(grid))];
    let wireguard_go = ReferencePair::new(&Implementation::WireguardGo, "10.2.0", mtu)?;
    let underlay = Ends {
        server_ip: "192.0.2.2".parse()?,
        ..wireguard_go.ends.clone()
    };
    paths.push(Path::new(
        "wireguard-go",
        wireguard_go.ends.clone(),
        Tunnel::Reference(wireguard_go),
    ));
    if let Ok(bin) = &boringtun {
        let pair = ReferencePair::new(&Implementation::BoringtunCli(bin.clone()), "10.3.0", mtu)?;
        paths.push(Path::new(
            "boringtun-cli",
            pair.ends.clone(),
            Tunnel::Reference(pair),
        ));
    }
    paths.push(Path::new(UNDERLAY, underlay, Tunnel::None));

    for path in &paths {
        let target = path.ends.server_ip.to_string();
        wait::until(
            FIRST_PACKET,
            &format!("{}: a first ping through the tunnel", path.label),
            || ping(&path.ends.client, &target, 1),
            |&answered| answered,
        )?;
    }
    for round in 0..ROUNDS {
        println!("bench: round {} of {ROUNDS}", round + 1);
        let n = paths.len();
        for i in 0..n {
            paths[(round + i) % n].measure(seconds)?;
        }
    }
    for path in &paths {
        let Some(received) = path.tunnel_received()? else {
            continue;
        };
        ensure!(
            received >= path.delivered,
            "{}: iperf3 delivered {} bytes but the server's tunnel received only {received}: \
             the traffic did not take the tunnel",
            path.label,
            path.delivered
        );
    }
    if let Tunnel::Gridnet(grid) = &paths[0].tunnel {
        print_gridnet_drops(grid)?;
    }

    let summaries = paths
        .iter()
        .map(|p| Ok((p.label, p.summary()?, p.retransmits)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Section {
        title: "Tunnel: gridnet vs wireguard-go and boringtun-cli",
        body: report(seconds, mtu, &summaries, boringtun.err()),
    })
}

/// What gridnet's tunnels dropped during the run, per node and reason: the first place to look
/// when its numbers fall short.
fn print_gridnet_drops(grid: &Grid) -> anyhow::Result<()> {
    for id in [1, 2] {
        let status = grid.agent(id)?.status()?;
        let tunnel = gridnet_tunnel(&status)?;
        let peers = tunnel["peers"].as_array().into_iter().flatten();
        let drops: Vec<String> = std::iter::once(&tunnel["drops"])
            .chain(peers.map(|p| &p["drops"]))
            .filter_map(serde_json::Value::as_object)
            .flatten()
            .filter(|(_, n)| n.as_u64() > Some(0))
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let drops = if drops.is_empty() {
            "none".to_owned()
        } else {
            drops.join(", ")
        };
        println!("bench: gridnet node {id} tunnel drops: {drops}");
    }
    Ok(())
}

fn report(
    seconds: u64,
    mtu: u32,
    rows: &[(&str, Summary, u64)],
    boringtun_missing: Option<anyhow::Error>,
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut body = format!(
        "Two nodes on an underlay bridge (each node's uplink a veth, MTU 1500). gridnet: \
         `gridnet run` on both nodes (release build, uplink guard on), network alice/web with a \
         container on each node; the traffic goes container -> `tc_from_container` -> TUN -> \
         gridnet's userspace WireGuard (boringtun's `Tunn`) -> UDP over the underlay -> and back \
         up through the other node's TUN and `tc_from_tunnel`. Baselines: the same underlay, a \
         stock userspace WireGuard device in each node namespace configured with `wg` (key, \
         listen port, one peer with its endpoint and allowed IP), MTU {mtu} like gridnet's \
         tunnel; their traffic starts and ends in the node namespaces (no container hop). \
         wireguard-go is Debian's; boringtun-cli is crates.io's 0.7.1 with its defaults \
         (4 threads). The underlay row is the same two namespaces talking over the bridge \
         without a tunnel: the floor each tunnel adds its cost to.\n\n\
         iperf3 TCP, {seconds} s per run, one stream and {STREAMS} streams; request/response: \
         {ROUND_TRIPS} one-byte round trips over one TCP connection (Nagle off), each timed, \
         after {WARMUP_ROUND_TRIPS} untimed. {ROUNDS} rounds, the paths taking turns; throughput \
         is the median of the rounds, round-trip percentiles are over all rounds' samples (each \
         round's own median is listed too, to show how far the rounds agree). One \
         run on a machine with {cores} cores. In the ratios, throughput above 1x and round trips \
         below 1x favour gridnet.\n\n\
         | path | TCP, 1 stream | TCP, {STREAMS} streams | round trip, median | round trip, p99 \
         | each round's median round trip | TCP retransmits, all runs |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for (label, s, retransmits) in rows {
        let _ = writeln!(
            body,
            "| {label} | {:.2} Gbit/s | {:.2} Gbit/s | {:.1} us | {:.1} us | {} us | {retransmits} |",
            s.one,
            s.many,
            s.median_us,
            s.p99_us,
            s.round_medians_us
                .iter()
                .map(|us| format!("{us:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    if let Some(e) = &boringtun_missing {
        let _ = writeln!(body, "| boringtun-cli | not measured: {e:#} | | | | | |");
    }
    body.push('\n');
    let gridnet = rows.iter().find(|(label, ..)| *label == "gridnet");
    let baselines = rows
        .iter()
        .filter(|(label, ..)| !["gridnet", UNDERLAY].contains(label));
    for (label, s, _) in baselines {
        let Some((_, g, _)) = gridnet else { break };
        let _ = writeln!(
            body,
            "**Ratios, gridnet / {label}: throughput {:.2}x (1 stream), {:.2}x ({STREAMS} \
             streams); round trip {:.2}x (median), {:.2}x (p99).**\n",
            g.one / s.one,
            g.many / s.many,
            g.median_us / s.median_us,
            g.p99_us / s.p99_us
        );
    }
    body
}
