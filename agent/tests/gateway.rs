//! Gateways on loopback, driven by real clients (curl, openssl): routing by Host and SNI,
//! health checks, limits. Backends run in this process (HTTP) or as `openssl s_server` (TLS);
//! gateways dial from the test's own namespace (`netns: None`), so no root is needed.

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use gridnet_agent::{
    gateway::{GatewayError, GatewaySpec, Gateways, Health, Limits},
    vocab::GatewayMode,
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    task::{JoinHandle, JoinSet},
};

/// What curl sent to open a TLS connection to `shop.example.org`.
const CURL_HELLO: &[u8] = include_bytes!("../src/gateway/fixtures/client_hello_sni.bin");

/// Time allowed for health checks to notice a backend going or coming back: two checks two
/// seconds apart, plus slack for a loaded machine.
const HEALTH_SETTLE: Duration = Duration::from_secs(10);

/// A loopback address with a free port below the kernel's ephemeral range: tests close and
/// bind such addresses again (a backend restored, a listener changing mode), and a port from
/// the ephemeral range could meanwhile become the source port of another test's connection.
fn free_addr() -> SocketAddr {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let base = low.saturating_sub(10_000).max(1024);
    // Tests of other processes start elsewhere in the range.
    let start = u16::try_from(std::process::id() % 5_000).unwrap_or(0);
    for _ in 0..10_000 {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
        let addr = SocketAddr::from(([127, 0, 0, 1], base + offset));
        if StdListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port in 127.0.0.1:{base}..{low}");
}

/// An HTTP backend that answers with its tag, what it was asked and the forwarding headers.
/// Dropping it closes its listener and every connection.
struct HttpBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpBackend {
    async fn start(tag: &'static str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind the backend");
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    let service = service_fn(move |request| async move {
                        Ok::<_, Infallible>(answer(tag, request).await)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, task }
    }
}

/// What the test backend answers: its tag, what it was asked and the forwarding headers; or,
/// to a request for an upgrade to `echo`, 101 and then every byte back.
async fn answer(tag: &str, mut request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let header = |request: &Request<_>, name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    if header(&request, "upgrade") == "echo" {
        let upgraded = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgraded.await {
                let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut read, &mut write).await;
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("upgrade", hyper::header::HeaderValue::from_static("echo"));
        response.headers_mut().insert(
            "connection",
            hyper::header::HeaderValue::from_static("upgrade"),
        );
        return response;
    }
    let line = format!(
        "{tag} {} {} host={} xff={} proto={} fwd={}",
        request.method(),
        request.uri(),
        header(&request, "host"),
        header(&request, "x-forwarded-for"),
        header(&request, "x-forwarded-proto"),
        header(&request, "forwarded"),
    );
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = format!("{line} body={}", String::from_utf8_lossy(&body));
    Response::new(Full::new(Bytes::from(text)))
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let path = std::env::temp_dir().join(format!(
            "gridnet-gateway-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn http_gateway(
    name: &str,
    hostnames: &[&str],
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> GatewaySpec {
    GatewaySpec {
        name: name.to_owned(),
        hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
        mode: GatewayMode::Http,
        listen: vec![listen],
        backends: backends.to_vec(),
        netns: None,
        proxy_protocol: false,
    }
}

/// `curl` with `args`; its status code and body.
async fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

async fn curl_host(listen: SocketAddr, host: &str, path: &str) -> (u16, String) {
    curl(&[
        "-H",
        &format!("Host: {host}"),
        &format!("http://{listen}{path}"),
    ])
    .await
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
async fn until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Reads what the peer sends until it closes (or `limit` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut received)).await {
        Ok(_) => Some(received),
        Err(_) => None,
    }
}

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
    assert!(status[0].total_connections >= 3, "{status:?}");
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
    let mut gateways = Gateways::new(Limits::default());
    assert!(
        gateways
            .set(&[http_gateway(
                "alice/site",
                &["a.example"],
                listen,
                &[backend.addr]
            )])
            .await
            .is_empty()
    );

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
    let mut gateways = Gateways::new(Limits::default());
    assert!(
        gateways
            .set(&[http_gateway(
                "alice/site",
                &["a.example"],
                listen,
                &[backend.addr]
            )])
            .await
            .is_empty()
    );
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
    let mut gateways = Gateways::new(limits);
    assert!(
        gateways
            .set(&[http_gateway(
                "alice/site",
                &["a.example"],
                listen,
                &[backend.addr]
            )])
            .await
            .is_empty()
    );
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

/// An `openssl s_server` for `name` with a certificate made for the test; killed when dropped.
struct TlsBackend {
    addr: SocketAddr,
    ca: PathBuf,
    _server: Child,
    _dir: TempDir,
}

impl TlsBackend {
    async fn start(name: &str) -> Self {
        let dir = TempDir::new("tls");
        let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
            ])
            .args([
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                &format!("subjectAltName=DNS:{name}"),
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("run openssl req");
        assert!(made.success(), "openssl req failed");
        let addr = free_addr();
        let server = Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-accept", &addr.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run openssl s_server");
        let up = until(Duration::from_secs(10), || async {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        assert!(up, "openssl s_server does not listen on {addr}");
        Self {
            addr,
            ca: cert,
            _server: server,
            _dir: dir,
        }
    }
}

fn tls_gateway(
    name: &str,
    hostnames: &[&str],
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> GatewaySpec {
    GatewaySpec {
        mode: GatewayMode::TlsPassthrough,
        ..http_gateway(name, hostnames, listen, backends)
    }
}

fn ca_path(ca: &Path) -> &str {
    ca.to_str().expect("UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_is_passed_through_by_sni_with_the_certificate_verified() {
    let backend = TlsBackend::start("tls.example").await;
    let listen = free_addr();
    let limits = Limits {
        client_hello_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let mut gateways = Gateways::new(limits);
    assert!(
        gateways
            .set(&[tls_gateway(
                "alice/tls",
                &["tls.example"],
                listen,
                &[backend.addr]
            )])
            .await
            .is_empty()
    );

    let port = listen.port();
    let (code, body) = curl(&[
        "--resolve",
        &format!("tls.example:{port}:127.0.0.1"),
        "--cacert",
        ca_path(&backend.ca),
        &format!("https://tls.example:{port}/"),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("s_server"), "{body}");

    // A name the listener does not serve: the connection is closed, curl gets no answer.
    let (code, _) = curl(&[
        "--resolve",
        &format!("other.example:{port}:127.0.0.1"),
        "-k",
        &format!("https://other.example:{port}/"),
    ])
    .await;
    assert_eq!(code, 0);

    // Half a ClientHello and then the end of the stream: closed without a byte.
    let mut half = TcpStream::connect(listen).await.expect("connect");
    half.write_all(&CURL_HELLO[..CURL_HELLO.len() / 2])
        .await
        .expect("write");
    half.shutdown().await.expect("shutdown");
    assert_eq!(
        read_to_close(&mut half, Duration::from_secs(5)).await,
        Some(Vec::new())
    );

    // Half a ClientHello and silence: closed once the hello timeout passes.
    let mut stalled = TcpStream::connect(listen).await.expect("connect");
    stalled
        .write_all(&CURL_HELLO[..CURL_HELLO.len() / 2])
        .await
        .expect("write");
    assert_eq!(
        read_to_close(&mut stalled, Duration::from_secs(5)).await,
        Some(Vec::new())
    );

    // Plain HTTP on a TLS listener: closed.
    let mut plain = TcpStream::connect(listen).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: tls.example\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(
        read_to_close(&mut plain, Duration::from_secs(5)).await,
        Some(Vec::new())
    );

    // An HTTP gateway cannot share a TLS listener.
    let failures = gateways
        .set(&[
            tls_gateway("alice/tls", &["tls.example"], listen, &[backend.addr]),
            http_gateway("bob/web", &["web.example"], listen, &[backend.addr]),
        ])
        .await;
    assert_eq!(failures.len(), 1);
    assert!(
        matches!(failures[0].error, GatewayError::ModeConflict { .. }),
        "{:?}",
        failures[0].error
    );
    assert_eq!(
        curl(&[
            "--resolve",
            &format!("tls.example:{port}:127.0.0.1"),
            "--cacert",
            ca_path(&backend.ca),
            &format!("https://tls.example:{port}/"),
        ])
        .await
        .0,
        200
    );
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passthrough_backends_get_a_proxy_header_then_the_hello() {
    let backend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend_addr = backend.local_addr().expect("addr");
    let listen = free_addr();
    let mut gateways = Gateways::new(Limits::default());
    let spec = GatewaySpec {
        proxy_protocol: true,
        ..tls_gateway("alice/tls", &["shop.example.org"], listen, &[backend_addr])
    };
    assert!(gateways.set(&[spec]).await.is_empty());

    let mut client = TcpStream::connect(listen).await.expect("connect");
    let client_addr = client.local_addr().expect("addr");
    // Split in two writes, as a hello over two TCP segments.
    client.write_all(&CURL_HELLO[..40]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.write_all(&CURL_HELLO[40..]).await.expect("write");

    // Health checks connect too and send nothing: the proxied connection is the one with bytes.
    let expected_header = 16 + 12;
    let received = loop {
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), backend.accept())
            .await
            .expect("a connection in time")
            .expect("accept");
        let mut received = vec![0; expected_header + CURL_HELLO.len()];
        if tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut received))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            stream.write_all(b"from backend").await.expect("write");
            break received;
        }
    };
    let header =
        ppp::v2::Header::try_from(&received[..expected_header]).expect("a PROXY v2 header");
    assert_eq!(
        header.addresses,
        ppp::v2::Addresses::from((client_addr, listen))
    );
    assert_eq!(&received[expected_header..], CURL_HELLO);

    let mut answer = [0; 12];
    client
        .read_exact(&mut answer)
        .await
        .expect("the backend's bytes come back");
    assert_eq!(&answer, b"from backend");
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgraded_connections_are_joined_through() {
    let backend = HttpBackend::start("A", free_addr()).await;
    let listen = free_addr();
    let mut gateways = Gateways::new(Limits::default());
    assert!(
        gateways
            .set(&[http_gateway(
                "alice/site",
                &["a.example"],
                listen,
                &[backend.addr]
            )])
            .await
            .is_empty()
    );
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
