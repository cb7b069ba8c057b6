//! The `gridnet` command line: one module per subcommand.

mod access;
mod apply;
mod bpf_stats;
mod gateway;
mod ledger;
mod node;
mod run;
mod status;

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
    /// Print an access peer's wg-quick configuration (a laptop, a site's router).
    AccessConfig(access::AccessConfigArgs),
    /// Realize a node plan (networks and containers) once, and exit.
    Apply(apply::ApplyArgs),
    /// Show the datapath's counters from the pinned maps (no running agent needed).
    BpfStats(bpf_stats::BpfStatsArgs),
    /// Web gateway tools: DNS records of the gateways serving a name.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Reservation ledger tools: keys, entries, verification.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Run the node agent: follow the ledger and realize this node's networks.
    Run(run::RunArgs),
    /// Ask the running agent for its state (over its local unix socket).
    Status(status::StatusArgs),
    /// This node's identity.
    #[command(subcommand)]
    Node(node::NodeCommand),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::AccessConfig(args) => args.run(),
            Command::Apply(args) => args.run(),
            Command::BpfStats(args) => args.run(),
            Command::Gateway(command) => command.run(),
            Command::Ledger(command) => command.run(),
            Command::Node(command) => command.run(),
            Command::Run(args) => args.run(),
            Command::Status(args) => args.run(),
        }
    }
}
