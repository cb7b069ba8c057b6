//! Replaying many entries at once. The chain is sequential, but what an entry's judgement needs
//! from no state (its hash, its size, its signature) is not: entries are cut into pieces, each
//! piece's signatures are checked as one ed25519 batch, pieces are judged on every core, and the
//! calling thread applies them in order as they come, judging pieces itself when none is ready.
//!
//! A signature is checked ahead with the key the entry will most likely be judged with: the
//! author's registered key, or the key a `twin` entry earlier in the window registers. When the
//! chain, applying in order, judges with another key (that `twin` entry was refused), it checks
//! the signature again itself; so a replay judges exactly as entries applied one by one.

use std::{
    collections::HashMap,
    num::NonZero,
    ops::Range,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
};

use super::{
    chain::{Chain, Prejudged},
    keys::PublicKey,
    model::{Body, Entry},
    rules::Rejection,
};

/// Entries whose signatures are checked as one batch. In a batch a signature costs about a
/// third of a check alone, less when a key signs several; on the ledger bench 256 did about
/// 8% better than 128 and as well as 512. A batch that fails, having a bad signature, is
/// checked again one by one to tell which: a bad entry costs this many single checks (some
/// 10 ms), so replaying a ledger full of them is at worst about 1.3 times as slow as checking
/// every signature alone.
const PIECE: usize = 256;

/// Fewer entries than this are judged on the calling thread: a follower's usual handful is
/// not worth a thread.
const PARALLEL_FROM: usize = 2 * PIECE;

/// Entries taken from the iterator at a time: what is judged ahead (about 100 bytes an entry)
/// stays bounded however long the ledger, and the pause at a window's end, where the other
/// cores wait for the last piece to be applied, comes once in some 100 ms of work.
const WINDOW: usize = 64 * PIECE;

/// Applies `entries` in order, telling `refused` about each entry that changed nothing.
pub(super) fn apply_all<'a>(
    chain: &mut Chain,
    entries: impl IntoIterator<Item = &'a Entry>,
    mut refused: impl FnMut(&Entry, Rejection),
) {
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let window: Vec<&Entry> = entries.by_ref().take(WINDOW).collect();
        apply_window(chain, &window, &mut refused);
    }
}

/// Applies one window of entries: its pieces judged on every core, applied here in order.
fn apply_window(
    chain: &mut Chain,
    entries: &[&Entry],
    refused: &mut impl FnMut(&Entry, Rejection),
) {
    let signers = signers(chain, entries);
    let pieces = Pieces {
        entries,
        signers: &signers,
        next: AtomicUsize::new(0),
    };
    let cores = thread::available_parallelism().map_or(1, NonZero::get);
    // The calling thread judges too, between applying.
    let helpers = if entries.len() < PARALLEL_FROM {
        0
    } else {
        cores - 1
    };
    thread::scope(|scope| {
        let (done, judged) = mpsc::channel();
        for _ in 0..helpers {
            let done = done.clone();
            let pieces = &pieces;
            // No thread to be had: the calling thread judges its share.
            let _ = thread::Builder::new()
                .name("ledger-verify".into())
                .spawn_scoped(scope, move || {
                    while let Some(piece) = pieces.claim() {
                        if done.send((piece, pieces.judge(piece))).is_err() {
                            break;
                        }
                    }
                });
        }
        drop(done);
        let mut ready: HashMap<usize, Vec<Prejudged>> = HashMap::new();
        for piece in 0..pieces.count() {
            let prejudged = loop {
                if let Some(prejudged) = ready.remove(&piece) {
                    break prejudged;
                }
                if let Some(other) = pieces.claim() {
                    ready.insert(other, pieces.judge(other));
                    continue;
                }
                match judged.recv() {
                    Ok((other, prejudged)) => {
                        ready.insert(other, prejudged);
                    }
                    // Every helper is gone (they stop only once all pieces are claimed): this
                    // piece's helper died, the scope reports it; it is judged here meanwhile.
                    Err(mpsc::RecvError) => break pieces.judge(piece),
                }
            };
            for (entry, pre) in entries[pieces.range(piece)].iter().zip(&prejudged) {
                if let Err(reason) = chain.apply_prejudged(entry, pre) {
                    refused(entry, reason);
                }
            }
        }
    });
}

/// Entries cut into pieces of [`PIECE`], handed out to whichever thread asks next.
struct Pieces<'e, 'a> {
    entries: &'e [&'a Entry],
    signers: &'e [Option<PublicKey>],
    /// The first piece no thread has taken yet.
    next: AtomicUsize,
}

impl Pieces<'_, '_> {
    fn count(&self) -> usize {
        self.entries.len().div_ceil(PIECE)
    }

    fn range(&self, piece: usize) -> Range<usize> {
        piece * PIECE..((piece + 1) * PIECE).min(self.entries.len())
    }

    /// Takes the next piece nobody has taken, if any is left.
    fn claim(&self) -> Option<usize> {
        let piece = self.next.fetch_add(1, Ordering::Relaxed);
        (piece < self.count()).then_some(piece)
    }

    fn judge(&self, piece: usize) -> Vec<Prejudged> {
        let range = self.range(piece);
        Prejudged::of_many(&self.entries[range.clone()], &self.signers[range])
    }
}

/// The key each entry of `entries` will most likely be judged with.
fn signers(chain: &Chain, entries: &[&Entry]) -> Vec<Option<PublicKey>> {
    let mut pending: HashMap<&str, PublicKey> = HashMap::new();
    entries
        .iter()
        .map(|entry| {
            let signer = chain.signer(entry, |author| pending.get(author).copied());
            if let Body::Twin { name, public_key } = &entry.body {
                pending.entry(name.as_str()).or_insert(*public_key);
            }
            signer
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::{
        ledger::{Replay, SigningKey, keys::Signature, sign_next},
        vocab::WgKey,
    };

    /// Builds a ledger entry by entry, linking each to the last whatever the rules say.
    #[derive(Default)]
    struct Builder {
        chain: Chain,
        entries: Vec<Entry>,
    }

    impl Builder {
        fn push(&mut self, author: &str, body: Body, key: &SigningKey, forge: bool) {
            let mut entry = sign_next(&self.chain, author, body, key);
            if forge {
                entry.signature = Signature([7; 64]);
            }
            let _ = self.chain.apply(&entry);
            self.entries.push(entry);
        }
    }

    fn key(n: u32) -> SigningKey {
        let mut seed = [9; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        SigningKey::from_seed(seed)
    }

    fn twin(name: &str, key: &SigningKey) -> Body {
        Body::Twin {
            name: name.into(),
            public_key: key.public(),
        }
    }

    fn node(id: u32, farmer: &str) -> Body {
        let mut wireguard_key = [1; 32];
        wireguard_key[..4].copy_from_slice(&id.to_le_bytes());
        Body::Node {
            node_id: id,
            farmer: farmer.into(),
            wireguard_public_key: WgKey(wireguard_key),
            endpoints: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
            public_ipv4: None,
            public_ipv6: None,
        }
    }

    /// Applies `entries` one at a time: the outcome every replay must have.
    fn one_by_one(entries: &[Entry]) -> (Chain, Vec<(u64, Rejection)>) {
        let mut chain = Chain::default();
        let mut refused = Vec::new();
        for entry in entries {
            if let Err(reason) = chain.apply(entry) {
                refused.push((entry.seq, reason));
            }
        }
        (chain, refused)
    }

    fn replayed(entries: &[Entry]) -> (Replay, Vec<(u64, Rejection)>) {
        let mut replay = Replay::default();
        replay.extend(entries);
        let refused = replay
            .refused
            .iter()
            .map(|r| (r.seq, r.reason.clone()))
            .collect();
        (replay, refused)
    }

    /// Twins registered, refused and registered again inside one replay: the keys checked
    /// ahead are not always the keys the chain judges with, and the outcome must not show it.
    #[test]
    fn a_replay_judges_exactly_as_entries_one_by_one() {
        let mut b = Builder::default();
        for i in 0..150 {
            let name = format!("t{i}");
            b.push(&name, twin(&name, &key(i)), &key(i), false);
            b.push(&name, node(i + 1, &name), &key(i), false);
        }
        // `x` never registers (its twin is forged), yet signs.
        b.push("x", twin("x", &key(1000)), &key(1000), true);
        b.push("x", node(1000, "x"), &key(1000), false);
        // `y` fails with one key, then registers another; then signs with each.
        b.push("y", twin("y", &key(1001)), &key(1001), true);
        b.push("y", twin("y", &key(1002)), &key(1002), false);
        b.push("y", node(1001, "y"), &key(1002), false);
        b.push("y", node(1002, "y"), &key(1001), false);
        // And a duplicate twin with a valid signature of its own key.
        b.push("t3", twin("t3", &key(1003)), &key(1003), false);
        for i in 150..300 {
            let name = format!("t{i}");
            b.push(&name, twin(&name, &key(i)), &key(i), false);
            b.push(&name, node(i + 1, &name), &key(i), true);
        }
        assert!(b.entries.len() >= PARALLEL_FROM);

        let (one_by_one, expected) = one_by_one(&b.entries);
        let (batched, got) = replayed(&b.entries);
        assert_eq!(got, expected);
        assert_eq!(batched.chain.state(), one_by_one.state());
        assert_eq!(batched.chain.head_hash(), one_by_one.head_hash());
        // The cases above happened: 2 forged twins, x unknown, y's second node, t3 again, 150
        // forged nodes.
        assert_eq!(expected.len(), 2 + 1 + 1 + 1 + 150, "{expected:?}");
        assert!(batched.chain.state().nodes.contains_key(&1001));
        assert!(!batched.chain.state().nodes.contains_key(&1002));
    }

    /// One forged signature among good ones, in the middle of a piece whose other signatures
    /// are all good: that entry alone is refused, by its seq, and every other one applies.
    #[test]
    fn a_forged_signature_deep_in_a_long_chain_is_refused_by_its_seq() {
        const FORGED: u64 = 2 * PIECE as u64 + 37;
        let farmer = key(1);
        let mut b = Builder::default();
        b.push("farmer", twin("farmer", &farmer), &farmer, false);
        for id in 1..4 * PIECE as u32 {
            let forge = b.entries.len() as u64 == FORGED;
            b.push("farmer", node(id, "farmer"), &farmer, forge);
        }
        assert!(b.entries.len() >= PARALLEL_FROM);

        let (replay, refused) = replayed(&b.entries);
        assert_eq!(
            refused,
            vec![(
                FORGED,
                Rejection::BadSignature {
                    author: "farmer".into()
                }
            )]
        );
        let nodes = &replay.chain.state().nodes;
        let forged_node = FORGED as u32;
        assert!(!nodes.contains_key(&forged_node));
        assert!((1..forged_node).all(|id| nodes.contains_key(&id)));
        assert_eq!(nodes.len(), 4 * PIECE - 2);
        let (one_by_one, expected) = one_by_one(&b.entries);
        assert_eq!(refused, expected);
        assert_eq!(replay.chain.state(), one_by_one.state());
    }
}
