//! Build orchestration for gridnet: `cargo xtask <command>`.

mod bench;
mod demo;
mod setup;
mod test;
mod vm;

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
    Bench(bench::Args),
    /// The main job: a gridnet node with two users' networks, shown working.
    Demo(demo::Args),
    /// Install what this machine lacks (Debian packages, rust-src, bpf-linker); idempotent.
    Setup,
    /// Run every test: unit, privileged on this kernel, and in QEMU on Debian's kernels.
    Test(test::Args),
    /// Boot Debian kernels in QEMU and run the privileged tests inside them.
    VmTest(vm::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Setup => setup::run(),
        Command::Test(args) => test::run(args),
        Command::VmTest(args) => vm::run(args),
    }
}
