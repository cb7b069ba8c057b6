//! Build orchestration for gridnet: `cargo xtask <command>`.

mod lab;
mod lint;
mod setup;
mod test;
mod vm;

use std::path::Path;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    about = "gridnet build, test, demo and benchmark tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks, as ratios against baselines in the same run; writes docs/benchmarks.md.
    /// Arguments go to `gridnet-lab bench` (`cargo xtask bench --help` lists them).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The main job: a three-node grid following one ledger, shown working.
    /// Arguments go to `gridnet-lab demo` (`cargo xtask demo --help` lists them).
    #[command(disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// rustfmt and clippy over every crate, the eBPF crate on its own target; the first stage
    /// of `test`.
    Lint,
    /// Install what this machine lacks (Debian packages, rustup components, bpf-linker); idempotent.
    Setup,
    /// Run every test: unit, privileged on this kernel, and in QEMU on Debian's kernels.
    Test(test::Args),
    /// Boot Debian kernels in QEMU and run the privileged tests inside them.
    VmTest(vm::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench { args } => lab::run(lab::Job::Bench, &args),
        Command::Demo { args } => lab::run(lab::Job::Demo, &args),
        Command::Lint => lint::run(),
        Command::Setup => setup::run(),
        Command::Test(args) => test::run(args),
        Command::VmTest(args) => vm::run(args),
    }
}

/// The workspace root, where every cargo command of xtask runs.
fn workspace_root() -> anyhow::Result<&'static Path> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives inside the workspace")
}
