//! `gridnet-lab`: the demo grid and the benchmarks, built on the test harness.
//!
//! Run through `cargo xtask demo` and `cargo xtask bench`, which first make sure the machine
//! is ready (packages, bpf-linker) and the agent is built; this binary needs root.

mod bench;
mod demo;

use anyhow::bail;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gridnet-lab", about = "gridnet's demo grid and benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: a three-node grid following one ledger, shown working.
    Demo(demo::Args),
    /// Benchmarks, as ratios against baselines in the same run; writes docs/benchmarks.md.
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("gridnet-lab creates namespaces and loads eBPF: run it as root");
    }
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
