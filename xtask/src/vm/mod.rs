//! The QEMU kernel test harness.

/// `cargo xtask vm-test` options.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("vm-test is not built yet")
}
