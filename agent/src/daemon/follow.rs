//! Following the ledger: replay what is there, then apply each new entry as it arrives, and
//! publish this node's plan after every change. Sources fail (a file being replaced, an etcd
//! restart); the follower then keeps the last good state, says why, and tries again.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::Desired;
use crate::{
    ledger::{
        Entry, Replay,
        source::{LedgerSource as _, Location},
    },
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
            rejected: self.replay.refused.clone(),
            source_error: None,
        };
        self.tx.send(desired).is_ok()
    }

    /// Says why the source cannot be read, keeping the last good plan; false when nobody
    /// listens any more.
    fn publish_error(&self, error: String) -> bool {
        let mut sent = false;
        self.tx.send_if_modified(|desired| {
            sent = true;
            let changed = desired.source_error.as_ref() != Some(&error);
            desired.source_error = Some(error);
            changed
        });
        sent && !self.tx.is_closed()
    }
}

/// Follows the ledger at `location` for node `node_id`, sending each new desired state.
///
/// The first read publishes at once (an empty ledger is a plan too); after that the follower
/// waits for new entries. When the source fails (an unreadable file, an etcd restart) it keeps
/// the last good state, opens the source again and reads from the first entry it lacks, so no
/// entry is lost or applied twice.
pub async fn follow(location: Location, node_id: u32, tx: watch::Sender<Desired>) {
    let mut follower = Follower {
        node_id,
        replay: Replay::default(),
        known: 0,
        tx,
    };
    let mut published = false;
    loop {
        let mut source = match location.open().await {
            Ok(source) => source,
            Err(e) => {
                warn!(error = %e, "cannot open the ledger; keeping the last good state");
                if published && !follower.publish_error(format!("cannot open the ledger: {e}")) {
                    return;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let read = if published {
                source.wait_from(follower.known).await
            } else {
                source.read_from(follower.known).await
            };
            match read {
                Ok(entries) => {
                    follower.apply(&entries);
                    if !follower.publish() {
                        return;
                    }
                    published = true;
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the ledger; keeping the last good state");
                    if published && !follower.publish_error(format!("cannot read the ledger: {e}"))
                    {
                        return;
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
