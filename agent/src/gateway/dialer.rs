//! TCP connections to backends, from sockets made inside a gateway's network namespace.
//!
//! A socket belongs for its whole life to the namespace of the thread that created it, so a
//! socket made inside the gateway's endpoint namespace reaches the overlay addresses there,
//! through the network's encrypted tunnels. Entering a namespace (`setns`) per connection
//! would cost a syscall pair and a file open on a runtime thread; instead one thread per
//! namespace stays inside it and only creates sockets. Connecting happens in tokio.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::oneshot,
};

use crate::netlink::{Netns, NetnsError};

/// Errors of a dialer.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot open the gateway's network namespace")]
    Namespace(#[source] NetnsError),
    #[error("cannot start the socket thread of network namespace {}", netns.display())]
    Thread {
        netns: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the socket thread of network namespace {} is gone", netns.display())]
    ThreadGone { netns: PathBuf },
    #[error("cannot create a socket for {addr}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr} took longer than {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

type Request = (Domain, oneshot::Sender<io::Result<Socket>>);

/// Opens TCP connections from one network namespace.
#[derive(Debug)]
pub struct Dialer {
    netns: Option<PathBuf>,
    /// To the namespace's socket thread; `None` for the agent's own namespace.
    requests: Option<mpsc::Sender<Request>>,
}

impl Dialer {
    /// A dialer for the namespace at `netns`, or for the agent's own namespace if `None`. The
    /// namespace's socket thread runs until the dialer is dropped.
    pub fn new(netns: Option<&Path>) -> Result<Self, DialError> {
        let Some(path) = netns else {
            return Ok(Self {
                netns: None,
                requests: None,
            });
        };
        let namespace = Netns::open_path(path).map_err(DialError::Namespace)?;
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("gateway-netns".into())
            .spawn(move || {
                let served = namespace.enter(|| {
                    for (domain, reply) in incoming {
                        let _ = reply.send(new_socket(domain));
                    }
                });
                if let Err(e) = served {
                    tracing::error!(netns = %namespace.name(), error = %e, "cannot enter the gateway's network namespace");
                }
            })
            .map_err(|source| DialError::Thread {
                netns: path.to_owned(),
                source,
            })?;
        Ok(Self {
            netns: Some(path.to_owned()),
            requests: Some(requests),
        })
    }

    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// Connects to `addr` within `timeout`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream, DialError> {
        let socket = self.socket(addr).await?;
        let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
        match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(Ok(stream)) => {
                // Requests and hellos are small writes that should leave at once.
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(source)) => Err(DialError::Connect { addr, source }),
            Err(_) => Err(DialError::Timeout { addr, timeout }),
        }
    }

    async fn socket(&self, addr: SocketAddr) -> Result<Socket, DialError> {
        let domain = Domain::for_address(addr);
        let created = match &self.requests {
            None => new_socket(domain),
            Some(requests) => {
                let gone = || DialError::ThreadGone {
                    netns: self.netns.clone().unwrap_or_default(),
                };
                let (reply, created) = oneshot::channel();
                requests.send((domain, reply)).map_err(|_| gone())?;
                created.await.map_err(|_| gone())?
            }
        };
        created.map_err(|source| DialError::Socket { addr, source })
    }
}

/// A non-blocking TCP socket of the calling thread's namespace, not inherited by children.
fn new_socket(domain: Domain) -> io::Result<Socket> {
    let socket = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
