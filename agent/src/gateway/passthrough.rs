//! TLS passthrough: route a connection by the server name of its ClientHello, then copy bytes
//! both ways without looking at them. What gives no usable name is closed without an answer.

use std::{io, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{
    idle::{Activity, Watched},
    listener::ListenerShared,
    proxy_header,
    runtime::error_chain,
    sni::{self, Hello, HelloError},
};

/// Bytes read per call while waiting for the ClientHello.
const READ_CHUNK: usize = 4096;

#[derive(Debug, thiserror::Error)]
enum HelloReadError {
    #[error("cannot read the ClientHello")]
    Io(#[from] io::Error),
    #[error("the connection ended inside the ClientHello")]
    Truncated,
    #[error("the ClientHello is longer than {max} bytes")]
    TooLarge { max: usize },
    #[error(transparent)]
    Hello(#[from] HelloError),
    #[error("no ClientHello within the time allowed")]
    Timeout,
}

pub async fn serve(mut client: TcpStream, peer: SocketAddr, shared: &ListenerShared) {
    let limits = &shared.limits;
    let hello = tokio::time::timeout(
        limits.client_hello_timeout,
        read_hello(&mut client, limits.client_hello_max),
    )
    .await
    .unwrap_or(Err(HelloReadError::Timeout));
    let (first_bytes, name) = match hello {
        Ok(hello) => hello,
        Err(e) => {
            shared.count_unrouted();
            tracing::debug!(listener = %shared.addr, %peer, error = %e, "TLS connection closed");
            return;
        }
    };
    let Some(gateway) = shared.route(&name) else {
        shared.count_unrouted();
        tracing::debug!(
            listener = %shared.addr,
            %peer,
            %name,
            "TLS connection for an unknown name closed"
        );
        return;
    };
    let (mut backend, counted, _) = match gateway.connect().await {
        Ok(connected) => connected,
        Err(e) => {
            tracing::debug!(
                gateway = %gateway.spec.name,
                %peer,
                error = %error_chain(&e),
                "TLS connection closed"
            );
            return;
        }
    };
    let mut head = Vec::with_capacity(first_bytes.len() + 64);
    if gateway.spec.proxy_protocol {
        // Listeners are bound to the plan's own addresses: the listener's is the local one.
        match proxy_header::v2(peer, shared.addr) {
            Ok(header) => head.extend_from_slice(&header),
            Err(e) => {
                tracing::debug!(
                    gateway = %gateway.spec.name,
                    error = %e,
                    "cannot build a PROXY header"
                );
                return;
            }
        }
    }
    head.extend_from_slice(&first_bytes);
    if let Err(e) = backend.write_all(&head).await {
        tracing::debug!(
            gateway = %gateway.spec.name,
            error = %e,
            "backend closed before the ClientHello"
        );
        return;
    }
    let activity = Activity::new();
    let mut client = Watched::new(client, std::sync::Arc::clone(&activity));
    let mut gateway_closed = gateway.closed();
    let mut listener_closed = shared.closed();
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            if let Err(e) = copied {
                tracing::debug!(gateway = %gateway.spec.name, error = %e, "TLS connection ended");
            }
        }
        () = activity.idle_for(limits.idle_timeout) => {}
        _ = gateway_closed.wait_for(|c| *c) => {}
        _ = listener_closed.wait_for(|c| *c) => {}
    }
    drop(counted);
}

/// Reads until the ClientHello is whole; returns the bytes read (to be sent on) and the name.
async fn read_hello(
    client: &mut TcpStream,
    max: usize,
) -> Result<(Vec<u8>, String), HelloReadError> {
    let mut bytes = Vec::with_capacity(READ_CHUNK.min(max));
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let room = max.saturating_sub(bytes.len()).min(READ_CHUNK);
        if room == 0 {
            return Err(HelloReadError::TooLarge { max });
        }
        let n = client.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(HelloReadError::Truncated);
        }
        bytes.extend_from_slice(&chunk[..n]);
        if let Hello::ServerName(name) = sni::server_name(&bytes)? {
            return Ok((bytes, name));
        }
    }
}
