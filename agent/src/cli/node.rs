//! `gridnet node ...`: this node's identity.

use std::{net::IpAddr, path::PathBuf};

use crate::ledger::{Body, keys::NodeKey};

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Make this node's WireGuard key (mode 0600; it never leaves the node) and print the
    /// `node` entry to submit.
    Init {
        /// Where to write the private key; must not exist.
        #[arg(long)]
        key_out: PathBuf,
        #[arg(long)]
        node_id: u32,
        /// The farmer twin registering the node.
        #[arg(long)]
        farmer: String,
        /// Underlay addresses (repeat for a multi-homed node).
        #[arg(long = "endpoint", required = true)]
        endpoints: Vec<IpAddr>,
        /// A public IPv4 address, for gateways.
        #[arg(long)]
        public_ipv4: Option<std::net::Ipv4Addr>,
        /// A public IPv6 address, for gateways.
        #[arg(long)]
        public_ipv6: Option<std::net::Ipv6Addr>,
    },
}

impl NodeCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            NodeCommand::Init {
                key_out,
                node_id,
                farmer,
                endpoints,
                public_ipv4,
                public_ipv6,
            } => {
                let key = NodeKey::generate()?;
                key.write(&key_out)?;
                let body = Body::Node {
                    node_id,
                    farmer,
                    wireguard_public_key: key.public(),
                    endpoints,
                    public_ipv4,
                    public_ipv6,
                };
                eprintln!(
                    "wrote {}; submit this entry as the farmer:",
                    key_out.display()
                );
                print!("{}", serde_yaml::to_string(&body)?);
                Ok(())
            }
        }
    }
}
