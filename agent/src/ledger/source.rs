//! Where a ledger lives, and the one interface every kind of ledger offers.
//!
//! A [`LedgerSource`] holds entries in order. Readers ask for the entries from a position on
//! (the number of entries they already have) and can wait for more; writers append the entry
//! after the last one, and a source refuses an append when another writer got there first. The
//! agent's follower and the `gridnet ledger` tools are written once, against this trait; the
//! YAML file ([`LedgerFile`]) and etcd ([`EtcdLedger`]) implement it.

use std::{fmt, future::Future, path::PathBuf};

use serde::Deserialize;

use super::{
    etcd::{EtcdError, EtcdLedger},
    file::{FileError, LedgerFile},
    model::Entry,
};

/// A ledger's entries, read and appended in order.
pub trait LedgerSource: Send {
    /// The entries at positions `from..` as the source holds them now.
    fn read_from(
        &mut self,
        from: u64,
    ) -> impl Future<Output = Result<Vec<Entry>, SourceError>> + Send;

    /// The entries at positions `from..` that can be read now, up to the first that cannot,
    /// and why that one cannot: a follower starting on a damaged ledger applies what comes
    /// before the damage and says why it stops there. Once told here, a damage is not told again
    /// by [`LedgerSource::wait_from`]. A source whose entries are read whole or not at all
    /// reports its errors as [`LedgerSource::read_from`] does.
    fn read_prefix_from(
        &mut self,
        from: u64,
    ) -> impl Future<Output = Result<Prefix, SourceError>> + Send {
        async move {
            Ok(Prefix {
                entries: self.read_from(from).await?,
                damage: None,
            })
        }
    }

    /// Waits until the source holds more than `from` entries, then returns the new ones. An
    /// entry at `from` that cannot be read is an error; a file says so once, then waits for
    /// the file to change without parsing the damaged entry again.
    fn wait_from(
        &mut self,
        from: u64,
    ) -> impl Future<Output = Result<Vec<Entry>, SourceError>> + Send;

    /// Appends `entry` at `position`, the number of entries the writer read; fails with
    /// [`SourceError::Conflict`] when the ledger holds more by now (another writer was first).
    fn append(
        &mut self,
        position: u64,
        entry: &Entry,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}

/// The entries that could be read, and the damage that ends them, if any.
#[derive(Debug)]
pub struct Prefix {
    pub entries: Vec<Entry>,
    pub damage: Option<SourceError>,
}

/// Why a source could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(
        "another writer appended at position {position} first; read the ledger again and retry"
    )]
    Conflict { position: u64 },
}

/// Where a ledger lives: in the node configuration `{file: PATH}` or
/// `{etcd: {endpoints, prefix}}`; on the command line `--ledger PATH` or `--etcd URL[,URL]`
/// (prefix from `GRIDNET_ETCD_PREFIX`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Location {
    /// A local YAML ledger file, followed as it grows.
    File(PathBuf),
    /// An etcd cluster, reached outward.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

impl Location {
    /// The first thing wrong with this location, as (field, what to do); `None` if usable.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        match self {
            Location::File(path) if path.as_os_str().is_empty() => {
                Some(("ledger.file", "is empty".into()))
            }
            Location::File(_) => None,
            Location::Etcd { endpoints, prefix } => {
                if endpoints.is_empty() {
                    return Some((
                        "ledger.etcd.endpoints",
                        "name at least one etcd endpoint".into(),
                    ));
                }
                if let Some(bad) = endpoints
                    .iter()
                    .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
                {
                    return Some((
                        "ledger.etcd.endpoints",
                        format!("`{bad}` is not an http(s) URL"),
                    ));
                }
                if prefix.is_empty() || !prefix.starts_with('/') {
                    return Some((
                        "ledger.etcd.prefix",
                        format!("`{prefix}` is not a key prefix starting with `/`"),
                    ));
                }
                None
            }
        }
    }

    /// Opens the ledger (for etcd: connects, outward).
    pub async fn open(&self) -> Result<AnySource, SourceError> {
        Ok(match self {
            Location::File(path) => AnySource::File(LedgerFile::new(path)),
            Location::Etcd { endpoints, prefix } => {
                AnySource::Etcd(Box::new(EtcdLedger::connect(endpoints, prefix).await?))
            }
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "file {}", path.display()),
            Location::Etcd { endpoints, prefix } => {
                write!(f, "etcd {} {prefix}", endpoints.join(","))
            }
        }
    }
}

/// An opened ledger of either kind.
pub enum AnySource {
    File(LedgerFile),
    /// Boxed: an etcd client is large, a file handle small.
    Etcd(Box<EtcdLedger>),
}

impl LedgerSource for AnySource {
    async fn read_from(&mut self, from: u64) -> Result<Vec<Entry>, SourceError> {
        match self {
            AnySource::File(file) => file.read_from(from).await,
            AnySource::Etcd(etcd) => LedgerSource::read_from(etcd.as_mut(), from).await,
        }
    }

    async fn read_prefix_from(&mut self, from: u64) -> Result<Prefix, SourceError> {
        match self {
            AnySource::File(file) => file.read_prefix_from(from).await,
            AnySource::Etcd(etcd) => etcd.as_mut().read_prefix_from(from).await,
        }
    }

    async fn wait_from(&mut self, from: u64) -> Result<Vec<Entry>, SourceError> {
        match self {
            AnySource::File(file) => file.wait_from(from).await,
            AnySource::Etcd(etcd) => etcd.as_mut().wait_from(from).await,
        }
    }

    async fn append(&mut self, position: u64, entry: &Entry) -> Result<(), SourceError> {
        match self {
            AnySource::File(file) => LedgerSource::append(file, position, entry).await,
            AnySource::Etcd(etcd) => LedgerSource::append(etcd.as_mut(), position, entry).await,
        }
    }
}

impl LedgerSource for LedgerFile {
    async fn read_from(&mut self, from: u64) -> Result<Vec<Entry>, SourceError> {
        Ok(self.entries_from(position(from))?)
    }

    async fn read_prefix_from(&mut self, from: u64) -> Result<Prefix, SourceError> {
        let (entries, damage) = self.prefix_from(position(from))?;
        Ok(Prefix {
            entries,
            damage: damage.map(SourceError::from),
        })
    }

    async fn wait_from(&mut self, from: u64) -> Result<Vec<Entry>, SourceError> {
        Ok(self.follow(position(from)).await?)
    }

    async fn append(&mut self, position: u64, entry: &Entry) -> Result<(), SourceError> {
        if self.append_at(position, entry)? {
            Ok(())
        } else {
            Err(SourceError::Conflict { position })
        }
    }
}

/// A position as an index; one past any file's entries when it does not fit.
fn position(from: u64) -> usize {
    usize::try_from(from).unwrap_or(usize::MAX)
}

impl LedgerSource for EtcdLedger {
    async fn read_from(&mut self, from: u64) -> Result<Vec<Entry>, SourceError> {
        Ok(EtcdLedger::read_from(self, from).await?.0)
    }

    async fn wait_from(&mut self, from: u64) -> Result<Vec<Entry>, SourceError> {
        // The watch only wakes the reader; what arrived is read again, so a watch that breaks
        // or skips loses nothing.
        loop {
            let (entries, revision) = EtcdLedger::read_from(self, from).await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
            self.wait_after(revision).await?;
        }
    }

    async fn append(&mut self, position: u64, entry: &Entry) -> Result<(), SourceError> {
        match EtcdLedger::append(self, position, entry).await {
            Err(EtcdError::Conflict { position }) => Err(SourceError::Conflict { position }),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{self, Body, SigningKey};

    fn twin(name: &str, key: &SigningKey) -> Body {
        Body::Twin {
            name: name.into(),
            public_key: key.public(),
        }
    }

    #[tokio::test]
    async fn a_file_appends_at_its_end_only_and_reads_from_a_position() -> anyhow::Result<()> {
        let path = std::env::temp_dir().join(format!(
            "gridnet-source-{}-{}.yaml",
            std::process::id(),
            line!()
        ));
        let _ = std::fs::remove_file(&path);
        let mut file = LedgerFile::new(&path);
        file.init()?;
        let key = SigningKey::generate()?;
        let first = ledger::sign_next(&Default::default(), "a", twin("a", &key), &key);
        LedgerSource::append(&mut file, 0, &first).await?;
        let chain = ledger::replay([&first]).chain;
        let second = ledger::sign_next(&chain, "b", twin("b", &key), &key);
        // A writer that read nothing is too late.
        assert!(matches!(
            LedgerSource::append(&mut file, 0, &second).await,
            Err(SourceError::Conflict { position: 0 })
        ));
        LedgerSource::append(&mut file, 1, &second).await?;
        assert_eq!(LedgerSource::read_from(&mut file, 0).await?.len(), 2);
        assert_eq!(
            LedgerSource::read_from(&mut file, 1).await?,
            vec![second.clone()]
        );
        assert!(LedgerSource::read_from(&mut file, 5).await?.is_empty());
        // Waiting returns at once when the entries are there.
        assert_eq!(file.wait_from(1).await?, vec![second]);
        std::fs::remove_file(&path)?;
        Ok(())
    }

    #[test]
    fn writers_of_one_file_take_turns() -> anyhow::Result<()> {
        let path = std::env::temp_dir().join(format!(
            "gridnet-source-{}-{}.yaml",
            std::process::id(),
            line!()
        ));
        let _ = std::fs::remove_file(&path);
        LedgerFile::new(&path).init()?;
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let file = LedgerFile::new(&path);
                std::thread::spawn(move || -> anyhow::Result<u32> {
                    let key = SigningKey::generate()?;
                    let mut lost = 0;
                    for i in 0..8 {
                        let name = format!("w{w}-{i}");
                        loop {
                            let entries = file.read()?;
                            let chain = ledger::replay(&entries).chain;
                            let entry = ledger::sign_next(&chain, &name, twin(&name, &key), &key);
                            if file.append_at(entries.len() as u64, &entry)? {
                                break;
                            }
                            lost += 1;
                        }
                    }
                    Ok(lost)
                })
            })
            .collect();
        let mut lost = 0;
        for writer in writers {
            lost += writer
                .join()
                .map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        let entries = LedgerFile::new(&path).read()?;
        std::fs::remove_file(&path)?;
        assert_eq!(entries.len(), 24);
        let replay = ledger::replay(&entries);
        assert!(
            replay.refused.is_empty(),
            "{lost} lost races, refused: {:?}",
            replay.refused
        );
        assert_eq!(replay.chain.state().twins.len(), 24);
        Ok(())
    }

    #[test]
    fn locations_are_checked_before_use() {
        let etcd = |endpoints: &[&str], prefix: &str| Location::Etcd {
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            prefix: prefix.into(),
        };
        assert_eq!(etcd(&["http://10.0.0.1:2379"], "/grid").problem(), None);
        assert_eq!(Location::File("l.yaml".into()).problem(), None);
        for (bad, field) in [
            (Location::File("".into()), "ledger.file"),
            (etcd(&[], "/grid"), "ledger.etcd.endpoints"),
            (etcd(&["10.0.0.1:2379"], "/grid"), "ledger.etcd.endpoints"),
            (etcd(&["http://10.0.0.1:2379"], ""), "ledger.etcd.prefix"),
            (
                etcd(&["http://10.0.0.1:2379"], "grid"),
                "ledger.etcd.prefix",
            ),
        ] {
            assert_eq!(bad.problem().map(|p| p.0), Some(field), "{bad:?}");
        }
    }
}
