//! What readers of one ledger file have judged so far: where each good entry starts, where
//! the judged bytes end, and the first damaged document. Shared by every [`super::LedgerFile`]
//! of one path in this process, so each document is parsed once, even when a follower opens
//! the file again after an error.

use std::{
    collections::HashMap,
    fs::File,
    os::unix::fs::{FileExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

use crate::ledger::{
    document::{self, DocumentError},
    model::Entry,
};

/// The judgement of one file, or of whatever file its path names now.
#[derive(Debug, Default)]
pub(super) struct Judged {
    /// Which file (device, inode) the judgement is about; another file starts over.
    identity: Option<(u64, u64)>,
    /// Where each good entry's document starts.
    starts: Vec<u64>,
    /// Where the judged bytes end: every document before is a good entry or empty.
    end: u64,
    /// The first damaged document; nothing after it is read.
    damage: Option<Damage>,
    /// Documents parsed so far, all files of the path together: the tests' witness that
    /// nothing is parsed twice.
    parsed: u64,
}

/// A damaged document.
#[derive(Debug)]
pub(super) struct Damage {
    /// The position of the entry it should have been.
    pub index: usize,
    pub error: DocumentError,
    /// The file's length when the document was judged.
    len: u64,
    /// Whether it was the file's last document. A writer that takes no lock may not have
    /// finished it, so it is judged again once the file grows; any other never is.
    last: bool,
    /// Whether a follower has been told.
    pub reported: bool,
}

/// Every judgement of this process, by path. A process follows a handful of files at most,
/// so entries are never removed.
static JUDGED: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<Judged>>>>> =
    LazyLock::new(Default::default);

/// The judgement shared by every reader of `path` in this process.
pub(super) fn shared(path: &Path) -> Arc<Mutex<Judged>> {
    let mut all = JUDGED.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(all.entry(path.to_owned()).or_default())
}

impl Judged {
    /// Judges what `file` (opened and locked by the caller) holds beyond what was judged
    /// already; returns the new good entries and the position of the first of them.
    pub fn refresh(&mut self, file: &File) -> std::io::Result<(usize, Vec<Entry>)> {
        let meta = file.metadata()?;
        let identity = (meta.dev(), meta.ino());
        let len = meta.len();
        if self.identity != Some(identity) || len < self.end {
            // Replaced or cut: what was judged is about another text.
            *self = Judged {
                identity: Some(identity),
                parsed: self.parsed,
                ..Judged::default()
            };
        }
        let first = self.starts.len();
        // A damaged last document judged again keeps its report when it is still damaged the
        // same way: a follower was told about it already.
        let mut told = None;
        match self.damage.take() {
            Some(damage) if damage.last && len > damage.len => {
                told = damage.reported.then_some(damage.error);
            }
            Some(damage) => {
                self.damage = Some(damage);
                return Ok((first, Vec::new()));
            }
            None => {}
        }
        if len == self.end {
            return Ok((first, Vec::new()));
        }
        let bytes = read_range(file, self.end, len)?;
        let pieces = document::split(&bytes);
        let mut new = Vec::new();
        for (i, (offset, piece)) in pieces.iter().enumerate() {
            let start = self.end + *offset as u64;
            self.parsed += 1;
            match document::parse_entry(piece) {
                Ok(Some(entry)) => {
                    self.starts.push(start);
                    new.push(entry);
                }
                Ok(None) => {}
                Err(error) => {
                    let reported = i == 0 && told.as_ref() == Some(&error);
                    self.damage = Some(Damage {
                        index: self.starts.len(),
                        error,
                        len,
                        last: i + 1 == pieces.len(),
                        reported,
                    });
                    self.end = start;
                    return Ok((first, new));
                }
            }
        }
        self.end = len;
        Ok((first, new))
    }

    /// How many good entries were judged.
    pub fn count(&self) -> usize {
        self.starts.len()
    }

    pub fn damage(&mut self) -> Option<&mut Damage> {
        self.damage.as_mut()
    }

    pub fn parsed(&self) -> u64 {
        self.parsed
    }

    /// The good entries at positions `from..upto` (judged before), read again from `file`:
    /// only a reader that asks for old positions pays for them.
    pub fn reread(&self, file: &File, from: usize, upto: usize) -> Result<Vec<Entry>, Reread> {
        let Some(&start) = self.starts.get(from) else {
            return Ok(Vec::new());
        };
        let end = self.starts.get(upto).copied().unwrap_or(self.end);
        let bytes = read_range(file, start, end).map_err(Reread::Io)?;
        let mut entries = Vec::new();
        for (_, piece) in document::split(&bytes) {
            match document::parse_entry(piece) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                // Good before, damaged now: the file was rewritten where it may only grow.
                Err(error) => return Err(Reread::Damaged(from + entries.len(), error)),
            }
        }
        Ok(entries)
    }
}

/// Why entries judged before cannot be given again.
pub(super) enum Reread {
    Io(std::io::Error),
    /// The entry at this position no longer parses.
    Damaged(usize, DocumentError),
}

/// The bytes `start..end` of `file`.
fn read_range(file: &File, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0; usize::try_from(end - start).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut bytes, start)?;
    Ok(bytes)
}
