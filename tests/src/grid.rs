//! A grid on this machine: node namespaces joined by an underlay bridge (each node's uplink
//! `up0` at 192.0.2.<id>, a documentation range, inside namespaces the grid made), each node
//! with its own WireGuard key, all following one ledger.

use anyhow::Context as _;
use gridnet_agent::ledger::{Body, keys::NodeKey, model::Member};

use crate::{Agent, Node, TestLedger, TestNetns, ip};

/// The grid, removed on drop (agents first, then nodes, then the underlay).
pub struct Grid {
    /// Node n's agent at n - 1; `None` while it is stopped.
    agents: Vec<Option<Agent>>,
    pub ledger: TestLedger,
    pub nodes: Vec<Node>,
    pub underlay: TestNetns,
}

impl Grid {
    /// `count` nodes (ids 1..=count) on one underlay, registered on a new ledger with twins
    /// `farmer`, `alice` and `bob`. No agent runs yet.
    pub fn new(label: &str, count: u32) -> anyhow::Result<Self> {
        let underlay = TestNetns::new(&format!("{label}-underlay"))?;
        ip(underlay.name(), &["link", "add", "br0", "type", "bridge"])?;
        ip(underlay.name(), &["link", "set", "br0", "up"])?;
        let mut nodes = Vec::new();
        for id in 1..=count {
            let node = Node::labelled(label)?;
            plug(
                &underlay,
                &format!("n{id}"),
                node.ns.name(),
                "up0",
                &Self::underlay_address(id),
            )?;
            nodes.push(node);
        }
        let mut ledger = TestLedger::new(nodes[0].workdir())?;
        for twin in ["farmer", "alice", "bob"] {
            ledger.twin(twin)?;
        }
        let mut grid = Self {
            agents: Vec::new(),
            ledger,
            nodes,
            underlay,
        };
        for id in 1..=count {
            grid.register_node(id)?;
        }
        Ok(grid)
    }

    /// Plugs namespace `ns` into the underlay bridge: a veth `port` on the bridge whose other
    /// end is `inside` in `ns` at `cidr`, up, with `ns`'s loopback up too.
    pub fn plug(&self, port: &str, ns: &str, inside: &str, cidr: &str) -> anyhow::Result<()> {
        plug(&self.underlay, port, ns, inside, cidr)
    }

    /// Node `node`'s tunnel for `network`, as its status shows it, if it has one.
    pub fn tunnel(&self, node: u32, network: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let status = self.agent(node)?.status()?;
        Ok(status["tunnels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["network"] == network)
            .cloned())
    }

    /// Node `node`'s tunnel peer with public key `key` in `network`, as its status shows it.
    pub fn tunnel_peer(
        &self,
        node: u32,
        network: &str,
        key: &str,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(self.tunnel(node, network)?.and_then(|t| {
            t["peers"]
                .as_array()?
                .iter()
                .find(|p| p["public_key"] == key)
                .cloned()
        }))
    }

    fn underlay_address(id: u32) -> String {
        format!("192.0.2.{id}/24")
    }

    /// Makes node `id`'s key (where `gridnet run` will read it) and submits its `node` entry.
    fn register_node(&mut self, id: u32) -> anyhow::Result<u64> {
        self.rekey(id, &format!("192.0.2.{id}"))
    }

    pub fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// Node `id`'s running agent.
    pub fn agent(&self, id: u32) -> anyhow::Result<&Agent> {
        self.agents
            .get(id as usize - 1)
            .and_then(Option::as_ref)
            .with_context(|| format!("node {id} runs no agent"))
    }

    /// Kills node `id`'s agent with SIGKILL, as a crash would.
    pub fn kill(&mut self, id: u32) {
        if let Some(slot) = self.agents.get_mut(id as usize - 1)
            && let Some(agent) = slot.take()
        {
            agent.kill();
        }
    }

    /// Starts node `id`'s agent again with `extra_config` and waits until it has applied entry
    /// `seq` with nothing failing.
    pub fn restart(&mut self, id: u32, extra_config: &str, seq: u64) -> anyhow::Result<()> {
        self.kill(id);
        let node = self.node(id);
        let agent = node.run_agent(id, self.ledger.file.path(), extra_config)?;
        agent
            .wait_for(60, |s| s["last_seq"] == seq && crate::healthy(s))
            .with_context(|| node.agent_log())?;
        self.agents[id as usize - 1] = Some(agent);
        Ok(())
    }

    /// Gives node `id` a new WireGuard key (its agent reads it when it starts) and submits it
    /// with `endpoint` as its underlay address. Returns the entry's seq.
    pub fn rekey(&mut self, id: u32, endpoint: &str) -> anyhow::Result<u64> {
        let key = NodeKey::generate()?;
        let file = self.node(id).workdir().join("node.key");
        // Key files are never overwritten in place: the old one goes first.
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        key.write(&file)?;
        self.submit_node(id, &key, endpoint)
    }

    /// Moves node `id`'s registered underlay address to `endpoint`, keeping its key.
    pub fn move_node(&mut self, id: u32, endpoint: &str) -> anyhow::Result<u64> {
        let key = NodeKey::read(&self.node(id).workdir().join("node.key"))?;
        self.submit_node(id, &key, endpoint)
    }

    /// Registers node `id`'s underlay address as its public IPv4 address too, so gateways may
    /// stand on it: the underlay plays the internet. Returns the entry's seq.
    pub fn publish(&mut self, id: u32) -> anyhow::Result<u64> {
        let node = self
            .ledger
            .state()
            .nodes
            .get(&id)
            .with_context(|| format!("node {id} is not registered"))?;
        let body = Body::Node {
            node_id: id,
            farmer: node.farmer.clone(),
            wireguard_public_key: node.wireguard_public_key,
            endpoints: node.endpoints.clone(),
            public_ipv4: Some(format!("192.0.2.{id}").parse()?),
            public_ipv6: node.public_ipv6,
        };
        self.ledger.submit("farmer", body)
    }

    /// Submits node `id` with `key` and underlay address `endpoint`, keeping the public
    /// addresses it has on the ledger.
    fn submit_node(&mut self, id: u32, key: &NodeKey, endpoint: &str) -> anyhow::Result<u64> {
        let (public_ipv4, public_ipv6) = self
            .ledger
            .state()
            .nodes
            .get(&id)
            .map_or((None, None), |n| (n.public_ipv4, n.public_ipv6));
        self.ledger.submit(
            "farmer",
            Body::Node {
                node_id: id,
                farmer: "farmer".into(),
                wireguard_public_key: key.public(),
                endpoints: vec![endpoint.parse()?],
                public_ipv4,
                public_ipv6,
            },
        )
    }

    /// Submits network `owner/name` with `members`: node n holds 10.1.n.0/24 and
    /// fd00:1:0:n::/64 (the same ranges for every network: they may overlap) and listens on
    /// `port`. Returns its seq.
    pub fn network(
        &mut self,
        owner: &str,
        name: &str,
        members: &[u32],
        port: u16,
    ) -> anyhow::Result<u64> {
        self.network_version(owner, name, members, port, 1)
    }

    /// Submits version `version` of network `owner/name` (see [`Self::network`]): a later
    /// version changes its members.
    pub fn network_version(
        &mut self,
        owner: &str,
        name: &str,
        members: &[u32],
        port: u16,
        version: u64,
    ) -> anyhow::Result<u64> {
        let members = members
            .iter()
            .map(|&n| -> anyhow::Result<Member> {
                Ok(Member {
                    node_id: n,
                    subnet: format!("10.1.{n}.0/24").parse()?,
                    subnet_v6: format!("fd00:1:0:{n}::/64").parse()?,
                    wireguard_listen_port: port,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.ledger.submit(
            owner,
            Body::Network {
                name: name.into(),
                version,
                ip_range: "10.1.0.0/16".parse()?,
                ipv6_range: "fd00:1::/48".parse()?,
                members,
            },
        )
    }

    /// Submits container `owner/name` in `network` on node `node` at 10.1.<node>.<host>.
    pub fn container(
        &mut self,
        owner: &str,
        name: &str,
        network: &str,
        node: u32,
        host: u8,
    ) -> anyhow::Result<u64> {
        self.ledger.submit(
            owner,
            Body::Container {
                name: name.into(),
                network: network.into(),
                node_id: node,
                ipv4: [10, 1, u8::try_from(node)?, host].into(),
                ipv6: None,
            },
        )
    }

    /// Waits until every running agent has applied entry `seq` with nothing failing.
    pub fn settle(&self, seq: u64) -> anyhow::Result<()> {
        for (i, agent) in self.agents.iter().enumerate() {
            if let Some(agent) = agent {
                agent
                    .wait_for(60, |s| s["last_seq"] == seq && crate::healthy(s))
                    .with_context(|| self.nodes[i].agent_log())?;
            }
        }
        Ok(())
    }

    /// Starts `gridnet run` on every node with `extra_config` and waits until each has applied
    /// entry `seq` with nothing failing.
    pub fn start(&mut self, extra_config: &str, seq: u64) -> anyhow::Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let id = u32::try_from(i)? + 1;
            self.agents.push(Some(node.run_agent(
                id,
                self.ledger.file.path(),
                extra_config,
            )?));
        }
        self.settle(seq)
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        // Agents before their nodes: a node's namespace goes with the node.
        self.agents.clear();
        self.nodes.clear();
    }
}

fn plug(
    underlay: &TestNetns,
    port: &str,
    ns: &str,
    inside: &str,
    cidr: &str,
) -> anyhow::Result<()> {
    let bridge = underlay.name();
    ip(
        bridge,
        &[
            "link", "add", port, "type", "veth", "peer", "name", inside, "netns", ns,
        ],
    )?;
    ip(bridge, &["link", "set", port, "master", "br0", "up"])?;
    ip(ns, &["addr", "add", cidr, "dev", inside])?;
    ip(ns, &["link", "set", inside, "up"])?;
    ip(ns, &["link", "set", "lo", "up"])
}
