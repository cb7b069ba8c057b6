use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    vec::Vec,
};

use super::*;
use crate::maps::PortBitmap;

struct Maps {
    config: Option<UplinkConfig>,
    ports: PortBitmap,
}

impl UplinkTables for Maps {
    fn config(&self) -> Option<&UplinkConfig> {
        self.config.as_ref()
    }
    fn port_word(&self, index: u32) -> u64 {
        self.ports.words().get(index as usize).copied().unwrap_or(0)
    }
}

/// A socket table: what the kernel would find for each (protocol, tuple), and every lookup made.
#[derive(Default)]
struct Sockets {
    found: HashMap<(u8, SocketTuple), SocketState>,
    asked: RefCell<Vec<(u8, SocketTuple)>>,
}

impl SocketTable for Sockets {
    fn lookup(&self, protocol: u8, tuple: &SocketTuple) -> Option<SocketState> {
        self.asked.borrow_mut().push((protocol, *tuple));
        self.found.get(&(protocol, *tuple)).copied()
    }
}

impl Sockets {
    fn with(entries: &[(u8, SocketTuple, SocketState)]) -> Self {
        Self {
            found: entries.iter().map(|&(p, t, s)| ((p, t), s)).collect(),
            asked: RefCell::new(Vec::new()),
        }
    }
}

const REMOTE_V4: [u8; 4] = [192, 0, 2, 1];
const NODE_V4: [u8; 4] = [192, 0, 2, 2];
const REMOTE_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const NODE_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// The source port of every test frame.
const REMOTE_PORT: u16 = 40000;

/// The tuple of a [`v4`] frame to `port`.
fn tuple_v4(port: u16) -> SocketTuple {
    SocketTuple::V4(Ipv4Tuple {
        saddr: REMOTE_V4,
        daddr: NODE_V4,
        sport: REMOTE_PORT.to_be_bytes(),
        dport: port.to_be_bytes(),
    })
}

/// The tuple of a [`v6`] frame to `port`.
fn tuple_v6(port: u16) -> SocketTuple {
    SocketTuple::V6(Ipv6Tuple {
        saddr: REMOTE_V6,
        daddr: NODE_V6,
        sport: REMOTE_PORT.to_be_bytes(),
        dport: port.to_be_bytes(),
    })
}

fn maps() -> Maps {
    Maps {
        config: Some(UplinkConfig {
            ephemeral_low: 32768,
            ephemeral_high: 60999,
            enforcing: 1,
            _pad: [0; 3],
        }),
        ports: {
            let mut ports = PortBitmap::default();
            ports.insert(IPPROTO_UDP, 51820);
            ports.insert(IPPROTO_TCP, 443);
            ports
        },
    }
}

fn eth(ether_type: u16) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend(ether_type.to_be_bytes());
    f
}

/// IPv4 + a transport header: ports and TCP flags.
fn v4(protocol: u8, dst_port: u16, tcp_flags: u8) -> Vec<u8> {
    let mut f = eth(ETH_P_IP);
    f.extend([0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, protocol, 0, 0]);
    f.extend(REMOTE_V4);
    f.extend(NODE_V4);
    f.extend(REMOTE_PORT.to_be_bytes());
    f.extend(dst_port.to_be_bytes());
    f.extend([0u8; 9]);
    f.push(tcp_flags);
    f.extend([0u8; 6]);
    f
}

fn v6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(ETH_P_IPV6);
    f.extend([0x60, 0, 0, 0]);
    f.extend((l4.len() as u16).to_be_bytes());
    f.extend([next, 64]);
    f.extend(REMOTE_V6);
    f.extend(NODE_V6);
    f.extend_from_slice(l4);
    f
}

/// A TCP header from [`REMOTE_PORT`] to `port` with `flags`.
fn tcp(port: u16, flags: u8) -> Vec<u8> {
    let mut l4 = REMOTE_PORT.to_be_bytes().to_vec();
    l4.extend(port.to_be_bytes());
    l4.extend([0u8; 8]);
    l4.extend([0x50, flags]);
    l4.extend([0u8; 6]);
    l4
}

/// The guard's verdict with no socket on the node.
fn guard(frame: &[u8]) -> Guard {
    from_uplink(frame, &maps(), &Sockets::default())
}

/// The guard's verdict with these sockets on the node.
fn guard_with(frame: &[u8], sockets: &Sockets) -> Guard {
    from_uplink(frame, &maps(), sockets)
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = SYN | ACK;

#[test]
fn allowed_ports_pass() {
    assert_eq!(guard(&v4(IPPROTO_UDP, 51820, 0)), Guard::Pass);
    assert_eq!(guard(&v4(IPPROTO_TCP, 443, SYN)), Guard::Pass);
    let mut udp = 40000u16.to_be_bytes().to_vec();
    udp.extend(51820u16.to_be_bytes());
    udp.extend([0; 4]);
    assert_eq!(guard(&v6(IPPROTO_UDP, &udp)), Guard::Pass);
}

#[test]
fn services_on_other_ports_are_unreachable() {
    assert_eq!(
        guard(&v4(IPPROTO_TCP, 22, SYN)),
        Guard::Drop(DropReason::Unsolicited)
    );
    assert_eq!(
        guard(&v4(IPPROTO_UDP, 53, 0)),
        Guard::Drop(DropReason::Unsolicited)
    );
    assert_eq!(
        guard(&v4(IPPROTO_TCP, 443 + 1, SYN)),
        Guard::Drop(DropReason::Unsolicited)
    );
    assert_eq!(
        guard(&v4(IPPROTO_UDP, 443, 0)),
        Guard::Drop(DropReason::Unsolicited),
        "443 is allowed for TCP only"
    );
}

#[test]
fn replies_to_the_nodes_own_connections_pass() {
    let sockets = Sockets::with(&[
        (IPPROTO_TCP, tuple_v4(45000), SocketState::SYN_SENT),
        (IPPROTO_TCP, tuple_v4(45001), SocketState::ESTABLISHED),
        (IPPROTO_TCP, tuple_v4(45002), SocketState::FIN_WAIT1),
        (IPPROTO_TCP, tuple_v4(45003), SocketState::TIME_WAIT),
        (IPPROTO_TCP, tuple_v4(45004), SocketState::NEW_SYN_RECV),
        (IPPROTO_UDP, tuple_v4(45000), SocketState::CLOSE),
        (IPPROTO_UDP, tuple_v4(45001), SocketState::ESTABLISHED),
        (IPPROTO_TCP, tuple_v6(45000), SocketState::SYN_SENT),
        (IPPROTO_UDP, tuple_v6(45000), SocketState::CLOSE),
    ]);
    // The answer to the node's SYN reaches its connecting socket.
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 45000, SYN_ACK), &sockets),
        Guard::Pass
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 45001, PSH | ACK), &sockets),
        Guard::Pass
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 45002, FIN | ACK), &sockets),
        Guard::Pass
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 45003, FIN | ACK), &sockets),
        Guard::Pass,
        "a late FIN is answered from time-wait"
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 45004, ACK), &sockets),
        Guard::Pass
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_UDP, 45000, 0), &sockets),
        Guard::Pass
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_UDP, 45001, 0), &sockets),
        Guard::Pass
    );
    assert_eq!(
        guard_with(&v6(IPPROTO_TCP, &tcp(45000, SYN_ACK)), &sockets),
        Guard::Pass
    );
    let mut udp = REMOTE_PORT.to_be_bytes().to_vec();
    udp.extend(45000u16.to_be_bytes());
    udp.extend([0; 4]);
    assert_eq!(guard_with(&v6(IPPROTO_UDP, &udp), &sockets), Guard::Pass);
}

#[test]
fn reply_shaped_packets_without_a_socket_are_dropped() {
    for flags in [ACK, RST, RST | ACK, FIN | ACK, PSH | ACK, SYN_ACK] {
        assert_eq!(
            guard(&v4(IPPROTO_TCP, 45000, flags)),
            Guard::Drop(DropReason::NoSocket),
            "TCP flags {flags:#04x}"
        );
        assert_eq!(
            guard(&v6(IPPROTO_TCP, &tcp(45000, flags))),
            Guard::Drop(DropReason::NoSocket),
            "TCP flags {flags:#04x} over IPv6"
        );
    }
    assert_eq!(
        guard(&v4(IPPROTO_UDP, 45000, 0)),
        Guard::Drop(DropReason::NoSocket)
    );
    // A connection's port does not open it to other remote ends or to the other protocol.
    let sockets = Sockets::with(&[(IPPROTO_TCP, tuple_v4(45000), SocketState::ESTABLISHED)]);
    let mut other_remote = v4(IPPROTO_TCP, 45000, ACK);
    other_remote[29] = 9;
    assert_eq!(
        guard_with(&other_remote, &sockets),
        Guard::Drop(DropReason::NoSocket)
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_UDP, 45000, 0), &sockets),
        Guard::Drop(DropReason::NoSocket)
    );
}

#[test]
fn a_listener_on_an_ephemeral_port_is_no_connection() {
    let sockets = Sockets::with(&[(IPPROTO_TCP, tuple_v4(45000), SocketState::LISTEN)]);
    for flags in [ACK, SYN_ACK, PSH | ACK] {
        assert_eq!(
            guard_with(&v4(IPPROTO_TCP, 45000, flags), &sockets),
            Guard::Drop(DropReason::NoSocket)
        );
    }
}

#[test]
fn the_lookup_is_for_the_packets_own_tuple() {
    let sockets = Sockets::default();
    guard_with(&v4(IPPROTO_TCP, 45000, ACK), &sockets);
    guard_with(&v4(IPPROTO_UDP, 45001, 0), &sockets);
    guard_with(&v6(IPPROTO_TCP, &tcp(45002, ACK)), &sockets);
    assert_eq!(
        sockets.asked.borrow().as_slice(),
        [
            (IPPROTO_TCP, tuple_v4(45000)),
            (IPPROTO_UDP, tuple_v4(45001)),
            (IPPROTO_TCP, tuple_v6(45002)),
        ]
    );
}

#[test]
fn new_connections_and_other_ports_are_judged_without_a_lookup() {
    let sockets = Sockets::with(&[
        (IPPROTO_TCP, tuple_v4(45000), SocketState::LISTEN),
        (IPPROTO_TCP, tuple_v4(22), SocketState::LISTEN),
        (IPPROTO_UDP, tuple_v4(51820), SocketState::CLOSE),
    ]);
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 45000, SYN), &sockets),
        Guard::Drop(DropReason::Unsolicited)
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 22, ACK), &sockets),
        Guard::Drop(DropReason::Unsolicited)
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_TCP, 61000, ACK), &sockets),
        Guard::Drop(DropReason::Unsolicited),
        "above the ephemeral range"
    );
    assert_eq!(
        guard_with(&v4(IPPROTO_UDP, 51820, 0), &sockets),
        Guard::Pass
    );
    assert!(sockets.asked.borrow().is_empty());
}

#[test]
fn control_traffic_a_host_needs_passes() {
    assert_eq!(guard(&eth(ETH_P_ARP)), Guard::Pass);
    for (icmp_type, verdict) in [
        (0, Guard::Pass),
        (3, Guard::Pass),
        (11, Guard::Pass),
        (8, Guard::Drop(DropReason::Unsolicited)),
    ] {
        let mut f = v4(IPPROTO_ICMP, 0, 0);
        f[34] = icmp_type;
        assert_eq!(guard(&f), verdict, "ICMP type {icmp_type}");
    }
    for (icmp_type, verdict) in [
        (135, Guard::Pass),
        (136, Guard::Pass),
        (134, Guard::Pass),
        (129, Guard::Pass),
        (128, Guard::Drop(DropReason::Unsolicited)),
    ] {
        assert_eq!(
            guard(&v6(IPPROTO_ICMPV6, &[icmp_type, 0, 0, 0])),
            verdict,
            "ICMPv6 type {icmp_type}"
        );
    }
    // MLD behind a hop-by-hop router alert.
    let mut hbh = vec![IPPROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0];
    hbh.extend([143, 0, 0, 0]);
    assert_eq!(guard(&v6(IPPROTO_HOPOPTS, &hbh)), Guard::Pass);
}

#[test]
fn malformed_truncated_and_fragmented_frames_are_dropped() {
    let full = v4(IPPROTO_TCP, 443, SYN);
    for len in [0, 10, 14, 20, 33, 34, 36, 37] {
        assert_eq!(
            guard(&full[..len]),
            Guard::Drop(DropReason::Malformed),
            "truncated to {len}"
        );
    }
    let full_v6 = v6(IPPROTO_TCP, &tcp(443, SYN));
    for len in [54, 57] {
        assert_eq!(
            guard(&full_v6[..len]),
            Guard::Drop(DropReason::Malformed),
            "IPv6 truncated to {len}"
        );
    }
    let mut bad_ihl = full.clone();
    bad_ihl[14] = 0x42;
    assert_eq!(guard(&bad_ihl), Guard::Drop(DropReason::Malformed));
    let mut later_fragment = full.clone();
    later_fragment[20] = 0x00;
    later_fragment[21] = 0x10;
    assert_eq!(guard(&later_fragment), Guard::Drop(DropReason::Fragment));
    assert_eq!(
        guard(&v6(IPPROTO_FRAGMENT, &[0; 8])),
        Guard::Drop(DropReason::Fragment)
    );
    assert_eq!(
        guard(&eth(0x88cc)),
        Guard::Drop(DropReason::UnsupportedProtocol)
    );
    assert_eq!(
        guard(&v4(47, 0, 0)),
        Guard::Drop(DropReason::Unsolicited),
        "GRE"
    );
}

#[test]
fn an_unconfigured_guard_never_locks_the_node_out() {
    let unconfigured = Maps {
        config: None,
        ports: PortBitmap::default(),
    };
    assert_eq!(
        from_uplink(
            &v4(IPPROTO_TCP, 22, SYN)[..],
            &unconfigured,
            &Sockets::default()
        ),
        Guard::Pass
    );
    let off = Maps {
        config: Some(UplinkConfig {
            enforcing: 0,
            ..maps().config.expect("config")
        }),
        ports: PortBitmap::default(),
    };
    assert_eq!(
        from_uplink(&v4(IPPROTO_TCP, 22, SYN)[..], &off, &Sockets::default()),
        Guard::Pass
    );
}

#[test]
fn every_outcome_has_its_own_counter_slot() {
    use crate::maps::UPLINK_STATS_SLOTS;
    assert_eq!(
        Guard::of_stats_slot(Guard::Pass.stats_slot()),
        Some((Verdict::Pass, 0))
    );
    assert_eq!(Guard::of_stats_slot(UPLINK_STATS_SLOTS), None);
    let mut slots = HashSet::from([Guard::Pass.stats_slot()]);
    for reason in DropReason::ALL {
        if reason == DropReason::None {
            continue;
        }
        let slot = Guard::Drop(reason).stats_slot();
        assert!(slot < UPLINK_STATS_SLOTS, "{reason:?} has no slot");
        assert!(slots.insert(slot), "{reason:?} shares slot {slot}");
        assert_eq!(
            Guard::of_stats_slot(slot),
            Some((Verdict::Drop, reason as u8)),
            "{reason:?}"
        );
    }
}

/// The same packet with its headers made longer: four no-op options in IPv4, an empty
/// hop-by-hop header in IPv6. The guard then reads it the general way, at offsets it computes.
fn with_longer_headers(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    match u16::from_be_bytes([f[12], f[13]]) {
        ETH_P_IP => {
            f[14] = 0x46;
            f.splice(34..34, [1, 1, 1, 1]);
        }
        ETH_P_IPV6 => {
            let next = std::mem::replace(&mut f[20], IPPROTO_HOPOPTS);
            // The next header, a length of 0 (8 bytes), and a PadN option over the rest.
            f.splice(54..54, [next, 0, 1, 4, 0, 0, 0, 0]);
        }
        other => panic!("not an IP frame: {other:#x}"),
    }
    f
}

#[test]
fn plain_headers_and_longer_ones_get_the_same_verdict_and_lookup() {
    let sockets = || {
        Sockets::with(&[
            (IPPROTO_TCP, tuple_v4(45000), SocketState::ESTABLISHED),
            (IPPROTO_TCP, tuple_v4(45001), SocketState::LISTEN),
            (IPPROTO_UDP, tuple_v4(45000), SocketState::CLOSE),
            (IPPROTO_TCP, tuple_v6(45000), SocketState::ESTABLISHED),
            (IPPROTO_TCP, tuple_v6(45001), SocketState::LISTEN),
            (IPPROTO_UDP, tuple_v6(45000), SocketState::CLOSE),
        ])
    };
    let mut frames = Vec::new();
    for port in [22, 443, 51820, 45000, 45001, 45002, 61000] {
        for flags in [SYN, SYN_ACK, ACK, RST, FIN | ACK] {
            frames.push(v4(IPPROTO_TCP, port, flags));
            frames.push(v6(IPPROTO_TCP, &tcp(port, flags)));
        }
        frames.push(v4(IPPROTO_UDP, port, 0));
        let mut udp = REMOTE_PORT.to_be_bytes().to_vec();
        udp.extend(port.to_be_bytes());
        udp.extend([0; 4]);
        frames.push(v6(IPPROTO_UDP, &udp));
    }
    let mut later_fragment = v4(IPPROTO_UDP, 51820, 0);
    later_fragment[21] = 0x10;
    frames.push(later_fragment);
    let mut verdicts = Vec::new();
    for plain in frames {
        let longer = with_longer_headers(&plain);
        let (plain_sockets, longer_sockets) = (sockets(), sockets());
        let verdict = guard_with(&plain, &plain_sockets);
        assert_eq!(
            verdict,
            guard_with(&longer, &longer_sockets),
            "{plain:02x?}"
        );
        assert_eq!(plain_sockets.asked, longer_sockets.asked, "{plain:02x?}");
        verdicts.push(verdict);
    }
    // Every way through: allowed, answered by a socket, dropped with and without a lookup.
    for verdict in [
        Guard::Pass,
        Guard::Drop(DropReason::Unsolicited),
        Guard::Drop(DropReason::NoSocket),
        Guard::Drop(DropReason::Fragment),
    ] {
        assert!(verdicts.contains(&verdict), "{verdict:?} never reached");
    }
}
