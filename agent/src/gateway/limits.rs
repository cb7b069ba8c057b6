//! The bounds every gateway connection lives within, so that slow or hostile clients cost a
//! known amount of memory and time.

use std::time::Duration;

/// Tuning of the gateways. [`Limits::default`] holds the values the agent runs with; each
/// field says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time a client gets to send a whole HTTP request head. 10 s is ample for any real client
    /// on a slow link and cuts slowloris connections (a byte every few seconds) early.
    pub header_read_timeout: Duration,
    /// A connection with no byte moving either way for this long is closed. 60 s matches
    /// common load balancer defaults; long polls must send something within it.
    pub idle_timeout: Duration,
    /// Largest HTTP request head (request line and headers). 64 KiB is four times what common
    /// servers accept by default (nginx 8-32 KiB, Apache 8 KiB per line); larger heads get 431.
    pub max_header_size: usize,
    /// Most header fields in one request; browsers send 10-30. Beyond it: 431.
    pub max_headers: usize,
    /// Most open connections per listener (ip:port). Over it a new connection is accepted and
    /// closed at once, and counted, so the accept queue never fills with work that waits.
    /// 4096 connections cost at most tens of MiB (each holds small buffers).
    pub max_connections_per_listener: usize,
    /// Time a TLS client gets to send its whole ClientHello. Real clients send it in their
    /// first flight, right after the TCP handshake; 5 s covers a lossy link.
    pub client_hello_timeout: Duration,
    /// Most bytes read while looking for the ClientHello's end. A ClientHello with
    /// post-quantum key shares and many extensions is 2-3 KiB; 16 KiB is the largest TLS
    /// record plus room, and bounds what one connection holds before it is routed.
    pub client_hello_max: usize,
    /// Time allowed for a TCP connect to a backend, through the overlay. Overlay paths are
    /// one WireGuard hop; 3 s covers a handshake on a fresh tunnel.
    pub backend_connect_timeout: Duration,
    /// Most idle keep-alive connections an HTTP gateway keeps per backend for later requests.
    /// 32 covers the requests one busy site keeps in flight at once (nginx's documentation
    /// suggests the same for its upstream `keepalive`), and bounds what a burst leaves open on
    /// a backend that may hold a thread or a worker per connection.
    pub backend_idle_max: usize,
    /// An idle backend connection is not reused after this long, and closed soon after.
    /// Below the shortest common server keep-alive timeouts (Node.js and Apache: 5 s), so a
    /// request is not sent on a connection the backend is closing at that moment.
    pub backend_idle_timeout: Duration,
    /// Time between active health checks of each backend: a dead backend is out within two
    /// intervals and a bit.
    pub health_interval: Duration,
    /// Time a health check connect may take before it counts as a failure.
    pub health_timeout: Duration,
    /// Consecutive failed checks before a backend is taken out. Two, so one lost SYN does not
    /// take out a healthy backend.
    pub health_fall: u32,
    /// Consecutive good checks before a backend is put back. Two, so a flapping backend does
    /// not get traffic on every other check.
    pub health_rise: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_size: 64 * 1024,
            max_headers: 100,
            max_connections_per_listener: 4096,
            client_hello_timeout: Duration::from_secs(5),
            client_hello_max: 16 * 1024,
            backend_connect_timeout: Duration::from_secs(3),
            backend_idle_max: 32,
            backend_idle_timeout: Duration::from_secs(4),
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(1),
            health_fall: 2,
            health_rise: 2,
        }
    }
}

/// Smallest read buffer hyper accepts (its `MINIMUM_MAX_BUFFER_SIZE`); it panics below it.
pub(crate) const HYPER_MIN_BUF: usize = 8192;

impl Limits {
    /// hyper's read buffer bound: room for the largest head plus the start of a body, and never
    /// below what hyper accepts.
    pub(crate) fn http_buf_size(&self) -> usize {
        self.max_header_size.saturating_mul(2).max(HYPER_MIN_BUF)
    }
}
