//! Encryption at rest: the keys ([`Keyring`]), sealed records ([`record`]) and chunked media
//! files ([`media`]). XChaCha20-Poly1305 everywhere: 192-bit random nonces never repeat in
//! practice, so every record and chunk takes a fresh one without bookkeeping.

pub mod media;
pub mod record;

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Identifies which key sealed something, so rotation can find what still uses an old key.
pub type KeyId = [u8; 4];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: a key must be {KEY_LEN} bytes in standard base64 (`myelin generate-key` makes one)")]
    Malformed { origin: String },
}

/// One 32-byte key. Its bytes never leave this type (no Debug, no Display).
pub struct Key {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl Key {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        // A public fingerprint: SHA-256 is one-way, and the domain string keeps it unrelated to
        // any other use of the key.
        let digest = Sha256::new().chain_update(b"myelin at-rest key id\0").chain_update(bytes).finalize();
        let mut id = [0u8; 4];
        id.copy_from_slice(&digest[..4]);
        Self { id, cipher: XChaCha20Poly1305::new(bytes.into()) }
    }

    /// Parses the base64 text of a key file or environment variable; `origin` names it in errors.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed { origin: origin.to_owned() };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| malformed())?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(&bytes))
    }

    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
        Self::from_base64(&text, &path.display().to_string())
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// `nonce ‖ ciphertext ‖ tag`, with a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source works");
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("XChaCha20-Poly1305 encrypts any length we store");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens `nonce ‖ ciphertext ‖ tag`; `None` when it was not sealed by this key with `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }
}

/// A new random key as the base64 text of a key file.
pub fn generate_key_text() -> String {
    let mut bytes = [0u8; KEY_LEN];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The key new data is sealed with, and older keys that are still accepted for reading.
pub struct Keyring {
    current: Key,
    older: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: the keys themselves are never printed.
        let older: Vec<String> = self.older.iter().map(|k| hex(&k.id)).collect();
        f.debug_struct("Keyring").field("current", &hex(&self.current.id)).field("older", &older).finish()
    }
}

impl Keyring {
    pub fn new(current: Key, older: Vec<Key>) -> Self {
        Self { current, older }
    }

    /// `new` becomes the current key; every key here is still accepted for reading.
    pub fn rotated_to(self, new: Key) -> Self {
        let older = std::iter::once(self.current).chain(self.older).filter(|key| key.id != new.id).collect();
        Self { current: new, older }
    }

    pub fn current(&self) -> &Key {
        &self.current
    }

    pub fn by_id(&self, id: KeyId) -> Option<&Key> {
        std::iter::once(&self.current).chain(&self.older).find(|key| key.id == id)
    }
}

/// The configured keys, when encryption at rest is on. Reads the key files.
pub fn keyring_from_config(config: &crate::config::StorageConfig) -> Result<Option<Keyring>, KeyError> {
    if !config.encryption {
        return Ok(None);
    }
    let current = if config.encryption_key_file.is_empty() {
        Key::from_base64(&config.encryption_key.0, "MYELIN_STORAGE__ENCRYPTION_KEY")?
    } else {
        Key::from_file(Path::new(&config.encryption_key_file))?
    };
    let older =
        config.decryption_key_files.iter().map(|path| Key::from_file(Path::new(path))).collect::<Result<_, _>>()?;
    Ok(Some(Keyring::new(current, older)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key_and_aad() {
        let key = Key::from_base64(&generate_key_text(), "test").unwrap();
        let other = Key::from_base64(&generate_key_text(), "test").unwrap();
        let sealed = key.seal(b"$event", b"secret");
        assert_eq!(key.open(b"$event", &sealed).unwrap(), b"secret");
        assert!(key.open(b"$other", &sealed).is_none(), "bound to its identity");
        assert!(other.open(b"$event", &sealed).is_none());
        assert_ne!(key.seal(b"$event", b"secret"), sealed, "fresh nonce every time");
        assert_ne!(key.id(), other.id());
    }

    #[test]
    fn rejects_malformed_keys() {
        assert!(Key::from_base64("c2hvcnQ=", "env").is_err());
        assert!(Key::from_base64("not base64!", "env").is_err());
        assert!(format!("{:?}", Keyring::new(Key::from_bytes(&[7; 32]), vec![])).contains("current"));
    }
}
