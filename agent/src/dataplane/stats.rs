//! Reading the pinned counters, without a running agent (`gridnet bpf-stats`).

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{HashMap, Map, MapData, MapInfo, PerCpuHashMap},
    programs::ProgramInfo,
};
use gridnet_common::{
    maps::{
        Endpoint, EndpointKey, Iface, MAP_ENDPOINTS, MAP_IFACES, MAP_NETWORKS, MAP_STATS,
        MAP_UPLINK_PORTS, NetworkName, PortKey, Stats, StatsKey,
    },
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
        let mut counters = Vec::new();
        for entry in stats.iter() {
            let (key, per_cpu) = entry.map_err(map_err(&stats_path))?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
            counters.push(counter(&key, packets, bytes, &names));
        }
        counters.sort_by(|a, b| {
            (&a.program, a.network_id, &a.verdict, &a.reason).cmp(&(
                &b.program,
                b.network_id,
                &b.verdict,
                &b.reason,
            ))
        });
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
        if let Ok(info) = MapInfo::from_pin(&stats_path) {
            let entries = u32::try_from(counters.len()).unwrap_or(u32::MAX);
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
