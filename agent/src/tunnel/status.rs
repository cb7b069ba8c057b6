//! What a running tunnel reports: per peer, the endpoint in use, the last handshake, traffic and
//! drops; per tunnel, what could not be attributed to a peer.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

/// Why the tunnel dropped a packet or datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Read from the TUN device for an address no peer's allowed IPs contain (also multicast the
    /// kernel sends on the device, such as IPv6 router solicitations).
    NoRoute,
    /// A datagram for a receiver index or from a static key this tunnel has no peer for.
    UnknownPeer,
    /// A datagram that is not a WireGuard message, or a TUN packet that is not IPv4 or IPv6.
    Malformed,
    /// A WireGuard message that fails authentication, is replayed, or belongs to no session.
    Undecryptable,
    /// A decrypted packet whose source is not in the sending peer's allowed IPs.
    AllowedIps,
    /// A packet for a peer with no known endpoint (an access peer that has not connected yet).
    NoEndpoint,
    /// A handshake refused while the tunnel is under load (a cookie reply was sent instead).
    UnderLoad,
    /// The kernel refused to send a datagram or to take a packet on the TUN device.
    SendFailed,
    /// Longer than the tunnel's MTU and not to be fragmented: answered with ICMP
    /// "fragmentation needed" or "packet too big".
    TooBig,
    /// A packet one peer sent to another through this node whose TTL or hop limit ran out.
    HopLimit,
}

/// Counters of dropped packets, one per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    pub no_route: u64,
    pub unknown_peer: u64,
    pub malformed: u64,
    pub undecryptable: u64,
    pub allowed_ips: u64,
    pub no_endpoint: u64,
    pub under_load: u64,
    pub send_failed: u64,
    pub too_big: u64,
    pub hop_limit: u64,
}

impl DropCounts {
    pub fn count(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::NoRoute => &mut self.no_route,
            DropReason::UnknownPeer => &mut self.unknown_peer,
            DropReason::Malformed => &mut self.malformed,
            DropReason::Undecryptable => &mut self.undecryptable,
            DropReason::AllowedIps => &mut self.allowed_ips,
            DropReason::NoEndpoint => &mut self.no_endpoint,
            DropReason::UnderLoad => &mut self.under_load,
            DropReason::SendFailed => &mut self.send_failed,
            DropReason::TooBig => &mut self.too_big,
            DropReason::HopLimit => &mut self.hop_limit,
        };
        *counter += 1;
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.no_route
            + self.unknown_peer
            + self.malformed
            + self.undecryptable
            + self.allowed_ips
            + self.no_endpoint
            + self.under_load
            + self.send_failed
            + self.too_big
            + self.hop_limit
    }
}

/// One peer of a running tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub public_key: [u8; 32],
    /// Where datagrams to the peer go now.
    pub endpoint: Option<SocketAddr>,
    /// When the current session's handshake completed.
    pub last_handshake: Option<SystemTime>,
    /// Round trip of the last handshake this node initiated.
    pub handshake_rtt: Option<Duration>,
    /// Datagrams and their bytes (as on the wire: WireGuard messages, handshakes included).
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    /// Drops attributed to this peer.
    pub drops: DropCounts,
}

/// One network's running tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelStatus {
    pub network: String,
    pub ifname: String,
    pub ifindex: u32,
    /// The UDP port actually bound (the spec's, or the kernel's pick for 0).
    pub listen_port: u16,
    pub peers: Vec<PeerStatus>,
    /// Drops no peer can be blamed for: no route, unknown peer, malformed datagrams.
    pub drops: DropCounts,
}

impl TunnelStatus {
    /// The peer with this public key.
    pub fn peer(&self, public_key: &[u8; 32]) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| p.public_key == *public_key)
    }
}
