//! Reading the datapath's counters: `gridnet bpf-stats` for a pin root, and the counters tests
//! look for in its JSON.

use std::{path::Path, process::Command};

use anyhow::{Context as _, ensure};

use crate::gridnet_bin;

/// `gridnet bpf-stats --json` for the pins under `pin_root`, parsed.
pub(crate) fn json(pin_root: &Path) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_slice(&bpf_stats(pin_root, &["--json"])?)?)
}

/// `gridnet bpf-stats` (the table an operator reads) for the pins under `pin_root`.
pub(crate) fn table(pin_root: &Path) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&bpf_stats(pin_root, &[])?).into_owned())
}

fn bpf_stats(pin_root: &Path, extra: &[&str]) -> anyhow::Result<Vec<u8>> {
    let pin_root = pin_root.to_str().context("pin root")?;
    let out = Command::new(gridnet_bin()?)
        .arg("bpf-stats")
        .args(extra)
        .args(["--pin-root", pin_root])
        .output()?;
    ensure!(
        out.status.success(),
        "gridnet bpf-stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// The counter (packets, bytes) of `tc_from_container` for a network, verdict and reason in a
/// `bpf-stats --json`; zeroes when the datapath has not counted it yet.
pub fn counter(
    stats: &serde_json::Value,
    network: &str,
    verdict: &str,
    reason: Option<&str>,
) -> (u64, u64) {
    let counters = stats["counters"].as_array().cloned().unwrap_or_default();
    counters
        .iter()
        .find(|c| {
            c["program"] == "tc_from_container"
                && c["network"] == network
                && c["verdict"] == verdict
                && c["reason"].as_str() == reason
        })
        .map_or((0, 0), |c| {
            (
                c["packets"].as_u64().unwrap_or(0),
                c["bytes"].as_u64().unwrap_or(0),
            )
        })
}

/// Packets `xdp_uplink` dropped, for one reason or (`None`) all, in a `bpf-stats --json`.
pub fn xdp_drops(stats: &serde_json::Value, reason: Option<&str>) -> u64 {
    stats["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["program"] == "xdp_uplink"
                && c["verdict"] == "drop"
                && reason.is_none_or(|r| c["reason"] == r)
        })
        .filter_map(|c| c["packets"].as_u64())
        .sum()
}
