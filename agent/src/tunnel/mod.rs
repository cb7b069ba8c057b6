//! The encrypted overlay between nodes: WireGuard in userspace, one tunnel per network.
//!
//! [`Tunnels`] is the long-lived handle the daemon owns. Each network's tunnel is a TUN device
//! (persistent, so it and what is attached to it survive an agent restart), one UDP socket, and
//! a task that owns the network's peers and moves packets between the two. The WireGuard
//! protocol (handshakes, keys, timers) is boringtun's `noise::Tunn`, one per peer; the I/O, the
//! timers' clock, the peer table and the choice of endpoints are the agent's.
//!
//! Data path, per tunnel:
//! - a packet read from the TUN device goes to the peer whose allowed IPs hold its destination
//!   (longest prefix), encrypted; a packet for no peer is dropped and counted;
//! - a datagram received is matched to its peer (handshake initiation: by the static key it
//!   carries; anything else: by receiver index), decrypted, and written to the TUN device only if
//!   its source is in that peer's allowed IPs; otherwise dropped and counted.
//!
//! Each tunnel also serves WireGuard's userspace API read-only, so `wg show` works against it
//! (`uapi`).
//!
//! See `docs/tunnels.md` for the design and what is still missing.

mod allowed_ips;
mod device;
mod endpoint;
mod engine;
mod outbox;
mod peer;
mod relay;
mod router;
mod socket;
mod spec;
mod status;
#[cfg(test)]
mod tests;
mod too_big;
mod uapi;

use std::{collections::HashMap, io, path::PathBuf, sync::Arc};

use base64::Engine as _;
use ipnet::IpNet;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use device::Device;
use engine::{Control, Engine};
use outbox::Outbox;
use router::Router;
use socket::TunnelSocket;
use uapi::UapiServer;

pub use spec::{MAX_MTU, MIN_MTU, PeerSpec, TunnelSpec};
pub use status::{DropCounts, DropReason, PeerStatus, TunnelStatus};
pub use uapi::{DEFAULT_UAPI_DIR, UapiError};

/// Control messages that may wait for a tunnel's task; `ensure` waits for each to be applied,
/// so one at a time is all that is ever queued.
const CONTROL_QUEUE: usize = 4;

/// Errors of tunnels, naming the network and what failed.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "tunnel of network `{network}`: interface name `{ifname}` is invalid (1 to 15 letters, digits, `-`, `_`, `.`)"
    )]
    InvalidIfname { network: String, ifname: String },
    #[error("tunnel of network `{network}`: MTU {mtu} is outside {MIN_MTU}..={MAX_MTU}")]
    InvalidMtu { network: String, mtu: u16 },
    #[error("tunnel of network `{network}`: peer {peer} is listed twice")]
    DuplicatePeer { network: String, peer: String },
    #[error("tunnel of network `{network}`: a peer has this node's own public key")]
    OwnKey { network: String },
    #[error(
        "tunnel of network `{network}`: allowed IPs {net} are given to both peer {first} and peer {second}"
    )]
    AllowedIpClaimedTwice {
        network: String,
        net: IpNet,
        first: String,
        second: String,
    },
    #[error(
        "tunnel of network `{network}`: interface `{ifname}` is already the tunnel of network `{other}`"
    )]
    IfnameInUse {
        network: String,
        ifname: String,
        other: String,
    },
    #[error(
        "tunnel of network `{network}`: cannot create or take over TUN device `{ifname}` (an existing interface of that name must be a TUN device no other process has open)"
    )]
    Device {
        network: String,
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error("tunnel of network `{network}`: cannot listen on UDP port {port}")]
    Socket {
        network: String,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error(
        "tunnel of network `{network}` stopped (its TUN device failed); it is started again by the next ensure"
    )]
    Stopped { network: String },
    #[error("tunnel of network `{network}`: cannot serve `wg show`")]
    Uapi {
        network: String,
        #[source]
        source: UapiError,
    },
}

/// Every network's tunnel on this node.
pub struct Tunnels {
    private_key: [u8; 32],
    public_key: [u8; 32],
    /// Where each tunnel's `wg` socket is served (`None`: not served).
    uapi_dir: Option<PathBuf>,
    running: HashMap<String, Running>,
}

/// A tunnel whose task runs.
struct Running {
    spec: TunnelSpec,
    device: Arc<Device>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    status: watch::Receiver<TunnelStatus>,
    /// The tunnel's `wg` socket; dropped (the file removed) with the tunnel.
    uapi: Option<UapiServer>,
}

impl Running {
    fn alive(&self) -> bool {
        !self.task.is_finished()
    }

    /// Hands `message` (made with a fresh `done` channel) to the task and waits until applied.
    async fn apply(
        &self,
        network: &str,
        message: impl FnOnce(oneshot::Sender<()>) -> Control,
    ) -> Result<(), TunnelError> {
        let stopped = || TunnelError::Stopped {
            network: network.to_owned(),
        };
        let (done, applied) = oneshot::channel();
        self.control
            .send(message(done))
            .await
            .map_err(|_| stopped())?;
        applied.await.map_err(|_| stopped())
    }
}

impl Tunnels {
    /// The tunnels of a node whose x25519 static private key is `private_key`. With
    /// `uapi_dir`, each tunnel serves `wg show` on `<uapi_dir>/<ifname>.sock` (read-only; see
    /// `docs/tunnels.md`).
    pub fn new(private_key: [u8; 32], uapi_dir: Option<PathBuf>) -> Self {
        let public_key = crate::vocab::WgKey::of_private(private_key).0;
        Self {
            private_key,
            public_key,
            uapi_dir,
            running: HashMap::new(),
        }
    }

    /// This node's public key, as its peers know it.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Creates the network's tunnel (TUN device `spec.ifname`, persistent, up, MTU `spec.mtu`;
    /// a UDP socket on `spec.listen_port`) or updates it: peers added, removed or changed (key,
    /// endpoints, allowed IPs, keepalive) without touching peers that did not change (their
    /// sessions and handshake times stay; a changed peer keeps its session too). Idempotent.
    ///
    /// An existing persistent TUN device of that name (left by an earlier run) is taken over;
    /// its peers handshake again. Needs a tokio runtime; the socket and the TUN device are
    /// created in the network namespace of the thread that runs this call.
    pub async fn ensure(&mut self, spec: &TunnelSpec) -> Result<(), TunnelError> {
        spec::validate(spec, &self.public_key)?;
        if let Some((other, _)) = self
            .running
            .iter()
            .find(|(network, r)| **network != spec.network && r.spec.ifname == spec.ifname)
        {
            return Err(TunnelError::IfnameInUse {
                network: spec.network.clone(),
                ifname: spec.ifname.clone(),
                other: other.clone(),
            });
        }
        let replace = self
            .running
            .get(&spec.network)
            .is_some_and(|r| !r.alive() || r.spec.ifname != spec.ifname);
        if replace {
            self.remove(&spec.network).await?;
        }
        match self.running.get_mut(&spec.network) {
            Some(running) => {
                let updated = update(running, spec).await;
                // What did change is served, even when a later step failed.
                if let Some(uapi) = &running.uapi {
                    uapi.publish(&running.spec);
                }
                updated
            }
            None => {
                let running = self.start(spec)?;
                self.running.insert(spec.network.clone(), running);
                Ok(())
            }
        }
    }

    fn start(&self, spec: &TunnelSpec) -> Result<Running, TunnelError> {
        // First: a socket that cannot be served refuses the tunnel before anything is made.
        let uapi = self
            .uapi_dir
            .as_deref()
            .map(|dir| uapi::Listener::bind(dir, &spec.ifname))
            .transpose()
            .map_err(|source| TunnelError::Uapi {
                network: spec.network.clone(),
                source,
            })?;
        let socket = bind(spec)?;
        let device =
            Device::open(&spec.ifname, spec.mtu).map_err(|source| TunnelError::Device {
                network: spec.network.clone(),
                ifname: spec.ifname.clone(),
                source,
            })?;
        let device = Arc::new(device);
        let mut router = Router::new(self.private_key);
        let mut out = Outbox::default();
        router.set_peers(&spec.peers, &mut out);
        let (status, status_rx) = watch::channel(TunnelStatus {
            network: spec.network.clone(),
            ifname: spec.ifname.clone(),
            ifindex: device.ifindex,
            listen_port: socket.port(),
            peers: router.peer_status(),
            drops: DropCounts::default(),
        });
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let engine = Engine {
            network: spec.network.clone(),
            ifname: spec.ifname.clone(),
            device: Arc::clone(&device),
            socket,
            router,
            out,
            status,
        };
        let task = tokio::spawn(engine.run(control_rx));
        let uapi = uapi.map(|listener| listener.serve(self.private_key, spec, status_rx.clone()));
        tracing::info!(network = %spec.network, ifname = %spec.ifname, ifindex = device.ifindex, "tunnel started");
        Ok(Running {
            spec: spec.clone(),
            device,
            control,
            task,
            status: status_rx,
            uapi,
        })
    }

    /// Stops the network's tunnel and deletes its TUN device. A network without a running
    /// tunnel is fine.
    pub async fn remove(&mut self, network: &str) -> Result<(), TunnelError> {
        let Some(running) = self.running.remove(network) else {
            return Ok(());
        };
        let Running {
            spec,
            device,
            control,
            task,
            uapi,
            ..
        } = running;
        // `wg` stops seeing the tunnel first.
        drop(uapi);
        drop(control);
        // The task ends when it sees the channel closed; its copy of the device goes with it.
        let _ = task.await;
        match device.release() {
            Ok(()) => {}
            // The device was already deleted under the tunnel.
            Err(e) if e.raw_os_error() == Some(libc::EBADFD) => {}
            Err(source) => {
                return Err(TunnelError::Device {
                    network: network.to_owned(),
                    ifname: spec.ifname,
                    source,
                });
            }
        }
        drop(device);
        tracing::info!(network, ifname = %spec.ifname, "tunnel removed");
        Ok(())
    }

    /// Stops every tunnel's task and waits for them, leaving the TUN devices (persistent) for
    /// the next run to take over. The `wg` sockets are removed: with the tasks stopped, nothing
    /// moves packets through the devices, and nothing would answer on them.
    pub async fn shutdown(mut self) {
        for (_, running) in self.running.drain() {
            drop(running.uapi);
            drop(running.control);
            let _ = running.task.await;
        }
    }

    /// The specs currently running, as they were given (for a pure diff against the plan). A
    /// tunnel whose task stopped is left out, so the next pass ensures it again.
    pub fn specs(&self) -> Vec<TunnelSpec> {
        let mut specs: Vec<_> = self
            .running
            .values()
            .filter(|r| r.alive())
            .map(|r| r.spec.clone())
            .collect();
        specs.sort_by(|a, b| a.network.cmp(&b.network));
        specs
    }

    /// The ifindex of a network's TUN device.
    pub fn ifindex(&self, network: &str) -> Option<u32> {
        self.running
            .get(network)
            .filter(|r| r.alive())
            .map(|r| r.device.ifindex)
    }

    /// Per network and peer: endpoint in use, last handshake, traffic, drops by reason. Fresh to
    /// within one timer tick.
    pub fn status(&self) -> Vec<TunnelStatus> {
        let mut status: Vec<_> = self
            .running
            .values()
            .filter(|r| r.alive())
            .map(|r| r.status.borrow().clone())
            .collect();
        status.sort_by(|a, b| a.network.cmp(&b.network));
        status
    }
}

impl Drop for Tunnels {
    /// Stops the tasks; the devices stay (persistent), for the next run to take over. The `wg`
    /// sockets go with their tunnels' entries.
    fn drop(&mut self) {
        for running in self.running.values() {
            running.task.abort();
        }
    }
}

async fn update(running: &mut Running, spec: &TunnelSpec) -> Result<(), TunnelError> {
    let network = spec.network.as_str();
    if running.spec.mtu != spec.mtu {
        running
            .device
            .set_mtu(spec.mtu)
            .map_err(|source| TunnelError::Device {
                network: network.to_owned(),
                ifname: spec.ifname.clone(),
                source,
            })?;
        running.spec.mtu = spec.mtu;
    }
    if running.spec.listen_port != spec.listen_port {
        let socket = bind(spec)?;
        running
            .apply(network, |done| Control::Rebind { socket, done })
            .await?;
        running.spec.listen_port = spec.listen_port;
    }
    if running.spec.peers != spec.peers {
        let peers = spec.peers.clone();
        running
            .apply(network, |done| Control::SetPeers { peers, done })
            .await?;
    }
    running.spec = spec.clone();
    Ok(())
}

fn bind(spec: &TunnelSpec) -> Result<TunnelSocket, TunnelError> {
    TunnelSocket::bind(spec.listen_port).map_err(|source| TunnelError::Socket {
        network: spec.network.clone(),
        port: spec.listen_port,
        source,
    })
}

/// A key as `wg` writes it (base64), for messages.
fn key_text(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}
