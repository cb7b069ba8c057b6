//! `gridnet gateway dns`, run from the internet as an operator's DNS box would: it lists the
//! public addresses of a name's gateways that answer right now, and nothing once none does.
//!
//! No agent runs: the command reads the ledger and probes the public ports, so servers started
//! in the node namespaces stand in for the gateways.

use std::process::Output;

use anyhow::{Context as _, ensure};
use gridnet_agent::plan::GatewayMode;
use gridnet_tests::{BODY, Grid, HttpServer, Internet, TlsServer, gateway_entry};

/// A grid of two public nodes with alice's network `web` on both, and `gateway dns` run from
/// its internet.
struct Setup {
    grid: Grid,
    internet: Internet,
}

impl Setup {
    fn new(label: &str) -> anyhow::Result<Self> {
        let mut grid = Grid::new(label, 2)?;
        grid.network("alice", "web", &[1, 2], 51820)?;
        grid.publish(1)?;
        grid.publish(2)?;
        let internet = Internet::attach(&grid)?;
        Ok(Self { grid, internet })
    }

    fn gateway(
        &mut self,
        name: &str,
        node: u32,
        hostname: &str,
        mode: GatewayMode,
    ) -> anyhow::Result<()> {
        let body = gateway_entry(name, "web", node, &[hostname], &["10.1.2.2:80"], mode)?;
        self.grid.ledger.submit("alice", body)?;
        Ok(())
    }

    fn dns(&self, args: &[&str]) -> anyhow::Result<Output> {
        let ledger = self
            .grid
            .ledger
            .file
            .path()
            .to_str()
            .context("ledger path")?
            .to_owned();
        let mut all = vec!["gateway", "dns", "--ledger", &ledger];
        all.extend_from_slice(args);
        self.internet.gridnet(&all)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn dns_lists_the_gateways_that_answer_and_nothing_once_none_does() -> anyhow::Result<()> {
    let mut s = Setup::new("gwdns")?;
    s.gateway("web", 1, "web.example.org", GatewayMode::Http)?;
    // A second gateway of the name on node 2, where nothing listens.
    s.gateway("web2", 2, "web.example.org", GatewayMode::Http)?;
    let server = HttpServer::start(s.grid.node(1).ns.name(), 80)?;
    let page = s
        .internet
        .curl(&["-H", "Host: web.example.org", "http://192.0.2.1/"])?;
    ensure!(
        text(&page.stdout) == BODY,
        "curl from the internet: {}",
        text(&page.stderr)
    );

    let out = s.dns(&["--name", "web.example.org"])?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(
        text(&out.stdout) == "web.example.org. 60 IN A 192.0.2.1\n",
        "{}",
        text(&out.stdout)
    );
    ensure!(
        text(&out.stderr).contains("left out 192.0.2.2: gateway alice/web2 on node 2"),
        "{}",
        text(&out.stderr)
    );
    let zone = s.dns(&["--name", "Web.Example.org.", "--zone"])?;
    ensure!(zone.status.success(), "{}", text(&zone.stderr));
    let zone = text(&zone.stdout);
    ensure!(
        zone.starts_with("$TTL 60\nweb.example.org. IN A 192.0.2.1\n; left out 192.0.2.2: "),
        "{zone}"
    );

    drop(server);
    let out = s.dns(&["--name", "web.example.org"])?;
    ensure!(
        !out.status.success(),
        "no gateway answers, yet it succeeded"
    );
    ensure!(out.stdout.is_empty(), "{}", text(&out.stdout));
    ensure!(
        text(&out.stderr).contains("no gateway serving `web.example.org` answers"),
        "{}",
        text(&out.stderr)
    );

    let out = s.dns(&["--name", "nobody.example.org"])?;
    ensure!(!out.status.success() && out.stdout.is_empty());
    ensure!(
        text(&out.stderr).contains("no gateway on the ledger serves `nobody.example.org`"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[test]
fn dns_finds_a_tls_gateway_by_its_port() -> anyhow::Result<()> {
    let mut s = Setup::new("gwtls")?;
    s.gateway("tls", 1, "tls.example.org", GatewayMode::TlsPassthrough)?;
    let server = TlsServer::start(s.grid.node(1).ns.name(), 443, "tls.example.org")?;
    let ca = server.ca_cert();
    let page = s.internet.curl(&[
        "--cacert",
        ca.to_str().context("ca path")?,
        "--resolve",
        "tls.example.org:443:192.0.2.1",
        "https://tls.example.org/index.html",
    ])?;
    ensure!(
        text(&page.stdout) == BODY,
        "curl from the internet: {}",
        text(&page.stderr)
    );

    let out = s.dns(&["--name", "tls.example.org", "--json"])?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        json["records"] == serde_json::json!([{"type": "A", "address": "192.0.2.1"}]),
        "{json}"
    );
    ensure!(
        json["gateways"][0]["port"] == 443 && json["gateways"][0]["answered"] == true,
        "{json}"
    );

    drop(server);
    let out = s.dns(&["--name", "tls.example.org", "--json"])?;
    ensure!(
        !out.status.success(),
        "no gateway answers, yet it succeeded"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        json["records"] == serde_json::json!([]) && json["gateways"][0]["answered"] == false,
        "{json}"
    );
    Ok(())
}
