//! `cargo xtask demo` (run by `gridnet-lab demo`): a three-node grid on this machine, from a local ledger.
//!
//! Creates three nodes (network namespaces joined by an underlay bridge),
//! each running its own `gridnet run` with its own node id and key, all following one ledger;
//! writes the ledger (three twins, three nodes, two users' networks on overlapping ranges,
//! containers on several nodes); then shows what works: a connectivity matrix checked against
//! what the ledger allows, each agent's status, and the datapath counters. Keeps running until
//! Ctrl-C (or, with `--once`, exits non-zero on any mismatch), then removes everything.
//!
//! Containers on different nodes talk through the encrypted WireGuard tunnels between their
//! nodes; the matrix reaches every pair, on one node or across nodes. A laptop (a namespace on
//! the underlay running wireguard-go with the configuration `gridnet access-config` prints)
//! joins alice/web as an access peer through node 2: its row reaches alice's containers on every
//! node and nothing of bob's. Two web gateways, on nodes 1 and 2, serve one name from a web
//! server in web4 on node 3: an "internet" namespace fetches the page through each with curl,
//! and `gridnet gateway dns` prints the records of both.

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::{ledger::Body, plan::GatewayMode};
use gridnet_tests::{
    Grid, HttpServer, INTERNET_IP, Internet, TempDir, WgClient, WgKeys, fetch_in, gateway_entry,
    gridnet_bin, proto::WIREGUARD_PORT, serve_identity, wait,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check the matrix, tear down and exit (non-zero on any mismatch).
    #[arg(long)]
    once: bool,
}

/// Port of the identity server the demo runs in every container.
const IDENTITY_PORT: u16 = 7000;

/// (owner, container, network, node, IPv4 host in the node's /24).
const CONTAINERS: &[(&str, &str, &str, u32, u8)] = &[
    ("alice", "web1", "web", 1, 2),
    ("alice", "web2", "web", 1, 3),
    ("alice", "web3", "web", 2, 2),
    ("alice", "web4", "web", 3, 2),
    ("bob", "db1", "db", 1, 3), // web2's address, in bob's network
    ("bob", "db2", "db", 3, 2), // web4's address
];

pub fn run(args: Args) -> anyhow::Result<()> {
    println!("demo: creating three nodes on an underlay bridge, each with its own WireGuard key");
    let mut grid = Grid::new("demo", 3)?;
    println!(
        "demo: writing the ledger: twins, nodes, alice/web on nodes 1-3, bob/db on nodes 1 and 3"
    );
    grid.network("alice", "web", &[1, 2, 3], WIREGUARD_PORT)?;
    grid.network("bob", "db", &[1, 3], WIREGUARD_PORT + 1)?;
    for &(owner, name, network, node, host) in CONTAINERS {
        grid.container(owner, name, network, node, host)?;
    }
    let dir = TempDir::new("demo")?;
    let keys = WgKeys::generate(dir.path(), "laptop")?;
    println!(
        "demo: alice's laptop (key made by `wg genkey`) joins alice/web as an access peer through node 2, at {LAPTOP_V4} and {LAPTOP_V6}"
    );
    let last = grid.ledger.submit(
        "alice",
        Body::Access {
            name: "laptop".into(),
            network: "web".into(),
            node_id: 2,
            wireguard_public_key: keys.ledger_key()?,
            allowed_ips: vec![
                format!("{LAPTOP_V4}/32").parse()?,
                format!("{LAPTOP_V6}/128").parse()?,
            ],
        },
    )?;
    println!(
        "demo: nodes 1 and 2 publish public addresses; alice's gateways `site1` (node 1) and `site2` (node 2) serve {SITE} from web4:{SITE_PORT} on node 3"
    );
    grid.publish(1)?;
    grid.publish(2)?;
    let mut last = last;
    for (name, node) in [("site1", 1), ("site2", 2)] {
        last = grid.ledger.submit(
            "alice",
            gateway_entry(
                name,
                "web",
                node,
                &[SITE],
                &[&format!("10.1.3.2:{SITE_PORT}")],
                GatewayMode::Http,
            )?,
        )?;
    }
    println!("demo: starting `gridnet run` on each node (XDP guard on its uplink)");
    grid.start("uplinks: [up0]\n", last)?;
    let config = access_config(&grid, &keys)?;
    println!(
        "\n`gridnet access-config --network alice/web --name laptop --private-key-file laptop.key`:\n{}",
        config.replace(keys_line(&config), "PrivateKey = (the laptop's key)")
    );
    let laptop = WgClient::start(&grid, "laptop", "192.0.2.100", &config)?;
    let nodes = &grid.nodes;
    let mismatches = matrix(nodes, laptop.ns.name())?;
    println!();
    for id in 1..=3 {
        let s = grid.agent(id)?.status()?;
        let uplink = s["uplinks"][0]["xdp"].as_str().unwrap_or("?").to_owned();
        println!(
            "node {}: ledger seq {}, attach {}, XDP guard {uplink}, networks {}, {} containers, {} refused entries",
            id,
            s["last_seq"],
            s["attach_mode"].as_str().unwrap_or("?"),
            s["networks"],
            s["containers"].as_array().map_or(0, Vec::len),
            s["rejected"].as_array().map_or(0, Vec::len)
        );
    }
    println!(
        "\n`gridnet bpf-stats` on node 1:\n{}",
        nodes[0].bpf_stats_table()?
    );
    let tunnels = grid.agent(1)?.status()?;
    println!("\ntunnels of node 1:");
    for tunnel in tunnels["tunnels"].as_array().into_iter().flatten() {
        println!(
            "  {} on {} (port {}):",
            tunnel["network"].as_str().unwrap_or("?"),
            tunnel["ifname"].as_str().unwrap_or("?"),
            tunnel["listen_port"]
        );
        for peer in tunnel["peers"].as_array().into_iter().flatten() {
            println!(
                "    peer {} at {}, handshake {}, {} bytes in, {} bytes out",
                peer["public_key"].as_str().unwrap_or("?"),
                peer["endpoint"].as_str().unwrap_or("-"),
                if peer["last_handshake"].is_null() {
                    "none"
                } else {
                    "done"
                },
                peer["rx_bytes"],
                peer["tx_bytes"]
            );
        }
    }
    gateways(&grid)?;
    let node2 = grid.agent(2)?.status()?;
    let web = node2["tunnels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["network"] == "alice/web")
        .and_then(|t| t["ifname"].as_str())
        .context("node 2 has no tunnel for alice/web")?
        .to_owned();
    println!(
        "\n`wg show {web}` on node 2 (Debian's wg, through gridnet's read-only UAPI socket; the laptop is a peer):\n{}",
        grid.node(2).wg_ok(&["show", &web])?
    );
    if args.once {
        println!("demo: {mismatches} mismatches; tearing down");
        drop(grid);
        if mismatches > 0 {
            bail!("{mismatches} cells of the matrix differ from what the ledger allows");
        }
        return Ok(());
    }
    println!(
        "demo: running; containers are namespaces like {}; Ctrl-C removes everything",
        nodes[0].container_ns("alice.web1")
    );
    wait_for_interrupt()?;
    println!("demo: tearing down");
    Ok(())
}

/// The name alice's two gateways serve, and the port of the web server behind them.
const SITE: &str = "www.alice.example";
const SITE_PORT: u16 = 8080;

/// The web server behind the gateways, a page fetched through each from the internet, and
/// `gridnet gateway dns`.
fn gateways(grid: &Grid) -> anyhow::Result<()> {
    let _server = HttpServer::start(&grid.node(3).container_ns("alice.web4"), SITE_PORT)?;
    let inet = Internet::attach(grid)?;
    println!("\nweb gateways, from an \"internet\" namespace at {INTERNET_IP} with curl:");
    for node in [1, 2] {
        let resolve = format!("{SITE}:80:192.0.2.{node}");
        let url = format!("http://{SITE}/");
        let answer = wait::until(
            Duration::from_secs(30),
            &format!("{SITE} through node {node}"),
            // Until the gateway's health checks have seen the server just started.
            || inet.curl(&["--fail", "--resolve", &resolve, &url]),
            |out| out.status.success() && !out.stdout.is_empty(),
        )?;
        println!(
            "  curl --resolve {resolve} {url}\n    -> {}",
            String::from_utf8_lossy(&answer.stdout).trim()
        );
    }
    let ledger = grid.ledger.file.path().display().to_string();
    let dns = inet.gridnet(&["gateway", "dns", "--name", SITE, "--ledger", &ledger])?;
    println!(
        "\n`gridnet gateway dns --name {SITE}` (the gateways that answer now):\n{}",
        String::from_utf8_lossy(&dns.stdout)
    );
    for node in [1, 2] {
        // `gridnet status` refreshes gateway health every second: show it once it has caught
        // up with the checks that let the pages through.
        let status = wait::until(
            Duration::from_secs(5),
            &format!("node {node}'s status showing its gateway's backend up"),
            || grid.agent(node)?.status(),
            |s| s["gateways"][0]["backends"][0]["health"] == "up",
        )?;
        for gateway in status["gateways"].as_array().into_iter().flatten() {
            let backends: Vec<String> = gateway["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    format!(
                        "{} {}",
                        b["addr"].as_str().unwrap_or("?"),
                        b["health"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            println!(
                "node {node}: gateway {} for {} on {}, backends: {}, {} backend connections opened",
                gateway["name"].as_str().unwrap_or("?"),
                gateway["hostnames"],
                gateway["listeners"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l["addr"].as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                backends.join(", "),
                gateway["total_connections"]
            );
        }
    }
    Ok(())
}

/// The laptop's addresses in alice/web.
const LAPTOP_V4: &str = "10.1.200.5";
const LAPTOP_V6: &str = "fd00:1:ff::5";

/// The laptop's wg-quick file, from the real `gridnet access-config`.
fn access_config(grid: &Grid, keys: &WgKeys) -> anyhow::Result<String> {
    let out = Command::new(gridnet_bin()?)
        .args(["access-config", "--ledger"])
        .arg(grid.ledger.file.path())
        .args([
            "--network",
            "alice/web",
            "--name",
            "laptop",
            "--private-key-file",
        ])
        .arg(&keys.private_file)
        .output()?;
    ensure!(
        out.status.success(),
        "gridnet access-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The `PrivateKey = ...` line of a wg-quick file.
fn keys_line(config: &str) -> &str {
    config
        .lines()
        .find(|l| l.starts_with("PrivateKey"))
        .unwrap_or("PrivateKey")
}

/// Every container, and the laptop, connects to every container's IPv4 and IPv6 address, where
/// each runs a server answering with its name. Addresses overlap across networks, so "reached"
/// means the intended container answered. Same network, on any node: must reach; other network:
/// must not.
fn matrix(nodes: &[gridnet_tests::Node], laptop: &str) -> anyhow::Result<usize> {
    let name = |owner: &str, c: &str| format!("{owner}.{c}");
    for &(owner, c, _, node, _) in CONTAINERS {
        serve_identity(&nodes[node as usize - 1], &name(owner, c), IDENTITY_PORT, c)?;
    }
    // The laptop's first packet waits for its handshake with node 2, and node 2's with the
    // others; the matrix starts once it is through.
    wait::until(
        Duration::from_secs(30),
        "the laptop reaching web4 on node 3",
        || Ok(fetch_in(laptop, SocketAddr::new([10, 1, 3, 2].into(), IDENTITY_PORT)).ok()),
        |answer| answer.as_deref() == Some("web4"),
    )?;
    let mut rows: Vec<(String, String, &str)> = CONTAINERS
        .iter()
        .map(|&(owner, c, network, node, _)| {
            (
                format!("{c} ({owner}@n{node})"),
                nodes[node as usize - 1].container_ns(&name(owner, c)),
                network,
            )
        })
        .collect();
    rows.push(("laptop (alice@n2)".into(), laptop.into(), "web"));
    println!("\nconnectivity (row connects to column over IPv4/IPv6):");
    println!(
        "  ok = reached (on one node, or across nodes through the WireGuard tunnels), -- = isolated (other network)\n"
    );
    print!("{:>18}", "");
    for &(owner, c, _, node, _) in CONTAINERS {
        print!("{:>18}", format!("{c} ({owner}@n{node})"));
    }
    println!();
    let mut mismatches = 0;
    for (label, ns, network) in &rows {
        print!("{label:>18}");
        for &(_, to, to_network, to_node, to_host) in CONTAINERS {
            if label.starts_with(&format!("{to} ")) {
                print!("{:>18}", "·");
                continue;
            }
            let v4: IpAddr = [10, 1, to_node as u8, to_host].into();
            let v6: IpAddr = format!("fd00:1:0:{to_node}::{to_host:x}").parse()?;
            let mut cell = Vec::new();
            for ip in [v4, v6] {
                let answer = fetch_in(ns, SocketAddr::new(ip, IDENTITY_PORT)).ok();
                let reached = answer.as_deref() == Some(to);
                let expected = *network == to_network;
                if reached != expected {
                    mismatches += 1;
                }
                cell.push(match (reached, expected) {
                    (true, true) => "ok",
                    (false, false) => "--",
                    (true, false) => "LEAK",
                    (false, true) => "FAIL",
                });
            }
            print!(
                "{:>18}",
                if cell[0] == cell[1] {
                    cell[0].to_owned()
                } else {
                    cell.join("/")
                }
            );
        }
        println!();
    }
    Ok(mismatches)
}

fn wait_for_interrupt() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().context("block signals")?;
    set.wait().context("wait for Ctrl-C")?;
    Ok(())
}
