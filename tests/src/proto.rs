//! The protocol numbers the tests write into frames and plans, spelled once.
//!
//! They are taken from the standards (IEEE EtherTypes, IANA protocol and port numbers), not from
//! `gridnet-common`: a test that borrowed the datapath's own constants could not catch one that
//! is wrong.

/// EtherType of IPv4 (IEEE 802.3).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of LLDP (IEEE 802.1AB): a frame no node needs from the internet.
pub const ETHERTYPE_LLDP: u16 = 0x88cc;

/// IP protocol number of TCP (IANA).
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP (IANA).
pub const IPPROTO_UDP: u8 = 17;

/// The UDP port WireGuard listens on by default, which the tests give their networks.
pub const WIREGUARD_PORT: u16 = 51820;
/// HTTPS, the port a TLS-passthrough gateway opens.
pub const HTTPS_PORT: u16 = 443;

/// etcd's client port (IANA).
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port (IANA).
pub const ETCD_PEER_PORT: u16 = 2380;
