//! `gridnet run`: the node agent. Follows the ledger, plans this node, reconciles the kernel,
//! answers `gridnet status` on a local unix socket, and opens no network port.
//!
//! The agent opens its subsystem handles once (one netlink connection, the datapath with the
//! programs it needs) and keeps them for its lifetime; each pass reuses them.
//!
//! Restart semantics: everything the datapath needs is pinned and attached in the kernel, so a
//! killed agent leaves forwarding running; a restarted one reconciles against what it finds,
//! which changes nothing when the plan has not changed.

pub mod config;
pub mod control;
mod follow;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::{RwLock, watch};
use tracing::{info, warn};

use crate::{
    ledger::Refused,
    plan::NodePlan,
    reconcile::{NodeConfig, Reconciler},
};
use config::NodeConfigFile;
use control::{
    ContainerStatus, Failing, PeerReport, ProgramStatus, Rejected, Status, TunnelReport,
    UplinkStatus,
};

/// How often the agent reconciles even when the ledger is quiet, to repair drift (an operator
/// deleting a veth by hand, a crashed reconcile). Short enough to heal within a minute, long
/// enough to cost nothing on an idle node.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// How long a pass waits after a link notification for the rest of its burst (creating one
/// container makes several): long enough to take a burst in one pass, short enough that a
/// container whose link went down is marked so before its peers notice.
const LINK_EVENT_SETTLE: Duration = Duration::from_millis(50);

/// How often `gridnet status` learns the tunnels' handshakes and counters, and the gateways'
/// backend health, between passes.
const TUNNEL_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// What the ledger says this node should host, as of one ledger position.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// The last entry applied to the grid state.
    pub last_seq: Option<u64>,
    /// This node's plan at that point.
    pub plan: NodePlan,
    /// Entries refused so far, with reasons.
    pub rejected: Vec<Refused>,
    /// Why the ledger cannot be read right now; the plan above is the last good one.
    pub source_error: Option<String>,
}

/// Runs the agent until SIGINT or SIGTERM: follows the configured ledger and reconciles.
pub async fn run(config: NodeConfigFile) -> anyhow::Result<()> {
    let ledger = config.ledger.to_string();
    let node_config = NodeConfig {
        pin_root: config.pin_root.clone(),
        netns_prefix: config.netns_prefix.clone(),
        attach: config.attach,
        uplinks: config.uplinks.clone(),
        mtu: config.mtu,
        uapi_dir: Some(config.uapi_dir.clone()),
    };
    let key = crate::ledger::keys::NodeKey::read(&config.key_file)
        .with_context(|| format!("cannot read the node key {}", config.key_file.display()))?;
    let mut reconciler = Reconciler::open(node_config, Some(key.private_bytes()))
        .context("cannot open the node's datapath and netlink (run as root, with a bpffs)")?;
    reconciler.serve_gateways(crate::gateway::Limits::default());
    let (tx, mut desired) = watch::channel(Desired::default());
    let follower = tokio::spawn(follow::follow(config.ledger.clone(), config.node_id, tx));
    // The first plan comes from the ledger, not from the empty default: wait for it.
    if desired.changed().await.is_err() {
        anyhow::bail!("the ledger follower stopped before reading the ledger");
    }
    let result = serve(&config, ledger, reconciler, desired).await;
    follower.abort();
    result
}

async fn serve(
    config: &NodeConfigFile,
    ledger: String,
    mut reconciler: Reconciler,
    mut desired: watch::Receiver<Desired>,
) -> anyhow::Result<()> {
    let status = Arc::new(RwLock::new(Status {
        node_id: config.node_id,
        ledger,
        attach_mode: reconciler.dataplane().attach_mode().name().to_owned(),
        ..Status::default()
    }));
    let listener = control::bind(&config.control_socket)?;
    let server = tokio::spawn(control::serve(listener, status.clone()));
    info!(socket = %config.control_socket.display(), "agent running");

    // Link changes (a container's link going down, a veth deleted by hand) start a pass at
    // once instead of at the next resync; a burst of them starts one.
    let mut link_events =
        crate::netlink::Netlink::link_events().context("cannot subscribe to link notifications")?;
    // The first tick fires at once: reconcile what was read before waiting for changes.
    let mut resync = tokio::time::interval(Duration::from_secs(config.resync_seconds));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tunnel_tick = tokio::time::interval(TUNNEL_STATUS_INTERVAL);
    loop {
        tokio::select! {
            _ = tunnel_tick.tick() => {
                let tunnels = reconciler.tunnel_status().iter().map(tunnel_report).collect();
                let gateways = reconciler.gateway_status();
                let mut status = status.write().await;
                status.tunnels = tunnels;
                status.gateways = gateways;
                continue;
            }
            changed = desired.changed() => {
                if changed.is_err() {
                    warn!("the ledger follower stopped; keeping the last state");
                    break;
                }
            }
            _ = resync.tick() => {}
            Some(()) = link_events.next() => {
                tokio::time::sleep(LINK_EVENT_SETTLE).await;
                while link_events.next().now_or_never().flatten().is_some() {}
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
        let target = desired.borrow_and_update().clone();
        reconcile_once(&mut reconciler, &target, &status).await;
    }
    server.abort();
    let _ = std::fs::remove_file(&config.control_socket);
    if config.detach_guard_on_exit {
        for uplink in &config.uplinks {
            match crate::dataplane::detach_xdp(&config.pin_root, uplink) {
                Ok(()) => info!(uplink = %uplink, "guard detached, as configured"),
                Err(e) => warn!(uplink = %uplink, error = %e, "cannot detach the guard"),
            }
        }
    }
    reconciler.shutdown().await;
    info!("agent stopped; the datapath keeps forwarding");
    Ok(())
}

async fn reconcile_once(reconciler: &mut Reconciler, target: &Desired, status: &RwLock<Status>) {
    let result = reconciler.reconcile(&target.plan).await;
    let uplinks = uplink_status(reconciler).await;
    let mut status = status.write().await;
    status.passes += 1;
    status.uplinks = uplinks;
    status.last_seq = target.last_seq;
    status.ledger_error.clone_from(&target.source_error);
    status.rejected = target
        .rejected
        .iter()
        .map(|r| Rejected {
            seq: r.seq,
            reason: r.reason.to_string(),
        })
        .collect();
    status.programs = reconciler
        .dataplane()
        .loaded_programs()
        .into_iter()
        .map(|(program, id)| ProgramStatus {
            name: program.name().to_owned(),
            id,
        })
        .collect();
    status.tunnels = reconciler
        .tunnel_status()
        .iter()
        .map(tunnel_report)
        .collect();
    status.gateways = reconciler.gateway_status();
    status.program_loads = reconciler.dataplane().program_loads();
    status.netlink_sockets_opened = crate::netlink::connections_opened();
    match result {
        Ok(outcome) => {
            if !outcome.applied.is_empty() {
                status.reconciles += 1;
                info!(changes = outcome.applied.len(), seq = ?target.last_seq, "reconciled");
                for change in &outcome.applied {
                    info!(change = %change);
                }
            }
            status.last_error = None;
            status.failing = outcome
                .failed
                .iter()
                .map(|f| Failing {
                    object: f.object.to_string(),
                    error: f.error.clone(),
                })
                .collect();
            status.networks = target
                .plan
                .networks
                .iter()
                .map(|n| n.name.clone())
                .collect();
            status.containers = target
                .plan
                .containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    network: c.network.clone(),
                    ipv4: c.ipv4.to_string(),
                    ipv6: c.ipv6.to_string(),
                })
                .collect();
        }
        Err(e) => {
            let message = format!("{:#}", anyhow::Error::from(e));
            warn!(error = %message, "reconcile failed; retrying at the next change or resync");
            status.last_error = Some(message);
        }
    }
}

fn drop_counts(drops: &crate::tunnel::DropCounts) -> std::collections::BTreeMap<String, u64> {
    [
        ("no_route", drops.no_route),
        ("unknown_peer", drops.unknown_peer),
        ("malformed", drops.malformed),
        ("undecryptable", drops.undecryptable),
        ("allowed_ips", drops.allowed_ips),
        ("no_endpoint", drops.no_endpoint),
        ("under_load", drops.under_load),
        ("send_failed", drops.send_failed),
        ("too_big", drops.too_big),
        ("hop_limit", drops.hop_limit),
    ]
    .into_iter()
    .filter(|&(_, count)| count > 0)
    .map(|(reason, count)| (reason.to_owned(), count))
    .collect()
}

fn tunnel_report(tunnel: &crate::tunnel::TunnelStatus) -> TunnelReport {
    TunnelReport {
        network: tunnel.network.clone(),
        ifname: tunnel.ifname.clone(),
        listen_port: tunnel.listen_port,
        peers: tunnel
            .peers
            .iter()
            .map(|peer| PeerReport {
                public_key: crate::vocab::WgKey(peer.public_key).to_string(),
                endpoint: peer.endpoint.map(|e| e.to_string()),
                last_handshake: peer
                    .last_handshake
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                rx_bytes: peer.rx_bytes,
                tx_bytes: peer.tx_bytes,
                drops: drop_counts(&peer.drops),
            })
            .collect(),
        drops: drop_counts(&tunnel.drops),
    }
}

/// How the guard runs on each uplink, read back from the kernel through the node's netlink.
async fn uplink_status(reconciler: &Reconciler) -> Vec<UplinkStatus> {
    let mut out = Vec::new();
    for name in &reconciler.config().uplinks {
        let xdp = match reconciler.netlink().link(name).await {
            Ok(Some(link)) => link.xdp.unwrap_or("none").to_owned(),
            Ok(None) => "missing interface".to_owned(),
            Err(e) => format!("unknown ({e})"),
        };
        out.push(UplinkStatus {
            name: name.clone(),
            xdp,
        });
    }
    out
}
