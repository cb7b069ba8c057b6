//! The packet path of one tunnel, without I/O: packets read from the TUN device go to the peer
//! whose allowed IPs hold their destination, datagrams from the network go to the peer they
//! belong to, and what either produces lands in an [`Outbox`] for the task to send.
//!
//! A datagram finds its peer the way WireGuard defines: a handshake initiation by the static key
//! it carries (decrypted with this node's key), every other message by the receiver index this
//! tunnel gave the peer (its top 24 bits; boringtun numbers the peer's sessions in the low 8).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Instant, SystemTime},
};

use boringtun::{
    noise::{
        Packet, Tunn, TunnResult, errors::WireGuardError, handshake::parse_handshake_anon,
        rate_limiter::RateLimiter,
    },
    x25519::{PublicKey, StaticSecret},
};

use super::{
    allowed_ips::AllowedIps,
    outbox::{Outbox, Target, span},
    peer::{MessageKind, Peer, drop_reason},
    spec::PeerSpec,
    status::{DropCounts, DropReason, PeerStatus},
};

/// Anonymous handshake initiations the tunnel takes per second before it answers them with
/// cookies (a proof of the sender's address, one more round trip). Each costs two x25519
/// operations before the sender is known, so this bounds what a flood of them costs to a few
/// milliseconds of CPU per second, while a network of up to this many peers re-handshaking at
/// once (after a restart) gets through without the extra round trip.
const HANDSHAKES_PER_SECOND: u64 = 100;

/// A handshake initiation, the longest message that is not data.
const HANDSHAKE_INIT_LEN: usize = 148;

/// What WireGuard adds to a data packet: type, receiver index, counter, tag.
const DATA_OVERHEAD: usize = 32;

/// The largest packet read from a TUN device (an IPv4 or IPv6 packet without jumbograms).
pub(super) const MAX_PACKET: usize = u16::MAX as usize;

/// The largest datagram a peer can send us (a [`MAX_PACKET`] once encrypted).
pub(super) const MAX_DATAGRAM: usize = MAX_PACKET + DATA_OVERHEAD;

/// Peer indices are 24 bits: boringtun shifts them left by 8 for its session numbers.
const INDEX_MASK: u32 = 0x00ff_ffff;

pub(super) struct Router {
    secret: StaticSecret,
    public: PublicKey,
    peers: HashMap<u32, Peer>,
    by_key: HashMap<[u8; 32], u32>,
    allowed: AllowedIps,
    next_index: u32,
    limiter: RateLimiter,
    drops: DropCounts,
    /// The packet being relayed to another peer, kept for its memory.
    relayed: Vec<u8>,
}

impl Router {
    pub fn new(private_key: [u8; 32]) -> Self {
        let secret = StaticSecret::from(private_key);
        let public = PublicKey::from(&secret);
        Self {
            limiter: RateLimiter::new(&public, HANDSHAKES_PER_SECOND),
            secret,
            public,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            allowed: AllowedIps::default(),
            // A fresh start for each tunnel, so that messages still in flight for the sessions
            // of an earlier run meet no peer rather than the wrong one.
            next_index: getrandom::u32().unwrap_or(1),
            drops: DropCounts::default(),
            relayed: Vec::new(),
        }
    }

    /// Makes the peers those of `specs`: new ones are added (and a handshake started with those
    /// that have an endpoint), missing ones removed, changed ones updated in place, so their
    /// session and handshake time stay. Expects specs that passed validation.
    pub fn set_peers(&mut self, specs: &[PeerSpec], out: &mut Outbox) {
        let gone: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| !specs.iter().any(|s| s.public_key == p.spec.public_key))
            .map(|(index, _)| *index)
            .collect();
        for index in gone {
            if let Some(peer) = self.peers.remove(&index) {
                self.by_key.remove(&peer.spec.public_key);
                self.allowed.remove_peer(index);
            }
        }
        for spec in specs {
            match self.by_key.get(&spec.public_key) {
                Some(&index) => self.update_peer(index, spec),
                None => self.add_peer(spec, out),
            }
        }
    }

    fn update_peer(&mut self, index: u32, spec: &PeerSpec) {
        let Some(peer) = self.peers.get_mut(&index) else {
            return;
        };
        if peer.spec == *spec {
            return;
        }
        if peer.spec.allowed_ips != spec.allowed_ips {
            self.allowed.remove_peer(index);
            for net in &spec.allowed_ips {
                self.allowed.insert(*net, index);
            }
        }
        peer.endpoints.relist(&spec.endpoints);
        peer.spec = spec.clone();
    }

    fn add_peer(&mut self, spec: &PeerSpec, out: &mut Outbox) {
        let index = loop {
            let candidate = self.next_index & INDEX_MASK;
            self.next_index = self.next_index.wrapping_add(1);
            if !self.peers.contains_key(&candidate) {
                break candidate;
            }
        };
        // Keepalives are sent here rather than by `Tunn`, so that changing them keeps the session.
        let tunn = Tunn::new(
            self.secret.clone(),
            PublicKey::from(spec.public_key),
            None,
            None,
            index,
            None,
        );
        for net in &spec.allowed_ips {
            self.allowed.insert(*net, index);
        }
        self.by_key.insert(spec.public_key, index);
        let mut peer = Peer::new(spec.clone(), tunn);
        // Bring a node peer up at once: the first packet between containers need not wait for a
        // handshake, and the endpoint choice is settled before traffic.
        if !spec.endpoints.is_empty() {
            let space = out.reserve(HANDSHAKE_INIT_LEN);
            let base = space.as_ptr();
            if let TunnResult::WriteToNetwork(message) =
                peer.tunn.format_handshake_initiation(space, false)
            {
                let (offset, len) = span(base, message);
                emit(&mut peer, out, offset, len);
            }
        }
        self.peers.insert(index, peer);
    }

    /// A packet read from the TUN device that is longer than the tunnel's `mtu`: answered with
    /// an ICMP error written back to the device, and counted; or, when it may be fragmented,
    /// sent on (see [`super::too_big`]).
    pub fn too_big(&mut self, packet: &[u8], mtu: u16, out: &mut Outbox) {
        match super::too_big::answer(packet, mtu) {
            Some(reply) => {
                self.drops.count(DropReason::TooBig);
                out.push(Target::Tun, &reply);
            }
            None => self.outbound(packet, out),
        }
    }

    /// A packet read from the TUN device.
    pub fn outbound(&mut self, packet: &[u8], out: &mut Outbox) {
        let Some(destination) = Tunn::dst_address(packet) else {
            self.drops.count(DropReason::Malformed);
            return;
        };
        let Some(peer) = self
            .allowed
            .lookup(destination)
            .and_then(|index| self.peers.get_mut(&index))
        else {
            self.drops.count(DropReason::NoRoute);
            return;
        };
        encapsulate(peer, packet, out);
    }

    /// A datagram received from `source`.
    pub fn inbound(&mut self, source: SocketAddr, datagram: &[u8], out: &mut Outbox) {
        let source = canonical(source);
        let mut cookie = [0u8; 64];
        let packet = match self
            .limiter
            .verify_packet(Some(source.ip()), datagram, &mut cookie)
        {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(reply)) => {
                self.drops.count(DropReason::UnderLoad);
                out.push(Target::Network(source), reply);
                return;
            }
            Err(TunnResult::Err(WireGuardError::InvalidMac)) => {
                self.drops.count(DropReason::Undecryptable);
                return;
            }
            Err(_) => {
                self.drops.count(DropReason::Malformed);
                return;
            }
        };
        let index = match &packet {
            Packet::HandshakeInit(init) => {
                let Ok(half) = parse_handshake_anon(&self.secret, &self.public, init) else {
                    self.drops.count(DropReason::Undecryptable);
                    return;
                };
                match self.by_key.get(&half.peer_static_public) {
                    Some(&index) => index,
                    None => {
                        self.drops.count(DropReason::UnknownPeer);
                        return;
                    }
                }
            }
            Packet::HandshakeResponse(response) => response.receiver_idx >> 8,
            Packet::PacketCookieReply(reply) => reply.receiver_idx >> 8,
            Packet::PacketData(data) => data.receiver_idx >> 8,
        };
        let Some(peer) = self.peers.get_mut(&index) else {
            self.drops.count(DropReason::UnknownPeer);
            return;
        };
        let kind = MessageKind::of(datagram);
        let space = out.reserve(datagram.len().max(HANDSHAKE_INIT_LEN));
        let base = space.as_ptr();
        match peer.tunn.decapsulate(Some(source.ip()), datagram, space) {
            TunnResult::Done => {
                // A keepalive, or a cookie reply (which proves nothing about where the peer is).
                if kind == Some(MessageKind::Data) {
                    peer.heard(source, datagram.len());
                }
            }
            TunnResult::Err(e) => peer.drops.count(drop_reason(&e)),
            TunnResult::WriteToNetwork(reply) => {
                let (offset, len) = span(base, reply);
                peer.heard(source, datagram.len());
                if matches!(
                    kind,
                    Some(MessageKind::HandshakeInit | MessageKind::HandshakeResponse)
                ) {
                    peer.last_handshake = Some(SystemTime::now());
                }
                out.commit(Target::Network(source), offset, len);
                peer.sent(len);
                send_queued(peer, out);
            }
            decrypted @ (TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..)) => {
                let (packet, inner_source) = match decrypted {
                    TunnResult::WriteToTunnelV4(packet, inner) => (packet, inner.into()),
                    TunnResult::WriteToTunnelV6(packet, inner) => (packet, inner.into()),
                    _ => return,
                };
                let span = span(base, packet);
                peer.heard(source, datagram.len());
                if let Some(next) = deliver(&self.allowed, index, peer, out, span, inner_source) {
                    self.relay(index, next, span, out);
                }
            }
        }
    }

    /// Passes a packet peer `from` sent (decrypted, `len` bytes at `offset` of the space last
    /// reserved) on to peer `next`, one hop further (see [`super::relay`]).
    fn relay(&mut self, from: u32, next: u32, (offset, len): (usize, usize), out: &mut Outbox) {
        let mut packet = std::mem::take(&mut self.relayed);
        packet.clear();
        packet.extend_from_slice(out.scratch(offset, len));
        if !super::relay::hop(&mut packet) {
            if let Some(sender) = self.peers.get_mut(&from) {
                sender.drops.count(DropReason::HopLimit);
            }
        } else if let Some(peer) = self.peers.get_mut(&next) {
            encapsulate(peer, &packet, out);
        }
        self.relayed = packet;
    }

    /// The timers, every [`super::engine::TIMER_TICK`]: handshake retries and rekeys, keepalives.
    pub fn tick(&mut self, out: &mut Outbox) {
        self.limiter.reset_count();
        let now = Instant::now();
        for peer in self.peers.values_mut() {
            let space = out.reserve(HANDSHAKE_INIT_LEN);
            let base = space.as_ptr();
            // An expired session (no answer for 90 s) is reported as an error; there is nothing
            // to do about it until traffic or a keepalive starts a new handshake.
            if let TunnResult::WriteToNetwork(message) = peer.tunn.update_timers(space) {
                let (offset, len) = span(base, message);
                emit(peer, out, offset, len);
            }
            if peer.keepalive_due(now) {
                let space = out.reserve(HANDSHAKE_INIT_LEN);
                let base = space.as_ptr();
                // Without a session a keepalive would be queued behind a handshake; the
                // handshake alone does the keepalive's work.
                let result = if peer.tunn.time_since_last_handshake().is_some() {
                    peer.tunn.encapsulate(&[], space)
                } else {
                    peer.tunn.format_handshake_initiation(space, false)
                };
                if let TunnResult::WriteToNetwork(message) = result {
                    let (offset, len) = span(base, message);
                    emit(peer, out, offset, len);
                }
            }
        }
    }

    pub fn peer_status(&self) -> Vec<PeerStatus> {
        let mut peers: Vec<_> = self.peers.values().map(Peer::status).collect();
        peers.sort_by_key(|p| p.public_key);
        peers
    }

    pub fn drops(&self) -> DropCounts {
        self.drops
    }

    /// Counts a drop no peer is blamed for.
    pub fn count(&mut self, reason: DropReason) {
        self.drops.count(reason);
    }
}

/// Sends a message the peer's session produced (`len` bytes at `offset` of the space last
/// reserved) to the endpoint in use, moving on to the next endpoint first when it is a handshake
/// initiation and the previous one went unanswered.
fn emit(peer: &mut Peer, out: &mut Outbox, offset: usize, len: usize) {
    if MessageKind::of(out.scratch(offset, len)) == Some(MessageKind::HandshakeInit) {
        peer.endpoints.handshake_sent();
    }
    match peer.endpoints.current() {
        Some(endpoint) => {
            out.commit(Target::Network(endpoint), offset, len);
            peer.sent(len);
        }
        None => peer.drops.count(DropReason::NoEndpoint),
    }
}

/// Encrypts `packet` for `peer` and sends it, or queues it in the session until a handshake
/// completes.
fn encapsulate(peer: &mut Peer, packet: &[u8], out: &mut Outbox) {
    let space = out.reserve((packet.len() + DATA_OVERHEAD).max(HANDSHAKE_INIT_LEN));
    let base = space.as_ptr();
    match peer.tunn.encapsulate(packet, space) {
        TunnResult::WriteToNetwork(message) => {
            let (offset, len) = span(base, message);
            emit(peer, out, offset, len);
        }
        TunnResult::Err(e) => peer.drops.count(drop_reason(&e)),
        // Queued in the session until the handshake completes.
        TunnResult::Done | TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
    }
}

/// Sends what the session queued while it had no keys (after a handshake completes).
fn send_queued(peer: &mut Peer, out: &mut Outbox) {
    loop {
        let space = out.reserve(MAX_DATAGRAM);
        let base = space.as_ptr();
        match peer.tunn.decapsulate(None, &[], space) {
            TunnResult::WriteToNetwork(message) => {
                let (offset, len) = span(base, message);
                emit(peer, out, offset, len);
            }
            _ => return,
        }
    }
}

/// Writes a decrypted packet to the TUN device if its source is one the peer may use, unless its
/// destination belongs to another peer of the tunnel: then that peer is returned, for
/// [`Router::relay`].
fn deliver(
    allowed: &AllowedIps,
    index: u32,
    peer: &mut Peer,
    out: &mut Outbox,
    (offset, len): (usize, usize),
    inner_source: IpAddr,
) -> Option<u32> {
    if allowed.lookup(inner_source) != Some(index) {
        peer.drops.count(DropReason::AllowedIps);
        return None;
    }
    let next = Tunn::dst_address(out.scratch(offset, len)).and_then(|dst| allowed.lookup(dst));
    match next {
        Some(next) if next != index => Some(next),
        _ => {
            out.commit(Target::Tun, offset, len);
            None
        }
    }
}

/// An IPv4 peer seen through a dual-stack socket arrives as `::ffff:a.b.c.d`; it is an IPv4 peer.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
