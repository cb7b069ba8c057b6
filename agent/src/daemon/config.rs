//! The node's configuration file (`gridnet run --config node.yaml`), validated before anything
//! starts, with errors that name the field and say what to do.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{dataplane::AttachPreference, ledger::source::Location};

/// Where the agent's control socket lives unless configured: the only way to talk to the agent.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/gridnet/gridnet.sock";

/// `node.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfigFile {
    /// This node's id on the ledger.
    pub node_id: u32,
    /// The node's WireGuard private key, made by `gridnet node init` (0600).
    pub key_file: PathBuf,
    /// Where the reservations come from: `{file: PATH}` or `{etcd: {endpoints, prefix}}`.
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub ledger: Location,
    /// Underlay interfaces (the XDP guard and WireGuard endpoints use them).
    #[serde(default)]
    pub uplinks: Vec<String>,
    /// The bpffs directory of the datapath's pins.
    #[serde(default = "default_pin_root")]
    pub pin_root: PathBuf,
    /// Where the agent keeps its own state.
    pub state_dir: PathBuf,
    /// Prefix of the container namespaces this agent owns.
    #[serde(default = "default_netns_prefix")]
    pub netns_prefix: String,
    /// TCX or netlink attachments.
    #[serde(default)]
    pub attach: AttachPreference,
    /// Take the XDP guard off the uplinks when the agent stops. Off by default: a node keeps
    /// refusing unsolicited traffic while its agent restarts.
    #[serde(default)]
    pub detach_guard_on_exit: bool,
    /// The local control socket (`gridnet status` talks to it).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// Seconds between passes when the ledger is quiet, which repair drift (see
    /// [`super::RESYNC_INTERVAL`], the default).
    #[serde(default = "default_resync_seconds")]
    pub resync_seconds: u64,
    /// The MTU of container links and tunnel devices (default
    /// [`crate::reconcile::DEFAULT_MTU`]): the underlay's MTU less WireGuard's overhead, 80
    /// bytes over IPv6, 60 over IPv4.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Where each tunnel serves WireGuard's userspace API, read-only, as `<ifname>.sock` (default
    /// [`crate::tunnel::DEFAULT_UAPI_DIR`], where `wg show` looks). Nodes sharing one machine
    /// need one each: their tunnels' names repeat.
    #[serde(default = "default_uapi_dir")]
    pub uapi_dir: PathBuf,
}

fn default_uapi_dir() -> PathBuf {
    crate::tunnel::DEFAULT_UAPI_DIR.into()
}

fn default_mtu() -> u16 {
    crate::reconcile::DEFAULT_MTU
}

fn default_resync_seconds() -> u64 {
    super::RESYNC_INTERVAL.as_secs()
}

fn default_pin_root() -> PathBuf {
    crate::dataplane::DEFAULT_PIN_ROOT.into()
}

fn default_netns_prefix() -> String {
    crate::reconcile::names::DEFAULT_NETNS_PREFIX.into()
}

fn default_control_socket() -> PathBuf {
    DEFAULT_CONTROL_SOCKET.into()
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid node configuration: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl NodeConfigFile {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what can be checked without touching the kernel.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.node_id == 0 {
            return invalid("node_id", "must be the node's id on the ledger (1 or more)");
        }
        if !self.key_file.is_file() {
            return invalid(
                "key_file",
                "no such file: make one with `gridnet node init`",
            );
        }
        if let Some((field, reason)) = self.ledger.problem() {
            return Err(ConfigError::Invalid { field, reason });
        }
        if let Some(bad) = self
            .uplinks
            .iter()
            .find(|u| u.is_empty() || u.len() > 15 || u.contains('/'))
        {
            return Err(ConfigError::Invalid {
                field: "uplinks",
                reason: format!("`{bad}` is not an interface name"),
            });
        }
        if !self.pin_root.is_absolute() {
            return invalid("pin_root", "must be an absolute path on a bpffs");
        }
        if !self.state_dir.is_absolute() {
            return invalid("state_dir", "must be an absolute path");
        }
        if self.netns_prefix.is_empty()
            || !self
                .netns_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return invalid(
                "netns_prefix",
                "use letters, digits, `-`, `_`, `.` (and not empty)",
            );
        }
        if !self.uapi_dir.is_absolute() {
            return invalid("uapi_dir", "must be an absolute path");
        }
        if !self.control_socket.is_absolute() {
            return invalid("control_socket", "must be an absolute path");
        }
        if !(1280..=9000).contains(&self.mtu) {
            return invalid(
                "mtu",
                "must be between 1280 (IPv6's minimum) and 9000 (jumbo frames)",
            );
        }
        if !(1..=3600).contains(&self.resync_seconds) {
            return invalid("resync_seconds", "must be between 1 and 3600");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfigFile, String> {
        let config: NodeConfigFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn valid() -> String {
        // The key file must exist; the crate's manifest does.
        format!(
            "node_id: 3\nkey_file: {}/Cargo.toml\nledger:\n  file: /var/lib/gridnet/ledger.yaml\nstate_dir: /var/lib/gridnet\n",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let config = parse(&valid()).expect("valid");
        assert_eq!(config.pin_root, PathBuf::from("/sys/fs/bpf/gridnet"));
        assert_eq!(config.netns_prefix, "gn-");
        assert_eq!(config.attach, AttachPreference::Auto);
        assert_eq!(config.uapi_dir, PathBuf::from("/var/run/wireguard"));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (valid().replace("node_id: 3", "node_id: 0"), "node_id"),
            (valid() + "pin_root: relative/dir\n", "pin_root"),
            (valid() + "uplinks: [\"a/b\"]\n", "uplinks"),
            (valid() + "netns_prefix: \"\"\n", "netns_prefix"),
            (valid() + "resync_seconds: 0\n", "resync_seconds"),
            (valid() + "mtu: 576\n", "mtu"),
            (valid() + "uapi_dir: run/wireguard\n", "uapi_dir"),
            (valid() + "surprise: 1\n", "unknown field"),
            (
                valid().replace(
                    "  file: /var/lib/gridnet/ledger.yaml",
                    "  etcd: {endpoints: [], prefix: /g}",
                ),
                "endpoints",
            ),
            (
                valid().replace(
                    "  file: /var/lib/gridnet/ledger.yaml",
                    "  etcd: {endpoints: [\"127.0.0.1:2379\"], prefix: /g}",
                ),
                "not an http",
            ),
            ("node_id: [".to_owned(), ""),
            (
                valid().replace(env!("CARGO_MANIFEST_DIR"), "/nonexistent"),
                "gridnet node init",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
