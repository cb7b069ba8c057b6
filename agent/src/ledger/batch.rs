//! Replaying many entries at once. The chain is sequential, but what an entry's judgement needs
//! from no state (its hash, its size, its signature) is not: those are judged for a batch on
//! every core, then the batch is applied in order.
//!
//! A signature is checked ahead with the key the entry will most likely be judged with: the
//! author's registered key, or the key a `twin` entry earlier in the batch registers. When the
//! chain, applying in order, judges with another key (that `twin` entry was refused), it checks
//! the signature again itself; so a batch judges exactly as entries applied one by one.

use std::{collections::HashMap, num::NonZero, thread};

use super::{
    chain::{Chain, Prejudged},
    keys::PublicKey,
    model::{Body, Entry},
    rules::Rejection,
};

/// Entries judged ahead at once: a batch of ed25519 checks (~40 us each) dwarfs the cost of
/// starting threads (~50 us), and a few thousand prejudged entries take little memory.
const BATCH: usize = 4096;

/// Fewer entries than this are judged on the calling thread: a follower's usual handful is
/// not worth a thread.
const PARALLEL_FROM: usize = 64;

/// Applies `entries` in order, telling `refused` about each entry that changed nothing.
pub(super) fn apply_all<'a>(
    chain: &mut Chain,
    entries: impl IntoIterator<Item = &'a Entry>,
    mut refused: impl FnMut(&Entry, Rejection),
) {
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let batch: Vec<&Entry> = entries.by_ref().take(BATCH).collect();
        let signers = signers(chain, &batch);
        for (entry, pre) in batch.iter().zip(prejudge(&batch, &signers)) {
            if let Err(reason) = chain.apply_prejudged(entry, &pre) {
                refused(entry, reason);
            }
        }
    }
}

/// The key each entry of `batch` will most likely be judged with.
fn signers(chain: &Chain, batch: &[&Entry]) -> Vec<Option<PublicKey>> {
    let mut pending: HashMap<&str, PublicKey> = HashMap::new();
    batch
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

/// [`Prejudged::of`] every entry of `batch`, on as many threads as there are cores.
fn prejudge(batch: &[&Entry], signers: &[Option<PublicKey>]) -> Vec<Prejudged> {
    let serial = |entries: &[&Entry], signers: &[Option<PublicKey>]| -> Vec<Prejudged> {
        entries
            .iter()
            .zip(signers)
            .map(|(entry, signer)| Prejudged::of(entry, *signer))
            .collect()
    };
    let threads = thread::available_parallelism().map_or(1, NonZero::get);
    if threads == 1 || batch.len() < PARALLEL_FROM {
        return serial(batch, signers);
    }
    let share = batch.len().div_ceil(threads);
    thread::scope(|scope| {
        let parts: Vec<_> = batch
            .chunks(share)
            .zip(signers.chunks(share))
            .map(|(entries, signers)| {
                let handle = thread::Builder::new()
                    .name("ledger-verify".into())
                    .spawn_scoped(scope, move || serial(entries, signers));
                (entries, signers, handle)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(entries, signers, handle)| match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: this share is judged here.
                Err(_) => serial(entries, signers),
            })
            .collect()
    })
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

    fn twin(name: &str, key: &SigningKey) -> Body {
        Body::Twin {
            name: name.into(),
            public_key: key.public(),
        }
    }

    fn node(id: u32, farmer: &str) -> Body {
        Body::Node {
            node_id: id,
            farmer: farmer.into(),
            wireguard_public_key: WgKey([(id % 251) as u8; 32]),
            endpoints: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
            public_ipv4: None,
            public_ipv6: None,
        }
    }

    /// Twins registered, refused and registered again inside one batch: the keys checked
    /// ahead are not always the keys the chain judges with, and the outcome must not show it.
    #[test]
    fn a_batch_judges_exactly_as_entries_one_by_one() {
        let key = |n: u8| SigningKey::from_seed([n; 32]);
        let mut b = Builder::default();
        for i in 0..40u8 {
            let name = format!("t{i}");
            b.push(&name, twin(&name, &key(i)), &key(i), false);
            b.push(&name, node(u32::from(i) + 1, &name), &key(i), false);
        }
        // `x` never registers (its twin is forged), yet signs.
        b.push("x", twin("x", &key(100)), &key(100), true);
        b.push("x", node(100, "x"), &key(100), false);
        // `y` fails with one key, then registers another; then signs with each.
        b.push("y", twin("y", &key(101)), &key(101), true);
        b.push("y", twin("y", &key(102)), &key(102), false);
        b.push("y", node(101, "y"), &key(102), false);
        b.push("y", node(102, "y"), &key(101), false);
        // And a duplicate twin with a valid signature of its own key.
        b.push("t3", twin("t3", &key(103)), &key(103), false);
        for i in 40..80u8 {
            let name = format!("t{i}");
            b.push(&name, twin(&name, &key(i)), &key(i), false);
            b.push(&name, node(u32::from(i) + 1, &name), &key(i), true);
        }
        assert!(b.entries.len() >= PARALLEL_FROM);

        let mut one_by_one = Chain::default();
        let mut expected = Vec::new();
        for entry in &b.entries {
            if let Err(reason) = one_by_one.apply(entry) {
                expected.push((entry.seq, reason));
            }
        }
        let mut batched = Replay::default();
        batched.extend(&b.entries);
        let got: Vec<_> = batched
            .refused
            .iter()
            .map(|r| (r.seq, r.reason.clone()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(batched.chain.state(), one_by_one.state());
        assert_eq!(batched.chain.head_hash(), one_by_one.head_hash());
        // The cases above happened: 2 forged twins, x unknown, y's second node, t3 again, 40
        // forged nodes.
        assert_eq!(expected.len(), 2 + 1 + 1 + 1 + 40, "{expected:?}");
        assert!(batched.chain.state().nodes.contains_key(&101));
        assert!(!batched.chain.state().nodes.contains_key(&102));
    }
}
