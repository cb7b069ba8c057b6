//! Ledgers for tests: a ledger file with fixed twin keys, and the entries tests write to it.

use std::path::Path;

use gridnet_agent::ledger::{
    Body, Chain, GridState, SigningKey, file::LedgerFile, model::Member, sign_next,
};

/// A ledger file that tests write entries to, signed with fixed twin keys.
pub struct TestLedger {
    pub file: LedgerFile,
    chain: Chain,
}

impl TestLedger {
    /// An empty ledger in `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let file = LedgerFile::new(&dir.join("ledger.yaml"));
        file.init()?;
        Ok(Self {
            file,
            chain: Chain::default(),
        })
    }

    /// The key of twin `name` (derived from the name: tests only).
    pub fn key(name: &str) -> SigningKey {
        let mut seed = [0u8; 32];
        for (i, b) in name.bytes().enumerate() {
            seed[i % 32] ^= b;
        }
        SigningKey::from_seed(seed)
    }

    /// The grid state the accepted entries build.
    pub fn state(&self) -> &GridState {
        self.chain.state()
    }

    /// Signs and appends an entry by `author`; fails if the ledger's rules refuse it.
    pub fn submit(&mut self, author: &str, body: Body) -> anyhow::Result<u64> {
        let entry = sign_next(&self.chain, author, body, &Self::key(author));
        self.chain
            .apply(&entry)
            .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
        self.file.append(&entry)?;
        Ok(entry.seq)
    }

    /// Appends an entry as is, without checking it (to test what the agent does with it).
    pub fn append_raw(&mut self, author: &str, body: Body, signer: &str) -> anyhow::Result<u64> {
        let entry = sign_next(&self.chain, author, body, &Self::key(signer));
        let _ = self.chain.apply(&entry);
        self.file.append(&entry)?;
        Ok(entry.seq)
    }

    /// Registers a twin.
    pub fn twin(&mut self, name: &str) -> anyhow::Result<()> {
        let public_key = Self::key(name).public();
        self.submit(
            name,
            Body::Twin {
                name: name.into(),
                public_key,
            },
        )?;
        Ok(())
    }
}

/// The `node` entry of node `node_id`, owned by twin `farmer`, reachable at `endpoint`.
pub fn node_entry(node_id: u32, endpoint: &str, public_ipv4: Option<&str>) -> anyhow::Result<Body> {
    Ok(Body::Node {
        node_id,
        farmer: "farmer".into(),
        wireguard_public_key: gridnet_agent::plan::WgKey([1; 32]),
        endpoints: vec![endpoint.parse()?],
        public_ipv4: public_ipv4.map(str::parse).transpose()?,
        public_ipv6: None,
    })
}

/// A `network` entry in 10.1.0.0/16 and fd00:1::/48 with one member, `node_id`, holding
/// 10.1.1.0/24 and fd00:1:0:1::/64 and listening on `port`.
pub fn network_entry(name: &str, node_id: u32, port: u16) -> anyhow::Result<Body> {
    Ok(Body::Network {
        name: name.into(),
        version: 1,
        ip_range: "10.1.0.0/16".parse()?,
        ipv6_range: "fd00:1::/48".parse()?,
        members: vec![Member {
            node_id,
            subnet: "10.1.1.0/24".parse()?,
            subnet_v6: "fd00:1:0:1::/64".parse()?,
            wireguard_listen_port: port,
        }],
    })
}
