//! External access: a site's router (with a LAN behind it) and a laptop join a network as
//! WireGuard peers, running Debian's wireguard-go with the configuration `gridnet access-config`
//! prints, and reach that network's containers on every node, and nothing else.

use std::{net::SocketAddr, process::Command, time::Duration};

use anyhow::{Context as _, ensure};
use gridnet_agent::ledger::{Body, model::ObjectKind};
use gridnet_tests::{
    Grid, TempDir, WgClient, WgKeys, fetch_in, gridnet_bin, ping_from, proto::WIREGUARD_PORT,
    serve_identity, serve_identity_in, wait,
};

const PORT: u16 = 7100;

/// How long a first exchange may take: the client's handshake, then the node's with the
/// other member node, each retried after 5 s when its first message is lost.
const FIRST_CONTACT: Duration = Duration::from_secs(30);

fn at(address: &str) -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::new(address.parse()?, PORT))
}

/// What a server at `address` says, fetched from namespace `ns`, once it answers.
fn reach(ns: &str, address: &str) -> anyhow::Result<String> {
    let target = at(address)?;
    wait::until(
        FIRST_CONTACT,
        &format!("{ns} reaching {address}"),
        || Ok(fetch_in(ns, target).map_err(|e| format!("{e:#}"))),
        Result::is_ok,
    )?
    .map_err(anyhow::Error::msg)
}

/// Submits access peer `owner/name` and returns its wg-quick file from `gridnet access-config`,
/// with the client's private key in it.
fn access_peer(
    grid: &mut Grid,
    dir: &TempDir,
    owner: &str,
    network: &str,
    name: &str,
    node_id: u32,
    allowed_ips: &[&str],
) -> anyhow::Result<(WgKeys, u64, String)> {
    let keys = WgKeys::generate(dir.path(), &format!("{owner}-{name}"))?;
    let seq = grid.ledger.submit(
        owner,
        Body::Access {
            name: name.into(),
            network: network.into(),
            node_id,
            wireguard_public_key: keys.ledger_key()?,
            allowed_ips: allowed_ips
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()?,
        },
    )?;
    let out = Command::new(gridnet_bin()?)
        .args(["access-config", "--ledger"])
        .arg(grid.ledger.file.path())
        .args(["--network", &format!("{owner}/{network}"), "--name", name])
        .arg("--private-key-file")
        .arg(&keys.private_file)
        .output()?;
    ensure!(
        out.status.success(),
        "access-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((keys, seq, String::from_utf8(out.stdout)?))
}

/// alice/web and bob/db on nodes 1 and 2 with the same ranges; w1, w2 and d2 serve their names
/// (d2 at w2's very address).
fn grid(label: &str) -> anyhow::Result<Grid> {
    let mut grid = Grid::new(label, 2)?;
    grid.network("alice", "web", &[1, 2], WIREGUARD_PORT)?;
    grid.network("bob", "db", &[1, 2], WIREGUARD_PORT + 1)?;
    grid.container("alice", "w1", "web", 1, 2)?;
    grid.container("alice", "w2", "web", 2, 2)?;
    let seq = grid.container("bob", "d2", "db", 2, 2)?;
    grid.start("uplinks: [up0]\n", seq)?;
    serve_identity(grid.node(1), "alice.w1", PORT, "w1")?;
    serve_identity(grid.node(2), "alice.w2", PORT, "w2")?;
    serve_identity(grid.node(2), "bob.d2", PORT, "d2")?;
    Ok(grid)
}

#[test]
fn a_site_and_laptops_reach_their_network_on_every_node_and_nothing_else() -> anyhow::Result<()> {
    let mut grid = grid("access")?;
    let dir = TempDir::new("access")?;
    // The office bridges its LAN through node 1; alice's laptop comes in through node 2, and so
    // does bob's, with the very same address in bob's network.
    let (_, _, office_conf) = access_peer(
        &mut grid,
        &dir,
        "alice",
        "web",
        "office",
        1,
        &["192.168.50.0/24", "fd50::/64"],
    )?;
    let (_, _, laptop_conf) = access_peer(
        &mut grid,
        &dir,
        "alice",
        "web",
        "laptop",
        2,
        &["10.1.200.5/32", "fd00:1:ff::5/128"],
    )?;
    let (_, seq, bob_conf) = access_peer(
        &mut grid,
        &dir,
        "bob",
        "db",
        "laptop",
        2,
        &["10.1.200.5/32"],
    )?;
    grid.settle(seq)?;
    ensure!(
        office_conf.contains("Address = 192.168.50.1/32, fd50::1/128")
            && office_conf.contains("Endpoint = 192.0.2.1:51820")
            && office_conf.contains("AllowedIPs = 10.1.0.0/16, fd00:1::/48"),
        "the office's configuration:\n{office_conf}"
    );

    let office = WgClient::start(&grid, "office", "192.0.2.50", &office_conf)?;
    let lan = office.lan(
        &["192.168.50.1/24", "fd50::1/64"],
        &["192.168.50.10/24", "fd50::10/64"],
    )?;
    serve_identity_in(lan.name(), PORT, "lan host")?;
    let laptop = WgClient::start(&grid, "laptop", "192.0.2.51", &laptop_conf)?;
    serve_identity_in(laptop.ns.name(), PORT, "laptop")?;
    let bob = WgClient::start(&grid, "boblaptop", "192.0.2.52", &bob_conf)?;

    // The LAN host and a container on the OTHER node, both ways, both families; and the access
    // node's own container. (Not the laptop: its configuration routes only the network's ranges
    // into the tunnel, so it takes nothing from the office's prefix.)
    for (address, want) in [
        ("10.1.2.2", "w2"),
        ("fd00:1:0:2::2", "w2"),
        ("10.1.1.2", "w1"),
    ] {
        assert_eq!(reach(lan.name(), address)?, want, "LAN host -> {address}");
    }
    for address in ["192.168.50.10", "fd50::10"] {
        assert_eq!(
            reach(&grid.node(2).container_ns("alice.w2"), address)?,
            "lan host",
            "w2 -> {address}"
        );
    }
    // The laptop: the container on the other node, and back.
    assert_eq!(reach(laptop.ns.name(), "10.1.1.2")?, "w1");
    assert_eq!(reach(laptop.ns.name(), "fd00:1:0:1::2")?, "w1");
    assert_eq!(reach(laptop.ns.name(), "10.1.2.2")?, "w2");
    assert_eq!(
        reach(&grid.node(1).container_ns("alice.w1"), "10.1.200.5")?,
        "laptop"
    );
    assert_eq!(
        reach(&grid.node(1).container_ns("alice.w1"), "fd00:1:ff::5")?,
        "laptop"
    );

    // Bob's laptop holds the same address in bob's network: it reaches bob's d2 at w2's
    // address, and nothing of alice's.
    assert_eq!(reach(bob.ns.name(), "10.1.2.2")?, "d2");
    ensure!(
        fetch_in(bob.ns.name(), at("10.1.1.2")?).is_err(),
        "bob's laptop reached alice's w1"
    );
    assert_eq!(
        reach(laptop.ns.name(), "10.1.2.2")?,
        "w2",
        "alice's laptop still gets w2"
    );

    // The laptop sees the node it connects through, with a handshake.
    let dump = laptop.show()?;
    ensure!(
        dump.lines()
            .skip(1)
            .any(|l| l.split('\t').nth(4).is_some_and(|t| t != "0")),
        "the laptop's wireguard-go reports no handshake:\n{dump}"
    );
    Ok(())
}

#[test]
fn a_forged_source_is_dropped_and_a_removed_peer_is_cut_off() -> anyhow::Result<()> {
    let mut grid = grid("access-cut")?;
    let dir = TempDir::new("access-cut")?;
    let (keys, seq, conf) = access_peer(
        &mut grid,
        &dir,
        "alice",
        "web",
        "laptop",
        2,
        &["10.1.200.5/32"],
    )?;
    grid.settle(seq)?;
    let laptop = WgClient::start(&grid, "laptop", "192.0.2.51", &conf)?;
    assert_eq!(reach(laptop.ns.name(), "10.1.1.2")?, "w1");

    // An address the ledger did not give it: the node drops what comes from it, and counts it.
    let ns = laptop.ns.name();
    gridnet_tests::ip(ns, &["addr", "add", "10.1.200.6/32", "dev", &laptop.ifname])?;
    ensure!(
        !ping_from(ns, "10.1.200.6", "10.1.1.2", 3)?,
        "a forged source got answers"
    );
    let seen = wait::until(
        Duration::from_secs(5),
        "the laptop's forged packets counted",
        || grid.tunnel_peer(2, "alice/web", &keys.public),
        |p| {
            p.as_ref()
                .is_some_and(|p| p["drops"]["allowed_ips"].as_u64() >= Some(3))
        },
    )?;
    ensure!(seen.is_some());

    // Removed from the ledger: cut off within seconds, and gone from the node's tunnel.
    let seq = grid.ledger.submit(
        "alice",
        Body::Delete {
            object: ObjectKind::Access,
            name: "laptop".into(),
        },
    )?;
    grid.settle(seq)?;
    ensure!(
        grid.tunnel_peer(2, "alice/web", &keys.public)?.is_none(),
        "the node still has the removed peer"
    );
    wait::until(
        Duration::from_secs(5),
        "the removed laptop cut off",
        || Ok(fetch_in(ns, at("10.1.1.2")?).is_err()),
        |&cut| cut,
    )
    .context("a removed access peer still reaches the network")?;
    Ok(())
}
