//! One peer of a tunnel: its WireGuard session (boringtun's `Tunn`), its endpoint choice and its
//! counters.

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use boringtun::noise::{Tunn, errors::WireGuardError};

use super::{
    endpoint::Endpoints,
    spec::PeerSpec,
    status::{DropCounts, DropReason, PeerStatus},
};

/// A WireGuard message's type, from its first byte (the next three are zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MessageKind {
    HandshakeInit,
    HandshakeResponse,
    CookieReply,
    Data,
}

impl MessageKind {
    pub fn of(message: &[u8]) -> Option<Self> {
        match message.first() {
            Some(1) => Some(Self::HandshakeInit),
            Some(2) => Some(Self::HandshakeResponse),
            Some(3) => Some(Self::CookieReply),
            Some(4) => Some(Self::Data),
            _ => None,
        }
    }
}

pub(super) struct Peer {
    pub spec: PeerSpec,
    pub tunn: Tunn,
    pub endpoints: Endpoints,
    pub last_handshake: Option<SystemTime>,
    /// When a datagram last went to the peer (persistent keepalives count from it).
    pub last_sent: Instant,
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub drops: DropCounts,
}

impl Peer {
    pub fn new(spec: PeerSpec, tunn: Tunn) -> Self {
        Self {
            endpoints: Endpoints::new(&spec.endpoints),
            spec,
            tunn,
            last_handshake: None,
            last_sent: Instant::now(),
            rx_datagrams: 0,
            rx_bytes: 0,
            tx_datagrams: 0,
            tx_bytes: 0,
            drops: DropCounts::default(),
        }
    }

    /// An authenticated message of `len` bytes came from `source`.
    pub fn heard(&mut self, source: SocketAddr, len: usize) {
        self.endpoints.answered_from(source);
        self.rx_datagrams += 1;
        self.rx_bytes += len as u64;
    }

    /// A message of `len` bytes goes to the peer.
    pub fn sent(&mut self, len: usize) {
        self.last_sent = Instant::now();
        self.tx_datagrams += 1;
        self.tx_bytes += len as u64;
    }

    /// Whether a persistent keepalive is due.
    pub fn keepalive_due(&self, now: Instant) -> bool {
        self.spec.keepalive_secs().is_some_and(|secs| {
            now.duration_since(self.last_sent) >= Duration::from_secs(secs.into())
        })
    }

    pub fn status(&self) -> PeerStatus {
        let (_, _, _, _, rtt_ms) = self.tunn.stats();
        PeerStatus {
            public_key: self.spec.public_key,
            endpoint: self.endpoints.current(),
            last_handshake: self.last_handshake,
            handshake_rtt: rtt_ms.map(|ms| Duration::from_millis(ms.into())),
            rx_datagrams: self.rx_datagrams,
            rx_bytes: self.rx_bytes,
            tx_datagrams: self.tx_datagrams,
            tx_bytes: self.tx_bytes,
            drops: self.drops,
        }
    }
}

/// Why boringtun refused a message, as a drop reason.
pub(super) fn drop_reason(error: &WireGuardError) -> DropReason {
    match error {
        WireGuardError::InvalidPacket
        | WireGuardError::IncorrectPacketLength
        | WireGuardError::WrongPacketType
        | WireGuardError::DestinationBufferTooSmall => DropReason::Malformed,
        WireGuardError::UnderLoad => DropReason::UnderLoad,
        WireGuardError::UnexpectedPacket
        | WireGuardError::WrongIndex
        | WireGuardError::WrongKey
        | WireGuardError::InvalidTai64nTimestamp
        | WireGuardError::WrongTai64nTimestamp
        | WireGuardError::InvalidMac
        | WireGuardError::InvalidAeadTag
        | WireGuardError::InvalidCounter
        | WireGuardError::DuplicateCounter
        | WireGuardError::NoCurrentSession
        | WireGuardError::LockFailed
        | WireGuardError::ConnectionExpired => DropReason::Undecryptable,
    }
}
