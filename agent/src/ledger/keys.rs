//! Keys, signatures and hashes, with their text forms, and key files on disk (0600).

use std::{fmt, path::Path, str::FromStr};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use ed25519_dalek::Signer as _;

pub use crate::vocab::KeyTextError;
use crate::vocab::{WgKey, decode_base64_exact, text_serde};

/// An ed25519 public key (a twin's identity), base64 in text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature, base64 in text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// A blake3 hash, lowercase hex in text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl FromStr for PublicKey {
    type Err = KeyTextError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = decode_base64_exact(text, "a public key", "32 bytes in base64")?;
        // Reject what is not a point on the curve now, not at the first verification.
        ed25519_zebra::VerificationKey::try_from(bytes)
            .map_err(|_| KeyTextError::new("a public key", "a valid ed25519 point"))?;
        Ok(Self(bytes))
    }
}

impl FromStr for Signature {
    type Err = KeyTextError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(decode_base64_exact(
            text,
            "a signature",
            "64 bytes in base64",
        )?))
    }
}

impl FromStr for Hash {
    type Err = KeyTextError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = KeyTextError::new("a hash", "64 lowercase hex digits");
        let text = text.trim();
        if text.len() != 64
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| err.clone())?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

text_serde!(PublicKey, Signature, Hash);

/// A twin's signing key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyFileError> {
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&random_32()?)))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// Reads a key file: one line, the 32-byte seed in base64.
    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        Ok(Self::from_seed(read_secret(path)?))
    }

    /// Writes a key file with mode 0600 (refuses to overwrite one).
    pub fn write(&self, path: &Path) -> Result<(), KeyFileError> {
        write_secret(path, &self.0.to_bytes())
    }
}

/// Checks `signature` by `key` over `message`, by the rules of ZIP 215 (`docs/ledger.md`,
/// "Signatures").
pub fn verify(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    ed25519_zebra::VerificationKey::try_from(key.0).is_ok_and(|key| {
        key.verify(&ed25519_zebra::Signature::from_bytes(&signature.0), message)
            .is_ok()
    })
}

/// One signature to check: by this key, over this message.
pub type SignatureCheck<'a> = (PublicKey, &'a [u8], Signature);

/// Whether each signature verifies: for each, exactly [`verify`]'s answer. They are checked as
/// one batch, about half the work of checking them one by one, and a key that signs several is
/// decompressed once; only when the batch fails is each checked alone, to tell which.
pub fn verify_each(checks: &[SignatureCheck<'_>]) -> Vec<bool> {
    let one_by_one = || checks.iter().map(|(k, m, s)| verify(k, m, s)).collect();
    if checks.len() < 2 {
        return one_by_one();
    }
    let Some(coefficients) = BatchCoefficients::new() else {
        return one_by_one();
    };
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for (key, message, signature) in checks {
        batch.queue((
            ed25519_zebra::VerificationKeyBytes::from(key.0),
            ed25519_zebra::Signature::from_bytes(&signature.0),
            *message,
        ));
    }
    if batch.verify(coefficients).is_ok() {
        vec![true; checks.len()]
    } else {
        one_by_one()
    }
}

/// The random coefficients of a batch check: whoever wrote the signatures must not know them,
/// or bad signatures could be made to cancel out. A blake3 stream under a key from the operating
/// system, since the check draws 16 bytes per signature and a system call for each would cost
/// about a tenth of the check.
struct BatchCoefficients(blake3::OutputReader);

impl BatchCoefficients {
    fn new() -> Option<Self> {
        let key = random_32().ok()?;
        Some(Self(blake3::Hasher::new_keyed(&key).finalize_xof()))
    }
}

impl rand_core::RngCore for BatchCoefficients {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for BatchCoefficients {}

/// A node's WireGuard key pair; only the public half ever reaches the ledger.
pub struct NodeKey(x25519_dalek::StaticSecret);

impl NodeKey {
    pub fn generate() -> Result<Self, KeyFileError> {
        Ok(Self(x25519_dalek::StaticSecret::from(random_32()?)))
    }

    pub fn public(&self) -> WgKey {
        WgKey::of_private(self.0.to_bytes())
    }

    /// The private key's bytes, for the WireGuard engine; they never leave the node.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        Ok(Self(x25519_dalek::StaticSecret::from(read_secret(path)?)))
    }

    pub fn write(&self, path: &Path) -> Result<(), KeyFileError> {
        write_secret(path, &self.0.to_bytes())
    }
}

/// Errors of key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is not one line of 32 bytes in base64")]
    Malformed { path: String },
    #[error("key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: String, mode: u32 },
    #[error("cannot write key file {path} (it must not exist yet)")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the operating system has no randomness to make a key")]
    Random,
}

fn random_32() -> Result<[u8; 32], KeyFileError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| KeyFileError::Random)?;
    Ok(bytes)
}

fn read_secret(path: &Path) -> Result<[u8; 32], KeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    decode_base64_exact(&text, "", "").map_err(|_| KeyFileError::Malformed { path: shown })
}

fn write_secret(path: &Path, secret: &[u8; 32]) -> Result<(), KeyFileError> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let shown = path.display().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| KeyFileError::Write {
            path: shown.clone(),
            source,
        })?;
    writeln!(file, "{}", STANDARD.encode(secret)).map_err(|source| KeyFileError::Write {
        path: shown,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Good signatures by a few keys, with bad ones among them: one over another message (its
    /// points decode, only the batch equation fails) and one that is no signature at all.
    #[test]
    fn a_batch_names_exactly_the_bad_signatures() {
        let keys: Vec<SigningKey> = (0..4u8).map(|n| SigningKey::from_seed([n; 32])).collect();
        let messages: Vec<Vec<u8>> = (0..40u8).map(|n| vec![n; 1 + usize::from(n)]).collect();
        let mut checks: Vec<SignatureCheck<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, message)| {
                let key = &keys[i % keys.len()];
                (key.public(), message.as_slice(), key.sign(message))
            })
            .collect();
        assert_eq!(verify_each(&checks), vec![true; checks.len()]);

        checks[17].2 = keys[17 % keys.len()].sign(b"another message");
        let mut expected = vec![true; checks.len()];
        expected[17] = false;
        assert_eq!(verify_each(&checks), expected);

        checks[30].2 = Signature([7; 64]);
        expected[30] = false;
        assert_eq!(verify_each(&checks), expected);
        for ((key, message, signature), valid) in checks.iter().zip(&expected) {
            assert_eq!(verify(key, message, signature), *valid);
        }
    }

    /// A signature by the wrong key fails alone and in a batch.
    #[test]
    fn a_signature_by_another_key_fails() {
        let alice = SigningKey::from_seed([1; 32]);
        let mallory = SigningKey::from_seed([2; 32]);
        let checks = [
            (alice.public(), &b"one"[..], alice.sign(b"one")),
            (alice.public(), &b"two"[..], mallory.sign(b"two")),
        ];
        assert_eq!(verify_each(&checks), vec![true, false]);
        assert!(!verify(&alice.public(), b"two", &mallory.sign(b"two")));
    }
}
