//! The one place that names what the tests create: namespaces, pin directories, scratch
//! directories, etcd members. Everything is called `gridnet-<label>-<id>`, so tests running in
//! parallel (threads here, other test binaries, `gridnet-lab`) never meet, and what a killed test
//! process leaves behind is recognisable: `ip netns list | grep '^gridnet-'`.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// The start of every name the tests give to a kernel object or a scratch path.
pub const PREFIX: &str = "gridnet-";

/// Where bpffs is mounted; each node pins its programs and maps in a directory of its own here.
pub const BPFFS: &str = "/sys/fs/bpf";

/// A short id unique among the processes alive on this machine and the calls in this one.
///
/// The process id takes a fixed six hex digits (Linux pids stay below 2^22), so an id can never
/// read as another process's id followed by another counter. It stays short because some ids end
/// up in interface names, which the kernel limits to 15 bytes.
pub fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:06x}{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The name `gridnet-<label>-<id>`.
pub fn name(label: &str, id: &str) -> String {
    format!("{PREFIX}{label}-{id}")
}

/// A fresh name `gridnet-<label>-<id>`, for a namespace, a pin directory or a scratch path.
pub fn unique_name(label: &str) -> String {
    name(label, &unique_id())
}

/// The pin directory on bpffs for objects named `name`.
pub fn pin_root(name: &str) -> PathBuf {
    PathBuf::from(BPFFS).join(name)
}

/// A scratch path under the system temp dir for objects named `name`.
pub fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}
