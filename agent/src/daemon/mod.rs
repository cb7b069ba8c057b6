//! `gridnet run`: the node agent. Follows the ledger, plans this node, reconciles the kernel,
//! answers `gridnet status` on a local unix socket, and opens no network port.
//!
//! Restart semantics: everything the datapath needs is pinned and attached in the kernel, so a
//! killed agent leaves forwarding running; a restarted one reconciles against what it finds,
//! which changes nothing when the plan has not changed.

pub mod config;
pub mod control;
mod follow;

use std::{sync::Arc, time::Duration};

use tokio::sync::{RwLock, watch};
use tracing::{info, warn};

use crate::{
    dataplane::AttachMode,
    plan::NodePlan,
    reconcile::{self, NodeConfig},
};
use config::NodeConfigFile;
use control::{ContainerStatus, Rejected, Status, UplinkStatus};

/// How often the agent reconciles even when the ledger is quiet, to repair drift (an operator
/// deleting a veth by hand, a crashed reconcile). Short enough to heal within a minute, long
/// enough to cost nothing on an idle node.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// What the ledger says this node should host, as of one ledger position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The last entry applied to the grid state.
    pub last_seq: Option<u64>,
    /// This node's plan at that point.
    pub plan: NodePlan,
    /// Entries refused so far, with reasons.
    pub rejected: Vec<Rejected>,
}

/// Runs the agent until SIGINT or SIGTERM: follows the configured ledger and reconciles.
pub async fn run(config: NodeConfigFile) -> anyhow::Result<()> {
    let ledger = config.ledger.to_string();
    let (tx, mut desired) = watch::channel(Desired::default());
    let follower = tokio::spawn(follow::follow(config.ledger.clone(), config.node_id, tx));
    // The first plan comes from the ledger, not from the empty default: wait for it.
    if desired.changed().await.is_err() {
        anyhow::bail!("the ledger follower stopped before reading the ledger");
    }
    let result = serve(&config, ledger, desired).await;
    follower.abort();
    result
}

async fn serve(
    config: &NodeConfigFile,
    ledger: String,
    mut desired: watch::Receiver<Desired>,
) -> anyhow::Result<()> {
    let node_config = NodeConfig {
        pin_root: config.pin_root.clone(),
        netns_prefix: config.netns_prefix.clone(),
        attach: config.attach,
        uplinks: config.uplinks.clone(),
    };
    let status = Arc::new(RwLock::new(Status {
        node_id: config.node_id,
        ledger,
        attach_mode: AttachMode::resolve(config.attach).name().to_owned(),
        ..Status::default()
    }));
    let listener = control::bind(&config.control_socket)?;
    let server = tokio::spawn(control::serve(listener, status.clone()));
    info!(socket = %config.control_socket.display(), "agent running");

    let mut resync = tokio::time::interval(RESYNC_INTERVAL);
    // The first tick fires at once: reconcile what was read before waiting for changes.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    warn!("the ledger follower stopped; keeping the last state");
                    break;
                }
            }
            _ = resync.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
        let target = desired.borrow_and_update().clone();
        reconcile_once(&target, &node_config, &status).await;
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
    info!("agent stopped; the datapath keeps forwarding");
    Ok(())
}

async fn reconcile_once(target: &Desired, config: &NodeConfig, status: &RwLock<Status>) {
    let result = reconcile::apply(&target.plan, config).await;
    let uplinks = uplink_status(&config.uplinks).await;
    let mut status = status.write().await;
    status.uplinks = uplinks;
    status.last_seq = target.last_seq;
    status.rejected.clone_from(&target.rejected);
    match result {
        Ok(report) => {
            if !report.changes.is_empty() {
                status.reconciles += 1;
                info!(changes = report.changes.len(), seq = ?target.last_seq, "reconciled");
            }
            status.last_error = None;
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

/// How the guard runs on each uplink, read back from the kernel.
async fn uplink_status(uplinks: &[String]) -> Vec<UplinkStatus> {
    let Ok(netlink) = crate::netlink::Netlink::connect() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in uplinks {
        let xdp = match netlink.link(name).await {
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
