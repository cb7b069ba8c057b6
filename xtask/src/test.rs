//! `cargo xtask test`: everything CI runs, in order of cost.
//!
//! 1. `setup` (a no-op when the machine is ready);
//! 2. `lint`: rustfmt and clippy, the eBPF crate on its own target; any finding stops the run;
//! 3. the agent binary, which the privileged tests drive as a real operator would;
//! 4. `cargo test` over the workspace: unit tests and privileged tests on this kernel (root);
//! 5. the same privileged tests inside QEMU on Debian's kernels (`vm-test`).
//!
//! Ends with one line `test: N passed, M failed`.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip the QEMU kernels (only this machine's kernel).
    #[arg(long)]
    pub no_vm: bool,
    /// Kernels for the VM stage (as `vm-test --kernel`).
    #[arg(long, default_value = "all")]
    pub kernel: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::setup::run()?;
    if !crate::setup::is_root() {
        bail!("the privileged tests need root: run `sudo -E cargo xtask test`");
    }
    crate::lint::run().context("lint stage (`cargo xtask lint` repeats just this stage)")?;
    crate::setup::run_cmd(
        Command::new("cargo").args(["build", "-p", "gridnet-agent"]),
        "cargo build",
    )?;

    let (mut passed, mut failed) = cargo_test()?;
    if !args.no_vm {
        let status = Command::new(std::env::current_exe()?)
            .args(["vm-test", "--kernel", &args.kernel])
            .status()
            .context("cannot start vm-test")?;
        if status.success() {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("test: the VM stage failed (see the verdict lines above)");
        }
    }
    println!("test: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} failed");
    }
    Ok(())
}

/// Runs `cargo test --workspace`, echoing its output, and sums its result lines.
fn cargo_test() -> anyhow::Result<(u64, u64)> {
    let mut child = Command::new("cargo")
        .args([
            "test",
            "--workspace",
            "--exclude",
            "gridnet-ebpf",
            "--no-fail-fast",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        // "test result: ok. 8 passed; 0 failed; 0 ignored; ..."
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().skip_while(|w| w.ends_with('.'));
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    match (n.parse::<u64>(), what) {
                        (Ok(n), "passed") => passed += n,
                        (Ok(n), "failed") => failed += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed before running tests ({status})");
    }
    Ok((passed, failed))
}
