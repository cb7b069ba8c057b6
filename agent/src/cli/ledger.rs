//! `gridnet ledger ...`

#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {}

impl LedgerCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {}
    }
}
