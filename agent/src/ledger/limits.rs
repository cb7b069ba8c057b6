//! How big an entry and its parts may be. Every limit keeps the work of judging one entry, and
//! the state it adds, small and predictable on a node: a ledger is written by strangers.
//! `docs/ledger.md` ("Limits") lists them for users.

/// Largest entry, as one YAML document in a file or as its JSON in etcd. A network with the
/// most members allowed takes about half of it.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// Most flow collections (`[` or `{`) one document may open, counted wherever they appear,
/// even inside quotes or comments: the count bounds how deep the document can nest however it
/// is quoted, and the YAML parser's work per token grows with that depth. Block style, which
/// the ledger writes, opens none; a body written by hand in flow style opens one per member.
pub const MAX_FLOW_OPENINGS: usize = 512;

/// Longest twin name.
pub const MAX_TWIN_NAME: usize = 20;

/// Longest object name (network, container, gateway, access): `<twin>.<name>` must fit the
/// agent's 48-character container names.
pub const MAX_OBJECT_NAME: usize = 24;

/// Most underlay endpoints of a node: a multi-homed node has a few uplinks, and every peer
/// probes each endpoint to choose its path.
pub const MAX_ENDPOINTS: usize = 8;

/// Most member nodes of a network: every member is a WireGuard peer of every other, so a
/// network's cost on each member grows with this; 256 members fill half of an entry.
pub const MAX_MEMBERS: usize = 256;

/// Most host names one gateway serves; more names can use more gateways.
pub const MAX_HOSTNAMES: usize = 32;

/// Most backends of one gateway: each is health-checked.
pub const MAX_BACKENDS: usize = 32;

/// Most prefixes an access peer may use: a site behind a router announces a few, and every
/// one becomes a route on its member node.
pub const MAX_ALLOWED_IPS: usize = 64;
