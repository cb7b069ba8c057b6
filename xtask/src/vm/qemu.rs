//! Booting a kernel and its initramfs under QEMU (TCG: hardware KVM is not usable on these
//! machines) and reading the guest's verdict from its console.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;

/// Wall-clock limit for one kernel: boot plus every privileged test under TCG emulation, which
/// runs them roughly ten times slower than the host; generous, since a hang must still end.
pub const TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Guest memory: the initramfs (agent, tests, tools, about 100 MiB) lives in RAM twice while
/// it unpacks.
const MEMORY: &str = "2G";
/// Guest CPUs: one. Under multi-threaded TCG, the kernel's int3-based live patching of static
/// keys (toggled when the tests attach programs and create namespaces) races with the other
/// vCPU executing the patched code: a 6.12 guest died with "Oops: int3" in netif_rx_internal.
/// One vCPU removes the race; the tests need no parallelism.
const CPUS: &str = "1";

/// What the guest reported.
pub struct Outcome {
    pub success: bool,
    pub passed: u64,
    pub failed: Vec<String>,
    pub reason: Option<String>,
}

pub fn boot(vmlinuz: &Path, initrd: &Path, log: &Path) -> anyhow::Result<Outcome> {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            MEMORY,
            "-smp",
            CPUS,
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 rdinit=/init loglevel=4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("qemu-system-x86_64 (apt package qemu-system-x86)")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("qemu stdout")?;
    let timed_out = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (timed_out, done) = (timed_out.clone(), done.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() > TIMEOUT {
                    timed_out.store(true, Ordering::Relaxed);
                    // SAFETY: signalling our own child process.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let mut log_file = std::fs::File::create(log)?;
    let mut outcome = Outcome {
        success: false,
        passed: 0,
        failed: Vec::new(),
        reason: None,
    };
    let mut verdict = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        writeln!(log_file, "{line}")?;
        let text = line.trim_end_matches('\r');
        if text.starts_with("init: ")
            || text.starts_with("test result:")
            || text.contains("Kernel panic")
        {
            println!("  | {text}");
        }
        if text.ends_with(" ... FAILED") {
            outcome.failed.push(
                text.trim_start_matches("test ")
                    .trim_end_matches(" ... FAILED")
                    .to_owned(),
            );
        }
        // "test result: ok. 9 passed; 0 failed; ..."
        if let Some(rest) = text.strip_prefix("test result: ")
            && let Some(n) = rest
                .split(';')
                .next()
                .and_then(|p| p.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        {
            outcome.passed += n;
        }
        if text == "init: success" {
            verdict = Some(true);
        } else if text == "init: failure" {
            verdict = Some(false);
        } else if text.contains("Kernel panic") {
            outcome.reason = Some("kernel panic".into());
        }
    }
    let _ = child.wait();
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    if timed_out.load(Ordering::Relaxed) {
        outcome.reason = Some(format!("no verdict within {} s", TIMEOUT.as_secs()));
    } else if verdict.is_none() && outcome.reason.is_none() {
        outcome.reason = Some("the guest stopped without a verdict".into());
    }
    outcome.success = verdict == Some(true) && outcome.failed.is_empty();
    Ok(outcome)
}
