//! `wg` from wireguard-tools against a running agent: `wg show` and `wg showconf` read its
//! tunnels over WireGuard's userspace API as they would wireguard-go's; `wg set` is refused and
//! the tunnel carries on as the ledger says.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use gridnet_agent::ledger::{Body, keys::NodeKey, model::ObjectKind};
use gridnet_tests::{Grid, healthy, ping, proto::WIREGUARD_PORT, wait};

/// alice/web on nodes 1 and 2, with w1 (10.1.1.2) on node 1 and w2 (10.1.2.2) on node 2.
fn grid() -> anyhow::Result<(Grid, u64)> {
    let mut grid = Grid::new("wguapi", 2)?;
    grid.network("alice", "web", &[1, 2], WIREGUARD_PORT)?;
    grid.container("alice", "w1", "web", 1, 2)?;
    let seq = grid.container("alice", "w2", "web", 2, 2)?;
    grid.start("uplinks: [up0]\n", seq)?;
    Ok((grid, seq))
}

/// Pings w2 from w1 until it answers (the first handshake may still be under way).
fn w1_reaches_w2(grid: &Grid) -> anyhow::Result<()> {
    let ns = grid.node(1).container_ns("alice.w1");
    wait::until(
        Duration::from_secs(20),
        "w1 pinging w2 through the tunnel",
        || ping(&ns, "10.1.2.2", 1),
        |&answered| answered,
    )?;
    Ok(())
}

fn node_key(grid: &Grid, node: u32) -> anyhow::Result<NodeKey> {
    Ok(NodeKey::read(&grid.node(node).workdir().join("node.key"))?)
}

/// Node `node`'s alice/web tunnel device, as its status names it.
fn tunnel_ifname(grid: &Grid, node: u32) -> anyhow::Result<String> {
    grid.tunnel(node, "alice/web")?
        .and_then(|t| t["ifname"].as_str().map(str::to_owned))
        .with_context(|| format!("node {node} has no alice/web tunnel"))
}

#[test]
fn wg_show_reads_an_agents_tunnel_and_wg_set_changes_nothing() -> anyhow::Result<()> {
    let (grid, seq) = grid()?;
    w1_reaches_w2(&grid)?;
    let node1 = grid.node(1);
    let ifname = tunnel_ifname(&grid, 1)?;
    let own = node_key(&grid, 1)?;
    let peer = node_key(&grid, 2)?.public().to_string();
    let endpoint = format!("192.0.2.2:{WIREGUARD_PORT}");

    // `wg show` lists the tunnel among the interfaces it finds.
    assert_eq!(node1.wg_ok(&["show", "interfaces"])?.trim(), ifname);

    // The dump, tab-separated: the interface, then one line per peer. The agent publishes its
    // tunnels' state every 250 ms: the ping's traffic shows within a tick or two.
    let dump = wait::until(
        Duration::from_secs(5),
        "`wg show dump` with a handshake and traffic both ways",
        || node1.wg_ok(&["show", &ifname, "dump"]),
        |dump| peer_line(dump).is_some_and(|p| p[4] != "0" && p[5] != "0" && p[6] != "0"),
    )?;
    let lines: Vec<Vec<&str>> = dump.lines().map(|l| l.split('\t').collect()).collect();
    ensure!(lines.len() == 2, "one interface and one peer:\n{dump}");
    let private = base64_of(&own.private_bytes());
    assert_eq!(
        lines[0],
        [
            private.as_str(),
            &own.public().to_string(),
            &WIREGUARD_PORT.to_string(),
            "off"
        ]
    );
    let fields = &lines[1];
    ensure!(fields.len() == 8, "a peer line has 8 fields: {fields:?}");
    assert_eq!(fields[0], peer);
    assert_eq!(fields[1], "(none)", "no preshared key");
    assert_eq!(fields[2], endpoint);
    assert_eq!(fields[3], "10.1.2.0/24,fd00:1:0:2::/64");
    let handshake: u64 = fields[4].parse()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    ensure!(
        handshake <= now && now - handshake < 300,
        "a recent handshake: {handshake} (now {now})"
    );
    assert_eq!(fields[7], "25");

    let show = node1.wg_ok(&["show", &ifname])?;
    for want in [
        format!("interface: {ifname}"),
        format!("public key: {}", own.public()),
        "private key: (hidden)".to_owned(),
        format!("listening port: {WIREGUARD_PORT}"),
        format!("peer: {peer}"),
        format!("endpoint: {endpoint}"),
        "allowed ips: 10.1.2.0/24, fd00:1:0:2::/64".to_owned(),
        "latest handshake: ".to_owned(),
        "transfer: ".to_owned(),
        "persistent keepalive: every 25 seconds".to_owned(),
    ] {
        ensure!(show.contains(&want), "`wg show` lacks {want:?}:\n{show}");
    }

    let conf = node1.wg_ok(&["showconf", &ifname])?;
    for want in [
        "[Interface]".to_owned(),
        format!("ListenPort = {WIREGUARD_PORT}"),
        format!("PrivateKey = {private}"),
        "[Peer]".to_owned(),
        format!("PublicKey = {peer}"),
        "AllowedIPs = 10.1.2.0/24, fd00:1:0:2::/64".to_owned(),
        format!("Endpoint = {endpoint}"),
        "PersistentKeepalive = 25".to_owned(),
    ] {
        ensure!(
            conf.contains(&want),
            "`wg showconf` lacks {want:?}:\n{conf}"
        );
    }

    // `wg set` is refused: wg fails with the errno, the agent logs why, nothing changes.
    let set = node1.wg(&["set", &ifname, "peer", &peer, "remove"])?;
    let stderr = String::from_utf8_lossy(&set.stderr);
    ensure!(!set.status.success(), "`wg set` succeeded");
    ensure!(
        stderr.contains("Operation not permitted"),
        "wg says why: {stderr}"
    );
    wait::until(
        Duration::from_secs(5),
        "the agent's log naming the refused `wg set`",
        || Ok(node1.agent_log()),
        |log| log.contains("`wg set` refused") && log.contains("source of truth"),
    )?;
    let peers = node1.wg_ok(&["show", &ifname, "peers"])?;
    assert_eq!(peers.trim(), peer, "the peer is still there");
    let before: u64 = fields[5].parse()?;
    w1_reaches_w2(&grid)?;
    wait::until(
        Duration::from_secs(5),
        "traffic still flowing after the refused `wg set`",
        || Ok(peer_line(&node1.wg_ok(&["show", &ifname, "dump"])?)),
        |p| {
            p.as_ref()
                .and_then(|p| p[5].parse::<u64>().ok())
                .is_some_and(|rx| rx > before)
        },
    )?;

    // The agent itself is unaffected.
    let status = grid.agent(1)?.status()?;
    ensure!(healthy(&status) && status["last_seq"] == seq, "{status:#}");
    Ok(())
}

#[test]
fn the_socket_lives_with_the_tunnel_and_the_agent_and_a_stale_one_is_replaced() -> anyhow::Result<()>
{
    let (mut grid, seq) = grid()?;
    w1_reaches_w2(&grid)?;
    let ifname = tunnel_ifname(&grid, 1)?;
    let socket = grid.node(1).uapi_dir().join(format!("{ifname}.sock"));
    ensure!(socket.exists(), "{} is served", socket.display());

    // A crash leaves the socket file behind; the next run replaces it and answers.
    grid.kill(1);
    ensure!(socket.exists(), "a killed agent's socket stays");
    grid.restart(1, "uplinks: [up0]\n", seq)?;
    let show = grid.node(1).wg_ok(&["show", &ifname])?;
    ensure!(show.contains("peer: "), "{show}");

    // An agent stopped as a service manager stops it takes its sockets with it.
    let node2_socket = grid
        .node(2)
        .uapi_dir()
        .join(format!("{}.sock", tunnel_ifname(&grid, 2)?));
    ensure!(
        node2_socket.exists(),
        "{} is served",
        node2_socket.display()
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(grid.agent(2)?.pid())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    wait::until(
        Duration::from_secs(10),
        "node 2's socket gone after SIGTERM",
        || Ok(node2_socket.exists()),
        |&exists| !exists,
    )?;
    grid.kill(2);

    // Node 2 leaves the network: node 1's tunnel goes, and its socket with it.
    grid.ledger.submit(
        "alice",
        Body::Delete {
            object: ObjectKind::Container,
            name: "w2".into(),
        },
    )?;
    let seq = grid.network_version("alice", "web", &[1], WIREGUARD_PORT, 2)?;
    grid.settle(seq)?;
    ensure!(!socket.exists(), "{} outlived its tunnel", socket.display());
    assert_eq!(grid.node(1).wg_ok(&["show", "interfaces"])?.trim(), "");
    Ok(())
}

/// The fields of the only peer line of `wg show <if> dump`.
fn peer_line(dump: &str) -> Option<Vec<String>> {
    let mut lines = dump.lines().skip(1);
    let fields: Vec<String> = lines.next()?.split('\t').map(str::to_owned).collect();
    (fields.len() == 8 && lines.next().is_none()).then_some(fields)
}

fn base64_of(bytes: &[u8; 32]) -> String {
    gridnet_agent::vocab::WgKey(*bytes).to_string()
}
