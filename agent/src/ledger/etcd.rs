//! The etcd source: the ledger of a real grid, in an etcd cluster that nodes reach outward.
//!
//! Layout under a prefix `P`: `P/entries/<seq, 20 digits>` holds each entry as JSON (its
//! canonical bytes), `P/head` the seq of the last one. Appending is one transaction: *if* `head`
//! is what the writer read, put the entry and the new head; so two writers racing for the same
//! seq cannot both succeed. Followers read from a seq, then watch the entries prefix from the
//! revision they read at; after a broken connection (an etcd restart) they read again from the
//! first seq they lack, so nothing is lost or seen twice.

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};

use super::model::Entry;

/// Errors of the etcd source.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd at {endpoints}: {source}")]
    Client {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("another writer appended entry {seq} first; read the head again and retry")]
    Conflict { seq: u64 },
    #[error("etcd key {key} does not hold a ledger entry: {reason}")]
    Corrupt { key: String, reason: String },
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

    /// Appends `entry` if the ledger's last entry is `entry.seq - 1` (or it is empty for seq 0).
    pub async fn append(&mut self, entry: &Entry) -> Result<(), EtcdError> {
        let head = self.head_key();
        let guard = match entry.seq {
            0 => Compare::version(head.clone(), CompareOp::Equal, 0),
            seq => Compare::value(head.clone(), CompareOp::Equal, (seq - 1).to_string()),
        };
        let txn = Txn::new().when([guard]).and_then([
            TxnOp::put(self.entry_key(entry.seq), entry.canonical_bytes(), None),
            TxnOp::put(head, entry.seq.to_string(), None),
        ]);
        let response = self.client.txn(txn).await.map_err(self.err())?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(EtcdError::Conflict { seq: entry.seq })
        }
    }

    /// The entries from `from` on, and the etcd revision they were read at.
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
        let entries = response
            .kvs()
            .iter()
            .map(|kv| self.decode(kv.key(), kv.value()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, revision))
    }

    /// The last entry's seq, if any.
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

    /// Waits for entries after revision `revision` and returns those from seq `from` on.
    pub async fn watch_from(&mut self, from: u64, revision: i64) -> Result<Vec<Entry>, EtcdError> {
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
            let mut entries = Vec::new();
            for event in response.events() {
                if let Some(kv) = event.kv() {
                    let entry = self.decode(kv.key(), kv.value())?;
                    if entry.seq >= from {
                        entries.push(entry);
                    }
                }
            }
            if !entries.is_empty() {
                entries.sort_by_key(|e| e.seq);
                return Ok(entries);
            }
        }
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<Entry, EtcdError> {
        serde_json::from_slice(value).map_err(|e| EtcdError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: e.to_string(),
        })
    }
}
