//! What the gateway tests share: free loopback addresses, an in-process HTTP backend, specs,
//! and real clients.
#![allow(
    dead_code,
    reason = "each test crate that includes this module uses a part of it"
)]

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener as StdListener},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use gridnet_agent::{
    gateway::{GatewaySpec, Gateways, Limits},
    vocab::GatewayMode,
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    process::Command,
    task::{JoinHandle, JoinSet},
};

/// A loopback address with a free port below the kernel's ephemeral range: tests close and
/// bind such addresses again (a backend restored, a listener changing mode), and a port from
/// the ephemeral range could meanwhile become the source port of another test's connection.
pub fn free_addr() -> SocketAddr {
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
pub struct HttpBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpBackend {
    pub async fn start(tag: &'static str, addr: SocketAddr) -> Self {
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

pub fn http_gateway(
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

/// Gateways with `limits` serving `alice/site` (`a.example`) on `listen` from `backend`.
pub async fn site_gateways(limits: Limits, listen: SocketAddr, backend: SocketAddr) -> Gateways {
    let mut gateways = Gateways::new(limits);
    let site = http_gateway("alice/site", &["a.example"], listen, &[backend]);
    let failures = gateways.set(&[site]).await;
    assert!(failures.is_empty(), "{failures:?}");
    gateways
}

/// `curl` with `args`; its status code and body.
pub async fn curl(args: &[&str]) -> (u16, String) {
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

pub async fn curl_host(listen: SocketAddr, host: &str, path: &str) -> (u16, String) {
    curl(&[
        "-H",
        &format!("Host: {host}"),
        &format!("http://{listen}{path}"),
    ])
    .await
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
pub async fn until<F: std::future::Future<Output = bool>>(
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
pub async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut received)).await {
        Ok(_) => Some(received),
        Err(_) => None,
    }
}

pub fn tls_gateway(
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
