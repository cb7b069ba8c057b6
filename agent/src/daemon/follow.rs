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
        source::{LedgerSource as _, Location, Prefix},
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

    /// Publishes this node's plan, with why the source cannot be read further if it cannot;
    /// false when nobody listens any more.
    fn publish(&self, source_error: Option<String>) -> bool {
        let desired = Desired {
            last_seq: self.replay.chain.last_applied(),
            plan: plan_node(self.replay.chain.state(), self.node_id),
            rejected: self.replay.refused.clone(),
            source_error,
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
            // The first read takes what precedes any damage: a node starting on a damaged
            // ledger realizes the entries before it and says why it stops there.
            let read = if published {
                source
                    .wait_from(follower.known)
                    .await
                    .map(|entries| Prefix {
                        entries,
                        damage: None,
                    })
            } else {
                source.read_prefix_from(follower.known).await
            };
            match read {
                Ok(Prefix { entries, damage }) => {
                    follower.apply(&entries);
                    let error = damage.map(|e| {
                        warn!(error = %e, "the ledger is damaged; keeping the entries before it");
                        format!("cannot read the ledger: {e}")
                    });
                    if !follower.publish(error) {
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

#[cfg(test)]
mod tests {
    use std::{io::Write as _, path::PathBuf};

    use super::*;
    use crate::ledger::{file::LedgerFile, fixture::Grid};

    /// A ledger file removed when dropped.
    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// The next desired state sent, if one comes within a few polls of the file.
    async fn next(rx: &mut watch::Receiver<Desired>) -> Option<Desired> {
        let wait = crate::ledger::file::POLL_INTERVAL * 10;
        tokio::time::timeout(wait, rx.changed()).await.ok()?.ok()?;
        Some(rx.borrow_and_update().clone())
    }

    /// A file whose entries 0..=k are good and entry k+1 is damaged, from the start: the
    /// entries before the damage are applied and published with the damage named, and the
    /// follower goes on when the file is repaired.
    #[tokio::test]
    async fn a_damaged_ledger_at_start_publishes_the_entries_before_the_damage()
    -> anyhow::Result<()> {
        let temp = TempFile(std::env::temp_dir().join(format!(
            "gridnet-follow-{}-{}.yaml",
            std::process::id(),
            line!()
        )));
        let _ = std::fs::remove_file(&temp.0);
        let file = LedgerFile::new(&temp.0);
        file.init()?;
        let mut grid = Grid::new();
        for entry in &grid.entries {
            file.append(entry)?;
        }
        let damaged = grid.entries.len();
        let mut raw = std::fs::OpenOptions::new().append(true).open(&temp.0)?;
        raw.write_all(b"---\nseq: [damaged\n")?;

        let (tx, mut rx) = watch::channel(Desired::default());
        let follower = tokio::spawn(follow(Location::File(temp.0.clone()), 1, tx));
        let first = next(&mut rx).await;
        let Some(desired) = first else {
            follower.abort();
            anyhow::bail!("nothing published for a ledger damaged at entry {damaged}");
        };
        assert_eq!(desired.last_seq, Some(damaged as u64 - 1));
        assert!(desired.rejected.is_empty(), "{:?}", desired.rejected);
        // web1, db1 and the gateway endpoint of alice/web.
        assert_eq!(desired.plan.containers.len(), 3, "{:?}", desired.plan);
        let error = desired.source_error.unwrap_or_default();
        assert!(error.contains(&format!("at entry {damaged}:")), "{error}");
        // Told once: the follower waits for the file to change instead of saying it again.
        assert!(next(&mut rx).await.is_none());

        // Repaired: the damaged document rewritten as the entry it should have been.
        let text = std::fs::read_to_string(&temp.0)?;
        let cut = text.rfind("---\nseq: [damaged").unwrap_or(text.len());
        let repaired = temp.0.with_extension("repaired");
        std::fs::write(&repaired, &text[..cut])?;
        std::fs::rename(&repaired, &temp.0)?;
        grid.push_ok(
            "bob",
            crate::ledger::fixture::container("db2", "db", 1, [10, 1, 1, 3]),
        );
        LedgerFile::new(&temp.0).append(&grid.entries[damaged])?;
        let desired = next(&mut rx).await;
        follower.abort();
        let desired =
            desired.ok_or_else(|| anyhow::anyhow!("the repaired ledger was not followed"))?;
        assert_eq!(desired.last_seq, Some(damaged as u64));
        assert_eq!(desired.source_error, None);
        assert_eq!(desired.plan.containers.len(), 4);
        Ok(())
    }
}
