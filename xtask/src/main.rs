//! Build orchestration for gridnet: `cargo xtask <command>`.

mod vm;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "gridnet build, test, demo and benchmark tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot Debian kernels in QEMU and run the privileged tests inside them.
    VmTest(vm::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::VmTest(args) => vm::run(args),
    }
}
