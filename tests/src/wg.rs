//! `wg` from wireguard-tools, run as an operator would against a node's tunnels.
//!
//! `wg` looks for userspace interfaces only in `/var/run/wireguard` (compiled in), and every
//! node on this machine serves its own directory (tunnel names repeat between nodes). So `wg`
//! runs in a mount namespace of its own, where a fresh tmpfs covers `/run` (`/var/run` links
//! there on Debian) and the node's directory is bound at `/run/wireguard`; nothing of it is
//! seen outside, and nothing is left behind.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{Context as _, ensure};

use crate::{Node, in_netns};

/// The script run in the private mount namespace: `$0` is the node's directory, the rest are
/// `wg`'s arguments.
const IN_PRIVATE_MOUNTS: &str = "mount -t tmpfs -o mode=0755 gridnet-wg /run \
    && mkdir /run/wireguard \
    && mount --bind \"$0\" /run/wireguard \
    && exec wg \"$@\"";

impl Node {
    /// Where the node's agent serves each tunnel's `wg` socket (written into its node.yaml).
    pub fn uapi_dir(&self) -> PathBuf {
        self.workdir().join("wireguard")
    }

    /// `wg ARGS` against this node's tunnels, inside the node's network namespace.
    pub fn wg(&self, args: &[&str]) -> anyhow::Result<Output> {
        let dir = self.uapi_dir();
        let dir = dir.to_str().context("uapi dir")?;
        let mut command = Command::new("unshare");
        // unshare(1) makes the new namespace's mounts private: the tmpfs and the bind stay in it.
        command
            .args(["--mount", "sh", "-c", IN_PRIVATE_MOUNTS, dir])
            .args(args);
        in_netns(&mut command, self.ns.name())?;
        command
            .output()
            .context("cannot run unshare and wg (util-linux, wireguard-tools)")
    }

    /// [`Node::wg`], failing on a non-zero exit; returns its stdout.
    pub fn wg_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.wg(args)?;
        ensure!(
            out.status.success(),
            "wg {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }
}
