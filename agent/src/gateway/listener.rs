//! One listening address, shared by every gateway with that address; it routes each
//! connection by host name to the gateway that owns the name.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{Semaphore, watch},
    task::JoinHandle,
};

use super::{
    Limits, http, passthrough, routes::RouteTable, runtime::Gateway, status::ListenerStatus,
};
use crate::vocab::GatewayMode;

/// Connections waiting in the kernel's accept queue. The listener accepts as fast as it can
/// (and closes what is over its limit), so the queue only absorbs bursts.
const BACKLOG: u32 = 1024;

/// Pause after a failed accept (out of file descriptors, most often): the condition clears
/// only as connections close, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a listener's connections share.
#[derive(Debug)]
pub struct ListenerShared {
    pub addr: SocketAddr,
    pub mode: GatewayMode,
    pub limits: Arc<Limits>,
    pub routes: RwLock<RouteTable<Arc<Gateway>>>,
    permits: Arc<Semaphore>,
    rejected: AtomicU64,
    unrouted: AtomicU64,
    closed: watch::Sender<bool>,
}

impl ListenerShared {
    /// The gateway answering for `hostname` (normalised) here.
    pub fn route(&self, hostname: &str) -> Option<Arc<Gateway>> {
        self.routes
            .read()
            .ok()
            .and_then(|routes| routes.route(hostname).cloned())
    }

    /// Counts a request or connection that no gateway here takes.
    pub fn count_unrouted(&self) {
        self.unrouted.fetch_add(1, Ordering::Relaxed);
    }

    /// Resolves when the listener is closed.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    pub fn status(&self) -> ListenerStatus {
        let open = self
            .limits
            .max_connections_per_listener
            .saturating_sub(self.permits.available_permits());
        ListenerStatus {
            addr: self.addr,
            active_connections: u64::try_from(open).unwrap_or(u64::MAX),
            rejected_connections: self.rejected.load(Ordering::Relaxed),
            unrouted: self.unrouted.load(Ordering::Relaxed),
        }
    }
}

/// A bound listener and its accept task.
#[derive(Debug)]
pub struct Listener {
    shared: Arc<ListenerShared>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and starts accepting.
    pub fn bind(addr: SocketAddr, mode: GatewayMode, limits: Arc<Limits>) -> io::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted agent binds again while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        let shared = Arc::new(ListenerShared {
            addr,
            mode,
            permits: Arc::new(Semaphore::new(limits.max_connections_per_listener)),
            limits,
            routes: RwLock::default(),
            rejected: AtomicU64::new(0),
            unrouted: AtomicU64::new(0),
            closed: watch::channel(false).0,
        });
        let task = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Ok(Self { shared, task })
    }

    pub fn shared(&self) -> &Arc<ListenerShared> {
        &self.shared
    }

    /// Stops accepting and closes the listener's connections; the address is free once this
    /// returns.
    pub async fn close(mut self) {
        self.shared.closed.send_replace(true);
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Listener {
    /// A listener dropped without [`Listener::close`] (its owner went away) stops all the same.
    fn drop(&mut self) {
        self.shared.closed.send_replace(true);
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<ListenerShared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(
                    listener = %shared.addr,
                    error = %e,
                    "gateway cannot accept a connection"
                );
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&shared.permits).try_acquire_owned() else {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            match shared.mode {
                // Upgraded connections outlive the HTTP connection: they hold the permit too.
                GatewayMode::Http => http::serve(stream, peer, &shared, Arc::new(permit)).await,
                GatewayMode::TlsPassthrough => {
                    passthrough::serve(stream, peer, &shared).await;
                    drop(permit);
                }
            }
        });
    }
}
