//! `gridnet run` as a test drives it: started in a node with a generated configuration, asked
//! for its status over its control socket, killed on drop.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context as _, ensure};

use crate::{Node, gridnet_bin, in_netns, wait};

/// A running `gridnet run` in a node, stopped (SIGKILL) on drop.
pub struct Agent {
    child: std::process::Child,
    pub socket: PathBuf,
}

/// Whether a status says the agent realized everything it wants: no pass error, no failing
/// object, a readable ledger.
pub fn healthy(status: &serde_json::Value) -> bool {
    status["last_error"].is_null()
        && status["ledger_error"].is_null()
        && status["failing"].as_array().is_some_and(Vec::is_empty)
}

impl Agent {
    /// Starts `gridnet run` for node `node_id` in `node`, with `extra_config` added to the
    /// node's settings (it must name the ledger); output goes to [`Node::agent_log`].
    pub(crate) fn start(node: &Node, node_id: u32, extra_config: &str) -> anyhow::Result<Self> {
        let workdir = node.workdir();
        let key = workdir.join("node.key");
        if !key.exists() {
            gridnet_agent::ledger::keys::NodeKey::generate()?.write(&key)?;
        }
        let socket = workdir.join("agent.sock");
        let config = format!(
            "node_id: {node_id}\nkey_file: {}\npin_root: {}\nstate_dir: {}\nnetns_prefix: {}\ncontrol_socket: {}\nuapi_dir: {}\n{extra_config}",
            key.display(),
            node.pin_root.display(),
            workdir.join("state").display(),
            node.prefix,
            socket.display(),
            // Each node its own: tunnel names repeat between nodes on one machine.
            node.uapi_dir().display(),
        );
        let path = workdir.join("node.yaml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(Self::log_path(node))?;
        let mut command = Command::new(gridnet_bin()?);
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdout(log.try_clone()?)
            .stderr(log);
        in_netns(&mut command, node.ns.name())?;
        let child = command.spawn()?;
        Ok(Self { child, socket })
    }

    /// Where the agent of `node` writes its log.
    pub(crate) fn log_path(node: &Node) -> PathBuf {
        node.workdir().join("agent.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the agent as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `gridnet status --json`, parsed.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let socket = self.socket.to_str().context("socket")?;
        let out = Command::new(gridnet_bin()?)
            .args(["status", "--json", "--socket", socket])
            .output()?;
        ensure!(
            out.status.success(),
            "gridnet status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits (up to `seconds`) until the status satisfies `ready`; fails with the last status
    /// seen. The status reports a reconcile once it is done, so a status that names the last
    /// ledger entry means the datapath realises it.
    pub fn wait_for(
        &self,
        seconds: u64,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let status = wait::until(
            Duration::from_secs(seconds),
            "the agent's status to match",
            // An agent still starting has no control socket yet: waited out, and shown if it
            // never comes.
            || Ok(self.status().map_err(|e| format!("{e:#}"))),
            |status| status.as_ref().is_ok_and(&ready),
        )?;
        status.map_err(anyhow::Error::msg)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
