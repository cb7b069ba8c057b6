//! `gridnet bpf-stats`: the datapath's counters, from the pins, with no agent needed.

use std::{collections::BTreeMap, io::Write as _, path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::dataplane::stats::{Counter, Snapshot};

#[derive(Debug, clap::Args)]
pub struct BpfStatsArgs {
    /// The bpffs directory of the datapath's pins.
    #[arg(long, default_value = crate::dataplane::DEFAULT_PIN_ROOT)]
    pin_root: PathBuf,
    /// Print JSON (layout in docs/bpf-stats.md).
    #[arg(long)]
    json: bool,
    /// Refresh every interval and show rates.
    #[arg(long)]
    watch: bool,
    /// Refresh interval for --watch, in seconds.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

impl BpfStatsArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let read = || {
            Snapshot::read(&self.pin_root).with_context(|| {
                format!(
                    "cannot read the datapath statistics under {}",
                    self.pin_root.display()
                )
            })
        };
        let mut previous = read()?;
        if !self.watch {
            return print(&previous, None, self.json);
        }
        // Program run time and count are only counted while someone holds this.
        let _stats_on = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .context("cannot enable BPF run-time statistics (needs root)")?;
        let interval = Duration::try_from_secs_f64(self.interval)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--interval must be a positive number of seconds")?;
        loop {
            std::thread::sleep(interval);
            let current = read()?;
            if !self.json {
                print!("\x1b[2J\x1b[H");
            }
            print(&current, Some((&previous, interval)), self.json)?;
            previous = current;
        }
    }
}

fn print(
    snapshot: &Snapshot,
    previous: Option<(&Snapshot, Duration)>,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, snapshot)?;
        writeln!(out)?;
        return Ok(());
    }
    let before: BTreeMap<_, _> = previous
        .map(|(p, _)| p.counters.iter().map(|c| (key(c), c)).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "{:<18} {:<24} {:<8} {:<22} {:>12} {:>14}{}",
        "PROGRAM",
        "NETWORK",
        "VERDICT",
        "REASON",
        "PACKETS",
        "BYTES",
        if previous.is_some() {
            "        PPS       BPS"
        } else {
            ""
        }
    )?;
    for c in &snapshot.counters {
        write!(
            out,
            "{:<18} {:<24} {:<8} {:<22} {:>12} {:>14}",
            c.program,
            c.network,
            c.verdict,
            c.reason.as_deref().unwrap_or("-"),
            c.packets,
            c.bytes
        )?;
        if let Some((_, interval)) = previous {
            let (p0, b0) = before.get(&key(c)).map_or((0, 0), |b| (b.packets, b.bytes));
            let secs = interval.as_secs_f64();
            write!(
                out,
                " {:>10.0} {:>9.0}",
                (c.packets.saturating_sub(p0)) as f64 / secs,
                (c.bytes.saturating_sub(b0)) as f64 * 8.0 / secs
            )?;
        }
        writeln!(out)?;
    }
    if snapshot.counters.is_empty() {
        writeln!(out, "(no packets counted yet)")?;
    }
    writeln!(out)?;
    for p in &snapshot.programs {
        writeln!(
            out,
            "program {} id {} tag {}: {} runs, {} ns",
            p.name, p.id, p.tag, p.run_count, p.run_time_ns
        )?;
    }
    for m in &snapshot.maps {
        writeln!(
            out,
            "map {:<16} {:>6} / {:<6} entries",
            m.name, m.entries, m.max_entries
        )?;
    }
    Ok(())
}

fn key(c: &Counter) -> (String, u32, String, Option<String>) {
    (
        c.program.clone(),
        c.network_id,
        c.verdict.clone(),
        c.reason.clone(),
    )
}
