//! Text forms of fixed-size binary values (keys, signatures): parsing with a clear error, and
//! serde through the text form.

use base64::{Engine as _, engine::general_purpose::STANDARD};

/// Why a key, signature or hash text is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {expected}")]
pub struct KeyTextError {
    what: &'static str,
    expected: &'static str,
}

impl KeyTextError {
    /// `what` (e.g. "a public key") must be `expected` (e.g. "32 bytes in base64").
    pub const fn new(what: &'static str, expected: &'static str) -> Self {
        Self { what, expected }
    }
}

/// Exactly `N` bytes from standard base64 (surrounding whitespace ignored, as in a key file's
/// line), or `what` must be `expected`.
pub fn decode_base64_exact<const N: usize>(
    text: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<[u8; N], KeyTextError> {
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
        .ok_or(KeyTextError { what, expected })
}

/// Serde for types with `Display` and `FromStr`: written and read as their text form, so YAML,
/// JSON and the canonical bytes all carry the same text.
macro_rules! text_serde {
    ($($ty:ty),*) => {$(
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    )*};
}
pub(crate) use text_serde;
