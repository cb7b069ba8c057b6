//! `gridnet ledger ...`: a grid user's and an operator's ledger tools.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::{
    ledger::{self, Body, SigningKey, file::LedgerFile},
    plan::from_ledger::plan_node,
};

#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Make a twin's signing key (ed25519, file mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create an empty ledger file.
    Init {
        #[arg(long)]
        ledger: PathBuf,
    },
    /// Sign an entry's body and append it, unless the ledger's rules refuse it.
    Submit {
        /// The body: YAML with `kind:` and its fields (see docs/ledger.md).
        entry: PathBuf,
        /// The author's key file.
        #[arg(long)]
        key: PathBuf,
        /// The author's twin name.
        #[arg(long)]
        author: String,
        #[arg(long)]
        ledger: PathBuf,
    },
    /// Check a whole ledger; prints every refused entry with its reason, exits 1 if any.
    Verify {
        #[arg(long)]
        ledger: PathBuf,
    },
    /// Print the grid state the ledger builds (or one node's plan with --node).
    Show {
        #[arg(long)]
        ledger: PathBuf,
        /// Print this node's desired state instead.
        #[arg(long)]
        node: Option<u32>,
        /// JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
}

impl LedgerCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            LedgerCommand::Keygen { out } => {
                let key = SigningKey::generate()?;
                key.write(&out)?;
                println!("public key: {}", key.public());
                println!(
                    "register it with an entry like:\n  kind: twin\n  name: <your name>\n  public_key: {}",
                    key.public()
                );
                Ok(())
            }
            LedgerCommand::Init { ledger } => {
                LedgerFile::new(&ledger).init()?;
                println!("created {}", ledger.display());
                Ok(())
            }
            LedgerCommand::Submit {
                entry,
                key,
                author,
                ledger,
            } => submit(&entry, &key, &author, &ledger),
            LedgerCommand::Verify { ledger } => {
                let entries = LedgerFile::new(&ledger).read()?;
                let replay = ledger::replay(&entries);
                for refused in &replay.refused {
                    println!("entry {}: refused: {}", refused.seq, refused.reason);
                }
                println!(
                    "{} entries, {} refused",
                    entries.len(),
                    replay.refused.len()
                );
                if !replay.refused.is_empty() {
                    std::process::exit(1);
                }
                Ok(())
            }
            LedgerCommand::Show { ledger, node, json } => {
                let entries = LedgerFile::new(&ledger).read()?;
                let replay = ledger::replay(&entries);
                let text = match (node, json) {
                    (Some(id), true) => {
                        serde_json::to_string_pretty(&plan_node(replay.chain.state(), id))?
                    }
                    (Some(id), false) => {
                        serde_yaml::to_string(&plan_node(replay.chain.state(), id))?
                    }
                    (None, true) => serde_json::to_string_pretty(replay.chain.state())?,
                    (None, false) => serde_yaml::to_string(replay.chain.state())?,
                };
                print!("{text}");
                Ok(())
            }
        }
    }
}

fn submit(entry: &Path, key: &Path, author: &str, ledger: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(entry)
        .with_context(|| format!("cannot read {}", entry.display()))?;
    let body: Body = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not an entry body", entry.display()))?;
    let key = SigningKey::read(key)?;
    let file = LedgerFile::new(ledger);
    let entries = file.read()?;
    let mut replay = ledger::replay(&entries);
    let signed = ledger::sign_next(&replay.chain, author, body, &key);
    if let Err(reason) = replay.chain.apply(&signed) {
        bail!("the ledger would refuse this entry: {reason}");
    }
    file.append(&signed)?;
    println!("appended entry {} ({})", signed.seq, signed.body.kind());
    Ok(())
}
