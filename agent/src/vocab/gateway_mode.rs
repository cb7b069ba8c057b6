//! How a web gateway routes public traffic.

use serde::{Deserialize, Serialize};

/// How a gateway routes public traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    /// Plain HTTP, routed by the `Host` header.
    Http,
    /// TLS, routed by SNI and passed through without termination.
    TlsPassthrough,
}
