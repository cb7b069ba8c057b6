//! A gateway reservation gives its node an endpoint in the network: a namespace at the last
//! host of the node's subnet from which backends on other nodes are reached over the overlay.

use std::{net::SocketAddr, time::Duration};

use anyhow::ensure;
use gridnet_agent::plan::GatewayMode;
use gridnet_tests::{Grid, fetch, gateway_entry, proto::WIREGUARD_PORT, serve_identity, wait};

#[test]
fn the_gateway_endpoint_reaches_a_backend_on_another_node_through_the_overlay() -> anyhow::Result<()>
{
    let mut grid = Grid::new("gwep", 2)?;
    grid.network("alice", "web", &[1, 2], WIREGUARD_PORT)?;
    grid.container("alice", "app", "web", 2, 2)?;
    grid.publish(1)?;
    let seq = grid.ledger.submit(
        "alice",
        gateway_entry(
            "www",
            "web",
            1,
            &["www.example.org"],
            &["10.1.2.2:8080"],
            GatewayMode::Http,
        )?,
    )?;
    grid.start("uplinks: [up0]\n", seq)?;
    serve_identity(grid.node(2), "alice.app", 8080, "app")?;

    let endpoint = "gw_alice.web";
    let addresses = gridnet_tests::run_in(
        &grid.node(1).container_ns(endpoint),
        "ip",
        &["-br", "addr", "show", "dev", "eth0"],
    )?;
    let addresses = String::from_utf8_lossy(&addresses.stdout).into_owned();
    ensure!(
        addresses.contains("10.1.1.254/") && addresses.contains("fd00:1:0:1::fe/"),
        "the endpoint's addresses: {addresses}"
    );
    for backend in ["10.1.2.2:8080", "[fd00:1:0:2::2]:8080"] {
        let target: SocketAddr = backend.parse()?;
        let answer = wait::until(
            Duration::from_secs(20),
            &format!("the endpoint reaching {backend}"),
            || Ok(fetch(grid.node(1), endpoint, target).ok()),
            Option::is_some,
        )?;
        ensure!(answer.as_deref() == Some("app"), "{answer:?}");
    }
    Ok(())
}
