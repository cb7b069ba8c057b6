//! The handle on a node's gateways: it makes the running set match a list of specs.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use super::{
    GatewayError, GatewayFailure, GatewaySpec, GatewayStatus, Limits,
    dialer::Dialer,
    listener::Listener,
    runtime::{self, Gateway},
    spec::validate,
};
use crate::vocab::GatewayMode;

/// Binding an address just closed: up to 20 tries 10 ms apart. A spawned process holds the
/// old socket only until its `execve`, well within 200 ms even on a loaded machine.
const REBIND_ATTEMPTS: u32 = 20;
const REBIND_PAUSE: Duration = Duration::from_millis(10);

/// Why a gateway stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Departure {
    /// It is no longer wanted.
    Removed,
    /// Its spec changed: a new gateway takes its place.
    Replaced,
}

#[derive(Debug)]
struct Running {
    gateway: Arc<Gateway>,
    health: JoinHandle<()>,
}

/// The gateways of this node.
#[derive(Debug)]
pub struct Gateways {
    limits: Arc<Limits>,
    running: BTreeMap<String, Running>,
    listeners: HashMap<SocketAddr, Listener>,
}

impl Gateways {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Arc::new(limits),
            running: BTreeMap::new(),
            listeners: HashMap::new(),
        }
    }

    /// Makes the running gateways equal to `specs`. Gateways whose spec is unchanged keep
    /// running untouched; a changed one is replaced (new connections follow the new spec, open
    /// ones finish on the old); a removed one closes its connections. A gateway that cannot
    /// start is reported and the rest go ahead. Calling it again with the same specs changes
    /// nothing.
    pub async fn set(&mut self, specs: &[GatewaySpec]) -> Vec<GatewayFailure> {
        let mut failures = Vec::new();
        let mut desired: BTreeMap<&str, &GatewaySpec> = BTreeMap::new();
        for spec in specs {
            if desired.insert(&spec.name, spec).is_some() {
                failures.push(GatewayFailure {
                    name: spec.name.clone(),
                    error: GatewayError::Duplicate,
                });
            }
        }
        let duplicated: HashSet<String> = failures.iter().map(|f| f.name.clone()).collect();
        desired.retain(|name, _| !duplicated.contains(*name));

        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, running)| desired.get(name.as_str()) != Some(&&running.gateway.spec))
            .map(|(name, _)| name.clone())
            .collect();
        let mut handover = HashMap::new();
        for name in &stale {
            let departure = if desired.contains_key(name.as_str()) {
                Departure::Replaced
            } else {
                Departure::Removed
            };
            if let Some(closing) = self.stop(name, departure) {
                handover.insert(name.clone(), closing);
            }
        }
        // An address whose gateways all left is free again for the other mode; one that a
        // wanted gateway listens on in the same mode stays open, with its connections.
        let kept: Vec<(SocketAddr, GatewayMode)> = desired
            .values()
            .flat_map(|spec| spec.listen.iter().map(|&addr| (addr, spec.mode)))
            .collect();
        let freed = self
            .close_unused_listeners(|addr, mode| !kept.contains(&(addr, mode)))
            .await;
        // Gateways that were running claim their names again before newcomers do: a name
        // stays with the gateway that served it.
        let mut starting: Vec<(&str, &GatewaySpec)> = desired
            .into_iter()
            .filter(|(name, _)| !self.running.contains_key(*name))
            .collect();
        starting.sort_by_key(|(name, _)| !stale.iter().any(|s| s == name));
        for (name, spec) in starting {
            let closing = handover
                .remove(name)
                .unwrap_or_else(|| Arc::new(watch::channel(false).0));
            if let Err(error) = self.start(spec, &freed, &closing).await {
                // Nothing succeeds the replaced gateway: its connections end with it.
                closing.send_replace(true);
                tracing::warn!(
                    gateway = %name,
                    error = %runtime::error_chain(&error),
                    "gateway not started"
                );
                failures.push(GatewayFailure {
                    name: name.to_owned(),
                    error,
                });
            }
        }
        self.close_unused_listeners(|_, _| true).await;
        failures
    }

    /// The specs of the running gateways.
    pub fn specs(&self) -> Vec<GatewaySpec> {
        self.running
            .values()
            .map(|r| r.gateway.spec.clone())
            .collect()
    }

    pub fn status(&self) -> Vec<GatewayStatus> {
        self.running
            .values()
            .map(|running| {
                let gateway = &running.gateway;
                let spec = &gateway.spec;
                let (active, total, unavailable) = gateway.counters();
                GatewayStatus {
                    name: spec.name.clone(),
                    hostnames: spec.hostnames.clone(),
                    mode: spec.mode,
                    netns: spec.netns.clone(),
                    proxy_protocol: spec.proxy_protocol,
                    listeners: spec
                        .listen
                        .iter()
                        .filter_map(|addr| self.listeners.get(addr))
                        .map(|l| l.shared().status())
                        .collect(),
                    backends: gateway.backends.iter().map(|b| b.status()).collect(),
                    active_connections: active,
                    total_connections: total,
                    unavailable,
                }
            })
            .collect()
    }

    /// Stops every gateway and closes every listener and connection, waiting until the
    /// addresses are free.
    pub async fn shutdown(mut self) {
        self.stop_all();
        for (_, listener) in self.listeners.drain() {
            listener.close().await;
        }
    }

    fn stop_all(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let _ = self.stop(&name, Departure::Removed);
        }
    }

    /// Starts a gateway; `freed` are the addresses whose listeners were just closed.
    async fn start(
        &mut self,
        spec: &GatewaySpec,
        freed: &HashSet<SocketAddr>,
        closing: &Arc<watch::Sender<bool>>,
    ) -> Result<(), GatewayError> {
        validate(spec)?;
        let dialer = self.dialer_for(spec)?;
        let gateway = Arc::new(Gateway::new(
            spec.clone(),
            dialer,
            Arc::clone(&self.limits),
            Arc::clone(closing),
        ));
        let mut claimed = Vec::new();
        for &addr in &spec.listen {
            let listening = self.listen(addr, spec.mode, freed.contains(&addr)).await;
            if let Err(e) = listening.and_then(|()| self.claim(addr, &gateway)) {
                for addr in claimed {
                    self.release(addr, &spec.name);
                }
                return Err(e);
            }
            claimed.push(addr);
        }
        let health = tokio::spawn(Arc::clone(&gateway).check_backends());
        self.running
            .insert(spec.name.clone(), Running { gateway, health });
        Ok(())
    }

    /// Makes sure a listener is bound to `addr`. An address closed moments ago (`freed`) is
    /// tried again for a while if it is still in use: a process spawned meanwhile holds
    /// copies of the agent's sockets until it executes its program, the old listening socket
    /// among them.
    async fn listen(
        &mut self,
        addr: SocketAddr,
        mode: GatewayMode,
        freed: bool,
    ) -> Result<(), GatewayError> {
        if self.listeners.contains_key(&addr) {
            return Ok(());
        }
        let mut attempts = if freed { REBIND_ATTEMPTS } else { 1 };
        loop {
            attempts -= 1;
            match Listener::bind(addr, mode, Arc::clone(&self.limits)) {
                Ok(listener) => {
                    self.listeners.insert(addr, listener);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts > 0 => {
                    tokio::time::sleep(REBIND_PAUSE).await;
                }
                Err(source) => return Err(GatewayError::Bind { addr, source }),
            }
        }
    }

    /// Routes the gateway's names on its listener at `addr`.
    fn claim(&self, addr: SocketAddr, gateway: &Arc<Gateway>) -> Result<(), GatewayError> {
        let spec = &gateway.spec;
        let Some(listener) = self.listeners.get(&addr) else {
            return Err(GatewayError::Bind {
                addr,
                source: io::Error::from(io::ErrorKind::AddrNotAvailable),
            });
        };
        let shared = listener.shared();
        if shared.mode != spec.mode {
            return Err(GatewayError::ModeConflict {
                addr,
                serving: shared.mode,
                mode: spec.mode,
            });
        }
        let mut routes = shared
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes
            .claim(&spec.name, &spec.hostnames, Arc::clone(gateway))
            .map_err(|conflict| GatewayError::HostnameTaken {
                addr,
                hostname: conflict.hostname,
                owner: conflict.owner,
            })
    }

    fn release(&self, addr: SocketAddr, name: &str) {
        if let Some(listener) = self.listeners.get(&addr) {
            listener
                .shared()
                .routes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .release(name);
        }
    }

    /// Takes a gateway out of routing and stops its health checks. A removed gateway's
    /// connections close; a replaced one's go on, and close when its successor does. Returns
    /// the channel that closes them, for the successor.
    fn stop(&mut self, name: &str, departure: Departure) -> Option<Arc<watch::Sender<bool>>> {
        let running = self.running.remove(name)?;
        for &addr in &running.gateway.spec.listen {
            self.release(addr, name);
        }
        running.health.abort();
        match departure {
            // Closes its connections, the idle ones included.
            Departure::Removed => {
                running.gateway.close();
                None
            }
            // New requests go to the successor: the idle connections are of no more use.
            Departure::Replaced => {
                running.gateway.retire();
                Some(running.gateway.closing())
            }
        }
    }

    /// The running dialer of the spec's namespace, or a new one: one socket thread per
    /// namespace, however many gateways use it.
    fn dialer_for(&self, spec: &GatewaySpec) -> Result<Arc<Dialer>, GatewayError> {
        let shared = self
            .running
            .values()
            .map(|r| r.gateway.dialer())
            .find(|d| d.netns() == spec.netns.as_deref());
        match shared {
            Some(dialer) => Ok(Arc::clone(dialer)),
            None => Dialer::new(spec.netns.as_deref())
                .map(Arc::new)
                .map_err(GatewayError::Dialer),
        }
    }

    /// Closes the listeners no gateway routes on, of those `closable` allows; returns their
    /// addresses.
    async fn close_unused_listeners(
        &mut self,
        closable: impl Fn(SocketAddr, GatewayMode) -> bool,
    ) -> HashSet<SocketAddr> {
        let unused: Vec<SocketAddr> = self
            .listeners
            .iter()
            .filter(|(addr, l)| {
                let shared = l.shared();
                let empty = shared.routes.read().map(|r| r.is_empty()).unwrap_or(true);
                empty && closable(**addr, shared.mode)
            })
            .map(|(addr, _)| *addr)
            .collect();
        for addr in &unused {
            if let Some(listener) = self.listeners.remove(addr) {
                listener.close().await;
            }
        }
        unused.into_iter().collect()
    }
}

impl Drop for Gateways {
    /// Gateways dropped without [`Gateways::shutdown`] stop all the same (their listeners stop
    /// as they drop).
    fn drop(&mut self) {
        self.stop_all();
    }
}
