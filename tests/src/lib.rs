//! Support for gridnet's privileged tests: every test builds its own node (a network namespace
//! with its own pin root and namespace prefix) and removes all of it on drop, even when the
//! test fails, so tests run in parallel and leave the machine as they found it.
//!
//! These tests need root and a kernel with BPF; they fail (never skip) without them.
//!
//! - [`Node`]: a node namespace with its pins and containers; applies plans, reads counters,
//!   starts an [`Agent`] (`gridnet run`).
//! - [`uplinked`]: a node with an uplink into an "internet" namespace.
//! - [`Grid`]: several nodes on an underlay bridge with real keys, following one ledger.
//! - [`TestNetns`], [`within`], [`in_netns`], [`run_in`], [`ip`]: namespaces and what runs in them.
//! - [`ping`], [`serve_identity`], [`fetch`], [`RawSender`]: traffic; [`Capture`]: tcpdump.
//! - [`WgClient`], [`WgKeys`]: laptops and site routers running wireguard-go as access peers.
//! - [`counter`], [`xdp_drops`]: the datapath's counters in `bpf-stats --json`.
//! - [`test_network`], [`test_container`]: the plans tests apply.
//! - [`TestLedger`], [`node_entry`], [`network_entry`]: ledgers; [`Etcd`]: a real etcd.
//! - [`Internet`]: the internet on a grid's underlay; [`HttpServer`], [`TlsServer`]: web
//!   servers with a known [`BODY`]; [`gateway_entry`]: gateways on the ledger.
//! - [`TempDir`]: a scratch directory of the test's own.
//! - [`wait::until`]: wait on a condition with a deadline (never sleep and hope).
//! - [`listens_on`], [`socket_inodes`], [`inet_sockets`]: what a process holds, from `/proc`.
//! - [`Node::wg`]: `wg` from wireguard-tools against a node's tunnels.
//! - [`names`]: how everything the tests create is named; [`proto`]: protocol numbers.

mod agent;
mod capture;
mod command;
mod etcd;
mod gateway;
mod grid;
mod ledger;
pub mod names;
mod netns;
mod node;
mod plan;
mod procfs;
pub mod proto;
mod stats;
mod tempdir;
mod traffic;
mod uplink;
pub mod wait;
mod wg;
mod wg_client;

pub use agent::{Agent, healthy};
pub use capture::{Capture, read_capture};
pub use command::{bpftool, gridnet_bin, gridnet_in, ip, run_in, run_ok};
pub use etcd::Etcd;
pub use gateway::{
    BODY, HttpServer, INTERNET_IP, Internet, TlsServer, gateway_entry, with_proxy_protocol,
};
pub use grid::Grid;
pub use ledger::{TestLedger, network_entry, node_entry};
pub use names::unique_id;
pub use netns::{TestNetns, in_netns, within};
pub use node::Node;
pub use plan::{test_container, test_network};
pub use procfs::{InetSocket, inet_sockets, listens_on, socket_inodes};
pub use stats::{counter, xdp_drops};
pub use tempdir::TempDir;
pub use traffic::{RawSender, fetch, fetch_in, ping, ping_from, serve_identity, serve_identity_in};
pub use uplink::{INET_IP, NODE_IP, Uplinked, uplinked};
pub use wg_client::{WgClient, WgKeys};
