//! The local fast path (tc_from_container + bpf_redirect_peer) against a Linux bridge between
//! the same two namespaces: TCP throughput (iperf3) and request/response latency.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::plan::NodePlan;
use gridnet_tests::{
    Node, TestNetns, in_netns, ip, listens_on, test_container, test_network, wait, within,
};

use super::Section;

/// Request/response round trips per latency measurement.
const ROUND_TRIPS: u32 = 20_000;

/// iperf3's own default port, named on both sides so the readiness check looks for the right one.
const IPERF3_PORT: u16 = 5201;

/// How long the iperf3 server may take to listen: milliseconds; the margin is for a loaded
/// machine.
const IPERF3_START: Duration = Duration::from_secs(5);

struct Pair {
    client: String,
    server: String,
    server_ip: &'static str,
}

pub fn run(seconds: u64) -> anyhow::Result<Section> {
    println!("bench: local fast path vs Linux bridge");
    // gridnet: two containers of one network on one node.
    let node = Node::labelled("bench")?;
    let network = test_network("bench/fast");
    let plan = NodePlan {
        networks: vec![network.clone()],
        containers: vec![
            test_container("c1", &network.name, 2),
            test_container("c2", &network.name, 3),
        ],
        gateways: Vec::new(),
    };
    node.apply(&plan)?;
    let gridnet = Pair {
        client: node.container_ns("c1"),
        server: node.container_ns("c2"),
        server_ip: "10.1.1.3",
    };

    // The baseline: the same two namespaces' shape, joined by a bridge.
    let bridge = BridgeNet::new()?;
    let baseline = Pair {
        client: bridge.ns[0].name().to_owned(),
        server: bridge.ns[1].name().to_owned(),
        server_ip: "10.9.0.3",
    };

    let mut rows = Vec::new();
    for (label, pair) in [("Linux bridge", &baseline), ("gridnet fast path", &gridnet)] {
        let gbps = iperf3(pair, seconds)?;
        let rr_us = request_response(pair)?;
        println!("bench: {label}: {gbps:.2} Gbit/s, {rr_us:.1} us per round trip");
        rows.push((label, gbps, rr_us));
    }
    let (b, g) = (&rows[0], &rows[1]);
    let body = format!(
        "Two namespaces on one machine. iperf3, one TCP stream, {seconds} s; request/response: \
         {ROUND_TRIPS} one-byte TCP round trips (Nagle off).\n\n\
         | path | TCP throughput | round trip |\n|---|---|---|\n\
         | {} | {:.2} Gbit/s | {:.1} us |\n| {} | {:.2} Gbit/s | {:.1} us |\n\n\
         **Ratios, gridnet / bridge: throughput {:.2}x, round-trip time {:.2}x.**\n",
        b.0,
        b.1,
        b.2,
        g.0,
        g.1,
        g.2,
        g.1 / b.1,
        g.2 / b.2
    );
    Ok(Section {
        title: "Local fast path vs Linux bridge",
        body,
    })
}

fn iperf3(pair: &Pair, seconds: u64) -> anyhow::Result<f64> {
    let port = IPERF3_PORT.to_string();
    let mut server = Command::new("iperf3");
    server
        .args(["-s", "-1", "-B", pair.server_ip, "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    in_netns(&mut server, &pair.server)?;
    let mut server = KillOnDrop(server.spawn().context("iperf3 (apt package iperf3)")?);
    // Looked up in /proc rather than by connecting: a one-off server (`-1`) would take the
    // probe for its client and exit.
    wait::until(
        IPERF3_START,
        "the iperf3 server to listen",
        || {
            if let Some(status) = server.0.try_wait()? {
                bail!("the iperf3 server exited: {status}");
            }
            listens_on(server.0.id(), IPERF3_PORT)
        },
        |&listening| listening,
    )?;
    let mut client = Command::new("iperf3");
    client.args([
        "-c",
        pair.server_ip,
        "-p",
        &port,
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    in_netns(&mut client, &pair.client)?;
    let out = client.output()?;
    drop(server);
    ensure!(
        out.status.success(),
        "iperf3 client failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let bps = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 result")?;
    Ok(bps / 1e9)
}

fn request_response(pair: &Pair) -> anyhow::Result<f64> {
    let listener = within(&pair.server, || TcpListener::bind("0.0.0.0:7300"))??;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while stream.read_exact(&mut byte).is_ok() {
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let addr = format!("{}:7300", pair.server_ip).parse()?;
    let mut stream = within(&pair.client, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })??;
    stream.set_nodelay(true)?;
    let mut byte = [0u8; 1];
    let start = Instant::now();
    for _ in 0..ROUND_TRIPS {
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS);
    drop(stream);
    let _ = server.join();
    Ok(per)
}

/// Two namespaces on a Linux bridge in a third, removed on drop.
struct BridgeNet {
    ns: [TestNetns; 2],
    hub: TestNetns,
}

impl BridgeNet {
    fn new() -> anyhow::Result<Self> {
        let net = Self {
            ns: [TestNetns::new("br-a")?, TestNetns::new("br-b")?],
            hub: TestNetns::new("br-hub")?,
        };
        let hub = net.hub.name();
        ip(hub, &["link", "add", "br0", "type", "bridge"])?;
        ip(hub, &["link", "set", "br0", "up"])?;
        for (i, (ns, addr)) in net
            .ns
            .iter()
            .map(TestNetns::name)
            .zip(["10.9.0.2/24", "10.9.0.3/24"])
            .enumerate()
        {
            let port = format!("p{i}");
            ip(
                hub,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ],
            )?;
            ip(hub, &["link", "set", &port, "master", "br0", "up"])?;
            ip(ns, &["addr", "add", addr, "dev", "eth0"])?;
            ip(ns, &["link", "set", "eth0", "up"])?;
            ip(ns, &["link", "set", "lo", "up"])?;
        }
        Ok(net)
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
