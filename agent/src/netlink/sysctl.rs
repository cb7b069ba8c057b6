//! Per-interface IPv6 settings, through `/proc/sys/net/ipv6/conf/<interface>/`, which shows the
//! network namespace of the thread that opens it.

use std::{io, path::PathBuf};

fn disable_ipv6_path(interface: &str) -> PathBuf {
    PathBuf::from("/proc/sys/net/ipv6/conf")
        .join(interface)
        .join("disable_ipv6")
}

/// Whether IPv6 is off on `interface`.
pub fn ipv6_disabled(interface: &str) -> io::Result<bool> {
    Ok(std::fs::read_to_string(disable_ipv6_path(interface))?.trim() == "1")
}

/// Turns IPv6 off on `interface`: it then holds no IPv6 address, not even a link-local one,
/// and sends nothing of its own (no router solicitations, no MLD reports). Done before the
/// interface comes up, so it never does.
pub fn disable_ipv6(interface: &str) -> io::Result<()> {
    std::fs::write(disable_ipv6_path(interface), b"1")
}
