//! External WireGuard machines: a laptop, or a site's router with a LAN behind it. Each is a
//! namespace on the grid's underlay running Debian's `wireguard-go` with the configuration
//! `gridnet access-config` printed, brought up the way wg-quick does it (`wg-quick strip` for
//! `wg setconf`, then the addresses and the routes of `AllowedIPs`). wg-quick itself would also
//! run wireguard-go on a kernel without WireGuard, but as a daemon of its own; here the process
//! is the test's child, killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, ensure};

use crate::{Grid, TempDir, TestNetns, in_netns, ip, names, run_ok, wait};

/// Where wireguard-go puts its UAPI socket (compiled into it and into `wg`).
const WG_RUN_DIR: &str = "/var/run/wireguard";

/// A key pair made by `wg genkey` and `wg pubkey`.
pub struct WgKeys {
    /// The private key's file (base64, 0600).
    pub private_file: PathBuf,
    /// The public key, base64.
    pub public: String,
}

impl WgKeys {
    /// A fresh pair, the private key written to `dir/<name>.key`.
    pub fn generate(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let private = tool("wg", &["genkey"], None)?;
        let public = tool("wg", &["pubkey"], Some(&private))?;
        let private_file = dir.join(format!("{name}.key"));
        std::fs::write(&private_file, &private)?;
        Ok(Self {
            private_file,
            public: public.trim().to_owned(),
        })
    }

    /// The public key as the ledger takes it.
    pub fn ledger_key(&self) -> anyhow::Result<gridnet_agent::vocab::WgKey> {
        self.public
            .parse()
            .context("wg pubkey printed a key gridnet cannot read")
    }
}

/// A WireGuard client on the grid's underlay, removed on drop (process, socket, namespace).
pub struct WgClient {
    pub ns: TestNetns,
    /// Its WireGuard interface; unique on the machine, since wireguard-go's socket is named
    /// after it in one directory for all namespaces.
    pub ifname: String,
    process: Child,
    _dir: TempDir,
}

impl WgClient {
    /// A machine at `underlay_ip` (in 192.0.2.0/24, the grid's underlay) running `config`, a
    /// wg-quick file. `port` names its port on the underlay bridge (unique in the grid).
    pub fn start(grid: &Grid, port: &str, underlay_ip: &str, config: &str) -> anyhow::Result<Self> {
        let ns = TestNetns::new("wgclient")?;
        grid.plug(port, ns.name(), "up0", &format!("{underlay_ip}/24"))?;

        let ifname = format!("wgc{}", names::unique_id());
        let dir = TempDir::new("wgclient")?;
        let conf = dir.path().join(format!("{ifname}.conf"));
        std::fs::write(&conf, config)?;
        let mut command = Command::new("wireguard-go");
        command
            .args(["-f", &ifname])
            .env("LOG_LEVEL", "error")
            // Foreground, as `-f` says too; this also keeps it from printing a banner that it is
            // not needed on a kernel with WireGuard (the tests want the userspace peer).
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        in_netns(&mut command, ns.name())?;
        let process = command
            .spawn()
            .context("cannot start wireguard-go (is it installed?)")?;
        let client = Self {
            ns,
            ifname,
            process,
            _dir: dir,
        };
        client.configure(&conf, config)?;
        Ok(client)
    }

    /// What wg-quick does once the interface exists.
    fn configure(&self, conf: &Path, config: &str) -> anyhow::Result<()> {
        let socket = Path::new(WG_RUN_DIR).join(format!("{}.sock", self.ifname));
        wait::until(
            Duration::from_secs(10),
            "wireguard-go's socket",
            || Ok(socket.exists()),
            |&up| up,
        )?;
        let stripped = tool("wg-quick", &["strip", &conf.display().to_string()], None)?;
        let stripped_file = conf.with_extension("stripped");
        std::fs::write(&stripped_file, stripped)?;
        let ns = self.ns.name();
        let stripped_file = stripped_file.display().to_string();
        run_ok(ns, "wg", &["setconf", &self.ifname, &stripped_file])?;
        for address in values(config, "Address") {
            ip(ns, &["addr", "add", &address, "dev", &self.ifname])?;
        }
        ip(ns, &["link", "set", &self.ifname, "up"])?;
        for prefix in values(config, "AllowedIPs") {
            ip(ns, &["route", "add", &prefix, "dev", &self.ifname])?;
        }
        Ok(())
    }

    /// Adds a LAN behind this machine (it becomes a site's router): a namespace with one host at
    /// `host` (CIDR) whose default routes go through `router` (CIDR, this machine's LAN side).
    pub fn lan(&self, router: &[&str], host: &[&str]) -> anyhow::Result<TestNetns> {
        let lan = TestNetns::new("wglan")?;
        let ns = self.ns.name();
        ip(
            ns,
            &[
                "link",
                "add",
                "lan0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                lan.name(),
            ],
        )?;
        for cidr in router {
            ip(ns, &["addr", "add", cidr, "dev", "lan0", "nodad"])?;
        }
        ip(ns, &["link", "set", "lan0", "up"])?;
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ] {
            run_ok(ns, "sysctl", &["-qw", &format!("{key}={value}")])?;
        }
        for cidr in host {
            ip(lan.name(), &["addr", "add", cidr, "dev", "eth0", "nodad"])?;
        }
        ip(lan.name(), &["link", "set", "eth0", "up"])?;
        ip(lan.name(), &["link", "set", "lo", "up"])?;
        for cidr in router {
            let gateway = cidr.split('/').next().unwrap_or_default();
            ip(lan.name(), &["route", "add", "default", "via", gateway])?;
        }
        Ok(lan)
    }

    /// `wg show <ifname> dump` in the client's namespace: its view of the node.
    pub fn show(&self) -> anyhow::Result<String> {
        run_ok(self.ns.name(), "wg", &["show", &self.ifname, "dump"])
    }
}

impl Drop for WgClient {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_file(Path::new(WG_RUN_DIR).join(format!("{}.sock", self.ifname)));
    }
}

/// The values of every `key = a, b` line of a wg-quick file, split at commas.
fn values(config: &str, key: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// Runs a tool on this machine, `input` on its stdin, and returns its stdout.
fn tool(program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.unwrap_or_default().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}
