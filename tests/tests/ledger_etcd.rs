//! The ledger in a real etcd: append, read, racing writers, and an agent following it through
//! an etcd restart.

use std::time::Duration;

use anyhow::{bail, ensure};
use gridnet_agent::ledger::{
    self, Body, Chain, Entry,
    etcd::{EtcdError, EtcdLedger},
    source::{LedgerSource, SourceError},
};
use gridnet_tests::{Etcd, Node, TestLedger, TestNetns, ping, proto::WIREGUARD_PORT, wait};

fn twin(name: &str) -> Body {
    Body::Twin {
        name: name.into(),
        public_key: TestLedger::key(name).public(),
    }
}

/// Replays what etcd holds, to sign the next entry against it: the chain and the position the
/// next entry goes to.
async fn chain_of(ledger: &mut EtcdLedger) -> anyhow::Result<(Chain, u64)> {
    let entries = LedgerSource::read_from(ledger, 0).await?;
    Ok((ledger::replay(&entries).chain, entries.len() as u64))
}

/// Appends `body` by `author`, rereading the head after every lost race.
async fn append_retrying(
    ledger: &mut EtcdLedger,
    author: &str,
    body: Body,
) -> anyhow::Result<(u64, u32)> {
    let mut lost = 0;
    loop {
        let (chain, position) = chain_of(ledger).await?;
        let entry = ledger::sign_next(&chain, author, body.clone(), &TestLedger::key(author));
        match LedgerSource::append(ledger, position, &entry).await {
            Ok(()) => return Ok((entry.seq, lost)),
            Err(SourceError::Conflict { .. }) => lost += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_ordered_and_racing_writers_never_share_a_seq() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let endpoints = vec![etcd.client_url.clone()];
    let mut one = EtcdLedger::connect(&endpoints, "/grid/a").await?;
    let mut two = EtcdLedger::connect(&endpoints, "/grid/a").await?;
    for name in ["alice", "bob"] {
        append_retrying(&mut one, name, twin(name)).await?;
    }
    assert_eq!(one.head().await?, Some(1));

    // Both writers sign entry 2 against the same head: exactly one may land.
    let (chain, position) = chain_of(&mut one).await?;
    let a = ledger::sign_next(&chain, "carol", twin("carol"), &TestLedger::key("carol"));
    let b = ledger::sign_next(&chain, "dave", twin("dave"), &TestLedger::key("dave"));
    let (ra, rb) = tokio::join!(one.append(position, &a), two.append(position, &b));
    ensure!(
        ra.is_ok() != rb.is_ok(),
        "both or neither of two racing appends landed: {ra:?} {rb:?}"
    );
    let loser = if ra.is_ok() { "dave" } else { "carol" };
    ensure!(matches!(
        ra.err().or(rb.err()),
        Some(EtcdError::Conflict { position: 2 })
    ));
    append_retrying(&mut two, loser, twin(loser)).await?;

    // Two writers appending concurrently, retrying on conflict: every entry lands once.
    let w1 = tokio::spawn(async move {
        let mut lost = 0;
        for i in 0..10 {
            lost += append_retrying(&mut one, &format!("w1-{i}"), twin(&format!("w1-{i}")))
                .await?
                .1;
        }
        anyhow::Ok(lost)
    });
    let w2 = tokio::spawn(async move {
        let mut lost = 0;
        for i in 0..10 {
            lost += append_retrying(&mut two, &format!("w2-{i}"), twin(&format!("w2-{i}")))
                .await?
                .1;
        }
        anyhow::Ok(lost)
    });
    let lost = w1.await?? + w2.await??;
    let mut reader = EtcdLedger::connect(&endpoints, "/grid/a").await?;
    let (entries, _) = reader.read_from(0).await?;
    assert_eq!(entries.len(), 24);
    assert!(
        entries.iter().enumerate().all(|(i, e)| e.seq == i as u64),
        "seqs have gaps or repeats"
    );
    let replayed = ledger::replay(&entries);
    ensure!(
        replayed.refused.is_empty(),
        "refused: {:?}",
        replayed.refused
    );
    assert_eq!(replayed.chain.state().twins.len(), 24);
    println!("racing writers lost {lost} appends to each other and retried");
    // A prefix is its own ledger.
    let mut other = EtcdLedger::connect(&endpoints, "/grid/b").await?;
    assert!(other.read_from(0).await?.0.is_empty());
    Ok(())
}

/// How long two fresh watches may take to reach etcd: milliseconds on loopback; the margin is
/// for a loaded machine.
const WATCH_SETUP: Duration = Duration::from_secs(10);

/// How long a watch that wrongly starts in the past gets to show it. etcd hands such a watch
/// its history from a loop that runs every 100 ms, so a wrong wake comes within a period or two
/// of the watch's registration; nothing else can end this wait early but a failure.
const WRONG_WAKE_WINDOW: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_wakes_on_new_entries() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let endpoints = vec![etcd.client_url.clone()];
    let mut writer = EtcdLedger::connect(&endpoints, "/grid").await?;
    let mut follower = EtcdLedger::connect(&endpoints, "/grid").await?;
    append_retrying(&mut writer, "alice", twin("alice")).await?;
    let (seen, revision) = follower.read_from(0).await?;
    assert_eq!(seen.len(), 1);
    // The watch starts after what was read: it must not wake for entry 0.
    let mut watcher = EtcdLedger::connect(&endpoints, "/grid").await?;
    let mut early = tokio::spawn(async move { watcher.wait_after(revision).await });
    let mut waiting = tokio::spawn(async move { follower.wait_from(1).await });
    // Both watches in place in etcd first, so the window below starts from there; a watch that
    // wakes early ends its task, and so this wait, at once.
    tokio::task::block_in_place(|| {
        wait::until(
            WATCH_SETUP,
            "etcd to hold both watches",
            || {
                Ok((
                    etcd.watchers()?,
                    early.is_finished() || waiting.is_finished(),
                ))
            },
            |&(watchers, ended)| watchers >= 2 || ended,
        )
    })?;
    tokio::select! {
        woke = &mut early => bail!("the watch woke with nothing new: {woke:?}"),
        read = &mut waiting => bail!("the follower returned with nothing new: {read:?}"),
        () = tokio::time::sleep(WRONG_WAKE_WINDOW) => {}
    }
    append_retrying(&mut writer, "bob", twin("bob")).await?;
    let new: Vec<Entry> = tokio::time::timeout(Duration::from_secs(10), waiting).await???;
    assert_eq!(new.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    tokio::time::timeout(Duration::from_secs(10), early).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_the_chain_refuses_takes_its_place_and_blocks_nothing() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let endpoints = vec![etcd.client_url.clone()];
    let mut writer = EtcdLedger::connect(&endpoints, "/grid").await?;
    append_retrying(&mut writer, "alice", twin("alice")).await?;
    // A writer with etcd access but a stale view appends an entry linked to nothing.
    let (chain, position) = chain_of(&mut writer).await?;
    let mut stale = ledger::sign_next(&chain, "bob", twin("bob"), &TestLedger::key("bob"));
    stale.prev = ledger::Hash::default();
    stale.signature = TestLedger::key("bob").sign(&stale.signing_bytes());
    writer.append(position, &stale).await?;
    // The chain refuses it, and the next honest append still lands after it.
    let (seq, _) = append_retrying(&mut writer, "carol", twin("carol")).await?;
    let entries = LedgerSource::read_from(&mut writer, 0).await?;
    assert_eq!(entries.len(), 3);
    let replayed = ledger::replay(&entries);
    assert_eq!(replayed.refused.len(), 1, "{:?}", replayed.refused);
    assert_eq!(replayed.refused[0].seq, 1);
    assert_eq!(replayed.chain.last_applied(), Some(seq));
    assert_eq!(
        seq, 1,
        "carol's entry carries the chain's seq, at position 2"
    );
    assert!(replayed.chain.state().twins.contains_key("carol"));
    assert!(!replayed.chain.state().twins.contains_key("bob"));
    Ok(())
}

#[test]
fn the_cli_submits_verifies_and_shows_an_etcd_ledger() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let dir = gridnet_tests::TempDir::new("cli-etcd")?;
    let gridnet = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        Ok(std::process::Command::new(gridnet_tests::gridnet_bin()?)
            .args(args)
            .env("GRIDNET_ETCD_PREFIX", "/cli")
            .output()?)
    };
    let key = dir.path().join("alice.key");
    let key = key.to_str().unwrap_or_default();
    let out = gridnet(&["ledger", "keygen", "--out", key])?;
    ensure!(out.status.success(), "{out:?}");
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key: ").map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("keygen printed no public key"))?;
    let twin = dir.path().join("twin.yaml");
    std::fs::write(
        &twin,
        format!("kind: twin\nname: alice\npublic_key: {public}\n"),
    )?;
    let twin = twin.to_str().unwrap_or_default();
    let submit = [
        "ledger", "submit", twin, "--key", key, "--author", "alice", "--etcd",
    ];
    let out = gridnet(&[&submit[..], &[&etcd.client_url]].concat())?;
    ensure!(out.status.success(), "submit: {out:?}");
    // The same twin again: the rules refuse it, with the reason, and nothing is appended.
    let out = gridnet(&[&submit[..], &[&etcd.client_url]].concat())?;
    ensure!(!out.status.success(), "a duplicate twin was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("would refuse") && err.contains("alice"),
        "{err}"
    );

    let out = gridnet(&["ledger", "verify", "--etcd", &etcd.client_url])?;
    ensure!(out.status.success(), "verify: {out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("1 entries, 0 refused"),
        "{out:?}"
    );
    let out = gridnet(&["ledger", "show", "--json", "--etcd", &etcd.client_url])?;
    let state: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(state["twins"]["alice"].is_string(), "{state}");
    // Both a file and etcd: refused before anything is read.
    let out = gridnet(&[
        "ledger",
        "verify",
        "--etcd",
        &etcd.client_url,
        "--ledger",
        twin,
    ])?;
    ensure!(!out.status.success(), "two ledgers at once were accepted");
    Ok(())
}

/// Runs `f` against the etcd ledger at `endpoints` from inside namespace `ns`: a fresh runtime
/// and connection on a thread in that namespace, so every socket lives there.
fn in_ns<T: Send + 'static>(
    ns: &str,
    endpoints: &[String],
    f: impl FnOnce(
        EtcdLedger,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send>>
    + Send
    + 'static,
) -> anyhow::Result<T> {
    let endpoints = endpoints.to_vec();
    gridnet_tests::within(ns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move { f(EtcdLedger::connect(&endpoints, "/grid").await?).await })
    })?
}

fn append_in(
    ns: &str,
    endpoints: &[String],
    author: &'static str,
    body: Body,
) -> anyhow::Result<u64> {
    in_ns(ns, endpoints, move |mut ledger| {
        Box::pin(async move { Ok(append_retrying(&mut ledger, author, body).await?.0) })
    })
}

#[test]
fn an_agent_follows_etcd_through_an_etcd_restart() -> anyhow::Result<()> {
    // etcd in a namespace of its own, one veth away from the node: the agent reaches it
    // outward, as a node reaches its grid's etcd.
    let node = Node::new()?;
    let etcd_netns = TestNetns::new("etcdns")?;
    let etcd_ns = etcd_netns.name();
    let ip = gridnet_tests::ip;
    ip(
        node.ns.name(),
        &[
            "link", "add", "ctl0", "type", "veth", "peer", "name", "ctl0", "netns", etcd_ns,
        ],
    )?;
    for (ns, addr) in [
        (node.ns.name(), "10.250.0.2/24"),
        (etcd_ns, "10.250.0.1/24"),
    ] {
        ip(ns, &["addr", "add", addr, "dev", "ctl0"])?;
        ip(ns, &["link", "set", "ctl0", "up"])?;
        ip(ns, &["link", "set", "lo", "up"])?;
    }
    let mut etcd = Etcd::start_in(etcd_ns, "10.250.0.1")?;
    let endpoints = vec![etcd.client_url.clone()];

    for name in ["farmer", "alice"] {
        append_in(etcd_ns, &endpoints, name, twin(name))?;
    }
    append_in(
        etcd_ns,
        &endpoints,
        "farmer",
        gridnet_tests::node_entry(1, "192.0.2.1", None)?,
    )?;
    append_in(
        etcd_ns,
        &endpoints,
        "alice",
        gridnet_tests::network_entry("web", 1, WIREGUARD_PORT)?,
    )?;
    let container = |name: &str, host: u8| Body::Container {
        name: name.into(),
        network: "web".into(),
        node_id: 1,
        ipv4: [10, 1, 1, host].into(),
        ipv6: None,
    };
    append_in(etcd_ns, &endpoints, "alice", container("a1", 2))?;
    let seq = append_in(etcd_ns, &endpoints, "alice", container("a2", 3))?;

    let config = format!(
        "ledger:\n  etcd:\n    endpoints: [\"{}\"]\n    prefix: /grid\n",
        etcd.client_url
    );
    let agent = node.run_agent_with(1, &config)?;
    agent
        .wait_for(30, |s| {
            s["last_seq"] == seq && s["containers"].as_array().is_some_and(|c| c.len() == 2)
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", node.agent_log()))?;

    etcd.restart()?;
    let seq = append_in(etcd_ns, &endpoints, "alice", container("a3", 4))?;
    let status = agent
        .wait_for(30, |s| {
            s["last_seq"] == seq && s["containers"].as_array().is_some_and(|c| c.len() == 3)
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", node.agent_log()))?;
    ensure!(
        status["rejected"].as_array().is_some_and(Vec::is_empty),
        "entries seen twice or out of order: {status}"
    );
    ensure!(
        ping(&node.container_ns("alice.a1"), "10.1.1.4", 2)?,
        "a3, added after the etcd restart, is unreachable"
    );
    drop(agent);
    drop(etcd);
    Ok(())
}
