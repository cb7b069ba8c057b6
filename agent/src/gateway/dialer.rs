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
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Mutex, mpsc},
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

/// The identity of a namespace file: its device and inode (a namespace's inode on nsfs).
pub type NamespaceId = (u64, u64);

/// A thread inside one namespace, creating sockets.
#[derive(Debug)]
struct SocketThread {
    namespace: NamespaceId,
    requests: mpsc::Sender<Request>,
}

/// Opens TCP connections from one network namespace.
///
/// The namespace is named by its path: if a new namespace is mounted there (its container was
/// made again), the next connection notices (one `stat` per connection, no `setns`) and a
/// socket thread is started in the new one.
#[derive(Debug)]
pub struct Dialer {
    /// `None` for the agent's own namespace.
    netns: Option<PathBuf>,
    thread: Mutex<Option<SocketThread>>,
}

impl Dialer {
    /// A dialer for the namespace at `netns`, or for the agent's own namespace if `None`. The
    /// namespace must exist now; its socket thread runs until the dialer is dropped.
    pub fn new(netns: Option<&Path>) -> Result<Self, DialError> {
        let thread = netns.map(spawn).transpose()?;
        Ok(Self {
            netns: netns.map(Path::to_owned),
            thread: Mutex::new(thread),
        })
    }

    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// The namespace at the dialer's path now (one `stat`); `None` for the agent's own
    /// namespace, or if there is none at the path.
    pub fn current_namespace(&self) -> Option<NamespaceId> {
        self.netns.as_deref().and_then(|p| namespace_id(p).ok())
    }

    /// Connects to `addr` within `timeout`. Also returns the namespace the socket was made in
    /// (`None` for the agent's own), as found by the one `stat` of this connection.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(TcpStream, Option<NamespaceId>), DialError> {
        let (socket, namespace) = self.socket(addr).await?;
        let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
        match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(Ok(stream)) => {
                // Requests and hellos are small writes that should leave at once.
                let _ = stream.set_nodelay(true);
                Ok((stream, namespace))
            }
            Ok(Err(source)) => Err(DialError::Connect { addr, source }),
            Err(_) => Err(DialError::Timeout { addr, timeout }),
        }
    }

    async fn socket(&self, addr: SocketAddr) -> Result<(Socket, Option<NamespaceId>), DialError> {
        let domain = Domain::for_address(addr);
        let Some(path) = &self.netns else {
            let socket = new_socket(domain).map_err(|source| DialError::Socket { addr, source })?;
            return Ok((socket, None));
        };
        let (requests, namespace) = self.requests(path)?;
        let gone = || DialError::ThreadGone {
            netns: path.clone(),
        };
        let (reply, created) = oneshot::channel();
        requests.send((domain, reply)).map_err(|_| gone())?;
        let socket = created
            .await
            .map_err(|_| gone())?
            .map_err(|source| DialError::Socket { addr, source })?;
        Ok((socket, Some(namespace)))
    }

    /// The socket thread of the namespace now at `path`, started anew if the namespace there
    /// changed, and that namespace.
    fn requests(&self, path: &Path) -> Result<(mpsc::Sender<Request>, NamespaceId), DialError> {
        let now = namespace_id(path).map_err(|source| {
            DialError::Namespace(NetnsError::Io {
                action: "find",
                name: path.display().to_string(),
                source,
            })
        })?;
        let mut thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match thread.as_ref() {
            Some(current) if current.namespace == now => Ok((current.requests.clone(), now)),
            _ => {
                let fresh = spawn(path)?;
                let answer = (fresh.requests.clone(), fresh.namespace);
                // Dropping the old sender ends the old thread.
                *thread = Some(fresh);
                Ok(answer)
            }
        }
    }
}

fn namespace_id(path: &Path) -> io::Result<NamespaceId> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Starts a thread that enters the namespace at `path` and creates sockets on request until
/// its channel closes.
fn spawn(path: &Path) -> Result<SocketThread, DialError> {
    let namespace = Netns::open_path(path).map_err(DialError::Namespace)?;
    let metadata = namespace.file().metadata().map_err(|source| {
        DialError::Namespace(NetnsError::Io {
            action: "inspect",
            name: path.display().to_string(),
            source,
        })
    })?;
    let id = (metadata.dev(), metadata.ino());
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
                tracing::error!(
                    netns = %namespace.name(),
                    error = %e,
                    "cannot enter the gateway's network namespace"
                );
            }
        })
        .map_err(|source| DialError::Thread {
            netns: path.to_owned(),
            source,
        })?;
    Ok(SocketThread {
        namespace: id,
        requests,
    })
}

/// A non-blocking TCP socket of the calling thread's namespace, not inherited by children.
fn new_socket(domain: Domain) -> io::Result<Socket> {
    let socket = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
