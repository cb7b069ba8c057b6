//! A running gateway: its backends, their health, and its connection counters.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Instant, SystemTime},
};

use tokio::{io::AsyncWriteExt as _, net::TcpStream, sync::watch};

use super::{
    GatewaySpec, Limits, balance,
    dialer::{DialError, Dialer, NamespaceId},
    health::{Health, HealthState},
    proxy_header,
    status::BackendStatus,
    upstream::Pool,
};

/// What the last checks said of a backend.
#[derive(Debug, Default)]
struct Checked {
    state: HealthState,
    last: Option<SystemTime>,
    error: Option<String>,
}

/// One backend of a gateway.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    checked: Mutex<Checked>,
    active: AtomicU64,
    /// Idle HTTP connections for later requests.
    pub idle: Pool,
}

impl Backend {
    fn health(&self) -> Health {
        self.checked
            .lock()
            .map(|c| c.state.health())
            .unwrap_or(Health::Unknown)
    }

    fn record(&self, result: &Result<(), DialError>, limits: &Limits) {
        if let Ok(mut checked) = self.checked.lock() {
            let before = checked.state.health();
            let after =
                checked
                    .state
                    .record(result.is_ok(), limits.health_fall, limits.health_rise);
            checked.last = Some(SystemTime::now());
            checked.error = result.as_ref().err().map(|e| error_chain(e));
            if before != after {
                tracing::info!(
                    backend = %self.addr,
                    health = ?after,
                    error = ?checked.error,
                    "gateway backend health changed"
                );
            }
        }
    }

    pub fn status(&self) -> BackendStatus {
        let (health, last, error) = match self.checked.lock() {
            Ok(c) => (c.state.health(), c.last, c.error.clone()),
            Err(_) => (Health::Unknown, None, None),
        };
        BackendStatus {
            addr: self.addr,
            health,
            last_check_unix: last
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            error,
            active_connections: self.active.load(Ordering::Relaxed),
        }
    }
}

/// Why no backend connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("no healthy backend")]
    NoHealthyBackend,
    #[error("no backend answered")]
    ConnectFailed(#[source] DialError),
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub spec: GatewaySpec,
    pub backends: Vec<Backend>,
    dialer: Arc<Dialer>,
    limits: Arc<Limits>,
    turn: AtomicUsize,
    active: AtomicU64,
    total: AtomicU64,
    /// Connections and requests that found no backend to take them.
    unavailable: AtomicU64,
    /// Turns true when the gateway is removed: its connections close. Shared with the
    /// gateways it replaced, whose connections are still open.
    closed: Arc<watch::Sender<bool>>,
}

/// Counts a connection to one backend while it lives.
#[derive(Debug)]
pub struct Counted {
    gateway: Arc<Gateway>,
    backend: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gateway.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(backend) = self.gateway.backends.get(self.backend) {
            backend.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A new connection to a backend: the stream, its count, and the gateway namespace its socket
/// was made in (`None`: the agent's own).
pub type Dialed = (TcpStream, Counted, Option<NamespaceId>);

impl Gateway {
    /// A gateway; `closed` is a fresh channel, or the one of the gateway it replaces.
    pub fn new(
        spec: GatewaySpec,
        dialer: Arc<Dialer>,
        limits: Arc<Limits>,
        closed: Arc<watch::Sender<bool>>,
    ) -> Self {
        let backends = spec
            .backends
            .iter()
            .map(|&addr| Backend {
                addr,
                checked: Mutex::default(),
                active: AtomicU64::new(0),
                idle: Pool::new(limits.backend_idle_max, limits.backend_idle_timeout),
            })
            .collect();
        Self {
            spec,
            backends,
            dialer,
            limits,
            turn: AtomicUsize::new(0),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            closed,
        }
    }

    pub fn dialer(&self) -> &Arc<Dialer> {
        &self.dialer
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Backend connections open now, opened in all, and the connections or requests that
    /// found no backend.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.active.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
        )
    }

    /// Resolves when the gateway is removed.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    pub fn close(&self) {
        self.retire();
        self.closed.send_replace(true);
    }

    /// Takes no new work: idle backend connections close and none are kept from now on;
    /// connections in use finish.
    pub fn retire(&self) {
        for backend in &self.backends {
            backend.idle.close();
        }
    }

    /// The channel that closes this gateway's connections, for its successor.
    pub fn closing(&self) -> Arc<watch::Sender<bool>> {
        Arc::clone(&self.closed)
    }

    /// The backends to try for the next connection or request: the usable ones, starting
    /// with the next in round robin.
    pub fn order(&self) -> Vec<usize> {
        let usable: Vec<bool> = self.backends.iter().map(|b| b.health().usable()).collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        balance::order(&usable, turn)
    }

    /// A new connection to backend `i`; the returned guard counts it until dropped.
    pub async fn dial(self: &Arc<Self>, i: usize) -> Result<Dialed, DialError> {
        let (stream, namespace) = self
            .dialer
            .connect(self.backends[i].addr, self.limits.backend_connect_timeout)
            .await?;
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.backends[i].active.fetch_add(1, Ordering::Relaxed);
        let counted = Counted {
            gateway: Arc::clone(self),
            backend: i,
        };
        Ok((stream, counted, namespace))
    }

    /// What `attempt` gives for the next usable backend (round robin), the others tried in
    /// turn while it fails; counted as unavailable if none succeeds.
    pub async fn first_answering<T, F>(
        &self,
        mut attempt: impl FnMut(usize) -> F,
    ) -> Result<T, Unavailable>
    where
        F: Future<Output = Result<T, DialError>>,
    {
        let mut last_error = None;
        for i in self.order() {
            match attempt(i).await {
                Ok(done) => return Ok(done),
                Err(e) => {
                    tracing::debug!(
                        gateway = %self.spec.name,
                        backend = %self.backends[i].addr,
                        error = %error_chain(&e),
                        "gateway backend did not answer"
                    );
                    last_error = Some(e);
                }
            }
        }
        self.unavailable.fetch_add(1, Ordering::Relaxed);
        Err(last_error.map_or(Unavailable::NoHealthyBackend, Unavailable::ConnectFailed))
    }

    /// A connection to the next usable backend (round robin); the others are tried in turn if
    /// it does not answer. The returned guard counts the connection until dropped.
    pub async fn connect(self: &Arc<Self>) -> Result<Dialed, Unavailable> {
        self.first_answering(|i| self.dial(i)).await
    }

    /// Checks every backend every `health_interval`, until the gateway is closed.
    pub async fn check_backends(self: Arc<Self>) {
        let mut closed = self.closed();
        loop {
            let checks = self.backends.iter().map(|backend| async {
                let result = match self
                    .dialer
                    .connect(backend.addr, self.limits.health_timeout)
                    .await
                {
                    Ok((mut stream, _)) => {
                        // The check is the connect; the header only spares a backend that
                        // requires it a complaint about a connection without one.
                        if self.spec.proxy_protocol
                            && let Ok(header) = proxy_header::local()
                        {
                            let write = stream.write_all(&header);
                            let _ = tokio::time::timeout(self.limits.health_timeout, write).await;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                backend.record(&result, &self.limits);
            });
            futures::future::join_all(checks).await;
            // Idle connections are never reused past their timeout; closing them here keeps
            // a quiet gateway from holding them open on its backends.
            for backend in &self.backends {
                backend.idle.sweep(Instant::now());
            }
            tokio::select! {
                () = tokio::time::sleep(self.limits.health_interval) => {}
                _ = closed.wait_for(|c| *c) => return,
            }
        }
    }
}

/// An error with its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
