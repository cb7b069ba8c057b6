//! HTTP/1.1 connections to a gateway's backends, kept open and reused between requests.
//!
//! A request takes a parked connection of the backend round robin picks, or opens one; once its
//! response has been read to the end the connection is parked again (see [`IdlePool`]). A
//! request that finds its reused connection closed by the backend before anything was sent
//! goes out once more on a new connection. Gateways with `proxy_protocol` never reuse a
//! connection: its PROXY header names the one client it was opened for.

use std::{
    cell::OnceCell,
    io,
    net::SocketAddr,
    sync::{Arc, Weak},
    time::Instant,
};

use hyper::{Request, Response, body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;

use super::{
    dialer::{DialError, NamespaceId},
    idle::{Activity, Watched},
    pool::IdlePool,
    proxy_header,
    runtime::{Counted, Gateway, Unavailable},
};

/// A connection lent to one request.
#[derive(Debug)]
pub struct Upstream {
    sender: http1::SendRequest<Incoming>,
    /// Counts the connection while it is open; held by its task too, and by an upgraded
    /// connection's splice.
    pub counted: Arc<Counted>,
    /// Bytes moving on the connection, for idle timeouts.
    pub activity: Arc<Activity>,
    backend: usize,
    /// The gateway namespace the connection was made in.
    namespace: Option<NamespaceId>,
    /// It served an earlier request, so the backend may have closed it since.
    reused: bool,
}

/// A connection waiting in a backend's pool. It does not keep its count alive (its task
/// does), so a parked connection holds no reference back to the gateway owning the pool.
#[derive(Debug)]
pub struct Parked {
    sender: http1::SendRequest<Incoming>,
    counted: Weak<Counted>,
    activity: Arc<Activity>,
    namespace: Option<NamespaceId>,
}

pub type Pool = IdlePool<Parked>;

impl Parked {
    fn usable(&self) -> bool {
        self.sender.is_ready() && self.counted.strong_count() > 0
    }
}

/// Whether a checkout may hand out a parked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reuse {
    Allowed,
    FreshOnly,
}

/// A connection for a request from `peer` to the listener at `local`: parked or new, to the
/// next usable backend (round robin), the others in turn if it cannot be reached.
pub async fn checkout(
    gateway: &Arc<Gateway>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<Upstream, Unavailable> {
    checkout_with(gateway, peer, local, Reuse::Allowed).await
}

async fn checkout_with(
    gateway: &Arc<Gateway>,
    peer: SocketAddr,
    local: SocketAddr,
    reuse: Reuse,
) -> Result<Upstream, Unavailable> {
    let reuse = reuse == Reuse::Allowed && !gateway.spec.proxy_protocol;
    gateway
        .first_answering(|backend| async move {
            if reuse && let Some(upstream) = take_parked(gateway, backend) {
                return Ok(upstream);
            }
            open(gateway, backend, peer, local).await
        })
        .await
}

fn take_parked(gateway: &Gateway, backend: usize) -> Option<Upstream> {
    let pool = &gateway.backends[backend].idle;
    // A connection from a namespace that has since been made again leads nowhere: the old
    // namespace's routes and tunnels are gone, and no close may ever reach it. Looked up only
    // once there is a parked connection to judge.
    let namespace = OnceCell::new();
    let current = || *namespace.get_or_init(|| gateway.dialer().current_namespace());
    loop {
        let parked = pool.take(Instant::now(), |p| p.usable() && p.namespace == current())?;
        // Its task may have ended since the check.
        if let Some(counted) = parked.counted.upgrade() {
            return Some(Upstream {
                sender: parked.sender,
                counted,
                activity: parked.activity,
                backend,
                namespace: parked.namespace,
                reused: true,
            });
        }
    }
}

/// Opens a connection to backend `backend` and starts its task.
async fn open(
    gateway: &Arc<Gateway>,
    backend: usize,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<Upstream, DialError> {
    let addr = gateway.backends[backend].addr;
    let (mut stream, counted, namespace) = gateway.dial(backend).await?;
    if gateway.spec.proxy_protocol {
        let header = proxy_header::v2(peer, local).map_err(|e| DialError::Connect {
            addr,
            source: io::Error::other(e),
        })?;
        stream
            .write_all(&header)
            .await
            .map_err(|source| DialError::Connect { addr, source })?;
    }
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
    let (sender, connection) =
        http1::handshake::<_, Incoming>(io)
            .await
            .map_err(|e| DialError::Connect {
                addr,
                source: io::Error::other(e),
            })?;
    let counted = Arc::new(counted);
    let idle_timeout = gateway.limits().idle_timeout;
    let (held, watched) = (Arc::clone(&counted), Arc::clone(&activity));
    // The connection ends when the backend closes it, when nothing moves on it for the idle
    // timeout, or when its sender is dropped while no request is on it (a pool lets it go).
    tokio::spawn(async move {
        tokio::select! {
            _ = connection.with_upgrades() => {}
            () = watched.idle_for(idle_timeout) => {}
        }
        drop(held);
    });
    Ok(Upstream {
        sender,
        counted,
        activity,
        backend,
        namespace,
        reused: false,
    })
}

impl Upstream {
    /// Sends `request` and waits for the response head. On a reused connection that the
    /// backend closed before the request went out, the request goes once more on a new
    /// connection. Returns the connection the response came on.
    pub async fn send(
        mut self,
        gateway: &Arc<Gateway>,
        peer: SocketAddr,
        local: SocketAddr,
        request: Request<Incoming>,
    ) -> Result<(Self, Response<Incoming>), SendError> {
        match self.sender.try_send_request(request).await {
            Ok(response) => Ok((self, response)),
            Err(mut e) => match e.take_message() {
                Some(request) if self.reused => {
                    tracing::debug!(
                        gateway = %gateway.spec.name,
                        error = %e.error(),
                        "a reused backend connection had closed; the request goes on a new one"
                    );
                    let mut fresh = checkout_with(gateway, peer, local, Reuse::FreshOnly)
                        .await
                        .map_err(SendError::Unavailable)?;
                    let response = fresh
                        .sender
                        .send_request(request)
                        .await
                        .map_err(SendError::Exchange)?;
                    Ok((fresh, response))
                }
                _ => Err(SendError::Exchange(e.into_error())),
            },
        }
    }

    /// Parks the connection in its backend's pool once the response being read on it has
    /// been read to the end, if the backend keeps it open.
    pub fn park_when_done(mut self, gateway: &Arc<Gateway>) {
        if gateway.spec.proxy_protocol {
            return;
        }
        let gateway = Arc::clone(gateway);
        tokio::spawn(async move {
            if self.sender.ready().await.is_ok() {
                let parked = Parked {
                    sender: self.sender,
                    counted: Arc::downgrade(&self.counted),
                    activity: self.activity,
                    namespace: self.namespace,
                };
                gateway.backends[self.backend]
                    .idle
                    .put(parked, Instant::now());
            }
        });
    }
}

/// Why a request got no response from a backend.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no backend for the request sent again")]
    Unavailable(#[source] Unavailable),
    #[error("the backend did not answer")]
    Exchange(#[source] hyper::Error),
}
