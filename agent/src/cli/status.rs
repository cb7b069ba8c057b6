//! `gridnet status`: asks the running agent over its local unix socket.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::daemon::{config::DEFAULT_CONTROL_SOCKET, control};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The agent's control socket.
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let status = runtime
            .block_on(control::status(&self.socket))
            .with_context(|| format!("no agent answers on {}", self.socket.display()))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        println!(
            "node {}  ledger {}  attach {}",
            status.node_id, status.ledger, status.attach_mode
        );
        match status.last_seq {
            Some(seq) => println!("last ledger entry applied: {seq}"),
            None => println!("no ledger entry applied yet"),
        }
        for uplink in &status.uplinks {
            println!("uplink {}: XDP guard {}", uplink.name, uplink.xdp);
        }
        println!(
            "networks: {}",
            if status.networks.is_empty() {
                "-".to_owned()
            } else {
                status.networks.join(", ")
            }
        );
        for c in &status.containers {
            println!(
                "  container {:<20} {:<20} {:<15} {}",
                c.name, c.network, c.ipv4, c.ipv6
            );
        }
        for g in &status.gateways {
            let listens: Vec<String> = g.listeners.iter().map(|l| l.addr.to_string()).collect();
            let backends: Vec<String> = g
                .backends
                .iter()
                .map(|b| format!("{} {:?}", b.addr, b.health).to_lowercase())
                .collect();
            println!(
                "  gateway {} ({:?}) {} on {}: backends {}; {} connections open, {} in all",
                g.name,
                g.mode,
                g.hostnames.join(","),
                listens.join(","),
                if backends.is_empty() {
                    "-".to_owned()
                } else {
                    backends.join(", ")
                },
                g.active_connections,
                g.total_connections,
            );
        }
        for r in &status.rejected {
            println!("rejected entry {}: {}", r.seq, r.reason);
        }
        if let Some(error) = &status.last_error {
            println!("last reconcile failed (retrying): {error}");
        }
        Ok(())
    }
}
