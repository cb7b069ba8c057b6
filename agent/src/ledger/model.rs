//! Ledger entries as people write them (YAML) and as they are signed (canonical JSON).
//!
//! Field names follow Zero-OS's network workload where they mean the same thing
//! (`ip_range`, `subnet`, `wireguard_listen_port`, `wireguard_public_key`, `allowed_ips`,
//! `endpoint`). No private key ever appears here: the ledger is public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::keys::{Hash, PublicKey, Signature};
use crate::vocab::{GatewayMode, WgKey};

/// One signed ledger entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the ledger: 0 for the first entry, then strictly +1.
    pub seq: u64,
    /// blake3 of the previous entry's canonical bytes (64 zero digits for the first).
    pub prev: Hash,
    /// The twin that signed the entry.
    pub author: String,
    /// What the entry does.
    pub body: Body,
    /// ed25519 signature by `author` over the canonical signing bytes.
    pub signature: Signature,
}

/// What an entry does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// Registers an identity; signed by the key it registers.
    Twin { name: String, public_key: PublicKey },
    /// Registers (or, by its farmer, updates) a node.
    Node {
        node_id: u32,
        /// The owning twin; must be the author.
        farmer: String,
        wireguard_public_key: WgKey,
        /// Underlay addresses the node's WireGuard ports are reached on (several when
        /// multi-homed); the port is taken from each network's member entry.
        endpoints: Vec<IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_ipv4: Option<Ipv4Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_ipv6: Option<Ipv6Addr>,
    },
    /// Creates or (by its owner, with a greater version) updates a private network.
    Network {
        name: String,
        version: u64,
        ip_range: Ipv4Net,
        ipv6_range: Ipv6Net,
        members: Vec<Member>,
    },
    /// Attaches a container to a network on one of its member nodes.
    Container {
        name: String,
        network: String,
        node_id: u32,
        ipv4: Ipv4Addr,
        /// Derived from the member's IPv6 subnet and the IPv4 host number when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6: Option<Ipv6Addr>,
    },
    /// A web gateway on a member node with a public address.
    Gateway {
        name: String,
        network: String,
        node_id: u32,
        hostnames: Vec<String>,
        backends: Vec<SocketAddr>,
        mode: GatewayMode,
        /// Whether each backend connection starts with a PROXY protocol v2 header carrying the
        /// client's address: only for `tls_passthrough`, where the address is otherwise lost
        /// (an `http` gateway passes it in `X-Forwarded-For`). Left out when false, so entries
        /// written before the field existed keep their signed bytes.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        proxy_protocol: bool,
    },
    /// An external WireGuard peer of a network, connecting through one member node.
    Access {
        name: String,
        network: String,
        node_id: u32,
        wireguard_public_key: WgKey,
        allowed_ips: Vec<IpNet>,
    },
    /// Removes one of the author's objects.
    Delete { object: ObjectKind, name: String },
}

/// A network's presence on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub node_id: u32,
    /// The node's IPv4 subnet, a /24 inside `ip_range`.
    pub subnet: Ipv4Net,
    /// The node's IPv6 subnet, a /64 inside `ipv6_range`.
    pub subnet_v6: Ipv6Net,
    pub wireguard_listen_port: u16,
}

/// Kinds of objects a `delete` can remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Network,
    Container,
    Gateway,
    Access,
}

impl Body {
    /// The kind's name, as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Twin { .. } => "twin",
            Body::Node { .. } => "node",
            Body::Network { .. } => "network",
            Body::Container { .. } => "container",
            Body::Gateway { .. } => "gateway",
            Body::Access { .. } => "access",
            Body::Delete { .. } => "delete",
        }
    }
}

/// What the signature covers: everything but the signature, in this field order.
#[derive(Serialize)]
pub struct Unsigned<'a> {
    pub seq: u64,
    pub prev: &'a Hash,
    pub author: &'a str,
    pub body: &'a Body,
}

impl Entry {
    /// The bytes the author signs: compact JSON of `{seq, prev, author, body}` (see
    /// `docs/ledger.md`).
    pub fn signing_bytes(&self) -> Vec<u8> {
        canonical(&Unsigned {
            seq: self.seq,
            prev: &self.prev,
            author: &self.author,
            body: &self.body,
        })
    }

    /// The bytes the next entry's `prev` hashes: compact JSON of the whole entry, signature
    /// included, so the chain commits to exactly what was signed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical(self)
    }

    /// [`Entry::signing_bytes`] and [`Entry::canonical_bytes`] from one encoding: an entry's
    /// members are those of [`Unsigned`] then `signature`, so its canonical bytes are the
    /// signing bytes with the signature member added before the closing brace.
    pub fn signing_and_canonical_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let signing = self.signing_bytes();
        let Some((b'}', members)) = signing.split_last() else {
            return (signing, self.canonical_bytes());
        };
        let signature = self.signature.to_string();
        let mut canonical = Vec::with_capacity(signing.len() + signature.len() + 16);
        canonical.extend_from_slice(members);
        canonical.extend_from_slice(b",\"signature\":\"");
        // Standard base64 needs no JSON escape.
        canonical.extend_from_slice(signature.as_bytes());
        canonical.extend_from_slice(b"\"}");
        (signing, canonical)
    }

    /// blake3 of [`Entry::canonical_bytes`].
    pub fn hash(&self) -> Hash {
        Hash(*blake3::hash(&self.canonical_bytes()).as_bytes())
    }
}

/// Compact JSON in struct field order. Every type here serializes deterministically: structs
/// and enums only (no maps), addresses and prefixes in their canonical text form, keys and
/// signatures in standard base64, hashes in lowercase hex.
fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
