//! Asking each gateway whether it answers, all at once, from where `gridnet` runs.

use std::time::Duration;

use http_body_util::Empty;
use hyper::{Method, Request, body::Bytes, header::HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::dns::{Probed, Target};
use crate::vocab::GatewayMode;

/// How long one probe may take, connection and answer together. A gateway that has not
/// answered in 2 s would lose a browser's patience too; the probes run concurrently, so this is
/// also about how long the whole command takes.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes every target concurrently.
pub async fn probe_all(name: &str, targets: Vec<Target>) -> Vec<Probed> {
    let probes = targets.into_iter().map(|target| async move {
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, probe(name, &target)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        Probed { target, answer }
    });
    futures::future::join_all(probes).await
}

/// One probe. An HTTP gateway must answer `HEAD /` for the name with any HTTP response (a
/// 502 from a gateway whose backends are down still shows the gateway is there). A TLS
/// passthrough gateway must accept the TCP connection: it answers a handshake only with its
/// backend's certificate, which is not the gateway's health.
async fn probe(name: &str, target: &Target) -> Result<(), String> {
    let stream = TcpStream::connect(target.socket())
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    match target.mode {
        GatewayMode::TlsPassthrough => Ok(()),
        GatewayMode::Http => head(name, stream).await,
    }
}

/// `HEAD /` with `Host: name` over `stream`.
async fn head(name: &str, stream: TcpStream) -> Result<(), String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection runs as its own task, the way hyper's client is driven; it ends, closing
    // the socket, once `sender` is dropped or the server closes.
    tokio::spawn(connection);
    let request = Request::builder()
        .method(Method::HEAD)
        .uri("/")
        .header(HOST, name)
        .header("user-agent", concat!("gridnet/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("HTTP request: {e}"))?;
    sender
        .send_request(request)
        .await
        .map(drop)
        .map_err(|e| format!("no HTTP answer: {e}"))
}
