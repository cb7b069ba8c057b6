//! `cargo xtask demo` and `cargo xtask bench`: make the machine ready, build the agent, then
//! hand over to `gridnet-lab` (crate `gridnet-tests`), which drives the grid.
//!
//! xtask itself depends on nothing gridnet builds, so that `cargo xtask` compiles on a fresh
//! machine and can install what the agent's build needs (bpf-linker, protoc) before building it.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::setup;

#[derive(Debug, Clone, Copy)]
pub enum Job {
    Demo,
    Bench,
}

pub fn run(job: Job, args: &[String]) -> anyhow::Result<()> {
    let (name, profile_args, profile): (&str, &[&str], &str) = match job {
        // The benchmarks measure the agent as an operator would run it: optimised.
        Job::Bench => ("bench", &["--release"], "release"),
        Job::Demo => ("demo", &[], "debug"),
    };
    // `--help` only asks gridnet-lab for its options: nothing to install or build.
    if !args.iter().any(|a| a == "--help" || a == "-h") {
        setup::run()?;
        if !setup::is_root() {
            bail!(
                "this creates namespaces and loads eBPF: run it as root (`sudo -E cargo xtask ...`)"
            );
        }
        println!("{name}: building the agent and its eBPF programs");
        setup::run_cmd(
            Command::new("cargo")
                .args(["build", "-p", "gridnet-agent"])
                .args(profile_args),
            "cargo build",
        )?;
    }
    let workspace = crate::workspace_root()?;
    let agent = workspace.join("target").join(profile).join("gridnet");
    let status = Command::new("cargo")
        .current_dir(workspace)
        .args([
            "run",
            "--quiet",
            "-p",
            "gridnet-tests",
            "--bin",
            "gridnet-lab",
            "--",
            name,
        ])
        .args(args)
        .env("GRIDNET_BIN", &agent)
        .status()
        .context("cannot start gridnet-lab")?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}
