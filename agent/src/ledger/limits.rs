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
