//! PROXY protocol v2 headers, which tell a TLS passthrough backend the client's address
//! (the backend sees the gateway's overlay address otherwise). Built by the `ppp` crate, which
//! also parses them, so a test can read back what a backend would.

use std::{io, net::SocketAddr};

use ppp::v2::{Addresses, Builder, Command, Protocol, Version};

/// The header for a TCP connection from `client` to the gateway's `local` address.
pub fn v2(client: SocketAddr, local: SocketAddr) -> io::Result<Vec<u8>> {
    let (client, local) = same_family(client, local);
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (client, local),
    )
    .build()
}

/// The header of a connection the gateway opens for itself (a health check): the LOCAL
/// command, no addresses, which backends that require the header accept without complaint.
pub fn local() -> io::Result<Vec<u8>> {
    Builder::with_addresses(
        Version::Two | Command::Local,
        Protocol::Unspecified,
        Addresses::Unspecified,
    )
    .build()
}

/// Both addresses in one family, as the header has one: IPv4-mapped addresses as IPv4, else
/// IPv4 mapped into IPv6 when the other is IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canonical(a), canonical(b));
    let mapped = |s: SocketAddr| match s {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (mapped(a), mapped(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::Header;

    #[test]
    fn headers_carry_both_addresses() {
        let client: SocketAddr = "192.0.2.7:50123".parse().expect("addr");
        let local: SocketAddr = "198.51.100.1:443".parse().expect("addr");
        let bytes = v2(client, local).expect("header");
        assert_eq!(&bytes[..12], b"\r\n\r\n\0\r\nQUIT\n");
        let header = Header::try_from(&bytes[..]).expect("parse");
        assert_eq!(header.command, Command::Proxy);
        assert_eq!(header.addresses, Addresses::from((client, local)));
        assert_eq!(bytes.len(), 16 + 12);
    }

    #[test]
    fn health_checks_say_local() {
        let bytes = local().expect("header");
        let header = Header::try_from(&bytes[..]).expect("parse");
        assert_eq!(header.command, Command::Local);
        assert_eq!(header.addresses, Addresses::Unspecified);
        assert_eq!(bytes.len(), 16);
    }

    #[test]
    fn mixed_families_become_ipv6() {
        let client: SocketAddr = "192.0.2.7:50123".parse().expect("addr");
        let local: SocketAddr = "[2001:db8::1]:443".parse().expect("addr");
        let (a, b) = same_family(client, local);
        assert_eq!(
            a,
            "[::ffff:192.0.2.7]:50123"
                .parse::<SocketAddr>()
                .expect("addr")
        );
        assert_eq!(b, local);
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:1".parse().expect("addr");
        assert_eq!(
            same_family(mapped, "198.51.100.1:2".parse().expect("addr")).0,
            "192.0.2.7:1".parse().expect("addr")
        );
    }
}
