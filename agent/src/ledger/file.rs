//! The file source: a YAML stream of entries, one document per entry, appended with `---`.
//!
//! Appending never rewrites what is there, so a reader following the file sees a prefix of the
//! same ledger at every moment. The follower polls the file's size: simple, works on every
//! filesystem, and [`POLL_INTERVAL`] bounds the delay.

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize as _;

use super::model::Entry;

/// How often a follower looks for growth: fast enough that a new entry is live within a
/// second, rare enough to cost nothing.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Errors of the file source.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the ledger {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the ledger {path} is malformed at entry {index}: {reason}")]
    Parse {
        path: String,
        index: usize,
        reason: String,
    },
    #[error("cannot write the ledger {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A ledger file.
#[derive(Clone, Debug)]
pub struct LedgerFile {
    path: PathBuf,
}

impl LedgerFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates an empty ledger (refuses to overwrite one).
    pub fn init(&self) -> Result<(), FileError> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(b"# gridnet ledger: one signed entry per YAML document\n")
            })
            .map_err(|e| self.write_error(e))
    }

    /// Every entry in the file. A document that is not an entry stops the read with its index:
    /// the ledger is append-only, so what follows a damaged document cannot be trusted.
    pub fn read(&self) -> Result<Vec<Entry>, FileError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.read_error(e))?;
        self.parse(&text)
    }

    /// Appends one entry.
    pub fn append(&self, entry: &Entry) -> Result<(), FileError> {
        let document = self.document(entry)?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(document.as_bytes()))
            .map_err(|e| self.write_error(e))
    }

    /// Appends `entry` if the file holds exactly `position` entries; `false` when it holds
    /// another number (a writer appended in between). An exclusive lock on the file makes
    /// writers on one machine take turns between the count and the write.
    pub fn append_at(&self, position: u64, entry: &Entry) -> Result<bool, FileError> {
        let document = self.document(entry)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.write_error(e))?;
        // Released when `file` closes.
        file.lock().map_err(|e| self.write_error(e))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| self.read_error(e))?;
        if self.parse(&text)?.len() as u64 != position {
            return Ok(false);
        }
        file.write_all(document.as_bytes())
            .map_err(|e| self.write_error(e))?;
        Ok(true)
    }

    /// The entries of the file's text.
    fn parse(&self, text: &str) -> Result<Vec<Entry>, FileError> {
        parse(text).map_err(|(index, reason)| FileError::Parse {
            path: self.shown(),
            index,
            reason,
        })
    }

    /// `entry` as the YAML document appended for it.
    fn document(&self, entry: &Entry) -> Result<String, FileError> {
        let yaml =
            serde_yaml::to_string(entry).map_err(|e| self.write_error(std::io::Error::other(e)))?;
        Ok(format!("---\n{yaml}"))
    }

    fn read_error(&self, source: std::io::Error) -> FileError {
        FileError::Read {
            path: self.shown(),
            source,
        }
    }

    fn write_error(&self, source: std::io::Error) -> FileError {
        FileError::Write {
            path: self.shown(),
            source,
        }
    }

    /// Waits until the file holds more than `known` entries, then returns the new ones.
    pub async fn follow(&self, known: usize) -> Result<Vec<Entry>, FileError> {
        let mut last_len = None;
        loop {
            let len = std::fs::metadata(&self.path).map(|m| m.len()).ok();
            if len != last_len {
                last_len = len;
                let entries = self.read()?;
                if entries.len() > known {
                    return Ok(entries[known..].to_vec());
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }
}

/// Parses a YAML stream of entries; on failure, the index of the bad document and why.
pub fn parse(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match serde_yaml::Value::deserialize(document) {
            // Comments alone make an empty document.
            Ok(serde_yaml::Value::Null) => continue,
            Ok(value) => {
                entries.push(serde_yaml::from_value(value).map_err(|e| (index, e.to_string()))?)
            }
            Err(e) => return Err((index, e.to_string())),
        }
    }
    Ok(entries)
}
