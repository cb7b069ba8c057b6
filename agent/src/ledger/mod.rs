//! The reservation ledger: signed, hash-chained entries and the grid state they build.
//!
//! - [`model`]: entries, bodies, canonical bytes.
//! - [`keys`]: ed25519 and WireGuard keys, signatures, hashes, key files.
//! - [`chain`]: an entry's place in the hash chain and its signature.
//! - [`state`]: the grid state and each kind's rules; [`rules`] says why an entry is refused,
//!   [`address`] which addresses may be used.
//! - [`document`]: one YAML document per entry, guarded by the [`limits`] before it is parsed.
//! - [`source`]: where a ledger lives and the interface of every source: [`file`], the YAML
//!   file followed as it grows, and [`etcd`], a cluster reached outward.
//!
//! [`replay`] turns a list of entries into a state plus the refused entries and why.

pub mod address;
mod batch;
pub mod chain;
pub mod document;
pub mod etcd;
pub mod file;
pub mod keys;
pub mod limits;
pub mod model;
pub mod rules;
pub mod source;
pub mod state;

pub use chain::Chain;
pub use keys::{Hash, PublicKey, SigningKey};
pub use model::{Body, Entry};
pub use rules::Rejection;
pub use state::GridState;

/// An entry that changed nothing, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub seq: u64,
    pub reason: Rejection,
}

/// The outcome of replaying entries.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub chain: Chain,
    pub refused: Vec<Refused>,
}

impl Replay {
    /// Applies more entries, recording the refused ones. Signatures of many entries are
    /// checked on every core first ([`batch`]); the outcome is the same as applying them one
    /// by one.
    pub fn extend<'a>(&mut self, entries: impl IntoIterator<Item = &'a Entry>) {
        let refused = &mut self.refused;
        batch::apply_all(&mut self.chain, entries, |entry, reason| {
            refused.push(Refused {
                seq: entry.seq,
                reason,
            });
        });
    }
}

/// Replays entries from the start.
pub fn replay<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Replay {
    let mut replay = Replay::default();
    replay.extend(entries);
    replay
}

/// Makes the next entry of `chain`: numbered, linked and signed by `author` with `key`.
pub fn sign_next(chain: &Chain, author: &str, body: Body, key: &SigningKey) -> Entry {
    let mut entry = Entry {
        seq: chain.next_seq(),
        prev: chain.head_hash(),
        author: author.to_owned(),
        body,
        signature: keys::Signature([0; 64]),
    };
    entry.signature = key.sign(&entry.signing_bytes());
    entry
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
