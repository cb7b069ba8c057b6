//! Which of a peer's underlay endpoints the tunnel sends to.
//!
//! A multi-homed node lists several endpoints (IPv6 and IPv4, several uplinks). The tunnel tries
//! them in the listed order and sticks to the one that answers: every authenticated message from
//! the peer makes its source address the endpoint in use (WireGuard's roaming, which also finds
//! access peers behind NAT). When a handshake initiation goes unanswered until the next one is
//! due, the next listed endpoint gets that one. This is the first step towards the shortest path:
//! it finds a working path, not the fastest one.

use std::net::SocketAddr;

/// The endpoint choice of one peer.
#[derive(Debug)]
pub(super) struct Endpoints {
    /// The endpoints from the spec, in order of preference.
    listed: Vec<SocketAddr>,
    /// Where messages go now: a listed endpoint, or where the peer was last heard from.
    current: Option<SocketAddr>,
    /// The listed endpoint to try when a handshake to `current` goes unanswered.
    next: usize,
    /// A handshake initiation went to `current` and nothing authentic came back since.
    unanswered: bool,
}

impl Endpoints {
    pub fn new(listed: &[SocketAddr]) -> Self {
        Self {
            listed: listed.to_vec(),
            current: listed.first().copied(),
            next: 1,
            unanswered: false,
        }
    }

    /// The endpoint messages go to, if one is known.
    pub fn current(&self) -> Option<SocketAddr> {
        self.current
    }

    /// A handshake initiation is about to be sent: if the previous one got no answer, move on
    /// to the next listed endpoint first.
    pub fn handshake_sent(&mut self) {
        if self.unanswered && !self.listed.is_empty() {
            let at = self.next % self.listed.len();
            self.current = Some(self.listed[at]);
            self.next = at + 1;
        }
        self.unanswered = true;
    }

    /// An authenticated message came from `source`: it is where the peer is.
    pub fn answered_from(&mut self, source: SocketAddr) {
        self.current = Some(source);
        self.unanswered = false;
    }

    /// The spec lists other endpoints now. The endpoint in use stays if it is still listed, or
    /// if it was learned from the peer and nothing is listed; else the new first one is used.
    pub fn relist(&mut self, listed: &[SocketAddr]) {
        if self.listed == listed {
            return;
        }
        let keep = match self.current {
            Some(current) => {
                listed.contains(&current) || (listed.is_empty() && !self.listed.contains(&current))
            }
            None => false,
        };
        if !keep {
            self.current = listed.first().copied();
            self.unanswered = false;
        }
        self.next = self
            .current
            .and_then(|c| listed.iter().position(|l| *l == c))
            .map_or(0, |i| i + 1);
        self.listed = listed.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("addr")).collect()
    }

    #[test]
    fn starts_with_the_first_listed_and_moves_on_only_after_an_unanswered_handshake() {
        let listed = addrs(&["[fd00::1]:1", "10.0.0.1:1", "10.0.1.1:1"]);
        let mut e = Endpoints::new(&listed);
        assert_eq!(e.current(), Some(listed[0]));
        e.handshake_sent();
        assert_eq!(
            e.current(),
            Some(listed[0]),
            "the first try goes to the first"
        );
        e.handshake_sent();
        assert_eq!(e.current(), Some(listed[1]));
        e.handshake_sent();
        assert_eq!(e.current(), Some(listed[2]));
        e.handshake_sent();
        assert_eq!(e.current(), Some(listed[0]), "and round again");
    }

    #[test]
    fn sticks_to_the_endpoint_that_answers() {
        let listed = addrs(&["[fd00::1]:1", "10.0.0.1:1"]);
        let mut e = Endpoints::new(&listed);
        e.handshake_sent();
        e.handshake_sent();
        e.answered_from(listed[1]);
        e.handshake_sent();
        assert_eq!(e.current(), Some(listed[1]), "an answered endpoint is kept");
        e.answered_from(listed[1]);
        e.handshake_sent();
        e.handshake_sent();
        assert_eq!(e.current(), Some(listed[0]), "until it stops answering");
    }

    #[test]
    fn roams_to_where_the_peer_is_heard_from() {
        let mut e = Endpoints::new(&[]);
        assert_eq!(
            e.current(),
            None,
            "an access peer is unknown until it speaks"
        );
        e.handshake_sent();
        e.handshake_sent();
        assert_eq!(e.current(), None);
        let nat: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        e.answered_from(nat);
        assert_eq!(e.current(), Some(nat));
    }

    #[test]
    fn relisting_keeps_a_working_endpoint_and_drops_a_vanished_one() {
        let old = addrs(&["[fd00::1]:1", "10.0.0.1:1"]);
        let mut e = Endpoints::new(&old);
        e.answered_from(old[1]);
        e.relist(&addrs(&["10.0.9.9:1", "10.0.0.1:1"]));
        assert_eq!(e.current(), Some(old[1]), "still listed: kept");
        let new = addrs(&["10.0.9.9:1"]);
        e.relist(&new);
        assert_eq!(e.current(), Some(new[0]), "no longer listed: replaced");

        let nat: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let mut learned = Endpoints::new(&[]);
        learned.answered_from(nat);
        learned.relist(&[]);
        assert_eq!(learned.current(), Some(nat), "a learned endpoint survives");
    }
}
