//! Reading a followed file: each document judged once, a damaged one never again.

use std::{io::Write as _, path::PathBuf, time::Duration};

use super::*;
use crate::ledger::{self, Body, SigningKey};

/// A fresh ledger file with `n` good twin entries, removed when dropped.
struct TempLedger {
    path: PathBuf,
    key: SigningKey,
}

impl TempLedger {
    fn new(tag: &str, n: usize) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("gridnet-file-{}-{tag}.yaml", std::process::id()));
        let _ = std::fs::remove_file(&path);
        LedgerFile::new(&path).init()?;
        let ledger = Self {
            path,
            key: SigningKey::from_seed([4; 32]),
        };
        for _ in 0..n {
            ledger.push()?;
        }
        Ok(ledger)
    }

    fn file(&self) -> LedgerFile {
        LedgerFile::new(&self.path)
    }

    /// Appends the next good entry (a twin), whatever the file holds.
    fn push(&self) -> anyhow::Result<()> {
        let file = self.file();
        let chain = ledger::replay(&file.read().unwrap_or_default()).chain;
        let name = format!("t{}", chain.next_seq());
        let body = Body::Twin {
            name: name.clone(),
            public_key: self.key.public(),
        };
        file.append(&ledger::sign_next(&chain, &name, body, &self.key))?;
        Ok(())
    }

    fn append_raw(&self, text: &str) -> anyhow::Result<()> {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)?
            .write_all(text.as_bytes())?;
        Ok(())
    }
}

impl Drop for TempLedger {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `follow` returns within a while (it should not when there is nothing new to say).
async fn follows(file: &LedgerFile, known: usize) -> Option<Result<Vec<Entry>, FileError>> {
    tokio::time::timeout(POLL_INTERVAL * 3, file.follow(known))
        .await
        .ok()
}

#[tokio::test]
async fn a_hostile_document_is_judged_once_and_never_parsed_again() -> anyhow::Result<()> {
    let ledger = TempLedger::new("hostile", 2)?;
    let file = ledger.file();
    assert_eq!(file.read()?.len(), 2);
    ledger.append_raw(&format!("---\n{}\n", "{a: ".repeat(100_000)))?;

    let start = std::time::Instant::now();
    let told = follows(&file, 2).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            told,
            Some(Err(FileError::Parse {
                index: 2,
                source: DocumentError::TooLarge { .. },
                ..
            }))
        ),
        "{told:?}"
    );
    let parsed = file.documents_parsed();

    // Told once: following again waits, and so does a follower that opens the file anew.
    assert!(follows(&file, 2).await.is_none());
    assert!(follows(&ledger.file(), 2).await.is_none());
    // Readers that ask are told every time, from the judgement.
    assert!(ledger.file().read().is_err());
    assert_eq!(
        file.documents_parsed(),
        parsed,
        "a judged document was parsed again"
    );

    // The damaged document was the last; a writer may not have finished it, so growth has it
    // judged again, once; after that, nothing after it is ever read.
    ledger.append_raw("---\nseq: 3\n")?;
    assert!(follows(&file, 2).await.is_none());
    assert_eq!(file.documents_parsed(), parsed + 1);
    ledger.append_raw("---\nseq: 4\n")?;
    assert!(follows(&file, 2).await.is_none());
    assert!(ledger.file().read().is_err());
    assert_eq!(file.documents_parsed(), parsed + 1);
    Ok(())
}

#[tokio::test]
async fn a_follower_parses_only_what_was_appended() -> anyhow::Result<()> {
    let ledger = TempLedger::new("growth", 3)?;
    let file = ledger.file();
    assert_eq!(file.read()?.len(), 3);
    let parsed = file.documents_parsed();
    ledger.push()?;
    let new = follows(&file, 3).await.expect("the new entry")?;
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].seq, 3);
    // The header comment and three entries were judged before; only the new one now.
    assert_eq!(file.documents_parsed(), parsed + 1);
    // Old positions are still there for whoever asks.
    assert_eq!(ledger.file().entries_from(1)?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn a_replaced_file_is_judged_from_its_start() -> anyhow::Result<()> {
    let ledger = TempLedger::new("replaced", 3)?;
    let file = ledger.file();
    assert_eq!(file.read()?.len(), 3);
    std::fs::remove_file(&ledger.path)?;
    file.init()?;
    ledger.push()?;
    assert_eq!(file.read()?.len(), 1);
    Ok(())
}
