//! The etcd source: the ledger of a real grid, in an etcd cluster that nodes reach outward.
//!
//! Layout under a prefix `P`: `P/entries/<position, 20 digits>` holds each entry as JSON (its
//! canonical bytes), `P/head` the position of the last one. Positions count stored entries, as
//! a file's documents do; an entry the chain refuses still takes its position, so a bad entry
//! can never block the appends after it. Appending is one transaction: *if* `head` is what the
//! writer read, put the entry and the new head; so two writers racing for the same position
//! cannot both succeed. Followers read from the first position they lack, then watch the
//! entries prefix from the revision they read at; after a broken connection (an etcd restart)
//! they read again from there, so nothing is lost or seen twice.

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};

use super::{limits::MAX_ENTRY_BYTES, model::Entry};
use crate::vocab::UserText;

/// Errors of the etcd source.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd at {endpoints}: {source}")]
    Client {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("another writer appended at position {position} first; read again and retry")]
    Conflict { position: u64 },
    #[error("etcd key {key} does not hold a ledger entry: {reason}")]
    Corrupt { key: UserText, reason: UserText },
    #[error("the watch on {prefix} ended")]
    WatchEnded { prefix: String },
}

/// A ledger in etcd.
#[derive(Clone)]
pub struct EtcdLedger {
    client: Client,
    endpoints: String,
    prefix: String,
}

impl EtcdLedger {
    /// Connects (outward) to `endpoints`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, EtcdError> {
        let shown = endpoints.join(",");
        let client =
            Client::connect(endpoints, None)
                .await
                .map_err(|source| EtcdError::Client {
                    endpoints: shown.clone(),
                    source,
                })?;
        Ok(Self {
            client,
            endpoints: shown,
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    fn entries_prefix(&self) -> String {
        format!("{}/entries/", self.prefix)
    }

    fn entry_key(&self, seq: u64) -> String {
        format!("{}{seq:020}", self.entries_prefix())
    }

    fn head_key(&self) -> String {
        format!("{}/head", self.prefix)
    }

    fn err(&self) -> impl Fn(etcd_client::Error) -> EtcdError + '_ {
        move |source| EtcdError::Client {
            endpoints: self.endpoints.clone(),
            source,
        }
    }

    /// Puts `entry` at `position` if the ledger holds exactly `position` entries: the head
    /// is compared and both keys written in one transaction.
    pub async fn append(&mut self, position: u64, entry: &Entry) -> Result<(), EtcdError> {
        let head = self.head_key();
        let guard = match position {
            0 => Compare::version(head.clone(), CompareOp::Equal, 0),
            n => Compare::value(head.clone(), CompareOp::Equal, (n - 1).to_string()),
        };
        let txn = Txn::new().when([guard]).and_then([
            TxnOp::put(self.entry_key(position), entry.canonical_bytes(), None),
            TxnOp::put(head, position.to_string(), None),
        ]);
        let response = self.client.txn(txn).await.map_err(self.err())?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(EtcdError::Conflict { position })
        }
    }

    /// The entries at positions `from..`, and the etcd revision they were read at. A missing
    /// position ends the read: what follows a gap is not part of the ledger.
    pub async fn read_from(&mut self, from: u64) -> Result<(Vec<Entry>, i64), EtcdError> {
        let end = format!("{}{}", self.entries_prefix().trim_end_matches('/'), '0');
        let response = self
            .client
            .get(
                self.entry_key(from),
                Some(GetOptions::new().with_range(end)),
            )
            .await
            .map_err(self.err())?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut entries = Vec::new();
        for (kv, position) in response.kvs().iter().zip(from..) {
            if kv.key() != self.entry_key(position).as_bytes() {
                break;
            }
            entries.push(self.decode(kv.key(), kv.value())?);
        }
        Ok((entries, revision))
    }

    /// The position of the last entry, if any.
    pub async fn head(&mut self) -> Result<Option<u64>, EtcdError> {
        let response = self
            .client
            .get(self.head_key(), None)
            .await
            .map_err(self.err())?;
        Ok(response
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok()))
    }

    /// Waits until an entry is written after etcd revision `revision`.
    pub async fn wait_after(&mut self, revision: i64) -> Result<(), EtcdError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = self
            .client
            .watch(self.entries_prefix(), Some(options))
            .await
            .map_err(self.err())?;
        loop {
            let Some(response) = stream.message().await.map_err(self.err())? else {
                return Err(EtcdError::WatchEnded {
                    prefix: self.entries_prefix(),
                });
            };
            if !response.events().is_empty() {
                return Ok(());
            }
        }
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<Entry, EtcdError> {
        let corrupt = |reason: String| EtcdError::Corrupt {
            key: UserText::message(&String::from_utf8_lossy(key)),
            reason: UserText::message(&reason),
        };
        if value.len() > MAX_ENTRY_BYTES {
            return Err(corrupt(format!(
                "{} bytes is more than the {MAX_ENTRY_BYTES} an entry may have",
                value.len()
            )));
        }
        // serde_json refuses nesting beyond 128 levels, in time linear in the text.
        serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))
    }
}
