//! WireGuard keys: public keys in text, and the public key of a private one.

use std::{fmt, str::FromStr};

use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::text::{KeyTextError, decode_base64_exact, text_serde};

/// A WireGuard (x25519) public key; base64 in text, as `wg` writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

impl FromStr for WgKey {
    type Err = KeyTextError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(decode_base64_exact(
            text,
            "a WireGuard key",
            "32 bytes in base64",
        )?))
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl WgKey {
    /// The public key of the x25519 private key `private` (its bytes, as `wg genkey` makes
    /// them once decoded).
    pub fn of_private(private: [u8; 32]) -> Self {
        Self(x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private)).to_bytes())
    }
}

text_serde!(WgKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_text_and_serde() {
        let key = WgKey([7; 32]);
        let text = key.to_string();
        assert_eq!(text.parse::<WgKey>(), Ok(key));
        let yaml = serde_yaml::to_string(&key).expect("yaml");
        assert_eq!(serde_yaml::from_str::<WgKey>(&yaml).expect("parse"), key);
        for bad in ["", "AQID", "not base64!", &text[..40]] {
            assert!(bad.parse::<WgKey>().is_err(), "{bad}");
        }
    }
}
