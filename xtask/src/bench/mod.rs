//! `cargo xtask bench`: ratios measured side by side in one run, written to
//! `docs/benchmarks.md`. Absolute numbers drift between machines; the ratios are the result.

mod agent;
mod fastpath;
mod ledger;
mod reconcile;
mod uplink;

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context as _, bail};

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
    crate::setup::run()?;
    if !crate::setup::is_root() {
        bail!("benchmarks build namespaces and load eBPF: run as root");
    }
    println!("bench: building the agent (release)");
    crate::setup::run_cmd(
        Command::new("cargo").args(["build", "--release", "-p", "gridnet-agent"]),
        "cargo build",
    )?;
    let bin = Path::new("target/release/gridnet")
        .canonicalize()
        .context("target/release/gridnet")?;
    // SAFETY: single-threaded at this point; the variable is read by the test support library.
    unsafe { std::env::set_var("GRIDNET_BIN", &bin) };

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
