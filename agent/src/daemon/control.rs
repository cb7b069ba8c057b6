//! The local control socket: the only way to talk to a running agent. A unix socket (mode
//! 0600), never a network port: the node accepts no inbound management connections.
//!
//! Protocol: the client writes one command line (`status`), the agent answers with one JSON
//! document and closes the connection.

use std::{path::Path, sync::Arc};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::RwLock,
};
use tracing::warn;

/// What `gridnet status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node_id: u32,
    /// Where the ledger is read from.
    pub ledger: String,
    /// `tcx` or `netlink`.
    pub attach_mode: String,
    /// The sequence number of the last ledger entry applied (`null` before the first).
    pub last_seq: Option<u64>,
    /// Entries the node refused, with the rule they broke.
    pub rejected: Vec<Rejected>,
    /// This node's networks.
    pub networks: Vec<String>,
    /// This node's containers.
    pub containers: Vec<ContainerStatus>,
    /// Objects the last pass could not realize, each with its reason (retried every pass).
    pub failing: Vec<Failing>,
    /// Why the last pass could not run at all, if it could not (it is retried).
    pub last_error: Option<String>,
    /// Why the ledger cannot be read right now, if it cannot; the last good state is kept.
    pub ledger_error: Option<String>,
    /// How many passes changed something since the agent started.
    pub reconciles: u64,
    /// How many passes ran since the agent started, whether they changed something or not.
    pub passes: u64,
    /// The datapath programs the agent has loaded, with their kernel ids.
    pub programs: Vec<ProgramStatus>,
    /// Programs put through the verifier since the agent started (once each: passes reuse them).
    pub program_loads: u64,
    /// Each network's tunnel: its peers, their endpoints, handshakes, traffic and drops.
    pub tunnels: Vec<TunnelReport>,
    /// Netlink sockets opened since the agent started: one for the node, and one per container
    /// namespace while that container is created or repaired.
    pub netlink_sockets_opened: u64,
    /// The XDP guard on each uplink: how it runs (`native`, `generic`) or `none`.
    pub uplinks: Vec<UplinkStatus>,
    /// Each web gateway: its listeners, its backends with their health, its connections.
    #[serde(default)]
    pub gateways: Vec<crate::gateway::GatewayStatus>,
}

/// The guard on one uplink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub name: String,
    pub xdp: String,
}

/// An object of the plan the agent cannot realize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    /// What it is (`container alice.web`, `network alice/net`, ...).
    pub object: String,
    pub error: String,
}

/// One network's tunnel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelReport {
    pub network: String,
    pub ifname: String,
    pub listen_port: u16,
    pub peers: Vec<PeerReport>,
    /// Packets dropped that no peer can be blamed for, by reason.
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// One peer of a tunnel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Its public key, base64 as `wg` writes it.
    pub public_key: String,
    /// The endpoint in use.
    pub endpoint: Option<String>,
    /// When the current session's handshake completed, in seconds since the Unix epoch.
    pub last_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Packets from or to this peer dropped, by reason.
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// A loaded datapath program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStatus {
    pub name: String,
    pub id: u32,
}

/// A refused ledger entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub seq: u64,
    pub reason: String,
}

/// A container as the agent realized it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub network: String,
    pub ipv4: String,
    pub ipv6: String,
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on {path}")]
    Listen {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the agent at {path} (is `gridnet run` running?)")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent's answer could not be read")]
    Answer(#[source] std::io::Error),
    #[error("the agent's answer is not a status: {0}")]
    Decode(String),
}

/// Binds the control socket (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Listen {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Serves status requests until the task is dropped.
pub async fn serve(listener: UnixListener, status: Arc<RwLock<Status>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, status).await {
                warn!(error = %e, "control client");
            }
        });
    }
}

/// Longest command line a client may send: commands are single words.
const MAX_COMMAND: usize = 64;

async fn answer(stream: UnixStream, status: Arc<RwLock<Status>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_COMMAND as u64);
    reader.read_line(&mut line).await?;
    let reply = match line.trim() {
        "status" => serde_json::to_string(&*status.read().await).map_err(std::io::Error::other)?,
        other => serde_json::json!({ "error": format!("unknown command `{other}`; try `status`") })
            .to_string(),
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Asks a running agent for its status.
pub async fn status(path: &Path) -> Result<Status, ControlError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    stream
        .write_all(b"status\n")
        .await
        .map_err(ControlError::Answer)?;
    let mut reply = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut reply)
        .await
        .map_err(ControlError::Answer)?;
    serde_json::from_str(&reply).map_err(|e| ControlError::Decode(format!("{e}: {}", reply.trim())))
}

use tokio::io::AsyncReadExt as _;
