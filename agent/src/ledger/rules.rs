//! Why an entry is refused: one variant per rule, naming the field. Text that came from the
//! entry is kept as [`UserText`]: quoted cut short.

use std::net::IpAddr;

use crate::vocab::UserText;

/// A rejected entry's reason. The entry changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("seq: expected {expected}, got {got} (entries are numbered from 0 without gaps)")]
    Sequence { expected: u64, got: u64 },
    #[error("prev: does not match the hash of entry {seq} (the chain is broken or was rewritten)")]
    BrokenChain { seq: u64 },
    #[error("author: no twin named `{author}` is registered")]
    UnknownAuthor { author: UserText },
    #[error("signature: does not verify with the key of `{author}`")]
    BadSignature { author: UserText },
    #[error(
        "{field}: `{value}` is not a valid name (1-{max} of a-z, 0-9, `-`, starting with a letter or digit)"
    )]
    InvalidName {
        field: &'static str,
        value: UserText,
        max: usize,
    },
    #[error("entry: {bytes} bytes is more than the {max} an entry may have")]
    TooLarge { bytes: usize, max: usize },
    #[error("{field}: {count} is more than the {max} allowed")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("wireguard_public_key: already used by {by}; every node and access peer needs its own")]
    KeyInUse { by: KeyUser },
    #[error("{field}: gateway `{gateway}` stands on {address}; delete it before the address goes")]
    PublicAddressInUse {
        field: &'static str,
        address: IpAddr,
        gateway: UserText,
    },
    #[error("twin: `{name}` is already registered")]
    DuplicateTwin { name: UserText },
    #[error("twin: the author must be the twin being registered (`{name}`), not `{author}`")]
    TwinAuthor { name: UserText, author: UserText },
    #[error("public_key: `{name}`'s key is a point of small order, for which anyone can sign")]
    WeakTwinKey { name: UserText },
    #[error("node_id: must be 1 or more")]
    ZeroNodeId,
    #[error("farmer: the author `{author}` cannot register a node for `{farmer}`")]
    NotFarmer { author: UserText, farmer: UserText },
    #[error("node {node_id}: belongs to `{owner}`; only its farmer may update it")]
    NodeOwned { node_id: u32, owner: UserText },
    #[error("endpoints: a node needs at least one underlay address")]
    NoEndpoints,
    #[error("{field}: {address} cannot be used (unspecified, loopback or multicast)")]
    BadAddress {
        field: &'static str,
        address: IpAddr,
    },
    #[error("{field}: {address} is an IPv4 address; give it as public_ipv4")]
    Ipv4Mapped {
        field: &'static str,
        address: std::net::Ipv6Addr,
    },
    #[error("{field}: node {node_id} is not registered")]
    UnknownNode { field: &'static str, node_id: u32 },
    #[error("network `{name}`: owned by `{owner}`; only the owner may change it")]
    NotOwner { name: UserText, owner: UserText },
    #[error("version: must grow, {current} is current and {got} was given")]
    StaleVersion { current: u64, got: u64 },
    #[error("{field}: {value} {problem}")]
    BadPrefix {
        field: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error("members: node {node_id} is listed twice")]
    DuplicateMember { node_id: u32 },
    #[error("members: subnets {first} and {second} overlap")]
    OverlappingSubnets { first: String, second: String },
    #[error("wireguard_listen_port: {port} {problem}")]
    BadPort { port: u16, problem: String },
    #[error("members: node {node_id} still hosts `{object}` of this network; delete it first")]
    MemberInUse { node_id: u32, object: UserText },
    #[error("network: `{owner}/{name}` does not exist")]
    UnknownNetwork { owner: UserText, name: UserText },
    #[error("node_id: node {node_id} is not a member of network `{network}`")]
    NotMember { node_id: u32, network: UserText },
    #[error("{kind} `{name}` already exists; delete it first")]
    Exists { kind: &'static str, name: UserText },
    #[error("{field}: {address} is outside {subnet}")]
    OutsideSubnet {
        field: &'static str,
        address: IpAddr,
        subnet: String,
    },
    #[error("{field}: {address} is reserved in {subnet} (network, gateway or broadcast address)")]
    ReservedAddress {
        field: &'static str,
        address: IpAddr,
        subnet: String,
    },
    #[error("{field}: {address} is already used by `{by}` in this network")]
    AddressInUse {
        field: &'static str,
        address: IpAddr,
        by: UserText,
    },
    #[error(
        "{field}: {address} is the gateway endpoint's address in {subnet} (the last host of a \
         member's IPv4 subnet, `::fe` in its IPv6 subnet)"
    )]
    GatewayEndpointAddress {
        field: &'static str,
        address: IpAddr,
        subnet: String,
    },
    #[error(
        "proxy_protocol: only a tls_passthrough gateway sends PROXY headers; an http gateway \
         passes the client's address in X-Forwarded-For"
    )]
    ProxyProtocolWithHttp,
    #[error("hostnames: `{hostname}` is listed twice")]
    DuplicateHostname { hostname: UserText },
    #[error(
        "hostnames: `{hostname}` is served by gateway `{gateway}` of another owner; it is free \
         again once that gateway is deleted"
    )]
    HostnameTaken {
        hostname: UserText,
        gateway: UserText,
    },
    #[error(
        "hostnames: `{hostname}` is already served in this mode on node {node_id} by `{gateway}`; \
         a second gateway for it belongs on another node"
    )]
    HostnameOnNode {
        hostname: UserText,
        node_id: u32,
        gateway: UserText,
    },
    #[error("node_id: node {node_id} has no public address for a gateway")]
    NoPublicAddress { node_id: u32 },
    #[error("hostnames: `{value}` is not a DNS name")]
    BadHostname { value: UserText },
    #[error("{field}: must not be empty")]
    Empty { field: &'static str },
    #[error("allowed_ips: {prefix} overlaps the subnet of member node {node_id}")]
    AccessOverlapsMember { prefix: String, node_id: u32 },
    #[error("allowed_ips: {prefix} overlaps the allowed IPs of access peer `{other}`")]
    AccessOverlapsAccess { prefix: String, other: UserText },
    #[error("{kind} `{name}`: the author has no such object")]
    UnknownObject { kind: &'static str, name: UserText },
    #[error("network `{name}`: still has {kind} `{object}`; delete it first")]
    NetworkInUse {
        name: UserText,
        kind: &'static str,
        object: UserText,
    },
}

/// What a WireGuard key on the grid belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyUser {
    Node(u32),
    /// An access peer, by its `<owner>/<name>` key.
    Access(String),
}

impl std::fmt::Display for KeyUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyUser::Node(id) => write!(f, "node {id}"),
            KeyUser::Access(key) => write!(f, "access peer `{}`", UserText::new(key)),
        }
    }
}

/// At most `max` items in the list `field`.
pub fn too_many<T>(field: &'static str, items: &[T], max: usize) -> Result<(), Rejection> {
    if items.len() > max {
        return Err(Rejection::TooMany {
            field,
            count: items.len(),
            max,
        });
    }
    Ok(())
}

/// `a-z`, `0-9`, `-`, not starting with `-`.
pub fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), Rejection> {
    let ok = !value.is_empty()
        && value.len() <= max
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Rejection::InvalidName {
            field,
            value: value.into(),
            max,
        })
    }
}

/// A DNS host name: labels of letters, digits and `-`, dots between, 253 characters at most.
pub fn is_hostname(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').count() >= 2
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
