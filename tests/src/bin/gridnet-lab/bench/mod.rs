//! `cargo xtask bench` (run by `gridnet-lab bench`): ratios measured side by side in one run, written to
//! `docs/benchmarks.md`. Absolute numbers drift between machines; the ratios are the result.

mod agent;
mod fastpath;
mod ledger;
mod reconcile;
mod uplink;

use std::fmt::Write as _;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

/// One benchmark's result, as a markdown section.
pub struct Section {
    pub title: &'static str,
    pub body: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // The agent under test: the release build `cargo xtask bench` made, named by GRIDNET_BIN.
    let bin = gridnet_tests::gridnet_bin()?;
    println!("bench: agent {}", bin.display());

    let sections = vec![
        fastpath::run(args.seconds)?,
        reconcile::run()?,
        uplink::run(args.seconds)?,
        ledger::run()?,
        agent::run()?,
    ];
    let mut doc = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (ratios from one run on one machine; compare paths \
         side by side, not absolute numbers across machines).\n",
    );
    for section in &sections {
        let _ = write!(doc, "\n## {}\n\n{}\n", section.title, section.body);
        println!("\n## {}\n\n{}", section.title, section.body);
    }
    std::fs::write("docs/benchmarks.md", doc).context("write docs/benchmarks.md")?;
    println!("bench: wrote docs/benchmarks.md");
    Ok(())
}
