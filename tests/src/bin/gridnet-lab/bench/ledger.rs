//! Verifying and applying 100,000 ledger entries (the `ledger` bench of the agent crate, in
//! release mode).

use std::process::Command;

use anyhow::{Context as _, ensure};

use super::Section;

pub fn run() -> anyhow::Result<Section> {
    println!("bench: ledger, 100,000 entries");
    let out = Command::new("cargo")
        .args(["bench", "-q", "-p", "gridnet-agent", "--bench", "ledger"])
        .output()
        .context("cargo bench")?;
    ensure!(
        out.status.success(),
        "the ledger bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ledger: ").map(|l| format!("- {l}")))
        .collect();
    ensure!(!lines.is_empty(), "the ledger bench printed no result");
    let body = format!(
        "A synthetic grid of 10,000 users (a twin, a network and eight containers each) on 50 nodes: \
         every signature checked, the hash chain followed, every rule applied.\n\n{}\n",
        lines.join("\n")
    );
    Ok(Section {
        title: "Ledger: verify and apply",
        body,
    })
}
