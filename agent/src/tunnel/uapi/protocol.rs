//! The text protocol of WireGuard's cross-platform userspace API as `wg` speaks it: which
//! request a client's lines make, and the answer to `get` built from a tunnel's spec and status.
//! Pure: no sockets, no clock.
//!
//! A request is an operation line (`get=1` or `set=1`), for `set` any number of `key=value`
//! lines, and a blank line. The answer to `get` is `key=value` lines — the interface's, then per
//! peer a `public_key=` line followed by that peer's — then `errno=0` and a blank line; the
//! answer to `set` is only the `errno=` line and the blank line.

use std::{fmt::Write as _, time::UNIX_EPOCH};

use crate::tunnel::{PeerStatus, TunnelSpec, TunnelStatus};

/// The longest request line taken, newline included. `wg`'s longest line is an `endpoint=` with
/// a host name (up to 4,096 bytes of host and 512 of service in wireguard-tools); nothing a
/// `get` needs comes close, and a `set` is only read to be refused.
pub const MAX_LINE: usize = 4096 + 512 + 16;

/// The most lines one `set` request may have before the connection is closed: `wg setconf`
/// sends about eight lines per peer and allowed IP, so this is thousands of peers, and it bounds
/// what a client can make the agent read for a request that is refused anyway.
pub const MAX_SET_LINES: usize = 65_536;

/// The `errno=` of a refused `set`: `wg` reads the number as a negated errno (as wireguard-go
/// writes it), so `-EPERM` makes it print "Operation not permitted".
pub const ERRNO_SET_REFUSED: i32 = -libc::EPERM;

/// The `errno=` of a request that is not one (an unknown operation, a `get` with trailing
/// lines), sent before the connection is closed.
pub const ERRNO_INVALID: i32 = -libc::EINVAL;

/// A complete request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `get=1`: the interface and its peers.
    Get,
    /// `set=1` with `lines` lines of configuration: refused, the ledger configures tunnels.
    Set { lines: usize },
}

/// Why a client's lines are not a request; the connection is closed after an `errno=` answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown operation `{operation}` (only `get=1` and `set=1` exist)")]
    UnknownOperation { operation: String },
    #[error("`get=1` must be followed by a blank line")]
    TrailingGet,
    #[error("a `set` line without `=`")]
    MalformedSet,
    #[error("a `set` request of more than {MAX_SET_LINES} lines")]
    SetTooLong,
    #[error("a line longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// Turns lines into requests, one line at a time; after a complete request it waits for the
/// next one (several may come over one connection).
#[derive(Debug, Default)]
pub struct RequestParser {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Waiting for `get=1` or `set=1`.
    #[default]
    Operation,
    /// After `get=1`: the blank line.
    GetEnd,
    /// In a `set` request, this many lines read.
    Set { lines: usize },
}

impl RequestParser {
    /// Takes one line without its newline. `Ok(None)`: more lines are needed. `Ok(Some)`: a
    /// request is complete. `Err`: the client does not speak the protocol.
    pub fn line(&mut self, line: &[u8]) -> Result<Option<Request>, RequestError> {
        if line.len() >= MAX_LINE {
            return Err(RequestError::LineTooLong);
        }
        match self.state {
            State::Operation => match line {
                b"get=1" => {
                    self.state = State::GetEnd;
                    Ok(None)
                }
                b"set=1" => {
                    self.state = State::Set { lines: 0 };
                    Ok(None)
                }
                other => Err(RequestError::UnknownOperation {
                    // Bounded by MAX_LINE; shown in the log as the client sent it.
                    operation: String::from_utf8_lossy(other).into_owned(),
                }),
            },
            State::GetEnd if line.is_empty() => {
                self.state = State::Operation;
                Ok(Some(Request::Get))
            }
            State::GetEnd => Err(RequestError::TrailingGet),
            State::Set { lines } if line.is_empty() => {
                self.state = State::Operation;
                Ok(Some(Request::Set { lines }))
            }
            State::Set { lines } => {
                if !line.contains(&b'=') {
                    return Err(RequestError::MalformedSet);
                }
                if lines >= MAX_SET_LINES {
                    return Err(RequestError::SetTooLong);
                }
                self.state = State::Set { lines: lines + 1 };
                Ok(None)
            }
        }
    }
}

/// The answer to `get=1`: the interface (private key, the port actually bound), then each peer
/// of the spec with what the status knows of it, in wireguard-go's order, then `errno=0`.
///
/// Allowed IPs are written with their host bits cleared, as the tunnel routes them. A peer the
/// status does not list yet (it is being added) shows no endpoint, handshake or traffic.
pub fn get_answer(private_key: &[u8; 32], spec: &TunnelSpec, status: &TunnelStatus) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored.
    let _ = writeln!(out, "private_key={}", hex(private_key));
    let _ = writeln!(out, "listen_port={}", status.listen_port);
    for peer in &spec.peers {
        let seen = status.peer(&peer.public_key);
        let _ = writeln!(out, "public_key={}", hex(&peer.public_key));
        let _ = writeln!(out, "protocol_version=1");
        // SocketAddr writes IPv6 in brackets (with a `%scope`, which `wg` resolves).
        if let Some(endpoint) = seen.and_then(|s| s.endpoint) {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        let (secs, nanos) = seen.map(handshake_time).unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={secs}");
        let _ = writeln!(out, "last_handshake_time_nsec={nanos}");
        let _ = writeln!(out, "tx_bytes={}", seen.map_or(0, |s| s.tx_bytes));
        let _ = writeln!(out, "rx_bytes={}", seen.map_or(0, |s| s.rx_bytes));
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            peer.keepalive_secs().unwrap_or(0)
        );
        for net in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={}", net.trunc());
        }
    }
    out.push_str(&errno_answer(0));
    out
}

/// The closing `errno=` line and blank line of an answer.
pub fn errno_answer(errno: i32) -> String {
    format!("errno={errno}\n\n")
}

/// Seconds and nanoseconds since the epoch of the last handshake; zero for none (as `wg` reads
/// it: "never"). A clock set before 1970 also reads as never.
fn handshake_time(peer: &PeerStatus) -> (u64, u32) {
    peer.last_handshake
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or_default()
}

/// A key as the protocol carries it: 64 lowercase hex digits.
fn hex(key: &[u8; 32]) -> String {
    key.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
