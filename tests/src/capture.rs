//! Captures with Debian's `tcpdump`, for tests that check what crosses a wire.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, ensure};

use crate::in_netns;

/// How long tcpdump may take to open its capture.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `tcpdump` writing what it sees on one interface to a file; stopped on drop.
///
/// It runs as root (`-Z root`: the QEMU guest has no `tcpdump` user to drop to) and in immediate
/// mode, so every packet is in the file when it stops, none left in a ring buffer.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing on `interface` of namespace `ns` into `file`; returns once tcpdump
    /// listens (traffic before that would be missed).
    pub fn start(ns: &str, interface: &str, file: PathBuf) -> anyhow::Result<Self> {
        let mut command = Command::new("tcpdump");
        command
            .args([
                "-Z",
                "root",
                "--immediate-mode",
                "-i",
                interface,
                "-n",
                "-U",
                "-s",
                "0",
                "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        in_netns(&mut command, ns)?;
        let mut child = command
            .spawn()
            .context("cannot run tcpdump (is it installed?)")?;
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let (lines, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let capture = Self { child, file };
        loop {
            let line = seen
                .recv_timeout(START_TIMEOUT)
                .context("tcpdump never said it was listening")?;
            if line.contains("listening on") {
                return Ok(capture);
            }
        }
    }

    /// Stops the capture (SIGTERM: tcpdump writes out what it holds) and returns the file.
    pub fn stop(mut self) -> anyhow::Result<PathBuf> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        self.child.wait()?;
        Ok(self.file.clone())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The packets of a capture file that match `filter`, one line each.
pub fn read_capture(file: &Path, filter: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("tcpdump")
        .args(["-Z", "root", "-n", "-r"])
        .arg(file)
        .arg(filter)
        .output()?;
    ensure!(
        out.status.success(),
        "tcpdump -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect())
}
