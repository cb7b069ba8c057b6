//! Types shared by gridnet's eBPF programs and its agent.
//!
//! Everything that crosses the kernel/user boundary is defined here, once: map names, map keys
//! and values, verdicts and drop reasons, and the packet logic itself. The packet logic is plain
//! Rust over a [`packet::Frame`], so the same code runs in the kernel and in host unit tests.
//!
//! Layout rules for shared structs: `#[repr(C)]`, `Copy`, only byte arrays and unsigned integers,
//! explicit padding fields, and a size assertion beside each. Multi-byte fields that travel in
//! packets stay in network order as byte arrays.
#![cfg_attr(not(test), no_std)]

pub mod datapath;
pub mod maps;
pub mod packet;
pub mod tunnel;
pub mod uplink;
pub mod verdict;

/// The MAC address gridnet answers with for every container's gateway and neighbours.
///
/// Locally administered (`0x02`), unicast; the bytes spell "gn" so it is recognisable in captures.
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x67, 0x6e, 0x00, 0x00, 0x01];
