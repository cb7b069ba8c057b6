//! The baselines: two namespaces on an underlay bridge, each with a stock userspace WireGuard
//! device (Debian's wireguard-go, or boringtun-cli from crates.io) configured with `wg` the way
//! an operator sets one up by hand.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use gridnet_tests::{TempDir, TestNetns, in_netns, ip, proto::WIREGUARD_PORT, unique_id, wait};

use super::measure::Ends;

/// A stock userspace WireGuard implementation.
pub enum Implementation {
    WireguardGo,
    /// boringtun-cli, at this path.
    BoringtunCli(PathBuf),
}

impl Implementation {
    pub fn label(&self) -> &'static str {
        match self {
            Self::WireguardGo => "wireguard-go",
            Self::BoringtunCli(_) => "boringtun-cli",
        }
    }

    /// The command that creates device `ifname` and serves its UAPI socket, staying in the
    /// foreground (so it is this process's child to stop) with its defaults otherwise.
    fn command(&self, ifname: &str) -> Command {
        match self {
            Self::WireguardGo => {
                let mut command = Command::new("wireguard-go");
                command.args(["-f", ifname]);
                command
            }
            Self::BoringtunCli(bin) => {
                let mut command = Command::new(bin);
                // Run as root without sudo, there is no user to drop to.
                command.args(["--foreground", "--disable-drop-privileges", ifname]);
                command
            }
        }
    }
}

/// The boringtun-cli release measured: the one whose `noise::Tunn` gridnet runs.
const BORINGTUN_CLI_VERSION: &str = "0.7.1";

/// boringtun-cli [`BORINGTUN_CLI_VERSION`], installed with `cargo install` when missing. It is
/// only a baseline for this benchmark, so it is installed here rather than by `cargo xtask setup`.
pub fn boringtun_cli() -> anyhow::Result<PathBuf> {
    if let Some(bin) = find_boringtun_cli() {
        return Ok(bin);
    }
    let crate_version = format!("boringtun-cli@{BORINGTUN_CLI_VERSION}");
    println!(
        "bench: boringtun-cli {BORINGTUN_CLI_VERSION} is not installed; installing it for this \
         benchmark only: `cargo install {crate_version} --locked` (a few minutes on two cores)"
    );
    let status = Command::new("cargo")
        .args(["install", &crate_version, "--locked"])
        // Outside the workspace, so none of its cargo configuration applies to the install.
        .current_dir(std::env::temp_dir())
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "`cargo install {crate_version}` failed ({status})"
    );
    find_boringtun_cli().with_context(|| {
        format!("`cargo install {crate_version}` succeeded, but no boringtun-cli {BORINGTUN_CLI_VERSION} is in PATH or cargo's bin directory")
    })
}

/// A `boringtun-cli` of the measured version in PATH or in cargo's bin directory (where
/// `cargo install` puts it, often not in root's PATH).
fn find_boringtun_cli() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_home.map(|home| home.join("bin")))
        .map(|dir| dir.join("boringtun-cli"))
        .find(|bin| {
            // It prints `boringtun <version>`.
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|out| {
                    out.status.success()
                        && String::from_utf8_lossy(&out.stdout)
                            .split_whitespace()
                            .any(|word| word == BORINGTUN_CLI_VERSION)
                })
        })
}

/// A running userspace WireGuard device, stopped on drop (its TUN device goes with it).
struct Device {
    ifname: String,
    child: Child,
}

impl Device {
    fn socket(ifname: &str) -> PathBuf {
        PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(Self::socket(&self.ifname));
    }
}

/// How long a device may take to come up: well under a second here; the margin is for a loaded
/// machine.
const DEVICE_START: Duration = Duration::from_secs(10);

/// Two namespaces on an underlay bridge, a device of one implementation in each, peers of each
/// other. Removed on drop: devices first, then the namespaces, then keys and logs.
pub struct ReferencePair {
    devices: Vec<Device>,
    /// The server end's device, whose received bytes prove the traffic crossed the tunnel.
    server_ifname: String,
    pub ends: Ends,
    _nodes: [TestNetns; 2],
    _underlay: TestNetns,
    dir: TempDir,
}

impl ReferencePair {
    /// The pair for `implementation`: underlay addresses 192.0.2.1 and .2 (as a grid's nodes
    /// have), tunnel addresses `<inner>.1` (client) and `<inner>.2` (server) in a /24, the tunnel
    /// devices' MTU `mtu`.
    pub fn new(implementation: &Implementation, inner: &str, mtu: u32) -> anyhow::Result<Self> {
        let label = implementation.label();
        let underlay = TestNetns::new("bench-ref-underlay")?;
        let nodes = [TestNetns::new("bench-ref")?, TestNetns::new("bench-ref")?];
        let dir = TempDir::new("bench-ref")?;
        ip(underlay.name(), &["link", "add", "br0", "type", "bridge"])?;
        ip(underlay.name(), &["link", "set", "br0", "up"])?;
        for (i, node) in nodes.iter().enumerate() {
            let port = format!("n{}", i + 1);
            ip(
                underlay.name(),
                &[
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "up0",
                    "netns",
                    node.name(),
                ],
            )?;
            ip(
                underlay.name(),
                &["link", "set", &port, "master", "br0", "up"],
            )?;
            let address = format!("192.0.2.{}/24", i + 1);
            ip(node.name(), &["addr", "add", &address, "dev", "up0"])?;
            ip(node.name(), &["link", "set", "up0", "up"])?;
            ip(node.name(), &["link", "set", "lo", "up"])?;
        }
        let id = unique_id();
        let ifnames = [format!("wgc{id}"), format!("wgs{id}")];
        let mut devices = Vec::new();
        for (node, ifname) in nodes.iter().zip(&ifnames) {
            let log = dir.path().join(format!("{ifname}.log"));
            devices.push(start(implementation, node.name(), ifname, &log)?);
        }
        let keys = [keypair(dir.path(), "c")?, keypair(dir.path(), "s")?];
        let port = WIREGUARD_PORT.to_string();
        for (i, (node, ifname)) in nodes.iter().zip(&ifnames).enumerate() {
            let peer = 1 - i;
            let allowed = format!("{inner}.{}/32", peer + 1);
            let endpoint = format!("192.0.2.{}:{WIREGUARD_PORT}", peer + 1);
            let private = keys[i].0.to_str().context("key path")?;
            wg(
                &[
                    "set",
                    ifname,
                    "listen-port",
                    &port,
                    "private-key",
                    private,
                    "peer",
                    &keys[peer].1,
                    "allowed-ips",
                    &allowed,
                    "endpoint",
                    &endpoint,
                ],
                None,
            )
            .with_context(|| format!("configure {label} device {ifname}"))?;
            let address = format!("{inner}.{}/24", i + 1);
            ip(node.name(), &["addr", "add", &address, "dev", ifname])?;
            ip(
                node.name(),
                &["link", "set", ifname, "mtu", &mtu.to_string(), "up"],
            )?;
        }
        let server_ip: IpAddr = format!("{inner}.2").parse()?;
        Ok(Self {
            devices,
            server_ifname: ifnames[1].clone(),
            ends: Ends {
                client: nodes[0].name().to_owned(),
                server: nodes[1].name().to_owned(),
                server_ip,
            },
            _nodes: nodes,
            _underlay: underlay,
            dir,
        })
    }

    /// Bytes the server's device has received from its peer (`wg show <if> transfer`).
    pub fn server_received(&self) -> anyhow::Result<u64> {
        parse_transfer_received(&wg(&["show", &self.server_ifname, "transfer"], None)?)
    }

    /// Fails, with the devices' logs, if one of them has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for device in &mut self.devices {
            if let Some(status) = device.child.try_wait()? {
                let log =
                    std::fs::read_to_string(self.dir.path().join(format!("{}.log", device.ifname)))
                        .unwrap_or_default();
                bail!("the device {} exited ({status}):\n{log}", device.ifname);
            }
        }
        Ok(())
    }
}

/// Starts `implementation` for `ifname` in namespace `ns`, logging to `log`; returns once its
/// UAPI socket exists (it creates the TUN device first).
fn start(
    implementation: &Implementation,
    ns: &str,
    ifname: &str,
    log: &Path,
) -> anyhow::Result<Device> {
    let label = implementation.label();
    let file = std::fs::File::create(log)?;
    let mut command = implementation.command(ifname);
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    in_netns(&mut command, ns)?;
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {label}"))?;
    let mut device = Device {
        ifname: ifname.to_owned(),
        child,
    };
    let socket = Device::socket(ifname);
    let up = wait::until(
        DEVICE_START,
        &format!("{label} to create {}", socket.display()),
        || Ok((device.child.try_wait()?, socket.exists())),
        |&(exited, up)| exited.is_some() || up,
    )?;
    if let (Some(status), _) = up {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        bail!("{label} exited ({status}) before its device came up:\n{log}");
    }
    Ok(device)
}

/// A new private key written to `<dir>/<name>` (for `wg set ... private-key`) and its public key.
fn keypair(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, String)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let private = wg(&["genkey"], None)?;
    let path = dir.join(format!("{name}.key"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut file, private.as_bytes())?;
    Ok((path, wg(&["pubkey"], Some(&private))?))
}

/// Runs `wg ARGS` with `input` on its stdin; returns its output, trimmed.
fn wg(args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("wg (apt package wireguard-tools)")?;
    if let Some(input) = input {
        std::io::Write::write_all(child.stdin.as_mut().context("wg stdin")?, input.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "wg {}: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The received bytes summed over the peers in `wg show <if> transfer` (`<key>\t<rx>\t<tx>`).
fn parse_transfer_received(transfer: &str) -> anyhow::Result<u64> {
    transfer
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| -> anyhow::Result<u64> {
            let rx = line
                .split('\t')
                .nth(1)
                .with_context(|| format!("odd `wg show transfer` line: {line:?}"))?;
            rx.parse()
                .with_context(|| format!("odd `wg show transfer` line: {line:?}"))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_sums_received_bytes_over_peers() -> anyhow::Result<()> {
        let shown = "pk1=\t1024\t2048\npk2=\t10\t0\n";
        assert_eq!(parse_transfer_received(shown)?, 1034);
        assert_eq!(parse_transfer_received("")?, 0);
        assert!(parse_transfer_received("pk1= 12 13").is_err());
        Ok(())
    }
}
