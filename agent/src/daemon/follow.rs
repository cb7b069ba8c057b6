//! Following the ledger: replay what is there, then apply each new entry as it arrives, and
//! publish this node's plan after every change.

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Desired, config::LedgerSourceConfig};
use crate::{
    daemon::control::Rejected,
    ledger::{Replay, file::LedgerFile},
    plan::from_ledger::plan_node,
};

/// How long to wait before reading a ledger again after it could not be read (a file being
/// replaced, a transient I/O error): the agent keeps running the last good state meanwhile.
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Follows `source` for node `node_id`, sending each new desired state.
pub async fn follow(source: LedgerSourceConfig, node_id: u32, tx: watch::Sender<Desired>) {
    let LedgerSourceConfig::File(path) = source else {
        warn!("only file ledgers are supported by this build; the agent keeps its last state");
        return;
    };
    let file = LedgerFile::new(&path);
    let mut replay = Replay::default();
    let mut known = 0;
    loop {
        let new = if known == 0 {
            match file.read() {
                Ok(entries) if !entries.is_empty() => Ok(entries),
                Ok(_) => file.follow(0).await,
                Err(e) => Err(e),
            }
        } else {
            file.follow(known).await
        };
        let entries = match new {
            Ok(entries) => entries,
            Err(e) => {
                warn!(error = %e, "cannot read the ledger; keeping the last good state");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        known += entries.len();
        let refused_before = replay.refused.len();
        replay.extend(&entries);
        for refused in &replay.refused[refused_before..] {
            warn!(seq = refused.seq, reason = %refused.reason, "ledger entry refused");
        }
        info!(entries = known, "ledger read");
        let desired = Desired {
            last_seq: replay.chain.last_applied(),
            plan: plan_node(replay.chain.state(), node_id),
            rejected: replay
                .refused
                .iter()
                .map(|r| Rejected {
                    seq: r.seq,
                    reason: r.reason.to_string(),
                })
                .collect(),
        };
        if tx.send(desired).is_err() {
            return;
        }
    }
}
