//! The server name (SNI) of a TLS ClientHello, from the bytes a client sent first.
//!
//! The TLS record layer is walked here (5-byte headers, so a ClientHello fragmented over
//! several records is put back together); the ClientHello itself and its extensions are
//! parsed by `tls-parser` (rusticata), a parser-only crate with no crypto that is fuzzed
//! upstream, which fits a proxy that must read a hello but never terminate TLS.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_message_handshake,
};

use super::hostname;

/// TLS record content type of handshake messages.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Bytes of a record header: type, version (2), length (2).
const RECORD_HEADER: usize = 5;
/// Bytes of a handshake message header: type, length (3).
const HANDSHAKE_HEADER: usize = 4;
/// Largest plaintext record payload (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;

/// Why a connection's first bytes give no server name to route by.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("the first bytes are not a TLS handshake record")]
    NotTls,
    #[error("the first handshake message is not a ClientHello")]
    NotClientHello,
    #[error("the ClientHello is malformed")]
    Malformed,
    #[error("the ClientHello names no server (no SNI)")]
    NoServerName,
    #[error("the ClientHello's server name is not a DNS host name")]
    InvalidServerName,
}

/// What the bytes read so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// The ClientHello is not complete yet: read more.
    Incomplete,
    /// The normalised server name.
    ServerName(String),
}

/// Looks for the ClientHello's server name in `bytes`, the start of a TLS connection.
pub fn server_name(bytes: &[u8]) -> Result<Hello, HelloError> {
    let mut handshake = Vec::new();
    let mut rest = bytes;
    while rest.len() >= RECORD_HEADER {
        let (header, after) = rest.split_at(RECORD_HEADER);
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != CONTENT_HANDSHAKE || header[1] != 3 || length == 0 || length > MAX_RECORD {
            return Err(HelloError::NotTls);
        }
        let Some(payload) = after.get(..length) else {
            break;
        };
        handshake.extend_from_slice(payload);
        rest = &after[length..];
        if let Some(message) = complete_message(&handshake)? {
            return parse(message).map(Hello::ServerName);
        }
    }
    // Refuse early what cannot become a handshake record.
    match rest.first() {
        Some(&first) if first != CONTENT_HANDSHAKE => Err(HelloError::NotTls),
        _ => Ok(Hello::Incomplete),
    }
}

/// The first handshake message, once `handshake` holds all of it.
fn complete_message(handshake: &[u8]) -> Result<Option<&[u8]>, HelloError> {
    let Some(header) = handshake.get(..HANDSHAKE_HEADER) else {
        return Ok(None);
    };
    if header[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(HelloError::NotClientHello);
    }
    let length =
        usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
    Ok(handshake.get(..HANDSHAKE_HEADER + length))
}

fn parse(message: &[u8]) -> Result<String, HelloError> {
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)))) =
        parse_tls_message_handshake(message)
    else {
        return Err(HelloError::Malformed);
    };
    let extensions = hello.ext.ok_or(HelloError::NoServerName)?;
    let Ok((_, extensions)) = parse_tls_client_hello_extensions(extensions) else {
        return Err(HelloError::Malformed);
    };
    let name = extensions
        .iter()
        .find_map(|extension| match extension {
            TlsExtension::SNI(names) => names
                .iter()
                .find(|(kind, _)| *kind == SNIType::HostName)
                .map(|(_, name)| *name),
            _ => None,
        })
        .ok_or(HelloError::NoServerName)?;
    std::str::from_utf8(name)
        .ok()
        .and_then(hostname::normalise)
        .ok_or(HelloError::InvalidServerName)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What curl 7.88 (OpenSSL 3.0) sent for `https://shop.example.org:45011/`.
    const CURL_HELLO: &[u8] = include_bytes!("fixtures/client_hello_sni.bin");
    /// What `openssl s_client -noservername` sent.
    const NO_SNI_HELLO: &[u8] = include_bytes!("fixtures/client_hello_no_sni.bin");

    fn name(bytes: &[u8]) -> Result<Hello, HelloError> {
        server_name(bytes)
    }

    /// The same handshake bytes cut into records of at most `size` bytes.
    fn refragment(hello: &[u8], size: usize) -> Vec<u8> {
        let handshake = &hello[RECORD_HEADER..];
        let mut out = Vec::new();
        for chunk in handshake.chunks(size) {
            out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&u16::try_from(chunk.len()).expect("small").to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn a_real_client_hello_names_its_server() {
        assert_eq!(
            name(CURL_HELLO),
            Ok(Hello::ServerName("shop.example.org".into()))
        );
    }

    #[test]
    fn a_hello_over_several_records_is_put_together() {
        for size in [1, 7, 100, 300] {
            let fragmented = refragment(CURL_HELLO, size);
            assert_eq!(
                name(&fragmented),
                Ok(Hello::ServerName("shop.example.org".into())),
                "records of {size}"
            );
        }
    }

    #[test]
    fn every_cut_of_a_hello_asks_for_more() {
        let fragmented = refragment(CURL_HELLO, 100);
        for hello in [CURL_HELLO, &fragmented] {
            for cut in 0..hello.len() {
                assert_eq!(name(&hello[..cut]), Ok(Hello::Incomplete), "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_hello_without_sni_has_no_name() {
        assert_eq!(name(NO_SNI_HELLO), Err(HelloError::NoServerName));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_get_an_answer_without_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let _ = name(&bytes);
        }

        #[test]
        fn a_damaged_hello_gets_an_answer_without_panic(
            at in 0..CURL_HELLO.len(),
            byte in proptest::prelude::any::<u8>(),
            cut in 0..CURL_HELLO.len(),
        ) {
            let mut damaged = CURL_HELLO.to_vec();
            damaged[at] = byte;
            let _ = name(&damaged);
            let _ = name(&damaged[..cut]);
        }
    }

    #[test]
    fn what_is_not_a_client_hello_is_refused() {
        assert_eq!(name(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotTls));
        assert_eq!(name(b"G"), Err(HelloError::NotTls));
        // An alert record, not a handshake.
        assert_eq!(name(&[21, 3, 3, 0, 2, 2, 40]), Err(HelloError::NotTls));
        let mut server_hello = CURL_HELLO.to_vec();
        server_hello[RECORD_HEADER] = 2;
        assert_eq!(name(&server_hello), Err(HelloError::NotClientHello));
        // The lengths inside the hello no longer add up.
        let mut broken = CURL_HELLO.to_vec();
        let extensions_length = RECORD_HEADER + HANDSHAKE_HEADER + 2 + 32;
        broken[extensions_length] = 0xff;
        assert!(name(&broken).is_err());
    }
}
