//! Longest-prefix match from inner addresses to peers: where a packet read from the TUN device
//! goes, and whether a decrypted packet's source belongs to the peer that sent it.
//!
//! One hash map per prefix length in use, probed from the longest length down. A network's peers
//! use a handful of lengths (/24 and /64 subnets, /32 and /128 access peers, a site prefix or
//! two), so a lookup is a few hash probes and never allocates, whatever the number of peers.

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;

/// Prefixes of both families, each mapped to a peer index.
#[derive(Debug, Default)]
pub(super) struct AllowedIps {
    v4: PrefixTable,
    v6: PrefixTable,
}

impl AllowedIps {
    /// Routes `net` (host bits ignored) to `peer`; returns the peer it routed to before.
    pub fn insert(&mut self, net: IpNet, peer: u32) -> Option<u32> {
        match net {
            IpNet::V4(n) => self
                .v4
                .insert(u32::from(n.addr()).into(), n.prefix_len(), 32, peer),
            IpNet::V6(n) => self
                .v6
                .insert(u128::from(n.addr()), n.prefix_len(), 128, peer),
        }
    }

    /// The peer whose longest prefix contains `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(ip) => self.v4.lookup(u32::from(ip).into(), 32),
            IpAddr::V6(ip) => self.v6.lookup(u128::from(ip), 128),
        }
    }

    /// Forgets every prefix of `peer`.
    pub fn remove_peer(&mut self, peer: u32) {
        self.v4.remove_peer(peer);
        self.v6.remove_peer(peer);
    }
}

/// The prefixes of one family; addresses are held in the low bits of a `u128`.
#[derive(Debug, Default)]
struct PrefixTable {
    /// Longest prefix length first, so the first hit is the longest match.
    by_len: Vec<(u8, HashMap<u128, u32>)>,
}

impl PrefixTable {
    fn insert(&mut self, addr: u128, len: u8, bits: u8, peer: u32) -> Option<u32> {
        let key = masked(addr, len, bits);
        let at = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(i) if self.by_len[i].0 == len => i,
            Some(i) => {
                self.by_len.insert(i, (len, HashMap::new()));
                i
            }
            None => {
                self.by_len.push((len, HashMap::new()));
                self.by_len.len() - 1
            }
        };
        self.by_len[at].1.insert(key, peer)
    }

    fn lookup(&self, addr: u128, bits: u8) -> Option<u32> {
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&masked(addr, *len, bits)).copied())
    }

    fn remove_peer(&mut self, peer: u32) {
        for (_, map) in &mut self.by_len {
            map.retain(|_, p| *p != peer);
        }
        self.by_len.retain(|(_, map)| !map.is_empty());
    }
}

/// `addr` with all but its first `len` of `bits` bits cleared.
fn masked(addr: u128, len: u8, bits: u8) -> u128 {
    let host_bits = u32::from(bits.saturating_sub(len));
    addr.checked_shr(host_bits)
        .and_then(|a| a.checked_shl(host_bits))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, u32)]) -> AllowedIps {
        let mut t = AllowedIps::default();
        for (net, peer) in entries {
            t.insert(net.parse().expect("net"), *peer);
        }
        t
    }

    fn at(t: &AllowedIps, ip: &str) -> Option<u32> {
        t.lookup(ip.parse().expect("ip"))
    }

    #[test]
    fn the_longest_prefix_wins_in_both_families() {
        let t = table(&[
            ("10.1.0.0/16", 1),
            ("10.1.2.0/24", 2),
            ("10.1.2.9/32", 3),
            ("0.0.0.0/0", 4),
            ("fd00::/8", 5),
            ("fd00:1:2::/64", 6),
        ]);
        assert_eq!(at(&t, "10.1.7.7"), Some(1));
        assert_eq!(at(&t, "10.1.2.8"), Some(2));
        assert_eq!(at(&t, "10.1.2.9"), Some(3));
        assert_eq!(at(&t, "192.0.2.1"), Some(4));
        assert_eq!(at(&t, "fd00:1:2::1"), Some(6));
        assert_eq!(at(&t, "fd00:9::1"), Some(5));
        assert_eq!(at(&t, "2001:db8::1"), None, "no IPv6 default route");
    }

    #[test]
    fn host_bits_of_a_prefix_do_not_matter() {
        let t = table(&[("10.1.2.77/24", 1), ("fd00::1234/120", 2)]);
        assert_eq!(at(&t, "10.1.2.1"), Some(1));
        assert_eq!(at(&t, "fd00::12ff"), Some(2));
        assert_eq!(at(&t, "fd00::1300"), None);
    }

    #[test]
    fn removing_a_peer_leaves_the_others() {
        let mut t = table(&[("10.1.0.0/16", 1), ("10.1.2.0/24", 2), ("fd00::/64", 2)]);
        t.remove_peer(2);
        assert_eq!(at(&t, "10.1.2.1"), Some(1));
        assert_eq!(at(&t, "fd00::1"), None);
    }

    #[test]
    fn inserting_a_prefix_again_moves_it_and_says_from_where() {
        let mut t = table(&[("10.1.2.0/24", 1)]);
        assert_eq!(t.insert("10.1.2.0/24".parse().expect("net"), 2), Some(1));
        assert_eq!(at(&t, "10.1.2.1"), Some(2));
    }
}
