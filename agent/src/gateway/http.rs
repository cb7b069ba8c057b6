//! Plain HTTP/1.x: route each request by its `Host`, forward it to a backend on a kept-alive
//! connection (see [`upstream`]), and stream the answer back.
//!
//! hyper serves the client side (it answers 400 to a malformed request, 431 to a head over
//! the size limit, and closes a connection whose head does not arrive in time) and speaks to
//! the backend. Upgrades (WebSocket) are joined through; HTTP/2 is not served (see
//! docs/gateways.md).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{CONTENT_TYPE, HOST, UPGRADE},
};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpStream, sync::OwnedSemaphorePermit};

use super::{
    forwarded, hostname,
    idle::{Activity, Watched},
    listener::ListenerShared,
    runtime::{Unavailable, error_chain},
    upgrade,
    upstream::{self, SendError},
};

type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that belong to one connection and are not forwarded (RFC 9110 §7.6.1), beside the
/// ones a `Connection` header names and `Upgrade` (put back for upgrades, see [`upgrade`]).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    shared: &Arc<ListenerShared>,
    permit: Arc<OwnedSemaphorePermit>,
) {
    let limits = &shared.limits;
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(client, Arc::clone(&activity)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.http_buf_size())
        .max_header_size(limits.max_header_size)
        .max_headers(limits.max_headers);
    let for_requests = Arc::clone(shared);
    let service = service_fn(move |request| {
        let shared = Arc::clone(&for_requests);
        let permit = Arc::clone(&permit);
        async move { Ok::<_, Infallible>(proxy(request, peer, &shared, permit).await) }
    });
    let connection = builder.serve_connection(io, service).with_upgrades();
    let mut closed = shared.closed();
    tokio::select! {
        served = connection => {
            if let Err(e) = served {
                tracing::debug!(
                    listener = %shared.addr,
                    %peer,
                    error = %e,
                    "HTTP connection ended"
                );
            }
        }
        () = activity.idle_for(limits.idle_timeout) => {}
        _ = closed.wait_for(|c| *c) => {}
    }
}

async fn proxy(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: &ListenerShared,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response<Body> {
    match forward(request, peer, shared, permit).await {
        Ok(response) => response,
        Err(status) => answer(status),
    }
}

async fn forward(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    shared: &ListenerShared,
    permit: Arc<OwnedSemaphorePermit>,
) -> Result<Response<Body>, StatusCode> {
    let authority = match request.headers().get(HOST) {
        Some(host) => host.to_str().ok().map(str::to_owned),
        None => request.uri().authority().map(|a| a.as_str().to_owned()),
    };
    let hostname = authority
        .as_deref()
        .and_then(hostname::from_authority)
        .ok_or(StatusCode::BAD_REQUEST);
    let gateway = hostname.and_then(|h| shared.route(&h).ok_or(StatusCode::NOT_FOUND));
    let gateway = gateway.inspect_err(|_| shared.count_unrouted())?;
    let upstream = upstream::checkout(&gateway, peer, shared.addr)
        .await
        .map_err(|e| {
            tracing::debug!(
                gateway = %gateway.spec.name,
                error = %error_chain(&e),
                "no backend for a request"
            );
            unavailable_status(&e)
        })?;

    let protocol = upgrade::requested(request.headers());
    let client_upgrade = protocol.is_some().then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = &protocol {
        upgrade::restore(&mut parts.headers, protocol.clone());
    }
    if !parts.headers.contains_key(HOST)
        && let Some(value) = authority
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
    {
        parts.headers.insert(HOST, value);
    }
    forwarded::add_hop(
        &mut parts.headers,
        peer.ip().to_canonical(),
        authority.as_deref(),
    );
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.version = Version::HTTP_11;

    let (upstream, mut response) = upstream
        .send(
            &gateway,
            peer,
            shared.addr,
            Request::from_parts(parts, body),
        )
        .await
        .map_err(|e| {
            tracing::debug!(
                gateway = %gateway.spec.name,
                error = %error_chain(&e),
                "backend did not answer a request"
            );
            match e {
                SendError::Unavailable(e) => unavailable_status(&e),
                SendError::Exchange(_) => StatusCode::BAD_GATEWAY,
            }
        })?;
    let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let backend_protocol = response.headers().get(UPGRADE).cloned();
    let splice = match (client_upgrade, backend_protocol) {
        (Some(client), Some(protocol)) if switched => Some((client, protocol)),
        _ if switched => return Err(StatusCode::BAD_GATEWAY),
        _ => None,
    };
    let backend_upgrade = splice.is_some().then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if let (Some((client, protocol)), Some(backend)) = (splice, backend_upgrade) {
        upgrade::restore(&mut parts.headers, protocol);
        tokio::spawn(
            upgrade::Splice {
                client,
                backend,
                activity: Arc::clone(&upstream.activity),
                idle_timeout: shared.limits.idle_timeout,
                listener_closed: shared.closed(),
                gateway_closed: gateway.closed(),
                counted: Arc::clone(&upstream.counted),
                permit,
            }
            .run(),
        );
    } else {
        upstream.park_when_done(&gateway);
    }
    Ok(Response::from_parts(parts, body.boxed()))
}

fn unavailable_status(e: &Unavailable) -> StatusCode {
    match e {
        Unavailable::NoHealthyBackend => StatusCode::SERVICE_UNAVAILABLE,
        Unavailable::ConnectFailed(_) => StatusCode::BAD_GATEWAY,
    }
}

/// Removes the headers of one hop: the fixed list and every name `Connection` lists.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = upgrade::connection_tokens(headers)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(UPGRADE);
}

/// The gateway's own short answer.
fn answer(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    );
    let mut response = Response::new(Full::new(Bytes::from(text)).map_err(|n| match n {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http::header::CONNECTION;

    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn own_answers_say_their_status() {
        let response = answer(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
