//! Following the ledger: replay what is there, then apply each new entry as it arrives, and
//! publish this node's plan after every change. Sources fail (a file being replaced, an etcd
//! restart); the follower then keeps the last good state, says why, and tries again.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Desired, config::LedgerSourceConfig};
use crate::{
    daemon::control::Rejected,
    ledger::{Entry, Replay, etcd::EtcdLedger, file::LedgerFile},
    plan::from_ledger::plan_node,
};

/// How long to wait before trying a source again after it failed: short enough to heal
/// quickly after an etcd restart, long enough not to spin.
const RETRY: Duration = Duration::from_secs(1);

/// The ledger as replayed so far, and where its plans go.
struct Follower {
    node_id: u32,
    replay: Replay,
    /// How many entries have been read (the next seq to read).
    known: u64,
    tx: watch::Sender<Desired>,
}

impl Follower {
    /// Replays entries, logging the refused ones; `known` advances by how many were read.
    fn apply(&mut self, entries: &[Entry]) {
        let refused_before = self.replay.refused.len();
        self.replay.extend(entries);
        self.known += entries.len() as u64;
        for refused in &self.replay.refused[refused_before..] {
            warn!(seq = refused.seq, reason = %refused.reason, "ledger entry refused");
        }
        info!(entries = self.known, "ledger read");
    }

    /// Publishes this node's plan; false when nobody listens any more.
    fn publish(&self) -> bool {
        let desired = Desired {
            last_seq: self.replay.chain.last_applied(),
            plan: plan_node(self.replay.chain.state(), self.node_id),
            rejected: self
                .replay
                .refused
                .iter()
                .map(|r| Rejected {
                    seq: r.seq,
                    reason: r.reason.to_string(),
                })
                .collect(),
        };
        self.tx.send(desired).is_ok()
    }
}

/// Follows `source` for node `node_id`, sending each new desired state.
pub async fn follow(source: LedgerSourceConfig, node_id: u32, tx: watch::Sender<Desired>) {
    let mut follower = Follower {
        node_id,
        replay: Replay::default(),
        known: 0,
        tx,
    };
    match source {
        LedgerSourceConfig::File(path) => follow_file(&LedgerFile::new(&path), &mut follower).await,
        LedgerSourceConfig::Etcd { endpoints, prefix } => {
            follow_etcd(&endpoints, &prefix, &mut follower).await
        }
    }
}

async fn follow_file(file: &LedgerFile, follower: &mut Follower) {
    let mut first = true;
    loop {
        // Entries of a file are counted by position: a refused entry may carry any seq.
        let read = if first {
            file.read()
        } else {
            file.follow(follower.known as usize).await
        };
        match read {
            Ok(entries) => {
                follower.apply(&entries);
                if !follower.publish() {
                    return;
                }
                first = false;
            }
            Err(e) => {
                warn!(error = %e, "cannot read the ledger; keeping the last good state");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn follow_etcd(endpoints: &[String], prefix: &str, follower: &mut Follower) {
    let mut published = false;
    loop {
        let mut ledger = match EtcdLedger::connect(endpoints, prefix).await {
            Ok(ledger) => ledger,
            Err(e) => {
                warn!(error = %e, "cannot reach etcd; keeping the last good state");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Read from the first entry we lack, then use the watch only as a wake-up: the next
        // read fetches whatever arrived, so a broken watch can lose nothing.
        loop {
            let (entries, revision) = match ledger.read_from(follower.known).await {
                Ok(read) => read,
                Err(e) => {
                    warn!(error = %e, "etcd read failed; reconnecting");
                    break;
                }
            };
            let contiguous: Vec<Entry> = entries
                .into_iter()
                .enumerate()
                .take_while(|(i, e)| e.seq == follower.known + *i as u64)
                .map(|(_, e)| e)
                .collect();
            if !contiguous.is_empty() || !published {
                follower.apply(&contiguous);
                if !follower.publish() {
                    return;
                }
            }
            published = true;
            if let Err(e) = ledger.watch_from(follower.known, revision).await {
                warn!(error = %e, "etcd watch ended; reconnecting");
                break;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
