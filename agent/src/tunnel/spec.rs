//! What a tunnel should be: the input of [`super::Tunnels::ensure`], and its validation.

use std::{collections::HashMap, net::SocketAddr};

use ipnet::IpNet;

use super::{TunnelError, key_text};

/// The smallest tunnel MTU accepted: IPv6's minimum link MTU, since every network carries IPv6.
pub const MIN_MTU: u16 = 1280;

/// The largest tunnel MTU accepted: an encapsulated packet (inner + 32 bytes of WireGuard, 8 of
/// UDP, 20 of IPv4) must still fit in one IPv4 datagram.
pub const MAX_MTU: u16 = u16::MAX - 60;

/// The longest interface name the kernel takes (`IFNAMSIZ` less the terminating NUL).
const MAX_IFNAME: usize = 15;

/// One network's tunnel on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelSpec {
    /// The network's name; one tunnel per network.
    pub network: String,
    /// The TUN device's name.
    pub ifname: String,
    /// The UDP port WireGuard listens on (0: any free port).
    pub listen_port: u16,
    /// The TUN device's MTU.
    pub mtu: u16,
    /// The other member nodes and the access peers of the network.
    pub peers: Vec<PeerSpec>,
}

/// One WireGuard peer of a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's x25519 static public key; peers are known by it.
    pub public_key: [u8; 32],
    /// Where the peer may be reached, in order of preference (several for a multi-homed node,
    /// none for an access peer that always connects first).
    pub endpoints: Vec<SocketAddr>,
    /// The inner addresses the peer may send from, and that are routed to it.
    pub allowed_ips: Vec<IpNet>,
    /// Send a keepalive after this many seconds without sending anything (`None` or 0: never).
    pub keepalive: Option<u16>,
}

impl PeerSpec {
    /// The keepalive interval in seconds, if any (0 means none, as in `wg`).
    pub(super) fn keepalive_secs(&self) -> Option<u16> {
        self.keepalive.filter(|&secs| secs > 0)
    }
}

/// Refuses a spec the tunnel could not run as written; says which field and why.
pub(super) fn validate(spec: &TunnelSpec, own_key: &[u8; 32]) -> Result<(), TunnelError> {
    let network = || spec.network.clone();
    let name_ok = !spec.ifname.is_empty()
        && spec.ifname.len() <= MAX_IFNAME
        && spec
            .ifname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(TunnelError::InvalidIfname {
            network: network(),
            ifname: spec.ifname.clone(),
        });
    }
    if !(MIN_MTU..=MAX_MTU).contains(&spec.mtu) {
        return Err(TunnelError::InvalidMtu {
            network: network(),
            mtu: spec.mtu,
        });
    }
    let mut keys = HashMap::new();
    let mut claimed: HashMap<IpNet, [u8; 32]> = HashMap::new();
    for peer in &spec.peers {
        if peer.public_key == *own_key {
            return Err(TunnelError::OwnKey { network: network() });
        }
        if keys.insert(peer.public_key, ()).is_some() {
            return Err(TunnelError::DuplicatePeer {
                network: network(),
                peer: key_text(&peer.public_key),
            });
        }
        for net in &peer.allowed_ips {
            let net = net.trunc();
            if let Some(first) = claimed.insert(net, peer.public_key)
                && first != peer.public_key
            {
                return Err(TunnelError::AllowedIpClaimedTwice {
                    network: network(),
                    net,
                    first: key_text(&first),
                    second: key_text(&peer.public_key),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(peers: Vec<PeerSpec>) -> TunnelSpec {
        TunnelSpec {
            network: "net".into(),
            ifname: "gn-net".into(),
            listen_port: 51820,
            mtu: 1420,
            peers,
        }
    }

    fn peer(key: u8, nets: &[&str]) -> PeerSpec {
        PeerSpec {
            public_key: [key; 32],
            endpoints: Vec::new(),
            allowed_ips: nets.iter().map(|n| n.parse().expect("net")).collect(),
            keepalive: None,
        }
    }

    #[test]
    fn a_sound_spec_passes() {
        let ok = spec(vec![
            peer(1, &["10.1.1.0/24", "fd00:1:1::/64"]),
            peer(2, &["10.1.2.0/24", "10.1.0.0/16"]),
        ]);
        validate(&ok, &[9; 32]).expect("valid");
    }

    #[test]
    fn bad_names_and_mtus_are_refused() {
        for name in ["", "a-name-that-is-too-long", "has space", "sl/ash"] {
            let mut bad = spec(Vec::new());
            bad.ifname = name.into();
            assert!(
                matches!(
                    validate(&bad, &[9; 32]),
                    Err(TunnelError::InvalidIfname { .. })
                ),
                "{name:?}"
            );
        }
        for mtu in [0, 576, 1279, u16::MAX] {
            let mut bad = spec(Vec::new());
            bad.mtu = mtu;
            assert!(
                matches!(
                    validate(&bad, &[9; 32]),
                    Err(TunnelError::InvalidMtu { .. })
                ),
                "{mtu}"
            );
        }
    }

    #[test]
    fn peers_must_be_distinct_and_not_this_node() {
        let twice = spec(vec![peer(1, &[]), peer(1, &[])]);
        assert!(matches!(
            validate(&twice, &[9; 32]),
            Err(TunnelError::DuplicatePeer { .. })
        ));
        let own = spec(vec![peer(9, &[])]);
        assert!(matches!(
            validate(&own, &[9; 32]),
            Err(TunnelError::OwnKey { .. })
        ));
    }

    #[test]
    fn one_prefix_routes_to_one_peer() {
        // 10.1.1.7/24 is the same prefix as 10.1.1.0/24 once the host bits are dropped.
        let clash = spec(vec![peer(1, &["10.1.1.0/24"]), peer(2, &["10.1.1.7/24"])]);
        let err = validate(&clash, &[9; 32]).expect_err("same prefix twice");
        assert!(
            err.to_string().contains("10.1.1.0/24"),
            "the message names the prefix: {err}"
        );
        // Nested prefixes are fine: the longest match wins.
        let nested = spec(vec![peer(1, &["10.1.0.0/16"]), peer(2, &["10.1.1.0/24"])]);
        validate(&nested, &[9; 32]).expect("nested prefixes");
    }
}
