//! The test node: a network namespace with its own pin root, container namespace prefix and
//! scratch directory, all removed on drop.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::{netlink::Netns, plan::NodePlan};

use crate::{Agent, gridnet_in, names, stats};

/// A test node: its namespace, pin root and container prefix, removed on drop.
pub struct Node {
    pub id: String,
    pub ns: Netns,
    pub pin_root: PathBuf,
    /// The start of the names of this node's container namespaces (`gridnet-<label>-<id>-`).
    pub prefix: String,
    workdir: PathBuf,
}

impl Node {
    /// A node for a test.
    pub fn new() -> anyhow::Result<Self> {
        Self::labelled("test")
    }

    /// A node whose objects are named `gridnet-<label>-<id>` (namespace, pins, temp files) and
    /// whose containers' namespaces start with `gridnet-<label>-<id>-`.
    pub fn labelled(label: &str) -> anyhow::Result<Self> {
        ensure!(
            nix::unistd::Uid::effective().is_root(),
            "namespaces and eBPF need root (CI runs as root)"
        );
        let id = names::unique_id();
        let name = names::name(label, &id);
        let ns = Netns::create(&name).context("create the node namespace")?;
        let workdir = names::scratch(&name);
        std::fs::create_dir_all(&workdir)?;
        Ok(Self {
            pin_root: names::pin_root(&name),
            // The trailing `-` keeps the node's own namespace, and nodes whose ids merely start
            // with this one's, out of the prefix.
            prefix: format!("{name}-"),
            ns,
            id,
            workdir,
        })
    }

    /// The namespace name of container `name` on this node.
    pub fn container_ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The host-side veth of container `name`: the link in the node's namespace whose alias is
    /// the container's name, as `ip link` shows it to an operator.
    pub fn host_ifname(&self, name: &str) -> anyhow::Result<String> {
        let out = crate::run_ok(self.ns.name(), "ip", &["-j", "link", "show"])?;
        let links: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        let mut found = links
            .iter()
            .filter(|l| l["ifalias"] == name)
            .filter_map(|l| l["ifname"].as_str());
        let ifname = found
            .next()
            .with_context(|| format!("no link has alias `{name}` in {}", self.ns.name()))?;
        ensure!(
            found.next().is_none(),
            "two links have alias `{name}` in {}",
            self.ns.name()
        );
        Ok(ifname.to_owned())
    }

    /// The node's scratch directory (removed on drop).
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// `gridnet <args>` run inside the node's network namespace.
    pub fn gridnet(&self, args: &[&str]) -> anyhow::Result<Output> {
        gridnet_in(self.ns.name(), args)
    }

    /// Applies a plan with `gridnet apply`; returns its stdout, failing on a non-zero exit.
    pub fn apply(&self, plan: &NodePlan) -> anyhow::Result<String> {
        self.apply_with(plan, &[])
    }

    /// [`Node::apply`] with extra `gridnet apply` arguments.
    pub fn apply_with(&self, plan: &NodePlan, extra: &[&str]) -> anyhow::Result<String> {
        let path = self.workdir.join("plan.yaml");
        std::fs::write(&path, serde_yaml::to_string(plan)?)?;
        let path = path.to_str().context("temp path")?.to_owned();
        let pin_root = self.pin_root.to_str().context("pin root")?.to_owned();
        let mut args = vec![
            "apply",
            &path,
            "--pin-root",
            &pin_root,
            "--netns-prefix",
            &self.prefix,
        ];
        args.extend_from_slice(extra);
        let out = self.gridnet(&args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "gridnet apply failed: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// `gridnet bpf-stats` (table) for this node's pins.
    pub fn bpf_stats_table(&self) -> anyhow::Result<String> {
        stats::table(&self.pin_root)
    }

    /// `gridnet bpf-stats --json` for this node's pins, parsed.
    pub fn bpf_stats(&self) -> anyhow::Result<serde_json::Value> {
        stats::json(&self.pin_root)
    }

    /// Starts `gridnet run` for node `node_id` in this node, following the ledger file `ledger`.
    pub fn run_agent(
        &self,
        node_id: u32,
        ledger: &Path,
        extra_config: &str,
    ) -> anyhow::Result<Agent> {
        self.run_agent_with(
            node_id,
            &format!("ledger:\n  file: {}\n{extra_config}", ledger.display()),
        )
    }

    /// Starts `gridnet run` for node `node_id` with `extra_config` added to the node's settings
    /// (it must name the ledger).
    pub fn run_agent_with(&self, node_id: u32, extra_config: &str) -> anyhow::Result<Agent> {
        Agent::start(self, node_id, extra_config)
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(Agent::log_path(self)).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Containers first (their veths go with them), then the node, then the pins.
        if let Ok(names) = Netns::list(&self.prefix) {
            for name in names {
                let _ = Netns::delete(&name);
            }
        }
        let _ = Netns::delete(self.ns.name());
        let _ = remove_pins(&self.pin_root);
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Removes a pin directory tree (bpffs allows unlink and rmdir, not rename tricks).
fn remove_pins(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_pins(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::remove_dir(dir)
}
