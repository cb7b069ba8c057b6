//! A thousand containers on one node, each talking to several neighbours: the kernel's
//! neighbour tables (shared by every namespace, 1,024 entries by default) must not overflow.
//! Containers hold a /32 and a /128, so each keeps one entry per family, the gateway's.
//!
//! Host only: it measures the neighbour tables' behaviour, not a kernel feature the QEMU
//! kernels would tell anything new about, and a thousand namespaces under TCG take minutes.

use std::{
    net::{Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use gridnet_agent::{netlink::Netns, plan::NodePlan};
use gridnet_tests::{Node, test_container, test_network, wait};

const NETWORKS: usize = 4;
const PER_NETWORK: usize = 250;
/// How many neighbours each container sends to, over IPv4 and over IPv6.
const NEIGHBOURS: usize = 3;
const PORT: u16 = 7000;

fn name(network: usize, index: usize) -> String {
    format!("n{network}c{index}")
}

fn host(index: usize) -> u8 {
    u8::try_from(index + 2).unwrap_or(u8::MAX)
}

/// "Neighbour table full" events of a kernel neighbour table, summed over CPUs
/// (`/proc/net/stat/arp_cache` or `ndisc_cache`, column `table_fulls`).
fn table_fulls(table: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/net/stat/{table}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty stat file")?
        .split_whitespace()
        .collect();
    let column = header
        .iter()
        .position(|c| *c == "table_fulls")
        .context("no table_fulls column")?;
    let mut total = 0;
    for line in lines {
        let field = line.split_whitespace().nth(column).context("short row")?;
        total += u64::from_str_radix(field, 16)?;
    }
    Ok(total)
}

/// Raises the open-file limit to what a thousand sockets need.
fn allow_files(count: u64) -> anyhow::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: count,
        rlim_max: count,
    };
    // SAFETY: setrlimit reads the struct it is given and nothing else.
    let result = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    ensure!(
        result == 0,
        "setrlimit: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

#[test]
fn a_thousand_containers_talk_to_their_neighbours_without_neighbour_table_overflow()
-> anyhow::Result<()> {
    allow_files(8192)?;
    let node = Node::new()?;
    let mut plan = NodePlan::default();
    for network in 0..NETWORKS {
        let network_name = format!("scale/n{network}");
        plan.networks.push(test_network(&network_name));
        for index in 0..PER_NETWORK {
            plan.containers.push(test_container(
                &name(network, index),
                &network_name,
                host(index),
            ));
        }
    }
    node.apply(&plan)?;
    let fulls_before = (table_fulls("arp_cache")?, table_fulls("ndisc_cache")?);

    // One dual-stack socket per container, inside its namespace.
    let mut sockets = Vec::new();
    for network in 0..NETWORKS {
        for index in 0..PER_NETWORK {
            let ns = Netns::open(&node.container_ns(&name(network, index)))?;
            let socket = ns.enter(|| UdpSocket::bind((Ipv6Addr::UNSPECIFIED, PORT)))??;
            socket.set_nonblocking(true)?;
            sockets.push(socket);
        }
    }
    for network in 0..NETWORKS {
        for index in 0..PER_NETWORK {
            let socket = &sockets[network * PER_NETWORK + index];
            for step in 1..=NEIGHBOURS {
                let peer = host((index + step) % PER_NETWORK);
                let v4 = SocketAddr::new(
                    std::net::Ipv4Addr::new(10, 1, 1, peer)
                        .to_ipv6_mapped()
                        .into(),
                    PORT,
                );
                let v6 = SocketAddr::new(
                    Ipv6Addr::new(0xfd00, 1, 0, 1, 0, 0, 0, u16::from(peer)).into(),
                    PORT,
                );
                socket.send_to(b"hello", v4)?;
                socket.send_to(b"hello", v6)?;
            }
        }
    }
    let expected = 2 * NEIGHBOURS;
    let mut received = vec![0usize; sockets.len()];
    wait::until(
        Duration::from_secs(60),
        "every container hears from its neighbours over IPv4 and IPv6",
        || {
            let mut buf = [0u8; 16];
            for (socket, count) in sockets.iter().zip(&mut received) {
                while let Ok((n, _)) = socket.recv_from(&mut buf) {
                    ensure!(&buf[..n] == b"hello", "a stranger's datagram");
                    *count += 1;
                }
            }
            let short = received.iter().filter(|&&c| c < expected).count();
            Ok(short)
        },
        |&short| short == 0,
    )?;
    ensure!(
        received.iter().all(|&c| c == expected),
        "a container heard more than its neighbours"
    );
    let fulls_after = (table_fulls("arp_cache")?, table_fulls("ndisc_cache")?);
    assert_eq!(
        fulls_after, fulls_before,
        "the neighbour tables overflowed (arp, ndisc)"
    );
    Ok(())
}
