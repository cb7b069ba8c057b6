//! A gateway's backend connections come from the gateway's network namespace: a backend that
//! only exists on the loopback of a namespace of the test's own is reached through the
//! gateway, though the test's namespace cannot reach it.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use gridnet_agent::{
    gateway::{GatewayError, GatewaySpec, Gateways, Health, Limits},
    vocab::GatewayMode,
};
use gridnet_tests::{TestNetns, ip, within};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    process::Command,
};

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Answers every connection with one fixed HTTP response, then closes it.
async fn serve_fixed(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut head = [0; 4096];
            let _ = stream.read(&mut head).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nin-netns\n",
                )
                .await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_are_reached_from_the_gateway_namespace() -> anyhow::Result<()> {
    let ns = TestNetns::new("gw")?;
    ip(ns.name(), &["link", "set", "lo", "up"])?;
    // A port free here, so that only the namespace's loopback has a listener on it.
    let backend = free_addr()?;
    let inside = within(ns.name(), move || StdListener::bind(backend))??;
    inside.set_nonblocking(true)?;
    let server = tokio::spawn(serve_fixed(TcpListener::from_std(inside)?));
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

    let output = Command::new("curl")
        .args(["-s", "--max-time", "10", "-H", "Host: a.example"])
        .arg(format!("http://{listen}/"))
        .output()
        .await
        .context("run curl")?;
    anyhow::ensure!(
        output.stdout == b"in-netns\n",
        "curl: {}",
        String::from_utf8_lossy(&output.stdout)
    );

    let mut healthy = false;
    for _ in 0..50 {
        if gateways.status()[0].backends[0].health == Health::Up {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(healthy, "{:?}", gateways.status());
    gateways.shutdown().await;
    server.abort();
    Ok(())
}
