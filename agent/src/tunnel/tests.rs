//! The packet path without I/O: routers of several "nodes" hand each other their datagrams in
//! memory, with real WireGuard handshakes and encryption.

use std::net::{IpAddr, SocketAddr};

use boringtun::x25519::{PublicKey, StaticSecret};
use proptest::prelude::*;

use super::{
    PeerSpec,
    outbox::{Outbox, Target},
    router::Router,
};

struct Node {
    router: Router,
    public: [u8; 32],
    addr: SocketAddr,
    out: Outbox,
    /// Packets written to this node's TUN device.
    tun: Vec<Vec<u8>>,
}

impl Node {
    fn new(seed: u8, addr: &str) -> Self {
        let private = [seed; 32];
        Self {
            router: Router::new(private),
            public: PublicKey::from(&StaticSecret::from(private)).to_bytes(),
            addr: addr.parse().expect("addr"),
            out: Outbox::default(),
            tun: Vec::new(),
        }
    }

    fn set_peers(&mut self, peers: &[PeerSpec]) {
        self.router.set_peers(peers, &mut self.out);
    }

    /// The spec other nodes give this one.
    fn as_peer(&self, endpoints: bool, nets: &[&str]) -> PeerSpec {
        PeerSpec {
            public_key: self.public,
            endpoints: if endpoints { vec![self.addr] } else { vec![] },
            allowed_ips: nets.iter().map(|n| n.parse().expect("net")).collect(),
            keepalive: None,
        }
    }

    fn send(&mut self, packet: &[u8]) {
        self.router.outbound(packet, &mut self.out);
    }

    fn peer(&self, key: &[u8; 32]) -> super::PeerStatus {
        self.router
            .peer_status()
            .into_iter()
            .find(|p| p.public_key == *key)
            .expect("peer known")
    }
}

/// Delivers every datagram to the node it is addressed to, until none is left; returns how many
/// datagrams went to an address no node has.
fn settle(nodes: &mut [&mut Node]) -> usize {
    let mut lost = 0;
    for _ in 0..100 {
        let mut moving = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            for (target, bytes) in node.out.iter() {
                match target {
                    Target::Tun => node.tun.push(bytes.to_vec()),
                    Target::Network(to) => moving.push((i, to, bytes.to_vec())),
                }
            }
            node.out.clear();
        }
        if moving.is_empty() {
            return lost;
        }
        for (from, to, bytes) in moving {
            let source = nodes[from].addr;
            match nodes.iter_mut().find(|n| n.addr == to) {
                Some(node) => node.router.inbound(source, &bytes, &mut node.out),
                None => lost += 1,
            }
        }
    }
    panic!("datagrams kept flowing");
}

/// A UDP packet from `src` to `dst` carrying `payload`, with only the fields the tunnel reads.
fn packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    match (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) {
        (Ok(IpAddr::V4(s)), Ok(IpAddr::V4(d))) => {
            let total = 20 + payload.len();
            let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(payload);
            p
        }
        (Ok(IpAddr::V6(s)), Ok(IpAddr::V6(d))) => {
            let mut p = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
            p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(payload);
            p
        }
        _ => panic!("two addresses of one family"),
    }
}

/// Node A (10.1.0.0/24, fd01::/64) and node B (10.2.0.0/24, fd02::/64), handshaken: A knows B's
/// endpoint, B learns A's when A first speaks.
fn joined() -> (Node, Node) {
    let mut a = Node::new(1, "192.0.2.1:51820");
    let mut b = Node::new(2, "[2001:db8::2]:51820");
    a.set_peers(&[b.as_peer(true, &["10.2.0.0/24", "fd02::/64"])]);
    b.set_peers(&[a.as_peer(false, &["10.1.0.0/24", "fd01::/64"])]);
    assert_eq!(settle(&mut [&mut a, &mut b]), 0);
    assert!(a.peer(&b.public).last_handshake.is_some(), "A handshook");
    assert!(b.peer(&a.public).last_handshake.is_some(), "B handshook");
    (a, b)
}

#[test]
fn packets_cross_both_ways_in_both_families() {
    let (mut a, mut b) = joined();
    let there = packet("10.1.0.5", "10.2.0.7", b"over");
    let back = packet("fd02::7", "fd01::5", b"and back");
    a.send(&there);
    settle(&mut [&mut a, &mut b]);
    b.send(&back);
    settle(&mut [&mut a, &mut b]);
    assert_eq!(b.tun, vec![there]);
    assert_eq!(a.tun, vec![back]);
    assert_eq!(b.peer(&a.public).endpoint, Some(a.addr), "B learned A");
    let a_sees_b = a.peer(&b.public);
    assert!(
        a_sees_b.tx_bytes > 0 && a_sees_b.rx_bytes > 0,
        "{a_sees_b:?}"
    );
    assert_eq!(a_sees_b.drops.total(), 0);
}

#[test]
fn a_packet_queued_before_the_handshake_goes_after_it() {
    let mut a = Node::new(1, "192.0.2.1:51820");
    let mut b = Node::new(2, "192.0.2.2:51820");
    b.set_peers(&[a.as_peer(false, &["10.1.0.0/24"])]);
    // A's handshake goes out with the peer; the packet waits for it.
    a.set_peers(&[b.as_peer(true, &["10.2.0.0/24"])]);
    let early = packet("10.1.0.5", "10.2.0.7", b"early");
    a.send(&early);
    settle(&mut [&mut a, &mut b]);
    assert_eq!(b.tun, vec![early]);
}

#[test]
fn a_source_outside_the_peers_allowed_ips_is_dropped_and_counted() {
    let (mut a, mut b) = joined();
    // B routes by destination only; A must check the source B uses.
    b.send(&packet("10.66.0.1", "10.1.0.5", b"spoofed"));
    b.send(&packet("10.2.0.9", "10.1.0.5", b"fine"));
    settle(&mut [&mut a, &mut b]);
    assert_eq!(a.tun, vec![packet("10.2.0.9", "10.1.0.5", b"fine")]);
    assert_eq!(a.peer(&b.public).drops.allowed_ips, 1);
}

#[test]
fn a_packet_for_no_peer_is_dropped_and_counted() {
    let (mut a, mut b) = joined();
    a.send(&packet("10.1.0.5", "10.7.0.1", b"nowhere"));
    a.send(b"\x45 not an IP packet");
    assert!(a.out.is_empty());
    settle(&mut [&mut a, &mut b]);
    let drops = a.router.drops();
    assert_eq!((drops.no_route, drops.malformed), (1, 1), "{drops:?}");
}

#[test]
fn messages_from_strangers_are_dropped_and_counted() {
    let (mut a, mut b) = joined();
    // C knows A, but A does not know C: its handshake names a key A has no peer for.
    let mut c = Node::new(3, "192.0.2.3:51820");
    c.set_peers(&[a.as_peer(true, &["10.1.0.0/24"])]);
    settle(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(a.router.drops().unknown_peer, 1);
    assert!(c.peer(&a.public).last_handshake.is_none());

    // Data for a session of a peer A no longer has.
    a.set_peers(&[]);
    b.send(&packet("10.2.0.9", "10.1.0.5", b"late"));
    settle(&mut [&mut a, &mut b]);
    assert_eq!(a.router.drops().unknown_peer, 2);
    assert!(a.tun.is_empty());
}

#[test]
fn garbage_is_counted_not_delivered() {
    let (mut a, mut b) = joined();
    let mut data = Vec::new();
    b.send(&packet("10.2.0.9", "10.1.0.5", b"genuine"));
    for (_, bytes) in b.out.iter() {
        data = bytes.to_vec();
    }
    b.out.clear();
    let mut tampered = data.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let from = b.addr;
    for datagram in [
        &b""[..],
        b"\x04\0\0",
        b"\x09\0\0\0 unknown type",
        b"\x01\0\0\0 an initiation of the wrong size",
        &tampered,
        &data,
        &data, // a replay
    ] {
        a.router.inbound(from, datagram, &mut a.out);
    }
    settle(&mut [&mut a, &mut b]);
    assert_eq!(a.tun, vec![packet("10.2.0.9", "10.1.0.5", b"genuine")]);
    let malformed = a.router.drops().malformed;
    let undecryptable = a.peer(&b.public).drops.undecryptable;
    assert_eq!((malformed, undecryptable), (4, 2));
}

#[test]
fn changing_one_peer_keeps_the_sessions_of_all() {
    let mut a = Node::new(1, "192.0.2.1:51820");
    let mut b = Node::new(2, "192.0.2.2:51820");
    let mut c = Node::new(3, "192.0.2.3:51820");
    let b_spec = b.as_peer(true, &["10.2.0.0/24"]);
    let c_spec = c.as_peer(true, &["10.3.0.0/24"]);
    a.set_peers(&[b_spec.clone(), c_spec.clone()]);
    b.set_peers(&[a.as_peer(false, &["10.1.0.0/24"])]);
    c.set_peers(&[a.as_peer(false, &["10.1.0.0/24"])]);
    settle(&mut [&mut a, &mut b, &mut c]);
    let before_b = a.peer(&b.public).last_handshake;
    let before_c = a.peer(&c.public).last_handshake;
    assert!(before_b.is_some() && before_c.is_some());

    let mut b_moved = b_spec;
    b_moved
        .allowed_ips
        .push("10.22.0.0/24".parse().expect("net"));
    b_moved
        .endpoints
        .insert(0, "192.0.2.99:51820".parse().expect("addr"));
    b_moved.keepalive = Some(25);
    a.set_peers(&[b_moved, c_spec]);
    assert!(a.out.is_empty(), "no new handshake for anyone");

    a.send(&packet("10.1.0.5", "10.22.0.1", b"new prefix"));
    a.send(&packet("10.1.0.5", "10.3.0.1", b"to C"));
    assert_eq!(settle(&mut [&mut a, &mut b, &mut c]), 0);
    assert_eq!(
        b.tun,
        vec![packet("10.1.0.5", "10.22.0.1", b"new prefix")],
        "B's endpoint in use is still listed, so it stays"
    );
    assert_eq!(c.tun, vec![packet("10.1.0.5", "10.3.0.1", b"to C")]);
    assert_eq!(a.peer(&b.public).last_handshake, before_b);
    assert_eq!(a.peer(&c.public).last_handshake, before_c);
}

#[test]
fn removing_a_peer_withdraws_its_routes() {
    let (mut a, mut b) = joined();
    a.set_peers(&[]);
    a.send(&packet("10.1.0.5", "10.2.0.7", b"gone"));
    settle(&mut [&mut a, &mut b]);
    assert!(b.tun.is_empty());
    assert_eq!(a.router.drops().no_route, 1);
}

proptest! {
    #[test]
    fn no_datagram_or_packet_makes_it_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), kind in 0u8..6) {
        let mut a = Node::new(1, "192.0.2.1:51820");
        a.set_peers(&[Node::new(2, "192.0.2.2:51820").as_peer(true, &["0.0.0.0/0", "::/0"])]);
        let mut datagram = bytes.clone();
        if let Some(first) = datagram.first_mut() {
            *first = kind;
        }
        a.router.inbound("192.0.2.2:51820".parse().expect("addr"), &datagram, &mut a.out);
        a.router.outbound(&bytes, &mut a.out);
        a.router.tick(&mut a.out);
    }
}

#[tokio::test]
async fn a_bad_spec_is_refused_before_anything_is_created() {
    let mut tunnels = super::Tunnels::new([7; 32], None);
    let own = tunnels.public_key();
    let bad = super::TunnelSpec {
        network: "net".into(),
        ifname: "gn-net".into(),
        listen_port: 0,
        mtu: 1420,
        peers: vec![PeerSpec {
            public_key: own,
            endpoints: Vec::new(),
            allowed_ips: Vec::new(),
            keepalive: None,
        }],
    };
    let err = tunnels.ensure(&bad).await.expect_err("own key as a peer");
    assert!(matches!(err, super::TunnelError::OwnKey { .. }), "{err}");
    assert!(tunnels.specs().is_empty());
    assert!(tunnels.status().is_empty());
    assert_eq!(tunnels.ifindex("net"), None);
}

/// A laptop L connected through node A reaches node B's containers, and they reach it: A passes
/// the packets between its two peers itself, one hop further each time.
#[test]
fn an_access_peer_reaches_other_nodes_through_its_node() {
    let (mut a, mut b) = joined();
    let mut laptop = Node::new(3, "198.51.100.7:40000");
    laptop.set_peers(&[a.as_peer(true, &["10.0.0.0/8", "fd00::/8"])]);
    a.set_peers(&[
        b.as_peer(true, &["10.2.0.0/24", "fd02::/64"]),
        laptop.as_peer(false, &["10.9.0.5/32", "fd09::5/128"]),
    ]);
    b.set_peers(&[a.as_peer(
        false,
        &["10.1.0.0/24", "fd01::/64", "10.9.0.5/32", "fd09::5/128"],
    )]);
    let there = packet("10.9.0.5", "10.2.0.7", b"from the laptop");
    laptop.send(&there);
    settle(&mut [&mut a, &mut b, &mut laptop]);
    let mut hopped = there.clone();
    assert!(super::relay::hop(&mut hopped));
    assert_eq!(b.tun, vec![hopped], "B got it with one hop less");
    assert!(a.tun.is_empty(), "A did not hand it to its own TUN device");

    let back = packet("fd02::7", "fd09::5", b"to the laptop");
    b.send(&back);
    settle(&mut [&mut a, &mut b, &mut laptop]);
    let mut hopped = back.clone();
    assert!(super::relay::hop(&mut hopped));
    assert_eq!(laptop.tun, vec![hopped]);

    // The laptop may use only its own address, and a spent TTL goes no further.
    laptop.send(&packet("10.9.0.6", "10.2.0.7", b"spoofed"));
    let mut last_hop = packet("10.9.0.5", "10.2.0.7", b"last hop");
    last_hop[8] = 1;
    laptop.send(&last_hop);
    settle(&mut [&mut a, &mut b, &mut laptop]);
    assert_eq!(b.tun.len(), 1, "neither reached B");
    let seen = a.peer(&laptop.public).drops;
    assert_eq!((seen.allowed_ips, seen.hop_limit), (1, 1), "{seen:?}");
}

#[tokio::test]
async fn a_tunnel_whose_wg_socket_cannot_be_served_is_refused_before_anything_is_created() {
    // A regular file where the socket directory should be.
    let file = std::env::temp_dir().join(format!("gridnet-uapi-file-{}", std::process::id()));
    std::fs::write(&file, b"").expect("file");
    let mut tunnels = super::Tunnels::new([7; 32], Some(file.clone()));
    let spec = super::TunnelSpec {
        network: "net".into(),
        ifname: "gn-uapi-refused".into(),
        listen_port: 0,
        mtu: 1420,
        peers: Vec::new(),
    };
    let err = tunnels
        .ensure(&spec)
        .await
        .expect_err("no socket directory");
    let _ = std::fs::remove_file(&file);
    assert!(matches!(err, super::TunnelError::Uapi { .. }), "{err}");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.contains("uapi_dir"),
        "the error says what to set: {chain}"
    );
    assert!(tunnels.specs().is_empty());
    // No device was made (it would need root, which this test does not have to have).
    assert!(!std::path::Path::new("/sys/class/net/gn-uapi-refused").exists());
}
