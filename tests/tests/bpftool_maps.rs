//! The pinned maps as an operator reads them with the real `bpftool`: every map carries the BTF
//! of its key and value, so `bpftool map dump` prints field names and typed values; a restarted
//! agent keeps the very same maps; and a map pinned without BTF (by an earlier datapath) is
//! adopted as it is and keeps forwarding.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::plan::NodePlan;
use gridnet_common::maps::{
    ALL_MAPS, Endpoint, EndpointKey, Iface, MAP_ENDPOINTS, MAP_IFACES, MAP_NETWORKS, MAP_ROUTES,
    MAP_STATS, MAP_TUNNELS, MAP_UPLINK_CONFIG, MAP_UPLINK_PORT_BITS, MAP_UPLINK_PORTS,
    MAP_UPLINK_STATS, MAX_ENDPOINTS, MAX_IFACES, MAX_NETWORKS, MAX_ROUTES, MAX_STATS, MAX_TUNNELS,
    MAX_UPLINK_PORTS, NetworkName, PortKey, Route, RouteKey, Stats, StatsKey, UPLINK_STATS_SLOTS,
    UplinkConfig,
};
use gridnet_tests::{
    Grid, Node, bpftool, ping, proto::WIREGUARD_PORT, test_container, test_network, wait,
};
use serde_json::Value;

/// What `bpftool` must show of a map's entries: the fields of its key and of its value (none
/// for a plain integer; `a/b` is field `b` of field `a`), and whether the value is per CPU.
struct Shape {
    name: &'static str,
    key: &'static [&'static str],
    value: &'static [&'static str],
    per_cpu: bool,
}

const SHAPES: [Shape; 10] = [
    Shape {
        name: MAP_IFACES,
        key: &[],
        value: &["network_id", "ipv4", "ipv6", "mac"],
        per_cpu: false,
    },
    Shape {
        name: MAP_ENDPOINTS,
        key: &["network_id", "addr"],
        value: &["ifindex", "mac", "flags"],
        per_cpu: false,
    },
    Shape {
        name: MAP_STATS,
        key: &["program", "verdict", "reason", "network_id"],
        value: &["packets", "bytes"],
        per_cpu: true,
    },
    Shape {
        name: MAP_NETWORKS,
        key: &[],
        value: &["len", "bytes"],
        per_cpu: false,
    },
    Shape {
        name: MAP_UPLINK_PORTS,
        key: &["protocol", "port"],
        value: &[],
        per_cpu: false,
    },
    Shape {
        name: MAP_UPLINK_PORT_BITS,
        key: &[],
        value: &[],
        per_cpu: false,
    },
    Shape {
        name: MAP_UPLINK_CONFIG,
        key: &[],
        value: &["ephemeral_low", "ephemeral_high", "enforcing"],
        per_cpu: false,
    },
    Shape {
        name: MAP_UPLINK_STATS,
        key: &[],
        value: &["packets", "bytes"],
        per_cpu: true,
    },
    Shape {
        name: MAP_ROUTES,
        key: &["prefix_len", "data/network_id", "data/addr"],
        value: &["ifindex"],
        per_cpu: false,
    },
    Shape {
        name: MAP_TUNNELS,
        key: &[],
        value: &[],
        per_cpu: false,
    },
];

fn bpftool_json(args: &[&str]) -> anyhow::Result<Value> {
    let out = bpftool(&[&["-j"], args].concat())?;
    serde_json::from_str(&out).with_context(|| format!("bpftool {args:?}: not JSON"))
}

fn pin(pin_root: &Path, name: &str) -> anyhow::Result<String> {
    Ok(pin_root
        .join("maps")
        .join(name)
        .to_str()
        .context("pin path")?
        .to_owned())
}

/// `bpftool map dump pinned` of map `name` under `pin_root`: its entries.
fn dump(pin_root: &Path, name: &str) -> anyhow::Result<Vec<Value>> {
    let entries = bpftool_json(&["map", "dump", "pinned", &pin(pin_root, name)?])?;
    entries.as_array().cloned().context("a dump is a list")
}

/// `bpftool map show pinned` of map `name` under `pin_root`.
fn show(pin_root: &Path, name: &str) -> anyhow::Result<Value> {
    bpftool_json(&["map", "show", "pinned", &pin(pin_root, name)?])
}

/// Checks that a formatted key or value has `fields` (or, with none, is an integer).
fn has_fields(what: &str, formatted: &Value, fields: &[&str]) -> anyhow::Result<()> {
    if fields.is_empty() {
        ensure!(
            formatted.is_u64(),
            "{what} is not a typed integer: {formatted}"
        );
    }
    for field in fields {
        ensure!(
            formatted.pointer(&format!("/{field}")).is_some(),
            "{what} has no field `{field}`: {formatted}"
        );
    }
    Ok(())
}

/// Checks that every entry of a map dump shows the fields of `shape`.
fn check_formatted(shape: &Shape, entries: &[Value]) -> anyhow::Result<()> {
    let name = shape.name;
    ensure!(!entries.is_empty(), "{name} is empty");
    for entry in entries {
        let Some(formatted) = entry.get("formatted") else {
            bail!("{name}: bpftool shows raw bytes only (the map has no BTF): {entry}");
        };
        has_fields(&format!("{name}'s key"), &formatted["key"], shape.key)?;
        if shape.per_cpu {
            let cpus = formatted["values"].as_array().context("per-CPU values")?;
            ensure!(!cpus.is_empty(), "{name}: no CPU's value in {formatted}");
            for cpu in cpus {
                has_fields(&format!("{name}'s value"), &cpu["value"], shape.value)?;
            }
        } else {
            has_fields(&format!("{name}'s value"), &formatted["value"], shape.value)?;
        }
    }
    Ok(())
}

/// The kernel ids of the pinned maps `names`.
fn map_ids(pin_root: &Path, names: &[&str]) -> anyhow::Result<Vec<u64>> {
    names
        .iter()
        .map(|name| show(pin_root, name)?["id"].as_u64().context("map id"))
        .collect()
}

#[test]
fn bpftool_shows_every_map_with_field_names_and_a_restart_keeps_the_maps() -> anyhow::Result<()> {
    // Two nodes sharing alice/web, so node 1 has a tunnel and a route besides its container,
    // and the guard on its uplink allows WireGuard's port.
    let mut grid = Grid::new("btfmaps", 2)?;
    grid.network("alice", "web", &[1, 2], WIREGUARD_PORT)?;
    grid.container("alice", "w1", "web", 1, 2)?;
    let seq = grid.container("alice", "w2", "web", 2, 2)?;
    grid.start("uplinks: [up0]\n", seq)?;
    // Traffic through the tunnel fills the counters: the container's, and the guard's for the
    // WireGuard packets on the uplink.
    let w1 = grid.node(1).container_ns("alice.w1");
    wait::until(
        Duration::from_secs(20),
        "w1 reaching w2 through the tunnel",
        || ping(&w1, "10.1.2.2", 1),
        |&replied| replied,
    )?;

    let pin_root = grid.node(1).pin_root.clone();
    for shape in &SHAPES {
        let entries = wait::until(
            Duration::from_secs(10),
            &format!("entries in {}", shape.name),
            || dump(&pin_root, shape.name),
            |entries| !entries.is_empty(),
        )?;
        check_formatted(shape, &entries)?;
        let info = show(&pin_root, shape.name)?;
        ensure!(
            info["btf_id"].as_u64().is_some_and(|id| id > 0),
            "{} has no BTF: {info}",
            shape.name
        );
    }

    // A restarted agent reuses every pinned map: the same kernel objects, still with BTF.
    let before = map_ids(&pin_root, &ALL_MAPS)?;
    grid.restart(1, "uplinks: [up0]\n", seq)?;
    assert_eq!(
        map_ids(&pin_root, &ALL_MAPS)?,
        before,
        "a restart replaced pinned maps"
    );
    ensure!(
        ping(&w1, "10.1.2.2", 2)?,
        "w1 cannot reach w2 after the restart"
    );
    check_formatted(&SHAPES[1], &dump(&pin_root, MAP_ENDPOINTS)?)?;
    Ok(())
}

/// `bpftool map create` arguments of each map as a datapath without BTF pinned it: the same
/// type, sizes, capacity and flags, no key or value types.
fn legacy_definitions() -> [(&'static str, &'static str, usize, usize, u32, u32); 9] {
    use std::mem::size_of;
    // An LPM trie must not be preallocated: BPF_F_NO_PREALLOC.
    const NO_PREALLOC: u32 = 1;
    // The trie's key is the prefix length (a u32) followed by the route key.
    let route_key = size_of::<u32>() + size_of::<RouteKey>();
    [
        (MAP_IFACES, "hash", 4, size_of::<Iface>(), MAX_IFACES, 0),
        (
            MAP_ENDPOINTS,
            "hash",
            size_of::<EndpointKey>(),
            size_of::<Endpoint>(),
            MAX_ENDPOINTS,
            0,
        ),
        (
            MAP_STATS,
            "percpu_hash",
            size_of::<StatsKey>(),
            size_of::<Stats>(),
            MAX_STATS,
            0,
        ),
        (
            MAP_NETWORKS,
            "hash",
            4,
            size_of::<NetworkName>(),
            MAX_NETWORKS,
            0,
        ),
        (
            MAP_UPLINK_PORTS,
            "hash",
            size_of::<PortKey>(),
            4,
            MAX_UPLINK_PORTS,
            0,
        ),
        (
            MAP_UPLINK_CONFIG,
            "array",
            4,
            size_of::<UplinkConfig>(),
            1,
            0,
        ),
        (
            MAP_UPLINK_STATS,
            "percpu_array",
            4,
            size_of::<Stats>(),
            UPLINK_STATS_SLOTS,
            0,
        ),
        (
            MAP_ROUTES,
            "lpm_trie",
            route_key,
            size_of::<Route>(),
            MAX_ROUTES,
            NO_PREALLOC,
        ),
        (MAP_TUNNELS, "hash", 4, 4, MAX_TUNNELS, 0),
    ]
}

#[test]
fn maps_pinned_without_btf_are_adopted_and_keep_forwarding() -> anyhow::Result<()> {
    let node = Node::new()?;
    let maps_dir = node.pin_root.join("maps");
    std::fs::create_dir_all(&maps_dir)?;
    for (name, kind, key, value, entries, flags) in legacy_definitions() {
        let (key, value) = (key.to_string(), value.to_string());
        let (entries, flags) = (entries.to_string(), flags.to_string());
        let path = pin(&node.pin_root, name)?;
        let args = [
            "map", "create", &path, "type", kind, "key", &key, "value", &value, "entries",
            &entries, "name", name, "flags", &flags,
        ];
        bpftool(&args)?;
    }
    // Maps added since (the guard's port bitmap) are made with BTF next to the adopted ones.
    let legacy: Vec<&str> = legacy_definitions().iter().map(|d| d.0).collect();
    let before = map_ids(&node.pin_root, &legacy)?;

    let network = "alice/a";
    node.apply(&NodePlan {
        networks: vec![test_network(network)],
        containers: vec![
            test_container("a1", network, 2),
            test_container("a2", network, 3),
        ],
        gateways: Vec::new(),
    })?;
    assert_eq!(
        map_ids(&node.pin_root, &legacy)?,
        before,
        "the pinned maps were replaced"
    );
    ensure!(
        ping(&node.container_ns("a1"), "10.1.1.3", 2)?,
        "a1 cannot reach a2 through the adopted maps"
    );
    // Adopted maps keep their definition: bpftool prints their bytes, as before.
    let endpoints = dump(&node.pin_root, MAP_ENDPOINTS)?;
    ensure!(
        endpoints.len() == 4,
        "two containers, two addresses each: {endpoints:?}"
    );
    ensure!(
        endpoints.iter().all(|e| e.get("formatted").is_none()),
        "a map without BTF shown formatted: {endpoints:?}"
    );
    Ok(())
}
