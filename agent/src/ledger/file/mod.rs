//! The file source: a YAML stream of entries, one document per entry, appended with `---`.
//!
//! Appending never rewrites what is there, so a reader following the file sees a prefix of the
//! same ledger at every moment. Writers append whole documents under an exclusive lock and
//! readers read under a shared one, so no reader sees half a document. Readers judge each
//! document once ([`judged`]): a follower parses only what was appended, and a damaged
//! document is never parsed again. The follower polls the file's size: simple, works on every
//! filesystem, and [`POLL_INTERVAL`] bounds the delay.

mod judged;

use std::{
    fs::File,
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

pub use super::document::DocumentError;
use super::{document, model::Entry};

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
    #[error("the ledger {path} is malformed at entry {index}: {source}")]
    Parse {
        path: String,
        index: usize,
        #[source]
        source: DocumentError,
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
    judged: Arc<Mutex<judged::Judged>>,
}

/// What a reader finds at a position and after: the good entries, then the damaged document
/// that ends them, if any.
struct Found {
    entries: Vec<Entry>,
    damage: Option<FileError>,
}

impl LedgerFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            judged: judged::shared(path),
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

    /// Every entry in the file. A document that is not an entry stops the read with its
    /// position: the ledger is append-only, so what follows a damaged document cannot be
    /// trusted.
    pub fn read(&self) -> Result<Vec<Entry>, FileError> {
        self.entries_from(0)
    }

    /// The entries at positions `from..`; an error if a damaged document follows them.
    pub fn entries_from(&self, from: usize) -> Result<Vec<Entry>, FileError> {
        let found = self.find(from)?;
        if let Some(error) = found.damage {
            self.tell_damage();
            return Err(error);
        }
        Ok(found.entries)
    }

    /// The entries at positions `from..` up to the first damaged document, and that damage,
    /// which counts as told: [`LedgerFile::follow`] waits for the file to change instead of
    /// reporting it again.
    pub fn prefix_from(&self, from: usize) -> Result<(Vec<Entry>, Option<FileError>), FileError> {
        let found = self.find(from)?;
        if found.damage.is_some() {
            self.tell_damage();
        }
        Ok((found.entries, found.damage))
    }

    /// Appends one entry (under the same lock as [`LedgerFile::append_at`]).
    pub fn append(&self, entry: &Entry) -> Result<(), FileError> {
        let document = self.document(entry)?;
        let mut file = self.open_locked(true)?;
        file.write_all(document.as_bytes())
            .map_err(|e| self.write_error(e))
    }

    /// Appends `entry` if the file holds exactly `position` entries; `false` when it holds
    /// another number (a writer appended in between). An exclusive lock on the file makes
    /// writers on one machine take turns between the count and the write.
    pub fn append_at(&self, position: u64, entry: &Entry) -> Result<bool, FileError> {
        let document = self.document(entry)?;
        let mut file = self.open_locked(true)?;
        let count = {
            let mut judged = self.judged();
            judged.refresh(&file).map_err(|e| self.read_error(e))?;
            if let Some(damage) = judged.damage() {
                damage.reported = true;
                return Err(self.parse_error(damage.index, damage.error.clone()));
            }
            judged.count()
        };
        if count as u64 != position {
            return Ok(false);
        }
        file.write_all(document.as_bytes())
            .map_err(|e| self.write_error(e))?;
        Ok(true)
    }

    /// Waits until the file holds more than `known` entries, then returns the new ones. A
    /// damaged document at `known` is reported once; after that the follower waits for the
    /// file to change (grow, be cut or replaced) without parsing anything again.
    pub async fn follow(&self, known: usize) -> Result<Vec<Entry>, FileError> {
        let mut seen = None;
        loop {
            let now = std::fs::metadata(&self.path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.len()));
            if now != seen {
                seen = now;
                let found = self.find(known)?;
                if !found.entries.is_empty() {
                    return Ok(found.entries);
                }
                if let Some(error) = found.damage
                    && self.tell_damage()
                {
                    return Err(error);
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// How many documents readers of this path have parsed in this process.
    pub fn documents_parsed(&self) -> u64 {
        self.judged().parsed()
    }

    /// Judges what is new, then gives what is at `from..`.
    fn find(&self, from: usize) -> Result<Found, FileError> {
        let file = self.open_locked(false)?;
        let mut judged = self.judged();
        let (first_new, new) = judged.refresh(&file).map_err(|e| self.read_error(e))?;
        let mut entries = if from < first_new {
            judged.reread(&file, from, first_new).map_err(|e| match e {
                judged::Reread::Io(e) => self.read_error(e),
                judged::Reread::Damaged(index, error) => self.parse_error(index, error),
            })?
        } else {
            Vec::new()
        };
        entries.extend(new.into_iter().skip(from.saturating_sub(first_new)));
        let damage = judged
            .damage()
            .map(|d| self.parse_error(d.index, d.error.clone()));
        Ok(Found { entries, damage })
    }

    /// Marks the damage as told to a reader; whether it was news.
    fn tell_damage(&self) -> bool {
        self.judged()
            .damage()
            .is_some_and(|d| !std::mem::replace(&mut d.reported, true))
    }

    /// Opens the file locked: exclusively for appending, shared for reading.
    fn open_locked(&self, append: bool) -> Result<File, FileError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(append)
            .open(&self.path)
            .map_err(|e| {
                if append {
                    self.write_error(e)
                } else {
                    self.read_error(e)
                }
            })?;
        // Released when `file` closes.
        if append {
            file.lock().map_err(|e| self.write_error(e))?;
        } else {
            file.lock_shared().map_err(|e| self.read_error(e))?;
        }
        Ok(file)
    }

    fn judged(&self) -> MutexGuard<'_, judged::Judged> {
        self.judged.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `entry` as the YAML document appended for it.
    fn document(&self, entry: &Entry) -> Result<String, FileError> {
        let yaml =
            serde_yaml::to_string(entry).map_err(|e| self.write_error(std::io::Error::other(e)))?;
        Ok(format!("---\n{yaml}"))
    }

    fn parse_error(&self, index: usize, source: DocumentError) -> FileError {
        FileError::Parse {
            path: self.shown(),
            index,
            source,
        }
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

    fn shown(&self) -> String {
        self.path.display().to_string()
    }
}

/// Parses a YAML stream of entries; on failure, the position of the bad document and why.
pub fn parse(text: &str) -> Result<Vec<Entry>, (usize, DocumentError)> {
    let mut entries = Vec::new();
    for (_, piece) in document::split(text.as_bytes()) {
        match document::parse_entry(piece) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(error) => return Err((entries.len(), error)),
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
