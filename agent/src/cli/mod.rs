//! The `gridnet` command line: one module per subcommand.

mod ledger;
mod node;

use clap::{Parser, Subcommand};

/// gridnet: the node network agent of a peer-to-peer compute grid.
#[derive(Debug, Parser)]
#[command(name = "gridnet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reservation ledger tools: keys, entries, verification.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// This node's identity.
    #[command(subcommand)]
    Node(node::NodeCommand),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Ledger(command) => command.run(),
            Command::Node(command) => command.run(),
        }
    }
}
