//! Making the kernel match a [`NodePlan`], one object at a time.
//!
//! A pass is: [`validate`] the plan (objects that break a rule are refused, each with its
//! reason; `gridnet apply` refuses the whole plan instead), [`Reconciler::observe`] what the
//! kernel holds through the long-lived subsystem handles, [`diff::diff`] the two (pure), and
//! apply the typed [`Change`]s. A change that fails is reported for its object and retried at
//! the next pass; the other objects go ahead. Every step can be adopted or repaired after a
//! crash at any point: a pass over an unchanged plan changes nothing, loads no program and
//! opens no netlink socket.

mod apply;
mod change;
pub mod diff;
pub mod gateway;
pub mod names;
pub mod observe;
mod overlay;
pub mod uplink;
mod validate;

use std::{collections::BTreeSet, path::PathBuf};

pub use change::{Change, ContainerTarget, Object, Step, TunnelStep};
pub use validate::{MAX_CONTAINER_NAME, PlanError, usable, validate};

use crate::{
    dataplane::{AttachPreference, Dataplane, DataplaneError},
    gateway::{GatewayStatus, Gateways, Limits},
    netlink::{Netlink, NetlinkError, NetnsError},
    plan::NodePlan,
    tunnel::{TunnelError, Tunnels},
};

/// Where this node keeps its objects.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The bpffs directory of the datapath's pins.
    pub pin_root: PathBuf,
    /// Prefix of the container namespaces this agent owns; it never touches others.
    pub netns_prefix: String,
    /// TCX or netlink attachments (default: probed).
    pub attach: AttachPreference,
    /// Underlay interfaces the XDP guard protects.
    pub uplinks: Vec<String>,
    /// The MTU of container links and tunnel devices: what fits in one underlay packet once
    /// WireGuard has wrapped it (see [`DEFAULT_MTU`]).
    pub mtu: u16,
    /// Where each tunnel serves `wg show` (`None`: not served).
    pub uapi_dir: Option<PathBuf>,
}

/// The default container and tunnel MTU: a 1,500-byte underlay less WireGuard's overhead over
/// IPv6 (40 IPv6 + 8 UDP + 32 WireGuard), the larger of the two families', so the same MTU
/// works whichever family a peer is reached over.
pub const DEFAULT_MTU: u16 = 1420;

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            pin_root: crate::dataplane::DEFAULT_PIN_ROOT.into(),
            netns_prefix: names::DEFAULT_NETNS_PREFIX.into(),
            attach: AttachPreference::Auto,
            uplinks: Vec::new(),
            mtu: DEFAULT_MTU,
            uapi_dir: None,
        }
    }
}

/// An object that could not be realized, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub object: Object,
    pub error: String,
}

/// What one pass did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Changes made.
    pub applied: Vec<Change>,
    /// Objects refused by the rules or by the kernel; the rest of the plan is realized.
    pub failed: Vec<Failure>,
}

/// Why a pass could not run at all (as opposed to one object failing).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot list network namespaces")]
    ListNetns(#[source] std::io::Error),
    #[error("link `{name}` vanished while it was being set up")]
    LinkVanished { name: String },
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    #[error("cannot turn IPv6 off on `{interface}`")]
    Sysctl {
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// The node's subsystem handles, opened once and kept for the agent's lifetime.
pub struct Reconciler {
    config: NodeConfig,
    /// The node's one netlink handle; the dataplane shares it.
    netlink: Netlink,
    dataplane: Dataplane,
    /// Every network's tunnel, on a node with a WireGuard key.
    tunnels: Option<Tunnels>,
    /// The web gateways this node serves, once [`Reconciler::serve_gateways`] is called:
    /// gateways live in the process, so a one-shot `gridnet apply` leaves them out.
    gateways: Option<Gateways>,
    /// Containers whose own side was read and found right (or made right) in this agent's
    /// lifetime; see [`observe::Inside`].
    verified: BTreeSet<String>,
}

impl Reconciler {
    /// Opens the handles: one netlink connection and the datapath's maps, and with the node's
    /// WireGuard private key, its tunnels. Needs a tokio runtime.
    pub fn open(config: NodeConfig, tunnel_key: Option<[u8; 32]>) -> Result<Self, ReconcileError> {
        let netlink = Netlink::connect()?;
        let dataplane = Dataplane::open(&config.pin_root, config.attach, netlink.clone())?;
        let tunnels = tunnel_key.map(|key| Tunnels::new(key, config.uapi_dir.clone()));
        Ok(Self {
            config,
            netlink,
            dataplane,
            tunnels,
            gateways: None,
            verified: BTreeSet::new(),
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn netlink(&self) -> &Netlink {
        &self.netlink
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    /// Per network and peer: the tunnels' state (empty on a node without tunnels).
    pub fn tunnel_status(&self) -> Vec<crate::tunnel::TunnelStatus> {
        self.tunnels
            .as_ref()
            .map(Tunnels::status)
            .unwrap_or_default()
    }

    /// From the next pass on, serves the plan's web gateways from this process.
    pub fn serve_gateways(&mut self, limits: Limits) {
        self.gateways.get_or_insert_with(|| Gateways::new(limits));
    }

    /// Per gateway: its listeners, backends with their health, and connection counts.
    pub fn gateway_status(&self) -> Vec<GatewayStatus> {
        self.gateways
            .as_ref()
            .map(Gateways::status)
            .unwrap_or_default()
    }

    /// Stops the tunnels' tasks, leaving their devices for the next run to take over, and
    /// closes the gateways' listeners and connections.
    pub async fn shutdown(self) {
        if let Some(tunnels) = self.tunnels {
            tunnels.shutdown().await;
        }
        if let Some(gateways) = self.gateways {
            gateways.shutdown().await;
        }
    }

    /// Makes the gateways match the plan, once the containers (their endpoints among them) are
    /// in place. Gateways that cannot run are reported; they are retried next pass, as they
    /// are missing from what runs.
    async fn apply_gateways(&mut self, plan: &NodePlan, outcome: &mut Outcome) {
        let Some(gateways) = &mut self.gateways else {
            return;
        };
        let wanted = gateway::specs(plan, &self.config);
        if gateway::unchanged(&gateways.specs(), &wanted) {
            return;
        }
        let failures = gateways.set(&wanted).await;
        tracing::info!(
            gateways = wanted.len(),
            failed = failures.len(),
            "gateways set"
        );
        outcome.failed.extend(failures.into_iter().map(|f| Failure {
            object: Object::Gateway(f.name.clone()),
            error: f.reason(),
        }));
    }

    /// One pass: realizes every object of `plan` that passes the rules and that the kernel
    /// accepts, and reports the others.
    pub async fn reconcile(&mut self, plan: &NodePlan) -> Result<Outcome, ReconcileError> {
        let (plan, refused) = usable(plan);
        let observed = self.observe(&plan).await?;
        let diff = diff::diff(&plan, &observed, &self.config);
        let mut outcome = self.apply(diff.changes).await;
        self.apply_gateways(&plan, &mut outcome).await;
        let refused = refused
            .into_iter()
            .map(|(object, e)| (object, e.to_string()))
            .chain(diff.refused);
        outcome
            .failed
            .extend(refused.map(|(object, error)| Failure { object, error }));
        outcome.failed.sort_by(|a, b| a.object.cmp(&b.object));
        let failed: BTreeSet<&Object> = outcome.failed.iter().map(|f| &f.object).collect();
        // Verified: realized without failure, with its link up (a container whose side is
        // down is read again once it is back).
        let host_names = names::host_ifnames(
            plan.containers.iter().map(|c| c.name.as_str()),
            &observed.host_links,
        );
        let down: BTreeSet<&str> = plan
            .containers
            .iter()
            .filter(|c| {
                host_names
                    .get(&c.name)
                    .and_then(|name| observed.host_links.get(name))
                    .is_some_and(|h| !h.carrier)
            })
            .map(|c| c.name.as_str())
            .collect();
        self.verified = plan
            .containers
            .iter()
            .filter(|c| !failed.contains(&Object::Container(c.name.clone())))
            .filter(|c| !down.contains(c.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
        Ok(outcome)
    }
}
