//! `gridnet gateway ...`: tools for the operators of web gateways.
//!
//! - [`dns`]: which addresses serve a name, and the records to print (pure).
//! - [`probe`]: asking each of them, concurrently.

mod dns;
mod probe;

use anyhow::{Context as _, bail};

use super::ledger::{LedgerArgs, block_on, read_all};
use crate::ledger;

#[derive(Debug, clap::Subcommand)]
pub enum GatewayCommand {
    /// Print DNS records (A/AAAA) of the gateways serving a name that answer right now.
    ///
    /// Every gateway on the ledger serving the name is probed on each public address of its
    /// node (HTTP gateways with `HEAD /` for the name, TLS passthrough gateways with a TCP
    /// connection), all at once, from where this command runs. Exits 1 when none answers.
    Dns(DnsArgs),
}

#[derive(Debug, clap::Args)]
pub struct DnsArgs {
    /// The host name, e.g. `web.example.org`.
    #[arg(long)]
    name: String,
    /// Print a zone-file fragment: `$TTL`, the records, a comment for each gateway left out.
    #[arg(long, conflicts_with = "json")]
    zone: bool,
    /// Print JSON: the records and every probe with its outcome.
    #[arg(long)]
    json: bool,
    /// The records' time to live, in seconds. Short by default, so resolvers forget a gateway
    /// that died within a minute of the records being printed again.
    #[arg(long, default_value_t = 60)]
    ttl: u32,
    #[command(flatten)]
    ledger: LedgerArgs,
}

impl GatewayCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            GatewayCommand::Dns(args) => args.run(),
        }
    }
}

impl DnsArgs {
    fn run(self) -> anyhow::Result<()> {
        let name = dns::normalize(&self.name)?;
        let entries = read_all(&self.ledger)?;
        let replay = ledger::replay(&entries);
        let targets = dns::targets(replay.chain.state(), &name)
            .context("check the name, or the ledger's `gateway` entries")?;
        let probed = block_on(async { Ok(probe::probe_all(&name, targets).await) })?;
        let records = dns::Records::new(&name, self.ttl, probed);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&records.json())?);
        } else if !records.addresses.is_empty() {
            print!(
                "{}",
                if self.zone {
                    records.zone()
                } else {
                    records.lines()
                }
            );
        }
        if !self.json && !self.zone && !records.addresses.is_empty() {
            for (target, reason) in records.failed() {
                eprintln!(
                    "left out {}: {}: {reason}",
                    target.address,
                    dns::describe(target)
                );
            }
        }
        if records.addresses.is_empty() {
            let why: Vec<String> = records
                .failed()
                .map(|(target, reason)| {
                    format!("  {}: {}: {reason}", target.address, dns::describe(target))
                })
                .collect();
            bail!(
                "no gateway serving `{name}` answers; no records printed\n{}",
                why.join("\n")
            );
        }
        Ok(())
    }
}
