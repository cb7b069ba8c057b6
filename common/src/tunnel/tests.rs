use std::{collections::HashMap, vec::Vec};

use super::*;
use crate::maps::{Endpoint, Iface};

const TUN: u32 = 50;
const NETWORK: u32 = 7;
const OTHER: u32 = 8;
const HOST: u32 = 20;
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

#[derive(Default)]
struct Fake {
    tunnels: HashMap<u32, u32>,
    endpoints: HashMap<EndpointKey, Endpoint>,
}

impl Tables for Fake {
    fn iface(&self, _: u32) -> Option<Iface> {
        None
    }
    fn endpoint(&self, key: &EndpointKey) -> Option<Endpoint> {
        self.endpoints.get(key).copied()
    }
    fn route(&self, _: &crate::maps::RouteKey) -> Option<crate::maps::Route> {
        None
    }
}

impl TunnelTables for Fake {
    fn tunnel_network(&self, ifindex: u32) -> Option<u32> {
        self.tunnels.get(&ifindex).copied()
    }
}

fn tables() -> Fake {
    let mut fake = Fake::default();
    fake.tunnels.insert(TUN, NETWORK);
    let endpoint = Endpoint {
        ifindex: HOST,
        mac: MAC,
        flags: 0,
        _pad: 0,
    };
    fake.endpoints
        .insert(EndpointKey::v4(NETWORK, [10, 1, 1, 2]), endpoint);
    let v6 = [0xfd, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];
    fake.endpoints
        .insert(EndpointKey::v6(NETWORK, v6), endpoint);
    fake
}

fn v4(dst: [u8; 4], payload: usize) -> Vec<u8> {
    let total = (20 + payload) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 2, 2]);
    p.extend_from_slice(&dst);
    p.resize(20 + payload, 0xaa);
    p
}

fn v6(dst: [u8; 16], payload: usize) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload as u16).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&[0xfd, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&dst);
    p.resize(40 + payload, 0xaa);
    p
}

fn decide(packet: &[u8], ifindex: u32) -> TunnelDecision {
    from_tunnel(packet, ifindex, packet.len(), &tables())
}

#[test]
fn packets_for_local_containers_of_the_tunnels_network_are_delivered() {
    let to_v4 = decide(&v4([10, 1, 1, 2], 8), TUN);
    assert_eq!(
        to_v4,
        TunnelDecision {
            network_id: NETWORK,
            action: TunnelAction::Deliver {
                ifindex: HOST,
                dst_mac: MAC,
                ether_type: ETH_P_IP
            }
        }
    );
    let dst = [0xfd, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];
    assert!(matches!(
        decide(&v6(dst, 8), TUN).action,
        TunnelAction::Deliver {
            ether_type: ETH_P_IPV6,
            ..
        }
    ));
}

#[test]
fn anything_else_is_dropped_with_its_reason() {
    let drop = |packet: &[u8], ifindex| decide(packet, ifindex).action;
    // Another network's tunnel, even with the same addresses: nothing of this network there.
    let mut other = tables();
    other.tunnels.insert(TUN + 1, OTHER);
    assert_eq!(
        from_tunnel(&v4([10, 1, 1, 2], 8)[..], TUN + 1, 28, &other).action,
        TunnelAction::Drop(DropReason::CrossNetwork)
    );
    assert_eq!(
        drop(&v4([10, 1, 1, 9], 8), TUN),
        TunnelAction::Drop(DropReason::CrossNetwork)
    );
    assert_eq!(
        drop(&v4([10, 1, 1, 2], 8), TUN + 5),
        TunnelAction::Drop(DropReason::UnknownInterface)
    );
    // An IPv6 packet to the IPv4 container's mapped address.
    let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 1, 2];
    assert_eq!(
        drop(&v6(mapped, 8), TUN),
        TunnelAction::Drop(DropReason::MappedAddress)
    );
    // Lengths that do not add up, and what is not IP.
    let mut long = v4([10, 1, 1, 2], 8);
    long.truncate(24);
    assert_eq!(drop(&long, TUN), TunnelAction::Drop(DropReason::Malformed));
    let mut short_ihl = v4([10, 1, 1, 2], 8);
    short_ihl[0] = 0x44;
    assert_eq!(
        drop(&short_ihl, TUN),
        TunnelAction::Drop(DropReason::Malformed)
    );
    let mut v6_long = v6([0; 16], 8);
    v6_long.truncate(44);
    assert_eq!(
        drop(&v6_long, TUN),
        TunnelAction::Drop(DropReason::Malformed)
    );
    assert_eq!(
        drop(&[0x10, 0, 0, 0], TUN),
        TunnelAction::Drop(DropReason::UnsupportedProtocol)
    );
    assert_eq!(drop(&[], TUN), TunnelAction::Drop(DropReason::Malformed));
    // A container whose link is down.
    let mut down = tables();
    for endpoint in down.endpoints.values_mut() {
        endpoint.flags = crate::maps::ENDPOINT_DOWN;
    }
    assert_eq!(
        from_tunnel(&v4([10, 1, 1, 2], 8)[..], TUN, 28, &down).action,
        TunnelAction::Drop(DropReason::EndpointDown)
    );
}
