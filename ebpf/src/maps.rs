//! The maps, as BTF map definitions: the object carries the key and value types of every map,
//! so the kernel knows them and `bpftool map dump` prints field names and typed values.
//!
//! Each static's name IS the map's name: keep them equal to the `MAP_*` constants of
//! `gridnet_common::maps` (the agent opens them by those constants and fails loudly otherwise).
//! A BTF definition has no pinning of its own; the agent pins every map listed in
//! `gridnet_common::maps::ALL_MAPS` under `<pin root>/maps/<name>` and reuses a pinned map when
//! one is there, so the maps outlive the agent and a restarted agent finds them.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
    macros::btf_map,
};
use gridnet_common::{
    datapath::Tables,
    maps::{
        Endpoint, EndpointKey, Iface, MAX_ENDPOINTS, MAX_IFACES, MAX_NETWORKS, MAX_ROUTES,
        MAX_STATS, MAX_TUNNELS, MAX_UPLINK_PORTS, NetworkName, PortKey, ROUTE_KEY_BITS, Route,
        RouteKey, Stats, StatsKey, UPLINK_PORT_WORDS, UPLINK_STATS_SLOTS, UplinkConfig,
    },
    tunnel::TunnelTables,
    uplink::UplinkTables,
    verdict::{DropReason, Program, Verdict},
};

#[btf_map]
static GRIDNET_IFACE_1: HashMap<u32, Iface, { MAX_IFACES as usize }> = HashMap::new();

#[btf_map]
static GRIDNET_ENDPT_1: HashMap<EndpointKey, Endpoint, { MAX_ENDPOINTS as usize }> = HashMap::new();

#[btf_map]
static GRIDNET_STATS_1: PerCpuHashMap<StatsKey, Stats, { MAX_STATS as usize }> =
    PerCpuHashMap::new();

/// A trie must not be preallocated (the kernel refuses it otherwise); `LpmTrie`'s flags default
/// to `BPF_F_NO_PREALLOC`.
#[btf_map]
static GRIDNET_ROUTE_1: LpmTrie<RouteKey, Route, { MAX_ROUTES as usize }> = LpmTrie::new();

#[btf_map]
static GRIDNET_TUNL_1: HashMap<u32, u32, { MAX_TUNNELS as usize }> = HashMap::new();

/// Only the agent and `gridnet bpf-stats` use it; it lives here so it is pinned with the rest.
#[btf_map]
static GRIDNET_NETS_1: HashMap<u32, NetworkName, { MAX_NETWORKS as usize }> = HashMap::new();

#[btf_map]
static GRIDNET_PORTS_1: HashMap<PortKey, u32, { MAX_UPLINK_PORTS as usize }> = HashMap::new();

/// The guard reads its allowed ports here, not in `GRIDNET_PORTS_1` (see `MAP_UPLINK_PORT_BITS`).
#[btf_map]
static GRIDNET_PORTBITS_1: Array<u64, { UPLINK_PORT_WORDS as usize }> = Array::new();

#[btf_map]
static GRIDNET_UPCFG_1: Array<UplinkConfig, 1> = Array::new();

#[btf_map]
static GRIDNET_UPCNT_1: PerCpuArray<Stats, { UPLINK_STATS_SLOTS as usize }> = PerCpuArray::new();

/// The maps as the datapath logic sees them.
pub struct Maps;

impl Tables for Maps {
    #[inline(always)]
    fn iface(&self, ifindex: u32) -> Option<Iface> {
        // SAFETY: the value is copied out at once; no reference outlives the lookup.
        unsafe { GRIDNET_IFACE_1.get(ifindex) }.copied()
    }

    #[inline(always)]
    fn endpoint(&self, key: &EndpointKey) -> Option<Endpoint> {
        // SAFETY: as above.
        unsafe { GRIDNET_ENDPT_1.get(key) }.copied()
    }

    #[inline(always)]
    fn route(&self, key: &RouteKey) -> Option<Route> {
        GRIDNET_ROUTE_1
            .get(&Key::new(ROUTE_KEY_BITS, *key))
            .copied()
    }
}

impl TunnelTables for Maps {
    #[inline(always)]
    fn tunnel_network(&self, ifindex: u32) -> Option<u32> {
        // SAFETY: the value is copied out at once; no reference outlives the lookup.
        unsafe { GRIDNET_TUNL_1.get(ifindex) }.copied()
    }
}

impl UplinkTables for Maps {
    #[inline(always)]
    fn config(&self) -> Option<&UplinkConfig> {
        GRIDNET_UPCFG_1.get(0)
    }

    #[inline(always)]
    fn port_word(&self, index: u32) -> u64 {
        GRIDNET_PORTBITS_1.get(index).copied().unwrap_or(0)
    }
}

/// Adds one packet of `bytes` to its counter.
#[inline(always)]
pub fn count(program: Program, verdict: Verdict, reason: DropReason, network_id: u32, bytes: u32) {
    let key = StatsKey {
        program: program as u8,
        verdict: verdict as u8,
        reason: reason as u8,
        _pad: 0,
        network_id,
    };
    let counter = match GRIDNET_STATS_1.get_ptr_mut(key) {
        Some(counter) => counter,
        None => {
            // A lost race with another CPU inserting the same key is harmless: the value is
            // per-CPU, and BPF_NOEXIST keeps the other CPU's slot.
            let _ = GRIDNET_STATS_1.insert(key, Stats::default(), 0);
            match GRIDNET_STATS_1.get_ptr_mut(key) {
                Some(counter) => counter,
                None => return,
            }
        }
    };
    // SAFETY: the pointer is this CPU's slot of a live map value; BPF programs are not
    // preempted by another program on the same CPU for the same map slot.
    unsafe {
        (*counter).packets += 1;
        (*counter).bytes += u64::from(bytes);
    }
}

/// Adds one packet of `bytes` to the uplink guard's counter in `slot` (see
/// `Guard::stats_slot`).
#[inline(always)]
pub fn count_uplink(slot: u32, bytes: u32) {
    // Every slot a guard outcome has exists (asserted in `gridnet_common`); the check is for the
    // verifier.
    let Some(counter) = GRIDNET_UPCNT_1.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: as in `count`: this CPU's slot of a live map value.
    unsafe {
        (*counter).packets += 1;
        (*counter).bytes += u64::from(bytes);
    }
}

#[cfg(not(target_arch = "bpf"))]
const _: () = {
    let _ = GRIDNET_NETS_1;
    let _ = GRIDNET_PORTS_1;
};
