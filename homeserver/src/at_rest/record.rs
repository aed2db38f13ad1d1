//! The stored form of a sealed record: `version ‖ key id ‖ nonce ‖ ciphertext ‖ tag`, with the
//! record's identity as associated data. Plain JSON (a legacy record) never starts with the
//! version byte, so both kinds can live side by side.

use super::{KeyId, Keyring};

pub const VERSION: u8 = 1;
const HEADER: usize = 1 + 4;

/// Seals `plaintext` under the keyring's current key.
pub fn seal(keys: &Keyring, record_id: &str, plaintext: &[u8]) -> Vec<u8> {
    let key = keys.current();
    let mut out = Vec::with_capacity(HEADER + plaintext.len() + 40);
    out.push(VERSION);
    out.extend_from_slice(&key.id());
    out.extend_from_slice(&key.seal(&aad(record_id, key.id()), plaintext));
    out
}

/// Whether these stored bytes are a sealed record (as opposed to legacy plain JSON).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.first() == Some(&VERSION)
}

/// The key id of a sealed record.
pub fn key_id(bytes: &[u8]) -> Option<KeyId> {
    bytes.get(1..HEADER)?.try_into().ok()
}

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Sealed with a key this server was not given.
    UnknownKey(KeyId),
    /// Truncated, altered, or stored under another record's identity.
    Damaged,
}

pub fn open(keys: &Keyring, record_id: &str, bytes: &[u8]) -> Result<Vec<u8>, OpenError> {
    let id = key_id(bytes).ok_or(OpenError::Damaged)?;
    let key = keys.by_id(id).ok_or(OpenError::UnknownKey(id))?;
    key.open(&aad(record_id, id), &bytes[HEADER..]).ok_or(OpenError::Damaged)
}

/// Identity, version and key id are all authenticated.
fn aad(record_id: &str, key_id: KeyId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER + record_id.len());
    aad.push(VERSION);
    aad.extend_from_slice(&key_id);
    aad.extend_from_slice(record_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::super::{Key, generate_key_text};
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(Key::from_base64(&generate_key_text(), "test").unwrap(), vec![])
    }

    #[test]
    fn round_trips_and_detects_tampering() {
        let keys = keyring();
        let sealed = seal(&keys, "$a", b"{\"body\":\"x\"}");
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(b"{\"body\":\"x\"}"));
        assert_eq!(open(&keys, "$a", &sealed).unwrap(), b"{\"body\":\"x\"}");
        assert_eq!(open(&keys, "$b", &sealed), Err(OpenError::Damaged));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(open(&keys, "$a", &flipped), Err(OpenError::Damaged));
        assert_eq!(open(&keyring(), "$a", &sealed), Err(OpenError::UnknownKey(key_id(&sealed).unwrap())));
    }

    #[test]
    fn older_keys_still_open() {
        let old = keyring();
        let sealed = seal(&old, "$a", b"x");
        let old_key = Key::from_bytes(&[1; 32]);
        let old_ring = Keyring::new(Key::from_bytes(&[1; 32]), vec![]);
        let sealed_old = seal(&old_ring, "$a", b"y");
        let rotated = Keyring::new(Key::from_bytes(&[2; 32]), vec![old_key]);
        assert_eq!(open(&rotated, "$a", &sealed_old).unwrap(), b"y");
        assert!(open(&rotated, "$a", &sealed).is_err());
    }
}
