//! HTTP gateways keep backend connections open between requests: reuse across clients, idle
//! connections closed after their timeout and when their gateway changes, and backends that
//! close connections on their own. Loopback only, no root.

mod gateway_support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use gridnet_agent::gateway::{Gateways, Limits};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

use gateway_support::*;

/// A bare HTTP/1.1 backend that counts the connections requests came on (health checks, which
/// connect and close without a request, are not counted).
struct CountingBackend {
    addr: std::net::SocketAddr,
    /// Connections that carried at least one request.
    used: Arc<AtomicUsize>,
    /// Of those, the ones still open.
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl CountingBackend {
    /// `close_after_answer`: the backend closes each connection after its first answer, without
    /// saying so in the answer (as a server whose keep-alive timeout is very short does).
    async fn start(close_after_answer: bool) -> Self {
        let addr = free_addr();
        let listener = TcpListener::bind(addr).await.expect("bind the backend");
        let used = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (counted_used, counted_open) = (Arc::clone(&used), Arc::clone(&open));
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (used, open) = (Arc::clone(&counted_used), Arc::clone(&counted_open));
                connections.spawn(answer(stream, close_after_answer, used, open));
            }
        });
        Self {
            addr,
            used,
            open,
            task,
        }
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for CountingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers every request head (the tests send no bodies) with a short page.
async fn answer(
    mut stream: TcpStream,
    close_after_answer: bool,
    used: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
) {
    let mut pending = Vec::new();
    let mut buf = [0; 4096];
    let mut counted = false;
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            if !counted {
                counted = true;
                used.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
            }
            let written = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
                .await;
            if written.is_err() || close_after_answer {
                open.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
    if counted {
        open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backend_connections_serve_many_clients_and_close_when_idle() {
    let backend = CountingBackend::start(false).await;
    let listen = free_addr();
    let limits = Limits {
        backend_idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let mut gateways = Gateways::new(limits);
    let spec = http_gateway("alice/site", &["a.example"], listen, &[backend.addr]);
    assert!(gateways.set(std::slice::from_ref(&spec)).await.is_empty());

    // Each curl is a client connection of its own; one after the other, they find the
    // backend connection of the one before idle.
    for _ in 0..10 {
        let (code, body) = curl_host(listen, "a.example", "/").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, "ok\n");
    }
    // The connection goes back to the pool a moment after its answer has been sent, so a
    // client following at once may still find none there.
    assert!(
        backend.used() <= 3,
        "{} backend connections",
        backend.used()
    );
    let status = gateways.status();
    assert_eq!(
        status[0].total_connections as usize,
        backend.used(),
        "{status:?}"
    );
    assert!(backend.open() >= 1, "the idle connection stays open");
    assert_eq!(
        status[0].active_connections as usize,
        backend.open(),
        "idle connections are counted as open: {status:?}"
    );

    // Idle past its timeout (swept with the next health check, 2 s apart), it closes.
    assert!(
        until(Duration::from_secs(5), || async {
            backend.open() == 0 && gateways.status()[0].active_connections == 0
        })
        .await,
        "open: {}, {:?}",
        backend.open(),
        gateways.status()
    );
    let (code, _) = curl_host(listen, "a.example", "/").await;
    assert_eq!(code, 200);
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_closing_connections_after_each_answer_is_served_all_the_same() {
    let backend = CountingBackend::start(true).await;
    let listen = free_addr();
    let mut gateways = Gateways::new(Limits::default());
    let spec = http_gateway("alice/site", &["a.example"], listen, &[backend.addr]);
    assert!(gateways.set(std::slice::from_ref(&spec)).await.is_empty());
    for _ in 0..10 {
        let (code, body) = curl_host(listen, "a.example", "/").await;
        assert_eq!(code, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        backend.used(),
        10,
        "every request on a connection of its own"
    );
    assert_eq!(gateways.status()[0].unavailable, 0);
    gateways.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_or_removed_gateway_lets_its_idle_connections_go() {
    let first = CountingBackend::start(false).await;
    let second = CountingBackend::start(false).await;
    let listen = free_addr();
    let mut gateways = Gateways::new(Limits::default());
    let spec = http_gateway("alice/site", &["a.example"], listen, &[first.addr]);
    assert!(gateways.set(std::slice::from_ref(&spec)).await.is_empty());
    assert_eq!(curl_host(listen, "a.example", "/").await.0, 200);
    assert!(until(Duration::from_secs(2), || async { first.open() == 1 }).await);

    // Well before the idle timeout (4 s), the replaced gateway's idle connection closes.
    let changed = http_gateway("alice/site", &["a.example"], listen, &[second.addr]);
    assert!(
        gateways
            .set(std::slice::from_ref(&changed))
            .await
            .is_empty()
    );
    assert!(
        until(Duration::from_secs(2), || async { first.open() == 0 }).await,
        "the replaced gateway's connection is still open"
    );
    assert_eq!(curl_host(listen, "a.example", "/").await.0, 200);
    assert!(until(Duration::from_secs(2), || async { second.open() == 1 }).await);

    // Removed: the same.
    assert!(gateways.set(&[]).await.is_empty());
    assert!(
        until(Duration::from_secs(2), || async { second.open() == 0 }).await,
        "the removed gateway's connection is still open"
    );
    assert_eq!(first.used() + second.used(), 2);
    gateways.shutdown().await;
}
