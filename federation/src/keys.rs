//! Server signing keys: generation, the on-disk key file format and the published key JSON.
//!
//! The key file uses the format Synapse uses (`ed25519 <version> <unpadded base64 seed>`), so a
//! key can be moved between servers.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::CanonicalJsonObject;
use ruma::signatures::Ed25519KeyPair;

/// PKCS#8 v1 DER prefix for an Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// Characters allowed in a key version, per the spec's key ID grammar.
fn is_valid_version(version: &str) -> bool {
    !version.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("expected `ed25519 <version> <base64 seed>`, found {0} fields")]
    Shape(usize),
    #[error("unsupported key algorithm `{0}` (only ed25519 is supported)")]
    Algorithm(String),
    #[error("invalid key version `{0}`: use letters, digits and underscores")]
    Version(String),
    #[error("the seed is not valid base64 of 32 bytes")]
    Seed,
}

/// The server's ed25519 signing key together with its version (the part after `ed25519:`).
pub struct ServerSigningKey {
    version: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl fmt::Debug for ServerSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        f.debug_struct("ServerSigningKey").field("key_id", &self.key_id()).finish()
    }
}

impl ServerSigningKey {
    /// A fresh key from the operating system's random source, with a version like Synapse's
    /// (`a_` and four random characters).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system has no random source");
        let mut suffix = [0u8; 4];
        getrandom::fill(&mut suffix).expect("the operating system has no random source");
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let suffix: String = suffix.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
        Self::from_seed(format!("a_{suffix}"), seed).expect("a generated key is always valid")
    }

    /// Builds a key from its version and 32-byte seed.
    pub fn from_seed(version: String, seed: [u8; 32]) -> Result<Self, KeyFileError> {
        if !is_valid_version(&version) {
            return Err(KeyFileError::Version(version));
        }
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(&seed);
        let pair = Ed25519KeyPair::from_der(&der, version.clone()).map_err(|_| KeyFileError::Seed)?;
        Ok(Self { version, seed, pair })
    }

    /// Parses the first line of a Synapse-format key file.
    pub fn parse_key_file(text: &str) -> Result<Self, KeyFileError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [algorithm, version, seed] = fields[..] else {
            return Err(KeyFileError::Shape(fields.len()));
        };
        if algorithm != "ed25519" {
            return Err(KeyFileError::Algorithm(algorithm.to_owned()));
        }
        if !is_valid_version(version) {
            return Err(KeyFileError::Version(version.to_owned()));
        }
        let bytes = STANDARD_NO_PAD.decode(seed.trim_end_matches('=')).map_err(|_| KeyFileError::Seed)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyFileError::Seed)?;
        Self::from_seed(version.to_owned(), seed)
    }

    /// The key file text for this key (one line, newline-terminated).
    pub fn to_key_file(&self) -> String {
        format!("ed25519 {} {}\n", self.version, STANDARD_NO_PAD.encode(self.seed))
    }

    /// The key ID, e.g. `ed25519:a_AbCd`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The public key as unpadded base64, as published in key JSON.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.pair.public_key())
    }

    /// The key pair for ruma's signing functions.
    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }
}

/// A key this server used to sign with and has since retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldVerifyKey {
    pub key_id: String,
    pub public_key_base64: String,
    pub expired_ts: u64,
}

/// The `GET /_matrix/key/v2/server` body: current and old keys, signed by the current key.
pub fn signed_server_keys(
    server_name: &str,
    key: &ServerSigningKey,
    old_keys: &[OldVerifyKey],
    valid_until_ts: u64,
) -> CanonicalJsonObject {
    let old_verify_keys: serde_json::Map<String, serde_json::Value> = old_keys
        .iter()
        .map(|old| {
            let entry = serde_json::json!({ "key": old.public_key_base64, "expired_ts": old.expired_ts });
            (old.key_id.clone(), entry)
        })
        .collect();
    let body = serde_json::json!({
        "server_name": server_name,
        "valid_until_ts": valid_until_ts,
        "verify_keys": { key.key_id(): { "key": key.public_key_base64() } },
        "old_verify_keys": old_verify_keys,
    });
    let mut object =
        crate::signing::to_canonical_object(body).expect("server key JSON is always a valid canonical object");
    crate::signing::sign_object(server_name, key, &mut object);
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips() {
        let key = ServerSigningKey::generate();
        let text = key.to_key_file();
        let parsed = ServerSigningKey::parse_key_file(&text).unwrap();
        assert_eq!(parsed.key_id(), key.key_id());
        assert_eq!(parsed.public_key_base64(), key.public_key_base64());
        assert!(key.version().starts_with("a_"));
    }

    #[test]
    fn parses_a_synapse_key_file() {
        // RFC 8032 test vector 1: seed 9d61b1…, public key d75a98…
        let seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
        let key = ServerSigningKey::parse_key_file(&format!("ed25519 a_test {seed}\n")).unwrap();
        assert_eq!(key.key_id(), "ed25519:a_test");
        assert_eq!(key.public_key_base64(), "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }

    #[test]
    fn rejects_malformed_key_files() {
        assert_eq!(ServerSigningKey::parse_key_file("").unwrap_err(), KeyFileError::Shape(0));
        assert_eq!(
            ServerSigningKey::parse_key_file("rsa a_1 AAAA").unwrap_err(),
            KeyFileError::Algorithm("rsa".into())
        );
        assert_eq!(
            ServerSigningKey::parse_key_file("ed25519 bad:id AAAA").unwrap_err(),
            KeyFileError::Version("bad:id".into())
        );
        assert_eq!(ServerSigningKey::parse_key_file("ed25519 a_1 AAAA").unwrap_err(), KeyFileError::Seed);
    }

    #[test]
    fn server_keys_are_self_signed() {
        let key = ServerSigningKey::generate();
        let old = OldVerifyKey {
            key_id: "ed25519:old".into(),
            public_key_base64: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            expired_ts: 5,
        };
        let object = signed_server_keys("example.org", &key, &[old], 1_000);
        crate::signing::verify_object("example.org", &key.key_id(), &key.public_key_base64(), &object).unwrap();
        let json = serde_json::to_value(&object).unwrap();
        assert_eq!(json["old_verify_keys"]["ed25519:old"]["expired_ts"], 5);

        let mut tampered = object.clone();
        tampered.insert("valid_until_ts".into(), ruma::UInt::from(2_000u32).into());
        assert!(
            crate::signing::verify_object("example.org", &key.key_id(), &key.public_key_base64(), &tampered).is_err()
        );
    }
}
