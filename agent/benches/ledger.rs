//! Verifying and applying a 100,000-entry ledger: signatures, chain, rules, and YAML parsing.
//! Replaying checks signatures in batches, on every core; the same entries applied one by one,
//! each signature checked alone on one core, are measured in the same run for comparison.
//! Run by `cargo xtask bench` (or `cargo bench -p gridnet-agent --bench ledger`); prints one
//! result line per stage.

use std::time::Instant;

use gridnet_agent::{
    ledger::{self, Body, Chain, SigningKey, model::Member},
    vocab::WgKey,
};

/// Users in the synthetic grid; each adds a twin, a network and eight containers: ten entries.
const USERS: u32 = 10_000;
/// Nodes the networks spread over.
const NODES: u32 = 50;

fn main() {
    let farmer = SigningKey::from_seed([1; 32]);
    let mut chain = Chain::default();
    let mut entries = Vec::with_capacity((USERS * 10 + NODES + 1) as usize);
    let mut push = |chain: &mut Chain, author: &str, key: &SigningKey, body: Body| {
        let entry = ledger::sign_next(chain, author, body, key);
        chain.apply(&entry).expect("the synthetic ledger is valid");
        entries.push(entry);
    };
    push(
        &mut chain,
        "farmer",
        &farmer,
        Body::Twin {
            name: "farmer".into(),
            public_key: farmer.public(),
        },
    );
    for node in 1..=NODES {
        let endpoint = format!("192.0.2.{}", node % 250 + 1).parse().expect("addr");
        push(
            &mut chain,
            "farmer",
            &farmer,
            Body::Node {
                node_id: node,
                farmer: "farmer".into(),
                wireguard_public_key: WgKey([node as u8; 32]),
                endpoints: vec![endpoint],
                public_ipv4: None,
                public_ipv6: None,
            },
        );
    }
    for user in 0..USERS {
        let name = format!("u{user}");
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&user.to_le_bytes());
        let key = SigningKey::from_seed(seed);
        push(
            &mut chain,
            &name,
            &key,
            Body::Twin {
                name: name.clone(),
                public_key: key.public(),
            },
        );
        let node = user % NODES + 1;
        let member = Member {
            node_id: node,
            subnet: "10.1.1.0/24".parse().expect("net"),
            subnet_v6: "fd00:1:0:1::/64".parse().expect("net"),
            wireguard_listen_port: 1024 + (user / NODES) as u16,
        };
        push(
            &mut chain,
            &name,
            &key,
            Body::Network {
                name: "net".into(),
                version: 1,
                ip_range: "10.1.0.0/16".parse().expect("net"),
                ipv6_range: "fd00:1::/48".parse().expect("net"),
                members: vec![member],
            },
        );
        for c in 0..8u8 {
            push(
                &mut chain,
                &name,
                &key,
                Body::Container {
                    name: format!("c{c}"),
                    network: "net".into(),
                    node_id: node,
                    ipv4: [10, 1, 1, 2 + c].into(),
                    ipv6: None,
                },
            );
        }
    }
    let total = entries.len();

    // One by one first: signatures checked on one core, in order.
    let start = Instant::now();
    let mut one_by_one = Chain::default();
    for entry in &entries {
        one_by_one
            .apply(entry)
            .expect("the synthetic ledger is valid");
    }
    let serial = start.elapsed().as_secs_f64();

    // A replay: signatures checked in batches on every core, the chain applied in order.
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let replay = ledger::replay(&entries);
    let verify = start.elapsed().as_secs_f64();
    let cores_used = cpu_before
        .zip(cpu_seconds())
        .map(|(before, after)| (after - before) / verify);
    assert!(replay.refused.is_empty());
    assert_eq!(replay.chain.state(), one_by_one.state());

    let mut text = String::new();
    for entry in &entries {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(entry).expect("yaml"));
    }
    let start = Instant::now();
    let parsed = ledger::file::parse(&text).expect("parse");
    let parse = start.elapsed().as_secs_f64();
    assert_eq!(parsed.len(), total);

    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "ledger: {total} entries verified and applied in {verify:.2} s: {:.0} entries/s \
         (signatures in batches on {cores} cores, {} busy; {:.0} entries/s one by one, {:.2}x)",
        total as f64 / verify,
        cores_used.map_or("?".into(), |c| format!("{c:.1}")),
        total as f64 / serial,
        serial / verify
    );
    println!(
        "ledger: {total} entries parsed from YAML ({} MiB) in {parse:.2} s: {:.0} entries/s",
        text.len() / (1 << 20),
        total as f64 / parse
    );
}

/// CPU time this process has used so far, all threads together, from `/proc/self/stat`: how
/// many cores a stage kept busy tells a parallel stage that lost to other load on the machine
/// from one that did not scale.
fn cpu_seconds() -> Option<f64> {
    /// The kernel reports these times in USER_HZ ticks, 100 per second on every Linux ABI.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // utime and stime are fields 14 and 15; the first after `)` is field 3.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}
