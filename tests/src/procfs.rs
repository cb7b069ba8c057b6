//! What a process holds, read from `/proc`: its sockets, and whether it listens on a port. This
//! tells a server's readiness without connecting to it (a one-shot server would take the probe
//! for its client), and tells *which* process listens (a probe that connects cannot).

use std::io::ErrorKind;

use anyhow::Context as _;

/// The inodes of the sockets process `pid` holds open.
pub fn socket_inodes(pid: u32) -> anyhow::Result<Vec<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        // A descriptor closed since the listing has no link to read: skip it.
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            inodes.push(inode);
        }
    }
    Ok(inodes)
}

/// The TCP and UDP sockets (IPv4 and IPv6) of the network namespace process `pid` runs in, from
/// `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`; [`socket_inodes`] tells which are the process's own.
pub fn inet_sockets(pid: u32) -> anyhow::Result<Vec<InetSocket>> {
    let mut sockets = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // A kernel without IPv6 has no *6 tables.
            Err(e) if e.kind() == ErrorKind::NotFound && table.ends_with('6') => continue,
            Err(e) => return Err(e).with_context(|| format!("read {path}")),
        };
        sockets.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| InetSocket::parse(table, line)),
        );
    }
    Ok(sockets)
}

/// Whether process `pid` itself holds a TCP socket listening on `port` (any address, IPv4 or
/// IPv6), in its network namespace.
pub fn listens_on(pid: u32, port: u16) -> anyhow::Result<bool> {
    let held = socket_inodes(pid)?;
    Ok(inet_sockets(pid)?.iter().any(|s| {
        s.table.starts_with("tcp") && s.listening && s.local_port == port && held.contains(&s.inode)
    }))
}

/// One line of `/proc/net/{tcp,udp}[6]`.
#[derive(Debug, Clone)]
pub struct InetSocket {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub table: &'static str,
    pub local_port: u16,
    /// TCP state LISTEN (`0A`).
    pub listening: bool,
    pub inode: u64,
    /// The line as the kernel wrote it, for messages.
    pub line: String,
}

impl InetSocket {
    fn parse(table: &'static str, line: &str) -> Option<Self> {
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (_, port) = fields.get(1)?.rsplit_once(':')?;
        Some(Self {
            table,
            local_port: u16::from_str_radix(port, 16).ok()?,
            listening: *fields.get(3)? == "0A",
            inode: fields.get(9)?.parse().ok()?,
            line: line.trim().to_owned(),
        })
    }
}
