//! What gateway tests need around a [`Grid`]: an "internet" on the underlay from which real
//! clients connect, web servers (plain HTTP and TLS) with a known body, a CA for the TLS one,
//! and `gateway` entries for the ledger.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use gridnet_agent::{ledger::Body, plan::GatewayMode};

use crate::{Grid, TempDir, TestNetns, gridnet_in, in_netns, listens_on, run_in, wait};

/// The internet's address on the grid's underlay (192.0.2.0/24, where node n is .n).
pub const INTERNET_IP: &str = "192.0.2.200";

/// The body every test web server serves at `/` and `/index.html`.
pub const BODY: &str = "served by a gridnet test backend\n";

/// How long a server may take to listen after it starts: far more than it needs on an idle
/// machine, for a loaded CI runner or an emulated kernel.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A namespace on the grid's underlay bridge at [`INTERNET_IP`], playing the internet: a
/// visitor's machine, or an operator's DNS box. Removed on drop.
pub struct Internet {
    pub ns: TestNetns,
}

impl Internet {
    /// Attaches a new internet namespace to `grid`'s underlay (one per grid).
    pub fn attach(grid: &Grid) -> anyhow::Result<Self> {
        let inet = Self {
            ns: TestNetns::new("inet")?,
        };
        grid.plug("inet", inet.ns.name(), "eth0", &format!("{INTERNET_IP}/24"))?;
        Ok(inet)
    }

    /// `curl ARGS` from the internet, with a short overall timeout so a test that expects no
    /// answer does not hang.
    pub fn curl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["--silent", "--show-error", "--max-time", "5"];
        all.extend_from_slice(args);
        run_in(self.ns.name(), "curl", &all)
    }

    /// `gridnet ARGS` from the internet (the ledger file is reachable: mounts are shared).
    pub fn gridnet(&self, args: &[&str]) -> anyhow::Result<Output> {
        gridnet_in(self.ns.name(), args)
    }
}

/// A `gateway` entry: `name` in `network` on `node_id`, serving `hostnames` from `backends`.
pub fn gateway_entry(
    name: &str,
    network: &str,
    node_id: u32,
    hostnames: &[&str],
    backends: &[&str],
    mode: GatewayMode,
) -> anyhow::Result<Body> {
    Ok(Body::Gateway {
        name: name.into(),
        network: network.into(),
        node_id,
        hostnames: hostnames.iter().map(|&h| h.to_owned()).collect(),
        backends: backends
            .iter()
            .map(|b| b.parse().with_context(|| format!("backend {b}")))
            .collect::<anyhow::Result<_>>()?,
        mode,
        proxy_protocol: false,
    })
}

/// `body` (a `gateway` entry) with PROXY protocol headers to its backends.
pub fn with_proxy_protocol(mut body: Body) -> Body {
    if let Body::Gateway { proxy_protocol, .. } = &mut body {
        *proxy_protocol = true;
    }
    body
}

/// A server process, killed on drop, with its scratch directory.
struct Server {
    child: Child,
    dir: TempDir,
}

impl Server {
    /// Starts `command` (already set up: namespace, directory), waits until it listens on
    /// `port`, and kills it if it does not.
    fn start(mut command: Command, dir: TempDir, port: u16, what: &str) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let server = Self { child, dir };
        let pid = server.child.id();
        let _listening = wait::until(
            START_TIMEOUT,
            &format!("{what} listening on port {port}"),
            || Ok(listens_on(pid, port).map_err(|e| e.to_string())),
            |listening| matches!(listening, Ok(true)),
        )?;
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A web folder with [`BODY`] as its `index.html`.
fn web_root(label: &str) -> anyhow::Result<TempDir> {
    let dir = TempDir::new(label)?;
    std::fs::write(dir.path().join("index.html"), BODY)?;
    Ok(dir)
}

/// A plain HTTP server (`busybox httpd`) in namespace `ns` on `port`, serving [`BODY`];
/// killed on drop.
pub struct HttpServer {
    _server: Server,
}

impl HttpServer {
    pub fn start(ns: &str, port: u16) -> anyhow::Result<Self> {
        let dir = web_root("httpd")?;
        let mut command = Command::new("busybox");
        command
            .args(["httpd", "-f", "-p", &port.to_string(), "-h"])
            .arg(dir.path());
        in_netns(&mut command, ns)?;
        Ok(Self {
            _server: Server::start(command, dir, port, "busybox httpd")?,
        })
    }
}

/// A TLS web server (`openssl s_server -WWW`) in namespace `ns` on `port`, serving [`BODY`] at
/// `/index.html` with a certificate for `hostname` from a CA of its own; killed on drop.
pub struct TlsServer {
    server: Server,
    /// The server's stdin: `s_server` reads commands there, so it stays open while it runs.
    _stdin: std::process::ChildStdin,
}

impl TlsServer {
    pub fn start(ns: &str, port: u16, hostname: &str) -> anyhow::Result<Self> {
        let dir = web_root("tls")?;
        make_certificates(dir.path(), hostname)?;
        let mut command = Command::new("openssl");
        command
            .args(["s_server", "-quiet", "-WWW", "-accept", &port.to_string()])
            .args(["-cert", "server.pem", "-key", "server.key"])
            .current_dir(dir.path())
            .stdin(Stdio::piped());
        in_netns(&mut command, ns)?;
        let mut server = Server::start(command, dir, port, "openssl s_server")?;
        let stdin = server.child.stdin.take().context("s_server's stdin")?;
        Ok(Self {
            server,
            _stdin: stdin,
        })
    }

    /// The CA certificate that signed the server's: for `curl --cacert`.
    pub fn ca_cert(&self) -> PathBuf {
        self.server.dir.path().join("ca.pem")
    }
}

/// A CA (`ca.pem`) and a server certificate for `hostname` signed by it (`server.pem`,
/// `server.key`) in `dir`, made with the `openssl` CLI; valid for a day.
fn make_certificates(dir: &Path, hostname: &str) -> anyhow::Result<()> {
    let subject = format!("/CN={hostname}");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &[
                "req", "-x509", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem",
            ][..],
            &ec,
            &["-subj", "/CN=gridnet test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign"],
        ]
        .concat(),
        [
            &["req", "-keyout", "server.key", "-out", "server.csr"][..],
            &ec,
            &["-subj", &subject],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "san.cnf",
        ],
    ];
    std::fs::write(
        dir.join("san.cnf"),
        format!("subjectAltName=DNS:{hostname}\nextendedKeyUsage=serverAuth\n"),
    )?;
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .context("cannot run openssl (is it installed?)")?;
        ensure!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
