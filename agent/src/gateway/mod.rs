//! Web gateways: public HTTP (routed by `Host`) and TLS (routed by SNI, passed through) into
//! a private network, over connections opened from inside the gateway's network namespace.
//!
//! [`Gateways`] is the daemon's long-lived handle: [`Gateways::set`] makes the running
//! gateways equal to a list of [`GatewaySpec`]s, leaving unchanged ones (and their
//! connections) alone. Gateways that listen on the same address share one listener, which
//! routes by host name. See docs/gateways.md.

mod balance;
mod dialer;
mod forwarded;
mod gateways;
mod health;
mod hostname;
mod http;
mod idle;
mod limits;
mod listener;
mod passthrough;
mod pool;
mod proxy_header;
mod routes;
mod runtime;
mod sni;
mod spec;
mod status;
mod upgrade;
mod upstream;

pub use self::{
    dialer::DialError,
    gateways::Gateways,
    health::Health,
    limits::Limits,
    spec::{GatewayError, GatewayFailure, GatewaySpec},
    status::{BackendStatus, GatewayStatus, ListenerStatus},
};
