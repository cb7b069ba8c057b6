//! Host names as gateways compare them: lower case, no trailing dot, no port.

/// Longest DNS name (RFC 1035: 255 octets on the wire, 253 as text).
const MAX_NAME: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;

/// The form of `name` that routing compares, or `None` if it is not a DNS host name (letters,
/// digits, `-` and `_` in dot-separated labels). Wildcards are not names: a gateway lists
/// every name it answers for.
pub fn normalise(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| name.to_ascii_lowercase())
}

/// The host name of an HTTP `Host` header (or a request target's authority): the port is
/// stripped and the name normalised. IP literals (`[2001:db8::1]:80`, `192.0.2.1`) are kept as
/// text, lower case, so they simply match no gateway.
pub fn from_authority(authority: &str) -> Option<String> {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        let (literal, _) = rest.split_once(']')?;
        return Some(format!("[{}]", literal.to_ascii_lowercase()));
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => authority,
    };
    normalise(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_without_trailing_dot() {
        assert_eq!(
            normalise("Shop.Example.ORG.").as_deref(),
            Some("shop.example.org")
        );
        assert_eq!(normalise("a_b-c.example").as_deref(), Some("a_b-c.example"));
    }

    #[test]
    fn what_is_not_a_host_name_is_refused() {
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "*.example.org",
            "a b",
            "ü.org",
            "a/b",
        ] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
        assert_eq!(normalise(&"a".repeat(64)), None);
        assert_eq!(normalise(&["a"; 128].join(".")), None);
    }

    #[test]
    fn host_headers_lose_their_port() {
        assert_eq!(
            from_authority("Shop.Example.org:8080").as_deref(),
            Some("shop.example.org")
        );
        assert_eq!(
            from_authority("shop.example.org").as_deref(),
            Some("shop.example.org")
        );
        assert_eq!(
            from_authority("shop.example.org.:80").as_deref(),
            Some("shop.example.org")
        );
        assert_eq!(
            from_authority("[2001:DB8::1]:80").as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(from_authority("192.0.2.1:80").as_deref(), Some("192.0.2.1"));
        assert_eq!(from_authority("host:port"), None);
        assert_eq!(from_authority("[2001:db8::1"), None);
        assert_eq!(from_authority(""), None);
    }
}
