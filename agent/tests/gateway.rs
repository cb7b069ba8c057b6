//! HTTP gateways on loopback, driven by real curl: routing by Host, forwarding headers,
//! balancing and health checks, limits, upgrades, changes. Backends run in this process;
//! gateways dial from the test's own namespace (`netns: None`), so no root is needed.

mod gateway_support;

use std::time::{Duration, Instant};

use gridnet_agent::gateway::{GatewayError, Gateways, Health, Limits};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};

use gateway_support::*;

/// Time allowed for health checks to notice a backend going or coming back: two checks two
/// seconds apart, plus slack for a loaded machine.
const HEALTH_SETTLE: Duration = Duration::from_secs(10);

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_is_routed_by_host_with_forwarding_headers() {
    let a = HttpBackend::start("A", free_addr()).await;
    let b = HttpBackend::start("B", free_addr()).await;
    let listen = free_addr();
    let mut gateways = Gateways::new(Limits::default());
    let specs = [
        http_gateway("alice/site", &["a.example"], listen, &[a.addr]),
        http_gateway(
            "bob/shop",
            &["b.example", "www.b.example"],
            listen,
            &[b.addr],
        ),
    ];
    let failures = gateways.set(&specs).await;
    assert!(failures.is_empty(), "{failures:?}");

    let (code, body) = curl_host(listen, "a.example", "/x?y=1").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("A GET /x?y=1 host=a.example xff=127.0.0.1 proto=http"),
        "{body}"
    );
    assert!(
        body.contains("fwd=for=127.0.0.1;host=a.example;proto=http"),
        "{body}"
    );

    let (code, body) = curl_host(listen, "WWW.B.Example:80", "/").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("B GET / "), "{body}");

    let (code, body) = curl(&[
        "-H",
        "Host: a.example",
        "-H",
        "X-Forwarded-For: 198.51.100.9",
        "--data-binary",
        "payload-123",
        &format!("http://{listen}/post"),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("A POST /post"), "{body}");
    assert!(body.contains("xff=198.51.100.9, 127.0.0.1"), "{body}");
    assert!(body.ends_with("body=payload-123"), "{body}");

    let (code, _) = curl_host(listen, "c.example", "/").await;
    assert_eq!(code, 404);
    assert_eq!(gateways.status()[0].listeners[0].unrouted, 1);

    // A third gateway cannot take a name already served on this address.
    let mut more = specs.to_vec();
    more.push(http_gateway(
        "carol/copy",
        &["a.example"],
        listen,
        &[b.addr],
    ));
    let failures = gateways.set(&more).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].name, "carol/copy");
    assert!(
        matches!(&failures[0].error, GatewayError::HostnameTaken { owner, .. } if owner == "alice/site"),
        "{:?}",
        failures[0].error
    );
    let (code, body) = curl_host(listen, "a.example", "/").await;
    assert_eq!(code, 200);
    assert!(
        body.starts_with("A "),
        "the first owner keeps serving: {body}"
    );

    // The same specs again change nothing.
    assert!(gateways.set(&specs).await.is_empty());
    assert_eq!(gateways.specs(), specs.to_vec());
    let status = gateways.status();
    assert_eq!(status.len(), 2);
    // Backend connections are reused across requests: at least one was opened.
    assert!(status[0].total_connections >= 1, "{status:?}");
    assert_eq!(status[0].listeners[0].addr, listen);

    // Removing a gateway frees its names; the listener stays for the other.
    assert!(gateways.set(&specs[1..]).await.is_empty());
    assert_eq!(curl_host(listen, "a.example", "/").await.0, 404);
    assert_eq!(curl_host(listen, "b.example", "/").await.0, 200);
    gateways.shutdown().await;
    assert!(
        TcpStream::connect(listen).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_balanced_and_dead_backends_leave_and_come_back() {
    let first = HttpBackend::start("first", free_addr()).await;
    let second = HttpBackend::start("second", free_addr()).await;
    let (first_addr, second_addr) = (first.addr, second.addr);
    let listen = free_addr();
    let mut gateways = Gateways::new(Limits::default());
    let spec = http_gateway(
        "alice/site",
        &["a.example"],
        listen,
        &[first_addr, second_addr],
    );
    assert!(gateways.set(std::slice::from_ref(&spec)).await.is_empty());

    let mut seen = Vec::new();
    for _ in 0..4 {
        let (code, body) = curl_host(listen, "a.example", "/").await;
        assert_eq!(code, 200, "{body}");
        seen.push(body.split(' ').next().unwrap_or_default().to_owned());
    }
    assert!(
        seen.contains(&"first".to_owned()) && seen.contains(&"second".to_owned()),
        "{seen:?}"
    );

    // With one backend gone, every request goes to the other once checks notice.
    drop(second);
    let noticed = until(HEALTH_SETTLE, || async {
        gateways.status()[0].backends[1].health == Health::Down
    })
    .await;
    assert!(noticed, "{:?}", gateways.status());
    assert!(gateways.status()[0].backends[1].error.is_some());
    for _ in 0..4 {
        let (code, body) = curl_host(listen, "a.example", "/").await;
        assert_eq!(code, 200);
        assert!(body.starts_with("first "), "{body}");
    }

    // With none left: 502 or 503, within a few seconds.
    drop(first);
    let refused = until(HEALTH_SETTLE, || async {
        matches!(curl_host(listen, "a.example", "/").await.0, 502 | 503)
    })
    .await;
    assert!(refused);
    assert!(gateways.status()[0].unavailable >= 1);
    let down = until(HEALTH_SETTLE, || async {
        curl_host(listen, "a.example", "/").await.0 == 503
    })
    .await;
    assert!(down, "{:?}", gateways.status());

    let _first = HttpBackend::start("first", first_addr).await;
    let back = until(HEALTH_SETTLE, || async {
        curl_host(listen, "a.example", "/").await.0 == 200
    })
    .await;
    assert!(back, "{:?}", gateways.status());
    assert!(
        until(HEALTH_SETTLE, || async {
            gateways.status()[0].backends[0].health == Health::Up
        })
        .await
    );
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_and_oversized_requests_are_refused_and_the_gateway_goes_on() {
    let backend = HttpBackend::start("A", free_addr()).await;
    let listen = free_addr();
    let gateways = site_gateways(Limits::default(), listen, backend.addr).await;

    let mut garbage = TcpStream::connect(listen).await.expect("connect");
    garbage
        .write_all(b"\x16\x03 NOT HTTP\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut garbage, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let mut big = TcpStream::connect(listen).await.expect("connect");
    big.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Big: ")
        .await
        .expect("write");
    // The gateway may close before all of it is written: that is a refusal too.
    let filler = vec![b'a'; 1024 * 1024];
    let _ = big.write_all(&filler).await;
    let _ = big.write_all(b"\r\n\r\n").await;
    let answer = read_to_close(&mut big, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // HTTP/2 with prior knowledge is not served: closed without an answer.
    let mut h2c = TcpStream::connect(listen).await.expect("connect");
    h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut h2c, Duration::from_secs(5))
        .await
        .expect("closed");
    assert_eq!(String::from_utf8_lossy(&answer), "");

    // More header fields than `max_headers`.
    let mut many = TcpStream::connect(listen).await.expect("connect");
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a.example\r\n");
    for i in 0..150 {
        head.push_str(&format!("X-Field-{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    many.write_all(head.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut many, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // No Host at all.
    let mut hostless = TcpStream::connect(listen).await.expect("connect");
    hostless
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut hostless, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(
        answer.starts_with(b"HTTP/1.0 400") || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    assert_eq!(curl_host(listen, "a.example", "/").await.0, 200);
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_do_not_keep_others_out_and_memory_stays_bounded() {
    const SLOW: usize = 500;
    let backend = HttpBackend::start("A", free_addr()).await;
    let listen = free_addr();
    let gateways = site_gateways(Limits::default(), listen, backend.addr).await;
    let before = rss_kib();

    let mut slow = JoinSet::new();
    for _ in 0..SLOW {
        slow.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(listen).await else {
                return;
            };
            for byte in b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = gateways.status()[0].listeners[0].active_connections;
    assert!(
        open >= SLOW as u64 / 2,
        "the slow clients are connected: {open}"
    );
    for _ in 0..3 {
        let started = Instant::now();
        let (code, body) = curl_host(listen, "a.example", "/").await;
        assert_eq!(code, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");

    // The header read timeout (10 s) ends them.
    let cut = until(Duration::from_secs(15), || async {
        gateways.status()[0].listeners[0].active_connections == 0
    })
    .await;
    assert!(cut, "{:?}", gateways.status());
    slow.abort_all();
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_connection_limit_new_clients_are_closed_and_counted() {
    let backend = HttpBackend::start("A", free_addr()).await;
    let listen = free_addr();
    let limits = Limits {
        max_connections_per_listener: 2,
        ..Limits::default()
    };
    let gateways = site_gateways(limits, listen, backend.addr).await;
    let held = [
        TcpStream::connect(listen).await.expect("connect"),
        TcpStream::connect(listen).await.expect("connect"),
    ];
    let mut third = TcpStream::connect(listen).await.expect("connect");
    let answer = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .expect("closed at once");
    assert!(answer.is_empty());
    assert!(gateways.status()[0].listeners[0].rejected_connections >= 1);
    drop(held);
    assert!(
        until(Duration::from_secs(5), || async {
            curl_host(listen, "a.example", "/").await.0 == 200
        })
        .await
    );
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgraded_connections_are_joined_through() {
    let backend = HttpBackend::start("A", free_addr()).await;
    let listen = free_addr();
    let mut gateways = site_gateways(Limits::default(), listen, backend.addr).await;
    let mut client = TcpStream::connect(listen).await.expect("connect");
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for message in [&b"ping"[..], b"second message"] {
        client.write_all(message).await.expect("write");
        let mut echoed = vec![0; message.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut echoed))
            .await
            .expect("the echo in time")
            .expect("read");
        assert_eq!(echoed, message);
    }
    assert_eq!(
        gateways.status()[0].active_connections,
        1,
        "the upgraded connection is counted"
    );

    // A change replaces the gateway: the open connection finishes on the old one.
    let other = HttpBackend::start("B", free_addr()).await;
    let changed = http_gateway("alice/site", &["a.example"], listen, &[other.addr]);
    assert!(
        gateways
            .set(std::slice::from_ref(&changed))
            .await
            .is_empty()
    );
    client.write_all(b"after the change").await.expect("write");
    let mut echoed = vec![0; 16];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut echoed))
        .await
        .expect("the echo in time")
        .expect("read");
    assert_eq!(echoed, b"after the change");
    let (code, body) = curl_host(listen, "a.example", "/").await;
    assert_eq!(code, 200);
    assert!(
        body.starts_with("B "),
        "new requests follow the change: {body}"
    );

    // Removing the gateway closes its connections, those of the gateway it replaced too,
    // though their listener stays for another gateway.
    let bystander = http_gateway("bob/other", &["b.example"], listen, &[other.addr]);
    assert!(
        gateways
            .set(std::slice::from_ref(&bystander))
            .await
            .is_empty()
    );
    assert_eq!(
        read_to_close(&mut client, Duration::from_secs(5)).await,
        Some(Vec::new())
    );
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_gateway_keeps_its_names_and_a_freed_address_takes_either_mode() {
    let a = HttpBackend::start("A", free_addr()).await;
    let b = HttpBackend::start("B", free_addr()).await;
    let listen = free_addr();
    let mut gateways = Gateways::new(Limits::default());
    let site = http_gateway("bob/site", &["a.example"], listen, &[a.addr]);
    assert!(gateways.set(std::slice::from_ref(&site)).await.is_empty());

    // bob/site changes backends while a newcomer (sorted first) asks for the same name.
    let changed = http_gateway("bob/site", &["a.example"], listen, &[b.addr]);
    let newcomer = http_gateway("alice/copy", &["a.example"], listen, &[a.addr]);
    let failures = gateways.set(&[newcomer, changed.clone()]).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].name, "alice/copy");
    let (code, body) = curl_host(listen, "a.example", "/").await;
    assert_eq!(code, 200);
    assert!(body.starts_with("B "), "the changed gateway serves: {body}");

    // The same address, now for TLS passthrough: the HTTP listener goes, a TLS one comes.
    let tls = tls_gateway("bob/site", &["a.example"], listen, &[b.addr]);
    assert!(gateways.set(std::slice::from_ref(&tls)).await.is_empty());
    assert_eq!(gateways.specs(), [tls]);
    let mut plain = TcpStream::connect(listen).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(
        read_to_close(&mut plain, Duration::from_secs(5)).await,
        Some(Vec::new()),
        "plain HTTP gets no answer from a TLS listener"
    );
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ipv6_clients_are_named_in_brackets() {
    let backend = HttpBackend::start("A", free_addr()).await;
    let listen = loop {
        let candidate =
            std::net::SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), free_addr().port());
        if std::net::TcpListener::bind(candidate).is_ok() {
            break candidate;
        }
    };
    let gateways = site_gateways(Limits::default(), listen, backend.addr).await;
    let (code, body) = curl(&["-g", "-H", "Host: a.example", &format!("http://{listen}/")]).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("xff=::1 "), "{body}");
    assert!(
        body.contains("fwd=for=\"[::1]\";host=a.example;proto=http"),
        "{body}"
    );
    gateways.shutdown().await;
}
