//! What `gridnet status` shows of the gateways.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::health::Health;
use crate::vocab::GatewayMode;

/// One running gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub name: String,
    pub hostnames: Vec<String>,
    pub mode: GatewayMode,
    /// The namespace its backend connections come from; `None`: the agent's own.
    pub netns: Option<PathBuf>,
    pub proxy_protocol: bool,
    pub listeners: Vec<ListenerStatus>,
    pub backends: Vec<BackendStatus>,
    /// Backend connections open now.
    pub active_connections: u64,
    /// Backend connections opened since the gateway started.
    pub total_connections: u64,
    /// Client connections (TLS) and requests (HTTP) that found no backend: answered 502 or
    /// 503, or closed.
    pub unavailable: u64,
}

/// A listening address, possibly shared by several gateways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    pub addr: SocketAddr,
    /// Client connections open now, for all the gateways on this address.
    pub active_connections: u64,
    /// Client connections closed at once because the listener was at its limit.
    pub rejected_connections: u64,
    /// Requests and connections for no gateway here: no or an unknown host name, no SNI, not
    /// TLS, a malformed, truncated or slow ClientHello.
    pub unrouted: u64,
}

/// One backend and what its health checks say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub addr: SocketAddr,
    pub health: Health,
    /// When it was last checked, in seconds since the Unix epoch.
    pub last_check_unix: Option<u64>,
    /// Why the last check failed.
    pub error: Option<String>,
    pub active_connections: u64,
}
