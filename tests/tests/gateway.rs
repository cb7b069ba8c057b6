//! Web gateways: public HTTP and TLS from an "internet" namespace on the underlay, through a
//! gateway node, over the encrypted overlay to backends in containers on other nodes; with the
//! real `curl`, a real HTTP server and a real TLS server whose certificate curl verifies.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use gridnet_agent::{
    ledger::{Body, model::ObjectKind},
    plan::GatewayMode,
};
use gridnet_tests::{
    BODY, Capture, Grid, HttpServer, INTERNET_IP, Internet, TlsServer, gateway_entry,
    proto::WIREGUARD_PORT, read_capture, wait, within,
};

/// How long the first request may take: the gateway's health check must see the backend up,
/// and the first packets wait for the handshake between the two nodes.
const FIRST_ANSWER: Duration = Duration::from_secs(30);

/// curl's `--resolve` for `host` on port `port` at node `node`'s public address.
fn resolve(host: &str, port: u16, node: u32) -> String {
    format!("{host}:{port}:192.0.2.{node}")
}

/// The status code and body curl got for `url` (`000` when it got no HTTP answer).
fn get(inet: &Internet, args: &[&str]) -> anyhow::Result<(String, String)> {
    let mut all = vec!["--write-out", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = inet.curl(&all)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.to_owned(), body.to_owned()))
}

/// [`get`] until the answer has status `code`.
fn get_until(inet: &Internet, code: &str, args: &[&str]) -> anyhow::Result<(String, String)> {
    wait::until(
        FIRST_ANSWER,
        &format!("curl {} answering {code}", args.join(" ")),
        || get(inet, args),
        |(got, _)| got == code,
    )
}

/// An HTTP server in namespace `ns` on `port` that answers every request with the request's
/// own head as its body, so the test sees what the gateway forwarded.
fn serve_echo_http(ns: &str, port: u16) -> anyhow::Result<()> {
    let listener = within(ns, move || std::net::TcpListener::bind(("::", port)))??;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    head.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.write_all(&head);
            });
        }
    });
    Ok(())
}

/// Submits alice's gateway `name` in alice/web on `node`, for one host name and one backend.
fn gateway(
    grid: &mut Grid,
    name: &str,
    node: u32,
    hostname: &str,
    backend: &str,
    mode: GatewayMode,
) -> anyhow::Result<u64> {
    grid.ledger.submit(
        "alice",
        gateway_entry(name, "web", node, &[hostname], &[backend], mode)?,
    )
}

/// alice's gateways on node 1 in front of `app`: `www` (HTTP, port 8080) and `secure` (TLS
/// passthrough, port 8443); returns the last seq.
fn www_and_secure(grid: &mut Grid) -> anyhow::Result<u64> {
    gateway(
        grid,
        "www",
        1,
        "www.example.org",
        "10.1.2.2:8080",
        GatewayMode::Http,
    )?;
    gateway(
        grid,
        "secure",
        1,
        "secure.example.org",
        "10.1.2.2:8443",
        GatewayMode::TlsPassthrough,
    )
}

/// alice/web on nodes 1..=count, node 1 public, the backend container `app` on the last node.
fn grid(label: &str, count: u32) -> anyhow::Result<(Grid, u64)> {
    let mut grid = Grid::new(label, count)?;
    let members: Vec<u32> = (1..=count).collect();
    grid.network("alice", "web", &members, WIREGUARD_PORT)?;
    grid.container("alice", "app", "web", count, 2)?;
    let seq = grid.publish(1)?;
    Ok((grid, seq))
}

/// The agent's status of gateway `name` on node `node`.
fn gateway_status(grid: &Grid, node: u32, name: &str) -> anyhow::Result<serde_json::Value> {
    let status = grid.agent(node)?.status()?;
    status["gateways"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == name)
        .cloned()
        .with_context(|| format!("node {node} shows no gateway {name}: {status:#}"))
}

#[test]
fn http_by_host_and_tls_by_sni_reach_a_backend_on_another_node() -> anyhow::Result<()> {
    let (mut grid, _) = grid("gw", 2)?;
    www_and_secure(&mut grid)?;
    let seq = grid.ledger.submit(
        "alice",
        gateway_entry(
            "echo",
            "web",
            1,
            &["echo.example.org"],
            &["[fd00:1:0:2::2]:8081"],
            GatewayMode::Http,
        )?,
    )?;
    grid.start("uplinks: [up0]\n", seq)?;
    let app = grid.node(2).container_ns("alice.app");
    let _http = HttpServer::start(&app, 8080)?;
    serve_echo_http(&app, 8081)?;
    let tls = TlsServer::start(&app, 8443, "secure.example.org")?;
    let inet = Internet::attach(&grid)?;

    let www = resolve("www.example.org", 80, 1);
    let (_, body) = get_until(
        &inet,
        "200",
        &["--resolve", &www, "http://www.example.org/"],
    )?;
    assert_eq!(body, BODY);
    // The certificate is the backend's, checked by curl against the test's CA: the gateway
    // passed the TLS session through without terminating it.
    let ca = tls.ca_cert().display().to_string();
    let secure = resolve("secure.example.org", 443, 1);
    let (_, body) = get_until(
        &inet,
        "200",
        &[
            "--cacert",
            &ca,
            "--resolve",
            &secure,
            "https://secure.example.org/index.html",
        ],
    )?;
    assert_eq!(body, BODY);

    // The backend sees who asked: the client's address in X-Forwarded-For and Forwarded.
    let echo = resolve("echo.example.org", 80, 1);
    let (_, head) = get_until(
        &inet,
        "200",
        &["--resolve", &echo, "http://echo.example.org/x"],
    )?;
    let head = head.to_ascii_lowercase();
    ensure!(
        head.contains(&format!("x-forwarded-for: {INTERNET_IP}"))
            && head.contains(&format!("forwarded: for={INTERNET_IP}")),
        "the request the backend got:\n{head}"
    );

    // An unknown host name gets 404; the same name in other letters is the same name.
    let (code, _) = get(
        &inet,
        &[
            "--resolve",
            &resolve("nope.example.org", 80, 1),
            "http://nope.example.org/",
        ],
    )?;
    assert_eq!(code, "404");
    let (code, _) = get(&inet, &["-H", "Host: WWW.Example.ORG", "http://192.0.2.1/"])?;
    assert_eq!(code, "200");
    // TLS for a name no gateway serves: the connection is closed, nothing answers.
    let out = inet.curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve("other.example.org", 443, 1),
        "https://other.example.org/index.html",
    ])?;
    ensure!(!out.status.success(), "TLS for an unknown name got through");

    // `gridnet status` shows the gateway: names, listener, backend health and connections.
    // Status is refreshed every second.
    let www = wait::until(
        Duration::from_secs(10),
        "alice/www's status showing its backend up and the requests served",
        || gateway_status(&grid, 1, "alice/www"),
        |www| www["backends"][0]["health"] == "up" && www["total_connections"].as_u64() >= Some(2),
    )
    .with_context(|| grid.node(1).agent_log())?;
    ensure!(
        www["hostnames"] == serde_json::json!(["www.example.org"])
            && www["listeners"][0]["addr"] == "192.0.2.1:80"
            && www["backends"][0]["addr"] == "10.1.2.2:8080",
        "status of alice/www: {www:#}"
    );
    Ok(())
}

#[test]
fn a_dead_backend_is_out_and_back_and_a_second_gateway_keeps_the_name_served() -> anyhow::Result<()>
{
    let (mut grid, _) = grid("gw-ha", 3)?;
    grid.publish(2)?;
    let mut seq = 0;
    for (name, node) in [("www1", 1), ("www2", 2)] {
        seq = gateway(
            &mut grid,
            name,
            node,
            "www.example.org",
            "10.1.3.2:8080",
            GatewayMode::Http,
        )?;
    }
    grid.start("uplinks: [up0]\n", seq)?;
    let app = grid.node(3).container_ns("alice.app");
    let http = HttpServer::start(&app, 8080)?;
    let inet = Internet::attach(&grid)?;
    let through = |node: u32| {
        [
            "--resolve".to_owned(),
            resolve("www.example.org", 80, node),
            "http://www.example.org/".to_owned(),
        ]
    };
    for node in [1, 2] {
        let args = through(node);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, body) = get_until(&inet, "200", &args)?;
        assert_eq!(body, BODY, "through node {node}");
    }
    let ledger = grid.ledger.file.path().display().to_string();
    let dns = |inet: &Internet| -> anyhow::Result<String> {
        let out = inet.gridnet(&[
            "gateway",
            "dns",
            "--name",
            "www.example.org",
            "--ledger",
            &ledger,
        ])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let records = dns(&inet)?;
    ensure!(
        records.contains("192.0.2.1") && records.contains("192.0.2.2"),
        "gateway dns with both gateways up:\n{records}"
    );

    // The backend dies: out within a few seconds (502 or 503), back once it serves again.
    drop(http);
    let args = through(1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _) = wait::until(
        Duration::from_secs(10),
        "the gateway answering that no backend is there",
        || get(&inet, &args),
        |(code, _)| code == "502" || code == "503",
    )?;
    ensure!(code == "502" || code == "503");
    wait::until(
        Duration::from_secs(10),
        "the dead backend marked down",
        || gateway_status(&grid, 1, "alice/www1"),
        |g| g["backends"][0]["health"] == "down",
    )?;
    let _http = HttpServer::start(&app, 8080)?;
    let (_, body) = wait::until(
        Duration::from_secs(15),
        "the backend back in",
        || get(&inet, &args),
        |(code, _)| code == "200",
    )?;
    assert_eq!(body, BODY);

    // One of the two gateways leaves the ledger while a client keeps asking through the other.
    let seq = grid.ledger.submit(
        "alice",
        Body::Delete {
            object: ObjectKind::Gateway,
            name: "www2".into(),
        },
    )?;
    let mut answers = Vec::new();
    let mut settled = false;
    while !settled || answers.len() < 10 {
        answers.push(get(&inet, &args)?.0);
        settled = grid.agent(2)?.status()?["last_seq"] == seq;
        ensure!(answers.len() < 500, "node 2 never applied the deletion");
    }
    ensure!(
        answers.iter().all(|code| code == "200"),
        "answers through node 1 while node 2's gateway went: {answers:?}"
    );
    let gone = through(2);
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    wait::until(
        Duration::from_secs(10),
        "node 2 no longer serving the name",
        || Ok(get(&inet, &gone)?.0),
        |code| code != "200",
    )?;
    let records = dns(&inet)?;
    ensure!(
        records.contains("192.0.2.1") && !records.contains("192.0.2.2"),
        "gateway dns after node 2's gateway left:\n{records}"
    );
    Ok(())
}

/// The agent's resident memory, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/PID/status")
}

/// A connection from the internet to `addr`, with a read timeout.
fn connect(inet: &Internet, addr: &str) -> anyhow::Result<TcpStream> {
    let addr: SocketAddr = addr.parse()?;
    let stream = within(inet.ns.name(), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })??;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

/// Everything the server sends until it closes or goes quiet.
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

#[test]
fn hostile_clients_get_clean_answers_and_the_others_are_still_served() -> anyhow::Result<()> {
    let (mut grid, _) = grid("gw-bad", 2)?;
    let seq = www_and_secure(&mut grid)?;
    grid.start("uplinks: [up0]\n", seq)?;
    let _http = HttpServer::start(&grid.node(2).container_ns("alice.app"), 8080)?;
    let inet = Internet::attach(&grid)?;
    let www = resolve("www.example.org", 80, 1);
    let served = || -> anyhow::Result<bool> {
        Ok(get(&inet, &["--resolve", &www, "http://www.example.org/"])?
            == ("200".into(), BODY.into()))
    };
    get_until(
        &inet,
        "200",
        &["--resolve", &www, "http://www.example.org/"],
    )?;
    let agent = grid.agent(1)?.pid();
    let rss_before = rss_kib(agent)?;

    // Garbage: 400.
    let mut garbage = connect(&inet, "192.0.2.1:80")?;
    garbage.write_all(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")?;
    let answer = String::from_utf8_lossy(&read_all(&mut garbage)).into_owned();
    ensure!(
        answer.starts_with("HTTP/1.1 400"),
        "garbage got: {answer:?}"
    );

    // A 1 MB header: refused (431) or cut, and never buffered whole.
    let mut huge = connect(&inet, "192.0.2.1:80")?;
    huge.write_all(b"GET / HTTP/1.1\r\nHost: www.example.org\r\nX-Big: ")?;
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..16 {
        if huge.write_all(&chunk).is_err() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&read_all(&mut huge)).into_owned();
    ensure!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "a 1 MB header got: {answer:.200}"
    );
    ensure!(served()?, "the gateway stopped serving after a 1 MB header");

    // Half a ClientHello, then silence: closed without an answer.
    let hello = client_hello("secure.example.org");
    let mut half = connect(&inet, "192.0.2.1:443")?;
    half.write_all(&hello[..hello.len() / 2])?;
    let answer = read_all(&mut half);
    ensure!(
        answer.is_empty(),
        "half a ClientHello got {} bytes",
        answer.len()
    );
    // And a ClientHello without SNI: closed too.
    let mut nameless = connect(&inet, "192.0.2.1:443")?;
    nameless.write_all(&client_hello(""))?;
    ensure!(
        read_all(&mut nameless).is_empty(),
        "a ClientHello without SNI got an answer"
    );

    // 500 slow clients sending a byte a second: the others are still served, memory bounded.
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = connect(&inet, "192.0.2.1:80")?;
        stream.write_all(b"G")?;
        slow.push(stream);
    }
    for second in 0..5 {
        for stream in &mut slow {
            let _ = stream.write_all(b"E");
        }
        ensure!(
            served()?,
            "a client was not served with 500 slow ones open (second {second})"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let rss_after = rss_kib(agent)?;
    ensure!(
        rss_after < rss_before + 64 * 1024,
        "the agent grew from {rss_before} KiB to {rss_after} KiB with 500 slow clients"
    );
    drop(slow);
    ensure!(served()?, "served after the slow clients left");
    ensure!(
        grid.agent(1)?.status()?["failing"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "the agent reports failures"
    );
    Ok(())
}

/// A TLS 1.2/1.3 ClientHello record naming `server` in SNI (none when empty), as a client's
/// first flight: the bytes a gateway must read to route.
fn client_hello(server: &str) -> Vec<u8> {
    let mut extensions = Vec::new();
    if !server.is_empty() {
        let name = server.as_bytes();
        let list_len = name.len() + 3;
        extensions.extend_from_slice(&[0x00, 0x00]);
        extensions.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        extensions.extend_from_slice(&(list_len as u16).to_be_bytes());
        extensions.push(0);
        extensions.extend_from_slice(&(name.len() as u16).to_be_bytes());
        extensions.extend_from_slice(name);
    }
    // supported_versions: TLS 1.3, 1.2.
    extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn the_gateway_to_backend_leg_is_only_wireguard_on_the_underlay() -> anyhow::Result<()> {
    let (mut grid, _) = grid("gw-wire", 2)?;
    let seq = gateway(
        &mut grid,
        "www",
        1,
        "www.example.org",
        "10.1.2.2:8080",
        GatewayMode::Http,
    )?;
    grid.start("uplinks: [up0]\n", seq)?;
    let _http = HttpServer::start(&grid.node(2).container_ns("alice.app"), 8080)?;
    let inet = Internet::attach(&grid)?;
    let www = resolve("www.example.org", 80, 1);
    get_until(
        &inet,
        "200",
        &["--resolve", &www, "http://www.example.org/"],
    )?;

    // Node 2's port on the underlay bridge: what passes between the gateway node and the
    // backend's node.
    let capture = Capture::start(
        grid.underlay.name(),
        "n2",
        grid.node(2).workdir().join("gateway-leg.pcap"),
    )?;
    for _ in 0..3 {
        let (code, body) = get(&inet, &["--resolve", &www, "http://www.example.org/"])?;
        ensure!(code == "200" && body == BODY, "{code} {body}");
    }
    let file = capture.stop()?;
    let between = "host 192.0.2.1 and host 192.0.2.2";
    let wireguard = read_capture(&file, &format!("{between} and udp port {WIREGUARD_PORT}"))?;
    ensure!(
        wireguard.len() >= 6,
        "the requests did not cross as WireGuard: {wireguard:#?}"
    );
    let other = read_capture(
        &file,
        &format!("{between} and not udp port {WIREGUARD_PORT}"),
    )?;
    ensure!(
        other.is_empty(),
        "the gateway leg carried more than WireGuard: {other:#?}"
    );
    let bytes = std::fs::read(&file)?;
    ensure!(
        !bytes.windows(BODY.len()).any(|w| w == BODY.as_bytes()),
        "the backend's body crossed node 2's port in clear"
    );
    Ok(())
}
