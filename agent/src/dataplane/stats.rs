//! Reading the pinned counters, without a running agent (`gridnet bpf-stats`).

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{Array, HashMap, Map, MapData, MapInfo, PerCpuArray, PerCpuHashMap},
    programs::ProgramInfo,
};
use gridnet_common::{
    maps::{
        Endpoint, EndpointKey, Iface, MAP_ENDPOINTS, MAP_IFACES, MAP_NETWORKS, MAP_STATS,
        MAP_UPLINK_PORT_BITS, MAP_UPLINK_PORTS, MAP_UPLINK_STATS, NetworkName, PortKey, Stats,
        StatsKey,
    },
    uplink::Guard,
    verdict::{DropReason, Program, Verdict},
};
use serde::Serialize;

use super::pins;

/// Layout version of the JSON that `gridnet bpf-stats --json` prints (documented in
/// `docs/bpf-stats.md`); bumped on any incompatible change.
pub const JSON_VERSION: u32 = 1;

/// Errors of reading the pins.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(
        "nothing is pinned at {path}: no gridnet datapath runs with this pin root (is the agent started, or is --pin-root right?)"
    )]
    NotPinned { path: String },
    #[error("cannot read pinned map {path}")]
    Map {
        path: String,
        #[source]
        source: aya::maps::MapError,
    },
}

/// One counter: packets and bytes of one program, network and outcome, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub program: String,
    pub network_id: u32,
    pub network: String,
    pub verdict: String,
    /// The drop reason; `null` unless `verdict` is `drop`.
    pub reason: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// Run statistics of one pinned program (counted while `BPF_ENABLE_STATS` is on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramStats {
    pub name: String,
    pub id: u32,
    pub tag: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// How full a map is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapFill {
    pub name: String,
    pub entries: u32,
    pub max_entries: u32,
}

/// Everything `gridnet bpf-stats` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub version: u32,
    pub counters: Vec<Counter>,
    pub programs: Vec<ProgramStats>,
    pub maps: Vec<MapFill>,
}

impl Snapshot {
    /// Reads the maps and programs pinned under `pin_root`.
    pub fn read(pin_root: &Path) -> Result<Self, StatsError> {
        let maps_dir = pins::maps_dir(pin_root);
        let stats_path = maps_dir.join(MAP_STATS);
        if !stats_path.exists() {
            return Err(StatsError::NotPinned {
                path: stats_path.display().to_string(),
            });
        }
        let names = network_names(&maps_dir.join(MAP_NETWORKS))?;
        let stats: PerCpuHashMap<MapData, StatsKey, Stats> =
            PerCpuHashMap::try_from(Map::PerCpuHashMap(open(&stats_path)?))
                .map_err(map_err(&stats_path))?;
        let mut keyed = Vec::new();
        for entry in stats.iter() {
            let (key, per_cpu) = entry.map_err(map_err(&stats_path))?;
            let (packets, bytes) = sum(&per_cpu);
            keyed.push(counter(&key, packets, bytes, &names));
        }
        let stats_entries = keyed.len();
        let uplink = uplink_counters(&maps_dir.join(MAP_UPLINK_STATS), &names)?;
        let counters = merge(keyed.into_iter().chain(uplink));
        let programs = Program::ALL
            .into_iter()
            .filter_map(|program| {
                let info = ProgramInfo::from_pin(pins::program_pin(pin_root, program)).ok()?;
                Some(ProgramStats {
                    name: program.name().to_owned(),
                    id: info.id(),
                    tag: format!("{:016x}", info.tag()),
                    run_count: info.run_count(),
                    run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        let mut maps = Vec::new();
        let counted: [(&str, CountKeys); 4] = [
            (MAP_UPLINK_PORTS, count_keys::<PortKey, u32>),
            (MAP_IFACES, count_keys::<u32, Iface>),
            (MAP_ENDPOINTS, count_keys::<EndpointKey, Endpoint>),
            (MAP_NETWORKS, count_keys::<u32, NetworkName>),
        ];
        for (name, count) in counted {
            let path = maps_dir.join(name);
            if let Ok(info) = MapInfo::from_pin(&path) {
                maps.push(MapFill {
                    name: name.to_owned(),
                    entries: count(&path)?,
                    max_entries: info.max_entries(),
                });
            }
        }
        let bits_path = maps_dir.join(MAP_UPLINK_PORT_BITS);
        if MapInfo::from_pin(&bits_path).is_ok() {
            maps.push(port_bits_fill(&bits_path)?);
        }
        if let Ok(info) = MapInfo::from_pin(&stats_path) {
            let entries = u32::try_from(stats_entries).unwrap_or(u32::MAX);
            maps.push(MapFill {
                name: MAP_STATS.to_owned(),
                entries,
                max_entries: info.max_entries(),
            });
        }
        Ok(Self {
            version: JSON_VERSION,
            counters,
            programs,
            maps,
        })
    }

    /// The counter of one program, network, verdict and reason, if it was ever hit.
    pub fn get(
        &self,
        program: Program,
        network: &str,
        verdict: Verdict,
        reason: DropReason,
    ) -> Option<&Counter> {
        let reason = (verdict == Verdict::Drop).then(|| reason.name());
        self.counters.iter().find(|c| {
            c.program == program.name()
                && c.network == network
                && c.verdict == verdict.name()
                && c.reason.as_deref() == reason
        })
    }
}

fn sum(per_cpu: &[Stats]) -> (u64, u64) {
    per_cpu
        .iter()
        .fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes))
}

/// The uplink guard's counters, from its per-CPU array, as the rows they were when the guard
/// counted in the keyed map: program `xdp_uplink`, no network, one row per outcome it has seen.
/// Nothing pinned (no guard loaded yet) reads as no rows.
fn uplink_counters(path: &Path, names: &BTreeMap<u32, String>) -> Result<Vec<Counter>, StatsError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let array: PerCpuArray<MapData, Stats> =
        PerCpuArray::try_from(Map::PerCpuArray(open(path)?)).map_err(map_err(path))?;
    let mut rows = Vec::new();
    for (slot, per_cpu) in array.iter().enumerate() {
        let (packets, bytes) = sum(&per_cpu.map_err(map_err(path))?);
        if packets == 0 {
            continue;
        }
        let outcome = u32::try_from(slot).ok().and_then(Guard::of_stats_slot);
        // Only a foreign map could hold more slots than reasons have numbers.
        let Some((verdict, reason)) = outcome else {
            continue;
        };
        let key = StatsKey {
            program: Program::XdpUplink as u8,
            verdict: verdict as u8,
            reason,
            _pad: 0,
            network_id: 0,
        };
        rows.push(counter(&key, packets, bytes, names));
    }
    Ok(rows)
}

/// One row per {program, network, verdict, reason}, sorted: rows of the same counter (the
/// guard's, from a keyed map an earlier guard wrote and from its array) are added up.
fn merge(rows: impl Iterator<Item = Counter>) -> Vec<Counter> {
    let mut merged: BTreeMap<(String, u32, String, Option<String>), Counter> = BTreeMap::new();
    for row in rows {
        let key = (
            row.program.clone(),
            row.network_id,
            row.verdict.clone(),
            row.reason.clone(),
        );
        match merged.get_mut(&key) {
            Some(seen) => {
                seen.packets += row.packets;
                seen.bytes += row.bytes;
            }
            None => {
                merged.insert(key, row);
            }
        }
    }
    merged.into_values().collect()
}

fn counter(key: &StatsKey, packets: u64, bytes: u64, names: &BTreeMap<u32, String>) -> Counter {
    let program = Program::from_u8(key.program).map_or_else(
        || format!("unknown({})", key.program),
        |p| p.name().to_owned(),
    );
    let verdict = Verdict::from_u8(key.verdict);
    let reason = match verdict {
        Some(Verdict::Drop) => Some(DropReason::from_u8(key.reason).map_or_else(
            || format!("unknown({})", key.reason),
            |r| r.name().to_owned(),
        )),
        _ => None,
    };
    Counter {
        program,
        network_id: key.network_id,
        network: match key.network_id {
            0 => "-".to_owned(),
            id => names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
        },
        verdict: verdict.map_or_else(
            || format!("unknown({})", key.verdict),
            |v| v.name().to_owned(),
        ),
        reason,
        packets,
        bytes,
    }
}

fn network_names(path: &Path) -> Result<BTreeMap<u32, String>, StatsError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let map: HashMap<MapData, u32, NetworkName> =
        HashMap::try_from(Map::HashMap(open(path)?)).map_err(map_err(path))?;
    map.iter()
        .map(|entry| entry.map(|(id, name)| (id, name.as_str().to_owned())))
        .collect::<Result<_, _>>()
        .map_err(map_err(path))
}

/// The fill of the guard's port bitmap, in ports rather than words: `entries` is the bits set
/// (the ports the guard lets in), `max_entries` the bits there are. The agent keeps the bitmap
/// equal to the allow-list (`GRIDNET_PORTS_1`), so the two show the same number; a difference is
/// a bitmap out of step, which the agent mends when its datapath next opens.
fn port_bits_fill(path: &Path) -> Result<MapFill, StatsError> {
    let words: Array<MapData, u64> =
        Array::try_from(Map::Array(open(path)?)).map_err(map_err(path))?;
    let mut set = 0u32;
    for word in words.iter() {
        set += word.map_err(map_err(path))?.count_ones();
    }
    Ok(MapFill {
        name: MAP_UPLINK_PORT_BITS.to_owned(),
        entries: set,
        max_entries: words.len().saturating_mul(u64::BITS),
    })
}

/// Counts the keys of one pinned hash map.
type CountKeys = fn(&Path) -> Result<u32, StatsError>;

fn count_keys<K: aya::Pod, V: aya::Pod>(path: &Path) -> Result<u32, StatsError> {
    let map: HashMap<MapData, K, V> =
        HashMap::try_from(Map::HashMap(open(path)?)).map_err(map_err(path))?;
    Ok(u32::try_from(map.keys().count()).unwrap_or(u32::MAX))
}

fn open(path: &Path) -> Result<MapData, StatsError> {
    MapData::from_pin(path).map_err(map_err(path))
}

fn map_err(path: &Path) -> impl FnOnce(aya::maps::MapError) -> StatsError + '_ {
    move |source| StatsError::Map {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(program: &str, verdict: &str, reason: Option<&str>, packets: u64) -> Counter {
        Counter {
            program: program.to_owned(),
            network_id: 0,
            network: "-".to_owned(),
            verdict: verdict.to_owned(),
            reason: reason.map(str::to_owned),
            packets,
            bytes: packets * 60,
        }
    }

    #[test]
    fn rows_of_one_counter_add_up_and_come_out_sorted() {
        let merged = merge(
            [
                row("xdp_uplink", "pass", None, 3),
                row("tc_from_container", "drop", Some("spoofed_ip"), 1),
                row("xdp_uplink", "drop", Some("unsolicited"), 5),
                row("xdp_uplink", "pass", None, 4),
            ]
            .into_iter(),
        );
        assert_eq!(
            merged,
            [
                row("tc_from_container", "drop", Some("spoofed_ip"), 1),
                row("xdp_uplink", "drop", Some("unsolicited"), 5),
                row("xdp_uplink", "pass", None, 7),
            ]
        );
    }
}
