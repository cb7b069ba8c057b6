//! Getting into network namespaces: programs started in one, closures run in one, and
//! namespaces of the test's own that go away with it.

use std::{
    os::{fd::AsFd as _, unix::process::CommandExt as _},
    process::Command,
};

use anyhow::Context as _;
use gridnet_agent::netlink::Netns;

use crate::names;

/// Makes `command` run inside the named network namespace (only the network namespace:
/// unlike `ip netns exec`, mounts stay shared with the test).
pub fn in_netns(command: &mut Command, ns: &str) -> anyhow::Result<()> {
    let file = Netns::open(ns)?.file().try_clone()?;
    // SAFETY: the closure only calls setns(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    Ok(())
}

/// Runs `f` in a thread inside the namespace; sockets it creates stay there.
pub fn within<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let ns = Netns::open(ns)?;
    std::thread::spawn(move || ns.enter(f))
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
        .map_err(Into::into)
}

/// A network namespace of the test's own, `gridnet-<label>-<id>`, deleted on drop (with the
/// interfaces in it, and so the far ends of its veths).
#[derive(Debug)]
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates a fresh, uniquely named namespace.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let name = names::unique_name(label);
        Netns::create(&name).with_context(|| format!("create namespace {name}"))?;
        Ok(Self { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Netns::delete(&self.name);
    }
}
