//! What a gateway should be, and why one does not run.

use std::{io, net::SocketAddr, path::PathBuf};

use super::{dialer::DialError, hostname, runtime};
use crate::vocab::GatewayMode;

/// What one gateway should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The ledger key of the gateway, e.g. `alice/site`.
    pub name: String,
    /// Lower-case DNS names it answers for.
    pub hostnames: Vec<String>,
    pub mode: GatewayMode,
    /// Public addresses (ip:port) to listen on.
    pub listen: Vec<SocketAddr>,
    /// Overlay addresses of the backends.
    pub backends: Vec<SocketAddr>,
    /// The network namespace whose sockets reach the backends (`/run/netns/<name>`); `None`
    /// is the agent's own namespace.
    pub netns: Option<PathBuf>,
    /// Whether backend connections start with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
}

/// Why a gateway does not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway is listed twice")]
    Duplicate,
    #[error("the gateway has no host names")]
    NoHostnames,
    #[error("`{hostname}` is not a lower-case DNS host name")]
    InvalidHostname { hostname: String },
    #[error("the gateway has no address to listen on")]
    NoListenAddress,
    #[error("cannot open backend connections")]
    Dialer(#[source] DialError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{addr} already serves {serving:?} gateways, this one is {mode:?}")]
    ModeConflict {
        addr: SocketAddr,
        serving: GatewayMode,
        mode: GatewayMode,
    },
    #[error("`{hostname}` on {addr} is already served by gateway `{owner}`")]
    HostnameTaken {
        addr: SocketAddr,
        hostname: String,
        owner: String,
    },
}

/// A gateway that [`super::Gateways::set`] could not start; the others went ahead.
#[derive(Debug, thiserror::Error)]
#[error("gateway `{name}`")]
pub struct GatewayFailure {
    pub name: String,
    #[source]
    pub error: GatewayError,
}

impl GatewayFailure {
    /// The error and its causes, on one line (`cannot listen on ...: Address in use`).
    pub fn reason(&self) -> String {
        runtime::error_chain(&self.error)
    }
}

/// Checks what can be checked without touching the system.
pub(super) fn validate(spec: &GatewaySpec) -> Result<(), GatewayError> {
    if spec.hostnames.is_empty() {
        return Err(GatewayError::NoHostnames);
    }
    if let Some(bad) = spec
        .hostnames
        .iter()
        .find(|h| hostname::normalise(h).as_deref() != Some(h.as_str()))
    {
        return Err(GatewayError::InvalidHostname {
            hostname: bad.clone(),
        });
    }
    if spec.listen.is_empty() {
        return Err(GatewayError::NoListenAddress);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GatewaySpec {
        GatewaySpec {
            name: "alice/site".into(),
            hostnames: vec!["shop.example.org".into()],
            mode: GatewayMode::Http,
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            backends: vec![],
            netns: None,
            proxy_protocol: false,
        }
    }

    #[test]
    fn specs_are_checked_before_anything_starts() {
        assert!(validate(&spec()).is_ok());
        let upper = GatewaySpec {
            hostnames: vec!["Shop.example.org".into()],
            ..spec()
        };
        assert!(matches!(
            validate(&upper),
            Err(GatewayError::InvalidHostname { .. })
        ));
        let nameless = GatewaySpec {
            hostnames: vec![],
            ..spec()
        };
        assert!(matches!(
            validate(&nameless),
            Err(GatewayError::NoHostnames)
        ));
        let nowhere = GatewaySpec {
            listen: vec![],
            ..spec()
        };
        assert!(matches!(
            validate(&nowhere),
            Err(GatewayError::NoListenAddress)
        ));
    }
}
