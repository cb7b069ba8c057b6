//! TLS passthrough gateways on loopback: routing by SNI to `openssl s_server` with the
//! certificate verified by curl, hellos that give no name, PROXY v2 headers. Gateways dial
//! from the test's own namespace (`netns: None`), so no root is needed.

mod gateway_support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU16, Ordering},
    time::Duration,
};

use gridnet_agent::gateway::{GatewayError, GatewaySpec, Gateways, Limits};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
};

use gateway_support::*;

/// What curl sent to open a TLS connection to `shop.example.org`.
const CURL_HELLO: &[u8] = include_bytes!("../src/gateway/fixtures/client_hello_sni.bin");

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

    // Unknown name, truncated hello, stalled hello, not TLS.
    assert_eq!(gateways.status()[0].listeners[0].unrouted, 4);

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
