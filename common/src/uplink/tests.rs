use std::{collections::HashSet, vec::Vec};

use super::*;

struct Maps {
    config: Option<UplinkConfig>,
    ports: HashSet<PortKey>,
}

impl UplinkTables for Maps {
    fn config(&self) -> Option<UplinkConfig> {
        self.config
    }
    fn port_allowed(&self, key: &PortKey) -> bool {
        self.ports.contains(key)
    }
}

fn maps() -> Maps {
    Maps {
        config: Some(UplinkConfig {
            ephemeral_low: 32768,
            ephemeral_high: 60999,
            enforcing: 1,
            _pad: [0; 3],
        }),
        ports: [
            PortKey::new(IPPROTO_UDP, 51820),
            PortKey::new(IPPROTO_TCP, 443),
        ]
        .into_iter()
        .collect(),
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
    f.extend([
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, protocol, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ]);
    f.extend(40000u16.to_be_bytes());
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
    f.extend([0xfd; 32]);
    f.extend_from_slice(l4);
    f
}

fn guard(frame: &[u8]) -> Guard {
    from_uplink(frame, &maps())
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;

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
fn replies_to_the_nodes_own_connections_pass_but_not_new_connections() {
    assert_eq!(guard(&v4(IPPROTO_TCP, 45000, SYN_ACK)), Guard::Pass);
    assert_eq!(guard(&v4(IPPROTO_TCP, 45000, ACK)), Guard::Pass);
    assert_eq!(guard(&v4(IPPROTO_UDP, 45000, 0)), Guard::Pass);
    assert_eq!(
        guard(&v4(IPPROTO_TCP, 45000, SYN)),
        Guard::Drop(DropReason::Unsolicited)
    );
    assert_eq!(
        guard(&v4(IPPROTO_TCP, 61000, ACK)),
        Guard::Drop(DropReason::Unsolicited)
    );
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
    for len in [0, 10, 14, 20, 33, 34, 36] {
        assert_eq!(
            guard(&full[..len]),
            Guard::Drop(DropReason::Malformed),
            "truncated to {len}"
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
        ports: HashSet::new(),
    };
    assert_eq!(
        from_uplink(&v4(IPPROTO_TCP, 22, SYN)[..], &unconfigured),
        Guard::Pass
    );
    let off = Maps {
        config: Some(UplinkConfig {
            enforcing: 0,
            ..maps().config.expect("config")
        }),
        ports: HashSet::new(),
    };
    assert_eq!(
        from_uplink(&v4(IPPROTO_TCP, 22, SYN)[..], &off),
        Guard::Pass
    );
}
