//! The hash chain: an entry's place (seq, prev) and its signature, before its content.
//!
//! [`Chain::apply`] judges an entry in two steps. Its place in the chain (seq, prev) is judged
//! against the last entry that was part of the chain; an entry out of place never becomes part
//! of it, so rewriting history breaks every later entry. Its content (signature, then the kind's
//! rules in [`super::state`]) is judged against the last good state; an entry refused for its
//! content stays in the chain but changes nothing.

use super::{
    keys::{Hash, PublicKey, SignatureCheck, verify, verify_each},
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
        let signer = self.signer(entry, |_| None);
        self.apply_prejudged(entry, &Prejudged::of(entry, signer))
    }

    /// Applies one entry with what was judged of it beforehand (see [`super::batch`]).
    pub(super) fn apply_prejudged(
        &mut self,
        entry: &Entry,
        pre: &Prejudged,
    ) -> Result<(), Rejection> {
        self.check_place(entry)?;
        // In the chain from here on, whatever its content.
        self.head = Some((entry.seq, pre.hash));
        if pre.bytes > MAX_ENTRY_BYTES {
            return Err(Rejection::TooLarge {
                bytes: pre.bytes,
                max: MAX_ENTRY_BYTES,
            });
        }
        self.check_signature(entry, pre)?;
        // Every rule is checked before the one insertion or removal that applies a body, so a
        // refused body leaves the state as it was without copying it (the tests hold this).
        self.state.apply_body(&entry.author, &entry.body)?;
        self.last_applied = Some(entry.seq);
        Ok(())
    }

    /// The key `entry` will be judged with, as far as the state and `pending` (twins that
    /// entries before it, not yet applied, register) tell: the key a `twin` registers, else
    /// the author's. Twins are never removed or re-keyed, so a registered author's key is
    /// final.
    pub(super) fn signer(
        &self,
        entry: &Entry,
        pending: impl FnOnce(&str) -> Option<PublicKey>,
    ) -> Option<PublicKey> {
        match &entry.body {
            Body::Twin { public_key, .. } => Some(*public_key),
            _ => self
                .state
                .twins
                .get(&entry.author)
                .copied()
                .or_else(|| pending(&entry.author)),
        }
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

impl Chain {
    /// Whether the author's key (for a `twin`, the key it registers) signed `entry`; a
    /// signature checked beforehand counts when it was checked with that key.
    fn check_signature(&self, entry: &Entry, pre: &Prejudged) -> Result<(), Rejection> {
        let Some(key) = self.signer(entry, |_| None) else {
            return Err(Rejection::UnknownAuthor {
                author: (&entry.author).into(),
            });
        };
        let valid = match pre.signature {
            Some((checked, valid)) if checked == key => valid,
            _ => verify(&key, &entry.signing_bytes(), &entry.signature),
        };
        if valid {
            Ok(())
        } else {
            Err(Rejection::BadSignature {
                author: (&entry.author).into(),
            })
        }
    }
}

/// What can be judged of an entry without the state, and so on any core: its hash, its size,
/// and its signature by the key it will most likely be judged with.
pub(super) struct Prejudged {
    hash: Hash,
    bytes: usize,
    /// The key tried and whether the signature verifies with it.
    signature: Option<(PublicKey, bool)>,
}

impl Prejudged {
    /// One entry, its signature checked alone.
    pub(super) fn of(entry: &Entry, signer: Option<PublicKey>) -> Self {
        let (signing, hash, bytes) = encode(entry);
        Self {
            hash,
            bytes,
            signature: signer.map(|key| (key, verify(&key, &signing, &entry.signature))),
        }
    }

    /// Many entries, their signatures checked as one batch ([`verify_each`]); `signers` gives
    /// each entry's key, in order.
    pub(super) fn of_many(entries: &[&Entry], signers: &[Option<PublicKey>]) -> Vec<Self> {
        let encoded: Vec<_> = entries.iter().map(|entry| encode(entry)).collect();
        let checks: Vec<SignatureCheck<'_>> = entries
            .iter()
            .zip(signers)
            .zip(&encoded)
            .filter_map(|((entry, signer), (signing, ..))| {
                signer.map(|key| (key, signing.as_slice(), entry.signature))
            })
            .collect();
        let mut valid = verify_each(&checks).into_iter();
        signers
            .iter()
            .zip(encoded)
            .map(|(signer, (_, hash, bytes))| Self {
                hash,
                bytes,
                signature: signer.map(|key| (key, valid.next().unwrap_or(false))),
            })
            .collect()
    }
}

/// An entry's signing bytes, and the hash and size of its canonical bytes, from one encoding.
fn encode(entry: &Entry) -> (Vec<u8>, Hash, usize) {
    let (signing, canonical) = entry.signing_and_canonical_bytes();
    let hash = Hash(*blake3::hash(&canonical).as_bytes());
    (signing, hash, canonical.len())
}
