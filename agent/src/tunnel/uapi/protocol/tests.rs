use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::tunnel::{DropCounts, PeerSpec, PeerStatus};

fn spec(peers: Vec<PeerSpec>) -> TunnelSpec {
    TunnelSpec {
        network: "alice/web".into(),
        ifname: "gnt3".into(),
        listen_port: 0,
        mtu: 1420,
        peers,
    }
}

fn status(peers: Vec<PeerStatus>) -> TunnelStatus {
    TunnelStatus {
        network: "alice/web".into(),
        ifname: "gnt3".into(),
        ifindex: 9,
        listen_port: 51820,
        peers,
        drops: DropCounts::default(),
    }
}

fn peer_status(key: u8) -> PeerStatus {
    PeerStatus {
        public_key: [key; 32],
        endpoint: None,
        last_handshake: None,
        handshake_rtt: None,
        rx_datagrams: 0,
        rx_bytes: 0,
        tx_datagrams: 0,
        tx_bytes: 0,
        drops: DropCounts::default(),
    }
}

fn lines(text: &str) -> Result<Vec<Option<Request>>, RequestError> {
    let mut parser = RequestParser::default();
    text.split('\n')
        .map(|line| parser.line(line.as_bytes()))
        .collect()
}

#[test]
fn the_answer_to_get_is_what_wg_parses() {
    let with_everything = PeerSpec {
        public_key: [0x11; 32],
        endpoints: vec!["192.0.2.2:51820".parse().expect("addr")],
        // Host bits are cleared, as the tunnel routes the prefix.
        allowed_ips: vec![
            "10.1.2.7/24".parse().expect("net"),
            "fd00:1:0:2::/64".parse().expect("net"),
        ],
        keepalive: Some(25),
    };
    let never_seen = PeerSpec {
        public_key: [0xab; 32],
        endpoints: Vec::new(),
        allowed_ips: vec!["10.9.0.1/32".parse().expect("net")],
        keepalive: Some(0),
    };
    let v6 = PeerSpec {
        public_key: [0x22; 32],
        endpoints: Vec::new(),
        allowed_ips: Vec::new(),
        keepalive: None,
    };
    let mut up = peer_status(0x11);
    up.endpoint = Some("192.0.2.2:51820".parse().expect("addr"));
    up.last_handshake = Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789));
    up.tx_bytes = 1480;
    up.rx_bytes = 2960;
    let mut roamed = peer_status(0x22);
    roamed.endpoint = Some("[2001:db8::2]:51821".parse().expect("addr"));
    let answer = get_answer(
        &[0x07; 32],
        &spec(vec![with_everything, never_seen, v6]),
        &status(vec![up, roamed]),
    );
    let want = format!(
        "private_key={}\n\
         listen_port=51820\n\
         public_key={}\n\
         protocol_version=1\n\
         endpoint=192.0.2.2:51820\n\
         last_handshake_time_sec=1700000000\n\
         last_handshake_time_nsec=123456789\n\
         tx_bytes=1480\n\
         rx_bytes=2960\n\
         persistent_keepalive_interval=25\n\
         allowed_ip=10.1.2.0/24\n\
         allowed_ip=fd00:1:0:2::/64\n\
         public_key={}\n\
         protocol_version=1\n\
         last_handshake_time_sec=0\n\
         last_handshake_time_nsec=0\n\
         tx_bytes=0\n\
         rx_bytes=0\n\
         persistent_keepalive_interval=0\n\
         allowed_ip=10.9.0.1/32\n\
         public_key={}\n\
         protocol_version=1\n\
         endpoint=[2001:db8::2]:51821\n\
         last_handshake_time_sec=0\n\
         last_handshake_time_nsec=0\n\
         tx_bytes=0\n\
         rx_bytes=0\n\
         persistent_keepalive_interval=0\n\
         errno=0\n\n",
        "07".repeat(32),
        "11".repeat(32),
        "ab".repeat(32),
        "22".repeat(32),
    );
    assert_eq!(answer, want);
}

#[test]
fn a_tunnel_without_peers_still_names_its_key_and_port() {
    let answer = get_answer(&[0xff; 32], &spec(Vec::new()), &status(Vec::new()));
    assert_eq!(
        answer,
        format!(
            "private_key={}\nlisten_port=51820\nerrno=0\n\n",
            "ff".repeat(32)
        )
    );
}

#[test]
fn refusals_carry_a_negated_errno() {
    assert_eq!(errno_answer(ERRNO_SET_REFUSED), "errno=-1\n\n");
    assert_eq!(errno_answer(ERRNO_INVALID), "errno=-22\n\n");
}

#[test]
fn requests_are_read_to_their_blank_line() {
    assert_eq!(lines("get=1\n"), Ok(vec![None, Some(Request::Get)]));
    assert_eq!(
        lines("set=1\npublic_key=aa\nremove=true\n"),
        Ok(vec![None, None, None, Some(Request::Set { lines: 2 })])
    );
    // Several requests on one connection.
    assert_eq!(
        lines("get=1\n\nset=1\n\nget=1\n"),
        Ok(vec![
            None,
            Some(Request::Get),
            None,
            Some(Request::Set { lines: 0 }),
            None,
            Some(Request::Get),
        ])
    );
}

#[test]
fn what_is_not_a_request_is_named() {
    let mut parser = RequestParser::default();
    assert_eq!(
        parser.line(b"get=2"),
        Err(RequestError::UnknownOperation {
            operation: "get=2".into()
        })
    );
    let mut parser = RequestParser::default();
    assert_eq!(parser.line(b"get=1"), Ok(None));
    assert_eq!(parser.line(b"private_key="), Err(RequestError::TrailingGet));
    let mut parser = RequestParser::default();
    assert_eq!(parser.line(b"set=1"), Ok(None));
    assert_eq!(
        parser.line(b"no equals sign"),
        Err(RequestError::MalformedSet)
    );
    let mut parser = RequestParser::default();
    assert_eq!(
        parser.line(&[b'a'; MAX_LINE]),
        Err(RequestError::LineTooLong)
    );
    assert_eq!(
        parser.line(b""),
        Err(RequestError::UnknownOperation {
            operation: String::new()
        })
    );
}

#[test]
fn a_set_request_is_bounded() {
    let mut parser = RequestParser::default();
    assert_eq!(parser.line(b"set=1"), Ok(None));
    for _ in 0..MAX_SET_LINES {
        assert_eq!(parser.line(b"allowed_ip=10.0.0.0/8"), Ok(None));
    }
    assert_eq!(
        parser.line(b"allowed_ip=10.0.0.0/8"),
        Err(RequestError::SetTooLong)
    );
}

proptest! {
    /// Garbage never panics, and whatever the parser accepts is one of the two operations.
    #[test]
    fn garbage_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..32)) {
        let mut parser = RequestParser::default();
        for chunk in &chunks {
            match parser.line(chunk) {
                Ok(Some(Request::Get | Request::Set { .. })) | Ok(None) => {}
                Err(_) => break,
            }
        }
    }

    /// Lines that look almost like the protocol are refused or taken, never misread.
    #[test]
    fn near_misses_are_not_requests(op in "(get|set)=[0-9]{0,2}\\s?") {
        let mut parser = RequestParser::default();
        let verdict = parser.line(op.as_bytes());
        prop_assert_eq!(verdict.is_ok(), op == "get=1" || op == "set=1");
    }
}
