//! WireGuard's cross-platform userspace API (<https://www.wireguard.com/xplatform/>), served
//! read-only: one unix socket per tunnel, `<uapi_dir>/<ifname>.sock`, so `wg show` and
//! `wg showconf` from wireguard-tools work against gridnet's tunnels as against wireguard-go's.
//!
//! `get` answers with the tunnel's private key, port and peers; `set` is refused (`EPERM`) and
//! logged: the ledger is the source of truth, and a change made behind its back would be undone
//! by the next pass anyway. The socket is 0600 (root only), like wireguard-go's: root can read
//! the node's key file anyway, and `wg showconf` needs the key.
//!
//! No crate serves this protocol (the `wireguard-uapi` crate's `xplatform` module is a client),
//! so the little text protocol is here, in [`protocol`], pure and tested without sockets.

mod protocol;

use std::{
    io,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use super::{TunnelSpec, TunnelStatus};
use protocol::{ERRNO_INVALID, ERRNO_SET_REFUSED, MAX_LINE, Request, RequestParser};

/// Where `wg` looks for userspace interfaces (a compile-time path in wireguard-tools); the
/// default of node.yaml's `uapi_dir`.
pub const DEFAULT_UAPI_DIR: &str = "/var/run/wireguard";

/// How long one exchange (a request read and its answer written) may take. `wg` writes its
/// request at once and reads the answer at once; a client that dawdles longer is stuck or
/// hostile, and its connection is closed.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once per tunnel; more are closed on arrival. `wg` opens one per
/// command and closes it within milliseconds, so this leaves room for several operators and
/// monitoring scripts while bounding what a stuck client pile-up can hold.
const MAX_CLIENTS: usize = 16;

/// The pause after a failed `accept` (out of file descriptors, say) before the next, so the
/// task does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a tunnel's socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    #[error("cannot create {path} (set `uapi_dir` in node.yaml to a directory root may write)")]
    Directory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} answers: another process serves it (do two agents share one `uapi_dir`?)")]
    InUse { path: PathBuf },
    #[error("cannot serve {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A bound socket, not yet served: bound before anything else of a tunnel is made, so a
/// tunnel whose socket cannot exist is refused without touching the kernel.
pub(super) struct Listener {
    listener: UnixListener,
    file: SocketFile,
}

/// A tunnel's served socket. Dropping it stops the server and removes the socket file, so the
/// socket lives exactly as long as the tunnel does in this process.
pub(super) struct UapiServer {
    spec: watch::Sender<TunnelSpec>,
    task: JoinHandle<()>,
    _file: SocketFile,
}

/// What a connection needs to answer: the tunnel's identity and its current spec and status.
struct Tunnel {
    network: String,
    ifname: String,
    private_key: [u8; 32],
    spec: watch::Receiver<TunnelSpec>,
    status: watch::Receiver<TunnelStatus>,
}

impl Listener {
    /// Binds `<dir>/<ifname>.sock` (mode 0600; `dir` made 0755 if missing). A socket file left
    /// by an earlier run that nobody answers on is replaced; one that answers is refused.
    ///
    /// The socket is bound under a temporary name, given its mode, then renamed into place, so
    /// it is never reachable with a wider mode and the replacement of a stale file is atomic.
    /// Needs a tokio runtime.
    pub fn bind(dir: &Path, ifname: &str) -> Result<Self, UapiError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|source| UapiError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        let path = dir.join(format!("{ifname}.sock"));
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(UapiError::InUse { path });
        }
        // `wg` lists only names ending in `.sock`: the temporary one is invisible to it.
        let temporary = dir.join(format!(".{ifname}.sock.{}", std::process::id()));
        let bind_error = |source| UapiError::Bind {
            path: path.clone(),
            source,
        };
        let _ = std::fs::remove_file(&temporary);
        let listener = std::os::unix::net::UnixListener::bind(&temporary).map_err(bind_error)?;
        // Nothing can fail after the rename but `from_std`, and then the file is removed with
        // `file`; the inode is the same under either name.
        let placed = listener
            .set_nonblocking(true)
            .and_then(|()| {
                std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
            })
            .and_then(|()| std::fs::symlink_metadata(&temporary))
            .and_then(|metadata| std::fs::rename(&temporary, &path).map(|()| metadata));
        let metadata = match placed {
            Ok(metadata) => metadata,
            Err(source) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(bind_error(source));
            }
        };
        let file = SocketFile {
            path: path.clone(),
            identity: (metadata.dev(), metadata.ino()),
        };
        let listener = UnixListener::from_std(listener).map_err(bind_error)?;
        Ok(Self { listener, file })
    }

    /// Serves the socket for the tunnel of `spec`: answers `get` from the spec (kept current
    /// with [`UapiServer::publish`]) and `status`, refuses `set`.
    pub fn serve(
        self,
        private_key: [u8; 32],
        spec: &TunnelSpec,
        status: watch::Receiver<TunnelStatus>,
    ) -> UapiServer {
        let (spec_tx, spec_rx) = watch::channel(spec.clone());
        let tunnel = Arc::new(Tunnel {
            network: spec.network.clone(),
            ifname: spec.ifname.clone(),
            private_key,
            spec: spec_rx,
            status,
        });
        tracing::debug!(network = %spec.network, path = %self.file.path.display(), "serving wg's socket");
        UapiServer {
            spec: spec_tx,
            task: tokio::spawn(accept(self.listener, tunnel)),
            _file: self.file,
        }
    }
}

impl UapiServer {
    /// The tunnel's spec as it now runs.
    pub fn publish(&self, spec: &TunnelSpec) {
        self.spec.send_if_modified(|current| {
            let changed = current != spec;
            if changed {
                current.clone_from(spec);
            }
            changed
        });
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        // Its connections are in a JoinSet the task owns: they go with it.
        self.task.abort();
    }
}

/// The socket file, removed on drop if it is still the one this process bound (a later run
/// may have replaced it).
struct SocketFile {
    path: PathBuf,
    /// Device and inode of the socket.
    identity: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove wg's socket");
        }
    }
}

async fn accept(listener: UnixListener, tunnel: Arc<Tunnel>) {
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if clients.len() < MAX_CLIENTS => {
                    clients.spawn(converse(stream, Arc::clone(&tunnel)));
                }
                Ok(_) => {
                    tracing::debug!(network = %tunnel.network, "too many wg clients; one closed");
                }
                Err(e) => {
                    tracing::warn!(network = %tunnel.network, error = %e, "wg's socket cannot accept");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
}

/// Serves one connection: requests until the client closes, errs or dawdles.
async fn converse(stream: UnixStream, tunnel: Arc<Tunnel>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut parser = RequestParser::default();
    let mut line = Vec::new();
    loop {
        let exchange = async {
            let (answer, go_on) = match next_request(&mut read, &mut parser, &mut line).await {
                Next::Request(request) => (answer(&tunnel, request), true),
                Next::Closed => return Ok(false),
                Next::Invalid(reason) => {
                    tracing::debug!(network = %tunnel.network, %reason, "not a wg request; connection closed");
                    (protocol::errno_answer(ERRNO_INVALID), false)
                }
            };
            write.write_all(answer.as_bytes()).await?;
            io::Result::Ok(go_on)
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return,
            Ok(Err(e)) => {
                tracing::debug!(network = %tunnel.network, error = %e, "wg client went away");
                return;
            }
            Err(_) => {
                tracing::debug!(network = %tunnel.network, "wg client too slow; connection closed");
                return;
            }
        }
    }
}

/// What the next lines of a connection are.
enum Next {
    Request(Request),
    /// The client closed between requests, or in the middle of one.
    Closed,
    Invalid(protocol::RequestError),
}

async fn next_request<R: AsyncRead + Unpin>(
    read: &mut BufReader<R>,
    parser: &mut RequestParser,
    line: &mut Vec<u8>,
) -> Next {
    loop {
        line.clear();
        // One byte past the cap shows a line that is too long without reading all of it.
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
        match (&mut *read).take(limit).read_until(b'\n', line).await {
            Ok(0) | Err(_) => return Next::Closed,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            return if line.len() >= MAX_LINE {
                Next::Invalid(protocol::RequestError::LineTooLong)
            } else {
                // End of stream in the middle of a line.
                Next::Closed
            };
        }
        line.pop();
        match parser.line(line) {
            Ok(None) => {}
            Ok(Some(request)) => return Next::Request(request),
            Err(reason) => return Next::Invalid(reason),
        }
    }
}

fn answer(tunnel: &Tunnel, request: Request) -> String {
    match request {
        Request::Get => {
            let spec = tunnel.spec.borrow().clone();
            let status = tunnel.status.borrow().clone();
            protocol::get_answer(&tunnel.private_key, &spec, &status)
        }
        Request::Set { lines } => {
            tracing::warn!(
                network = %tunnel.network,
                ifname = %tunnel.ifname,
                lines,
                "`wg set` refused: gridnet's tunnels are configured by the ledger, the source of truth; change the reservation instead"
            );
            protocol::errno_answer(ERRNO_SET_REFUSED)
        }
    }
}

#[cfg(test)]
mod tests;
