//! `gridnet ledger ...`: a grid user's and an operator's ledger tools.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::{
    ledger::{
        self, Body, SigningKey, document,
        file::LedgerFile,
        limits::MAX_ENTRY_BYTES,
        source::{LedgerSource as _, Location, SourceError},
    },
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
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Check a whole ledger; prints every refused entry with its reason, exits 1 if any.
    Verify {
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Print the grid state the ledger builds (or one node's plan with --node).
    Show {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Print this node's desired state instead.
        #[arg(long)]
        node: Option<u32>,
        /// JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
}

/// Which ledger: a file, or an etcd cluster and key prefix.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct LedgerArgs {
    /// A ledger file.
    #[arg(long, value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// An etcd cluster: its client URLs, comma-separated (e.g. `http://10.0.0.1:2379`).
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    etcd: Option<Vec<String>>,
}

/// The key prefix of an etcd ledger unless `GRIDNET_ETCD_PREFIX` says otherwise.
const DEFAULT_ETCD_PREFIX: &str = "/gridnet";

impl LedgerArgs {
    fn location(&self) -> anyhow::Result<Location> {
        let location = match (&self.ledger, &self.etcd) {
            (Some(path), _) => Location::File(path.clone()),
            (None, Some(endpoints)) => Location::Etcd {
                endpoints: endpoints.clone(),
                prefix: std::env::var("GRIDNET_ETCD_PREFIX")
                    .unwrap_or_else(|_| DEFAULT_ETCD_PREFIX.into()),
            },
            (None, None) => bail!("say which ledger: --ledger PATH or --etcd URL"),
        };
        if let Some((field, reason)) = location.problem() {
            bail!("{field}: {reason}");
        }
        Ok(location)
    }
}

/// Runs one ledger operation on a small runtime of its own.
pub(super) fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work)
}

/// Every entry of the ledger at `args`.
pub(super) fn read_all(args: &LedgerArgs) -> anyhow::Result<Vec<ledger::Entry>> {
    let location = args.location()?;
    block_on(async {
        let mut source = location.open().await?;
        Ok(source.read_from(0).await?)
    })
    .with_context(|| format!("cannot read the ledger ({location})"))
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
                let (report, refused) = verify(&read_all(&ledger)?);
                for line in report {
                    println!("{line}");
                }
                if refused {
                    std::process::exit(1);
                }
                Ok(())
            }
            LedgerCommand::Show { ledger, node, json } => {
                let entries = read_all(&ledger)?;
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

/// The body in the YAML file `path`, read no further than an entry may be long and guarded
/// like a ledger's documents before it is parsed.
fn read_body(path: &Path) -> anyhow::Result<Body> {
    use std::io::Read as _;
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ENTRY_BYTES as u64 + 1).read_to_end(&mut text))
        .with_context(|| format!("cannot read {}", path.display()))?;
    document::parse_one(&text)
        .with_context(|| format!("{} is not an entry body", path.display()))?
        .with_context(|| format!("{} holds no entry body", path.display()))
}

/// The lines `verify` prints, one per refused entry and a summary, and whether any entry was
/// refused. Refusals show the entry's text escaped, so each stays one line.
fn verify(entries: &[ledger::Entry]) -> (Vec<String>, bool) {
    let replay = ledger::replay(entries);
    let mut lines: Vec<String> = replay
        .refused
        .iter()
        .map(|r| format!("entry {}: refused: {}", r.seq, r.reason))
        .collect();
    lines.push(format!(
        "{} entries, {} refused",
        entries.len(),
        replay.refused.len()
    ));
    (lines, !replay.refused.is_empty())
}

/// How often `submit` signs again when another writer appended first.
const SUBMIT_ATTEMPTS: u32 = 5;

fn submit(entry: &Path, key: &Path, author: &str, ledger: &LedgerArgs) -> anyhow::Result<()> {
    let body = read_body(entry)?;
    let key = SigningKey::read(key)?;
    let location = ledger.location()?;
    let signed = block_on(async {
        let mut source = location.open().await?;
        for _ in 0..SUBMIT_ATTEMPTS {
            // Judge the entry against the ledger as it is, then append it right after the
            // entries read; if someone appended in between, read again and sign again.
            let entries = source.read_from(0).await?;
            let mut replay = ledger::replay(&entries);
            let signed = ledger::sign_next(&replay.chain, author, body.clone(), &key);
            if let Err(reason) = replay.chain.apply(&signed) {
                bail!("the ledger would refuse this entry: {reason}");
            }
            match source.append(entries.len() as u64, &signed).await {
                Ok(()) => return Ok(signed),
                Err(SourceError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("other writers kept appending first; try again")
    })?;
    println!(
        "appended entry {} ({}) to the ledger ({location})",
        signed.seq,
        signed.body.kind()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_prints_one_line_per_refused_entry_whatever_the_entry_says() {
        let key = SigningKey::from_seed([3; 32]);
        let twin = |name: &str| Body::Twin {
            name: name.into(),
            public_key: key.public(),
        };
        let first = ledger::sign_next(&Default::default(), "alice", twin("alice"), &key);
        let chain = ledger::replay([&first]).chain;
        let forged = "bob\nentry 7: refused: nothing";
        let second = ledger::sign_next(&chain, forged, twin(forged), &key);
        let (lines, refused) = verify(&[first, second]);
        assert!(refused);
        let text = lines.join("\n");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("entry 1: refused: "), "{text}");
        assert!(text.ends_with("2 entries, 1 refused"), "{text}");
    }
}
