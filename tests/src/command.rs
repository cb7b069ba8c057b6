//! Running programs: the `gridnet` binary under test, and tools inside a namespace.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{Context as _, ensure};

use crate::in_netns;

/// The `gridnet` binary under test: `$GRIDNET_BIN`, else the one next to this test executable.
pub fn gridnet_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("GRIDNET_BIN") {
        return Ok(bin.into());
    }
    // target/<profile>/deps/<test> or target/<profile>/xtask -> target/<profile>/gridnet
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("odd executable path")?;
    let candidates = [
        dir.join("gridnet"),
        dir.parent().map(|d| d.join("gridnet")).unwrap_or_default(),
    ];
    candidates.into_iter().find(|bin| bin.is_file()).with_context(|| {
        format!("no gridnet binary next to {}: build it first (`cargo build -p gridnet-agent`) or set GRIDNET_BIN", exe.display())
    })
}

/// Runs a command inside a network namespace and returns its output.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = Command::new(program);
    command.args(args);
    in_netns(&mut command, ns)?;
    command
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))
}

/// Runs a command inside a network namespace, failing with its error output on a non-zero
/// exit; returns its standard output.
pub fn run_ok(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    succeeded(program, args, run_in(ns, program, args)?)
}

/// Runs `bpftool ARGS` (on pins, so in no namespace in particular), failing with its error
/// output on a non-zero exit; returns its standard output.
pub fn bpftool(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .context("run bpftool (`cargo xtask setup` installs it)")?;
    succeeded("bpftool", args, out)
}

/// The standard output of `program ARGS`, or its error output on a non-zero exit.
fn succeeded(program: &str, args: &[&str], out: Output) -> anyhow::Result<String> {
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip ARGS` in a namespace, failing with its error output.
pub fn ip(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    run_ok(ns, "ip", args).map(drop)
}

/// `gridnet ARGS` run inside a network namespace.
pub fn gridnet_in(ns: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = Command::new(gridnet_bin()?);
    command.args(args);
    in_netns(&mut command, ns)?;
    Ok(command.output()?)
}
