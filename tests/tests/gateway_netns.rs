//! A gateway's backend connections come from the gateway's network namespace: a backend that
//! only exists on the loopback of a namespace of the test's own is reached through the
//! gateway, though the test's namespace cannot reach it; and when a new namespace replaces
//! it (its container made again), the gateway follows.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use gridnet_agent::{
    gateway::{GatewayError, GatewaySpec, Gateways, Health, Limits},
    netlink::Netns,
    vocab::GatewayMode,
};
use gridnet_tests::{TestNetns, ip, within};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    process::Command,
    task::JoinHandle,
};

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Answers every connection with one fixed HTTP response carrying `body`, then closes it.
async fn serve_fixed(listener: TcpListener, body: &'static str) {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    while let Ok((mut stream, _)) = listener.accept().await {
        let response = response.clone();
        tokio::spawn(async move {
            let mut head = [0; 4096];
            let _ = stream.read(&mut head).await;
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Starts a backend answering `body` on `addr` inside the namespace, whose loopback it
/// brings up.
fn backend_in(ns: &str, addr: SocketAddr, body: &'static str) -> anyhow::Result<JoinHandle<()>> {
    ip(ns, &["link", "set", "lo", "up"])?;
    let inside = within(ns, move || StdListener::bind(addr))??;
    inside.set_nonblocking(true)?;
    Ok(tokio::spawn(serve_fixed(
        TcpListener::from_std(inside)?,
        body,
    )))
}

async fn get(listen: SocketAddr) -> anyhow::Result<String> {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "10", "-H", "Host: a.example"])
        .arg(format!("http://{listen}/"))
        .output()
        .await
        .context("run curl")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_are_reached_from_the_gateway_namespace() -> anyhow::Result<()> {
    let ns = TestNetns::new("gw")?;
    // A port free here, so that only the namespace's loopback has a listener on it.
    let backend = free_addr()?;
    let server = backend_in(ns.name(), backend, "in-netns")?;
    anyhow::ensure!(
        TcpStream::connect(backend).await.is_err(),
        "the backend must not be reachable from the test's namespace"
    );

    let listen = free_addr()?;
    let spec = GatewaySpec {
        name: "alice/site".into(),
        hostnames: vec!["a.example".into()],
        mode: GatewayMode::Http,
        listen: vec![listen],
        backends: vec![backend],
        netns: Some(PathBuf::from("/run/netns").join(ns.name())),
        proxy_protocol: false,
    };
    let missing = GatewaySpec {
        name: "bob/gone".into(),
        hostnames: vec!["b.example".into()],
        netns: Some(PathBuf::from("/run/netns").join(format!("{}-missing", ns.name()))),
        ..spec.clone()
    };
    let mut gateways = Gateways::new(Limits::default());
    let failures = gateways.set(&[spec, missing]).await;
    anyhow::ensure!(failures.len() == 1, "{failures:?}");
    anyhow::ensure!(
        failures[0].name == "bob/gone" && matches!(failures[0].error, GatewayError::Dialer(_)),
        "{failures:?}"
    );

    let body = get(listen).await?;
    anyhow::ensure!(body == "in-netns", "curl: {body}");

    let mut healthy = false;
    for _ in 0..50 {
        if gateways.status()[0].backends[0].health == Health::Up {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(healthy, "{:?}", gateways.status());

    // The endpoint is made again: a new namespace at the same path. The gateway follows it.
    server.abort();
    Netns::delete(ns.name())?;
    Netns::create(ns.name())?;
    let renewed = backend_in(ns.name(), backend, "renewed")?;
    let mut followed = false;
    for _ in 0..50 {
        if get(listen).await? == "renewed" {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(followed, "{:?}", gateways.status());
    gateways.shutdown().await;
    renewed.abort();
    Ok(())
}
