//! The hash chain: an entry's place (seq, prev) and its signature, before its content.
//!
//! [`Chain::apply`] judges an entry in two steps. Its place in the chain (seq, prev) is judged
//! against the last entry that was part of the chain; an entry out of place never becomes part
//! of it, so rewriting history breaks every later entry. Its content (signature, then the kind's
//! rules in [`super::state`]) is judged against the last good state; an entry refused for its
//! content stays in the chain but changes nothing.

use super::{
    keys::{Hash, verify},
    limits::MAX_ENTRY_BYTES,
    model::{Body, Entry},
    rules::Rejection,
    state::GridState,
};

/// A ledger being replayed: the chain's head and the state.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// The last entry that is part of the chain (seq and hash), if any.
    head: Option<(u64, Hash)>,
    state: GridState,
    /// The seq of the last entry that changed the state.
    last_applied: Option<u64>,
}

impl Chain {
    pub fn state(&self) -> &GridState {
        &self.state
    }

    /// The seq the next entry must carry.
    pub fn next_seq(&self) -> u64 {
        self.head.map_or(0, |(seq, _)| seq + 1)
    }

    /// The hash the next entry's `prev` must carry.
    pub fn head_hash(&self) -> Hash {
        self.head.map_or(Hash::default(), |(_, hash)| hash)
    }

    pub fn last_applied(&self) -> Option<u64> {
        self.last_applied
    }

    /// Applies one entry, or says why it changes nothing.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), Rejection> {
        self.check_place(entry)?;
        let bytes = entry.canonical_bytes();
        // In the chain from here on, whatever its content.
        self.head = Some((entry.seq, Hash(*blake3::hash(&bytes).as_bytes())));
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(Rejection::TooLarge {
                bytes: bytes.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        check_signature(&self.state, entry)?;
        // Every rule is checked before the one insertion or removal that applies a body, so a
        // refused body leaves the state as it was without copying it (the tests hold this).
        self.state.apply_body(&entry.author, &entry.body)?;
        self.last_applied = Some(entry.seq);
        Ok(())
    }

    /// Whether `entry` is the next one: numbered and linked to the head.
    fn check_place(&self, entry: &Entry) -> Result<(), Rejection> {
        if entry.seq != self.next_seq() {
            return Err(Rejection::Sequence {
                expected: self.next_seq(),
                got: entry.seq,
            });
        }
        if entry.prev != self.head_hash() {
            return Err(Rejection::BrokenChain {
                seq: entry.seq.saturating_sub(1),
            });
        }
        Ok(())
    }
}

/// Whether the author's key (for a `twin`, the key it registers) signed `entry`.
fn check_signature(state: &GridState, entry: &Entry) -> Result<(), Rejection> {
    let key = match (&entry.body, state.twins.get(&entry.author)) {
        (Body::Twin { public_key, .. }, _) => *public_key,
        (_, Some(key)) => *key,
        (_, None) => {
            return Err(Rejection::UnknownAuthor {
                author: (&entry.author).into(),
            });
        }
    };
    if verify(&key, &entry.signing_bytes(), &entry.signature) {
        Ok(())
    } else {
        Err(Rejection::BadSignature {
            author: (&entry.author).into(),
        })
    }
}
