//! `cargo xtask bench` (run by `gridnet-lab bench`): ratios measured side by side in one run, written to
//! `docs/benchmarks.md`. Absolute numbers drift between machines; the ratios are the result.

mod agent;
mod fastpath;
mod gateway;
mod ledger;
mod reconcile;
mod tunnel;
mod uplink;

use std::fmt::Write as _;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Run only these benchmarks (fastpath, tunnel, gateway, reconcile, uplink, ledger, agent) and print
    /// them; docs/benchmarks.md is only written by a full run.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// The benchmarks, in the order of docs/benchmarks.md.
const ALL: [&str; 7] = [
    "fastpath",
    "tunnel",
    "gateway",
    "reconcile",
    "uplink",
    "ledger",
    "agent",
];

/// One benchmark's result, as a markdown section.
pub struct Section {
    pub title: &'static str,
    pub body: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // The agent under test: the release build `cargo xtask bench` made, named by GRIDNET_BIN.
    let bin = gridnet_tests::gridnet_bin()?;
    println!("bench: agent {}", bin.display());

    if let Some(unknown) = args.only.iter().find(|n| !ALL.contains(&n.as_str())) {
        anyhow::bail!("no benchmark `{unknown}`: choose from {}", ALL.join(", "));
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|n| n == name);
    let mut sections = Vec::new();
    for name in ALL.into_iter().filter(|n| wanted(n)) {
        sections.push(match name {
            "fastpath" => fastpath::run(args.seconds)?,
            "tunnel" => tunnel::run(args.seconds)?,
            "gateway" => gateway::run(args.seconds)?,
            "reconcile" => reconcile::run()?,
            "uplink" => uplink::run(args.seconds)?,
            "ledger" => ledger::run()?,
            _ => agent::run()?,
        });
    }
    let mut doc = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (ratios from one run on one machine; compare paths \
         side by side, not absolute numbers across machines).\n",
    );
    for section in &sections {
        let _ = write!(doc, "\n## {}\n\n{}\n", section.title, section.body);
        println!("\n## {}\n\n{}", section.title, section.body);
    }
    if args.only.is_empty() {
        std::fs::write("docs/benchmarks.md", doc).context("write docs/benchmarks.md")?;
        println!("bench: wrote docs/benchmarks.md");
    }
    Ok(())
}
