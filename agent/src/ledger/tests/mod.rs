//! The ledger's rules, one bad entry at a time, and random damage to a good chain.

mod documents;
mod gateways;
mod refusals;
mod rules;

use proptest::prelude::*;

use super::{
    fixture::{Grid, key},
    keys::Signature,
    *,
};
use crate::vocab::WgKey;

#[test]
fn a_good_chain_builds_the_grid() {
    let grid = Grid::new();
    let state = grid.chain.state();
    assert_eq!(state.twins.len(), 3);
    assert_eq!(state.nodes.len(), 2);
    assert_eq!(state.networks.len(), 2);
    assert_eq!(
        state.containers["alice/web1"].ipv6,
        "fd00:1:0:1::2".parse::<std::net::Ipv6Addr>().expect("addr")
    );
    assert_eq!(state.gateways["alice/www"].node_id, 1);
    assert_eq!(state.access["alice/laptop"].node_id, 2);
    let replayed = replay(&grid.entries);
    assert!(replayed.refused.is_empty());
    assert_eq!(replayed.chain.state(), state);
}

/// The canonical bytes a replay hashes come from the signing bytes; they must be exactly those
/// the entry's own encoding gives, for every kind.
#[test]
fn one_encoding_gives_the_signing_and_canonical_bytes() {
    let grid = Grid::new();
    let kinds: std::collections::BTreeSet<_> = grid.entries.iter().map(|e| e.body.kind()).collect();
    assert!(kinds.len() >= 6, "{kinds:?}");
    for entry in &grid.entries {
        let (signing, canonical) = entry.signing_and_canonical_bytes();
        assert_eq!(signing, entry.signing_bytes());
        assert_eq!(
            String::from_utf8_lossy(&canonical),
            String::from_utf8_lossy(&entry.canonical_bytes())
        );
    }
}

#[test]
fn keys_signatures_and_hashes_are_checked_when_read() {
    let good = key(1).public().to_string();
    assert_eq!(good.parse::<PublicKey>().expect("valid"), key(1).public());
    for bad in ["not base64!", "AAAA", &good[..40], &format!("{good}AAAA")] {
        assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        assert!(bad.parse::<WgKey>().is_err(), "{bad}");
    }
    assert!("AAAA".parse::<Signature>().is_err());
    assert!("00".parse::<Hash>().is_err());
    assert!("G".repeat(64).parse::<Hash>().is_err());
    assert_eq!(
        Hash([0xab; 32])
            .to_string()
            .parse::<Hash>()
            .expect("round trip"),
        Hash([0xab; 32])
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Damaged chains never panic, and what they build is exactly the accepted entries'
    /// bodies applied in order: nothing refused leaves a trace.
    #[test]
    fn damage_never_panics_nor_half_applies(
        ops in prop::collection::vec((0usize..64, 0usize..5, any::<u8>()), 1..6),
        text_flip in prop::option::of((0usize..100_000, any::<u8>())),
    ) {
        let grid = Grid::new();
        let mut entries = grid.entries.clone();
        for (at, op, byte) in ops {
            let i = at % entries.len();
            match op {
                0 => entries[i].signature.0[usize::from(byte) % 64] ^= 1,
                1 => entries[i].seq = entries[i].seq.wrapping_add(u64::from(byte % 3)),
                2 => { entries.remove(i); if entries.is_empty() { break; } }
                3 => { let j = usize::from(byte) % entries.len(); entries.swap(i, j); }
                _ => { let copy = entries[i].clone(); entries.insert(i, copy); }
            }
        }
        let mut text = String::new();
        for entry in &entries {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(entry).expect("yaml"));
        }
        if let Some((at, byte)) = text_flip {
            let mut bytes = text.into_bytes();
            let at = at % bytes.len();
            bytes[at] = byte.clamp(0x20, 0x7e);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let Ok(parsed) = file::parse(&text) else { return Ok(()); };
        let replayed = replay(&parsed);
        let refused: std::collections::BTreeSet<u64> = replayed.refused.iter().map(|r| r.seq).collect();
        let mut expected = GridState::default();
        let mut chain = Chain::default();
        for entry in &parsed {
            if chain.apply(entry).is_ok() {
                expected.apply_body(&entry.author, &entry.body).expect("an accepted body applies again");
            }
        }
        prop_assert_eq!(replayed.chain.state(), &expected);
        let again = replay(&parsed);
        prop_assert_eq!(again.chain.state(), replayed.chain.state());
        prop_assert!(refused.len() <= parsed.len());
    }
}
