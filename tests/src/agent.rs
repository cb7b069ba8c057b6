//! `gridnet run` as a test drives it: started in a node with a generated configuration, asked
//! for its status over its control socket, killed on drop.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail, ensure};

use crate::{Node, gridnet_bin, in_netns};

/// A running `gridnet run` in a node, stopped (SIGKILL) on drop.
pub struct Agent {
    child: std::process::Child,
    pub socket: PathBuf,
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
            "node_id: {node_id}\nkey_file: {}\npin_root: {}\nstate_dir: {}\nnetns_prefix: {}\ncontrol_socket: {}\n{extra_config}",
            key.display(),
            node.pin_root.display(),
            workdir.join("state").display(),
            node.prefix,
            socket.display(),
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

    /// Waits (up to `seconds`) until the status satisfies `ready`.
    pub fn wait_for(
        &self,
        seconds: u64,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            if let Ok(status) = self.status()
                && ready(&status)
            {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "the agent did not get there in {seconds} s; last status: {:?}",
                    self.status().ok()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
