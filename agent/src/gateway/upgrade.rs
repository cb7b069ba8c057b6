//! HTTP upgrades (WebSocket, or any protocol a client switches to with `Upgrade`): the
//! request goes to the backend with its `Upgrade`, and once the backend answers 101 the two
//! upgraded connections are joined and bytes copied both ways, as for TLS passthrough.

use std::{sync::Arc, time::Duration};

use http::{
    HeaderMap, HeaderValue,
    header::{CONNECTION, UPGRADE},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::{idle::Activity, runtime::Counted};

/// The protocol a request asks to switch to: its `Upgrade` header, if `Connection` lists
/// `upgrade` (RFC 9110 §7.8; without it the header is not meant for the next hop).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let listed = connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"));
    listed.then(|| headers.get(UPGRADE).cloned()).flatten()
}

/// The tokens `Connection` lists, trimmed, over all its fields.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}

/// Puts back the two headers of an upgrade, which hop-by-hop filtering removed.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Both sides of a switched connection, and what ends it.
pub struct Splice {
    pub client: OnUpgrade,
    pub backend: OnUpgrade,
    /// The backend connection's activity: every byte either way crosses it.
    pub activity: Arc<Activity>,
    pub idle_timeout: Duration,
    pub listener_closed: watch::Receiver<bool>,
    pub gateway_closed: watch::Receiver<bool>,
    pub counted: Arc<Counted>,
    /// The client connection's place under the listener's connection limit.
    pub permit: Arc<OwnedSemaphorePermit>,
}

impl Splice {
    /// Copies bytes both ways once both upgrades complete, until either side closes, nothing
    /// moves for the idle timeout, or the gateway or its listener closes.
    pub async fn run(mut self) {
        let (client, backend) = match tokio::try_join!(self.client, self.backend) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "an upgraded connection did not come up");
                return;
            }
        };
        let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
            () = self.activity.idle_for(self.idle_timeout) => {}
            _ = self.listener_closed.wait_for(|c| *c) => {}
            _ = self.gateway_closed.wait_for(|c| *c) => {}
        }
        drop(self.counted);
        drop(self.permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_needs_connection_to_list_it() {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested(&headers), None);
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(
            requested(&headers),
            Some(HeaderValue::from_static("websocket"))
        );
        headers.remove(UPGRADE);
        assert_eq!(requested(&headers), None);
    }

    #[test]
    fn restored_upgrades_name_their_protocol() {
        let mut headers = HeaderMap::new();
        restore(&mut headers, HeaderValue::from_static("websocket"));
        assert_eq!(headers.get(CONNECTION).expect("connection"), "upgrade");
        assert_eq!(headers.get(UPGRADE).expect("upgrade"), "websocket");
    }
}
