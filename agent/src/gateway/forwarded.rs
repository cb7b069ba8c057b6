//! The headers that tell an HTTP backend who the client was: `X-Forwarded-For`,
//! `X-Forwarded-Proto` and RFC 7239 `Forwarded`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header::FORWARDED};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Adds this hop to the request's forwarding headers: the client address is appended to
/// `X-Forwarded-For` and `Forwarded` (earlier hops are kept, in order), and
/// `X-Forwarded-Proto` says `http` (the only scheme a gateway proxies at the HTTP level).
pub fn add_hop(headers: &mut HeaderMap, client: IpAddr, host: Option<&str>) {
    append(headers, X_FORWARDED_FOR, &client.to_string());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    append(headers, FORWARDED, &element(client, host));
}

/// One RFC 7239 `Forwarded` element for a client reached by plain HTTP.
pub fn element(client: IpAddr, host: Option<&str>) -> String {
    let node = match client {
        IpAddr::V4(v4) => v4.to_string(),
        // RFC 7239 §6: an IPv6 node is in brackets, which makes it a quoted string.
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    match host {
        Some(host) => format!("for={node};host={};proto=http", value(host)),
        None => format!("for={node};proto=http"),
    }
}

/// `text` as an RFC 7230 token if it is one, else as a quoted string.
fn value(text: &str) -> String {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !text.is_empty() && text.bytes().all(is_tchar) {
        return text.to_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Joins the existing values of `name` and `new` into one comma-separated field. Existing
/// values whose bytes cannot be joined are dropped rather than failing the request.
fn append(headers: &mut HeaderMap, name: HeaderName, new: &str) {
    let mut joined: Vec<u8> = Vec::new();
    for existing in headers.get_all(&name) {
        joined.extend_from_slice(existing.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(new.as_bytes());
    let value = HeaderValue::from_bytes(&joined)
        .or_else(|_| HeaderValue::from_str(new))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    headers.insert(name, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_quote_what_is_not_a_token() {
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        let v6: IpAddr = "2001:db8::7".parse().expect("ip");
        assert_eq!(
            element(v4, Some("shop.example.org")),
            "for=192.0.2.7;host=shop.example.org;proto=http"
        );
        assert_eq!(
            element(v6, Some("shop.example.org:8080")),
            "for=\"[2001:db8::7]\";host=\"shop.example.org:8080\";proto=http"
        );
        assert_eq!(element(v4, None), "for=192.0.2.7;proto=http");
        assert_eq!(value("a\"b\\"), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn hops_are_appended_after_earlier_ones() {
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(FORWARDED, HeaderValue::from_static("for=198.51.100.1"));
        add_hop(
            &mut headers,
            "192.0.2.7".parse().expect("ip"),
            Some("a.example"),
        );
        assert_eq!(
            headers.get(X_FORWARDED_FOR).expect("xff"),
            "198.51.100.1, 198.51.100.2, 192.0.2.7"
        );
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(headers.get(X_FORWARDED_PROTO).expect("proto"), "http");
        assert_eq!(
            headers.get(FORWARDED).expect("forwarded"),
            "for=198.51.100.1, for=192.0.2.7;host=a.example;proto=http"
        );
    }

    #[test]
    fn a_first_hop_starts_the_headers() {
        let mut headers = HeaderMap::new();
        add_hop(&mut headers, "2001:db8::7".parse().expect("ip"), None);
        assert_eq!(headers.get(X_FORWARDED_FOR).expect("xff"), "2001:db8::7");
        assert_eq!(
            headers.get(FORWARDED).expect("forwarded"),
            "for=\"[2001:db8::7]\";proto=http"
        );
    }
}
