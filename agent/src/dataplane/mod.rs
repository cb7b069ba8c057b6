//! The eBPF datapath: loading, pinning, attaching, typed maps, statistics.
