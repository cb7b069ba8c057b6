//! `cargo xtask vm-test`: the privileged tests on Debian's 6.1 and 6.12 kernels, in QEMU.
//!
//! Fetches the kernels (cached under `target/vm/kernels/`), builds an initramfs in Rust with
//! busybox, a tiny init, the modules, the agent and the test executables, boots it under TCG,
//! and prints one verdict line per kernel. A panic, a hang or a failed test fails the command;
//! the guest's console stays in `target/vm/<release>/console.log`.

mod cpio;
mod initramfs;
mod kernel;
mod qemu;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

/// `cargo xtask vm-test` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which kernels: 6.1, 6.12 or all.
    #[arg(long, default_value = "all")]
    kernel: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let series = kernel::Series::parse(&args.kernel)?;
    let root = Path::new("target/vm");
    crate::setup::run_cmd(
        Command::new("cargo").args(["build", "-p", "gridnet-agent"]),
        "cargo build",
    )?;
    let tests = test_executables()?;
    let gridnet = Path::new("target/debug/gridnet")
        .canonicalize()
        .context("target/debug/gridnet")?;
    let mut failures = 0;
    for series in series {
        let kernel = kernel::fetch(series, &root.join("kernels"))?;
        let dir = root.join(&kernel.release);
        std::fs::create_dir_all(&dir)?;
        let initrd = dir.join("initrd.cpio");
        println!(
            "vm-test: {} from {} ({}): building the initramfs",
            kernel.release,
            kernel.package,
            kernel::features(&kernel)
        );
        initramfs::build(
            &initramfs::Contents {
                kernel: &kernel,
                gridnet: &gridnet,
                tests: &tests,
            },
            &initrd,
        )?;
        println!("vm-test: {}: booting under QEMU (TCG)", kernel.release);
        let start = Instant::now();
        let log = dir.join("console.log");
        let outcome = qemu::boot(&kernel.vmlinuz, &initrd, &log)?;
        let secs = start.elapsed().as_secs();
        if outcome.success {
            println!(
                "vm-test: linux {}: PASS ({} tests, {secs} s)",
                kernel.release, outcome.passed
            );
        } else {
            failures += 1;
            let why = outcome
                .reason
                .clone()
                .unwrap_or_else(|| format!("{} failed", outcome.failed.len()));
            println!(
                "vm-test: linux {}: FAIL ({why}; {} passed; failed: {}; log {})",
                kernel.release,
                outcome.passed,
                if outcome.failed.is_empty() {
                    "-".to_owned()
                } else {
                    outcome.failed.join(", ")
                },
                log.display()
            );
        }
    }
    if failures > 0 {
        bail!("{failures} kernel(s) failed");
    }
    Ok(())
}

/// Builds the privileged test executables and returns their paths.
fn test_executables() -> anyhow::Result<Vec<PathBuf>> {
    let mut child = Command::new("cargo")
        .args([
            "test",
            "-p",
            "gridnet-tests",
            "--no-run",
            "--message-format=json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("cargo test --no-run")?;
    let mut executables = Vec::new();
    for line in BufReader::new(child.stdout.take().context("stdout")?).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line?) else {
            continue;
        };
        let is_test = message["reason"] == "compiler-artifact"
            && message["profile"]["test"] == true
            && message["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"));
        // Host only, for what they exercise is userspace, not the kernel (whose paths the
        // overlay tests cover in the guest): the etcd tests (etcd is not in the guest); the
        // gateways, their namespace dialling and `gateway dns` (curl, openssl and busybox httpd
        // are not in the guest); the access peers (wireguard-go set up with wg-quick, a bash
        // script); the wg UAPI socket (run through `unshare` and a tmpfs mount); the harness's
        // own test. The scale test's thousand namespaces would take many minutes under TCG and
        // measure the neighbour tables, which every kernel here shares.
        let kernel_relevant = !matches!(
            message["target"]["name"].as_str(),
            Some(
                "ledger_etcd"
                    | "gateway"
                    | "gateway_dns"
                    | "gateway_netns"
                    | "access"
                    | "wg_uapi"
                    | "harness"
                    | "scale"
            )
        );
        if is_test
            && kernel_relevant
            && let Some(path) = message["executable"].as_str()
        {
            executables.push(PathBuf::from(path));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building the test executables failed");
    }
    if executables.is_empty() {
        bail!("no privileged test executables were built");
    }
    Ok(executables)
}
