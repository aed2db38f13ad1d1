//! The single place where record content is turned into stored bytes and back.
//!
//! Every JSON record the server stores (event content, to-device messages, account data, keys,
//! session state, …) passes through [`Codec`], so encryption at rest happens here without touching
//! any query. With a keyring, records are sealed (see `at_rest::record`) with the record's
//! identity as associated data; plain JSON records written before encryption was turned on stay
//! readable.

use std::sync::Arc;

use base64::Engine as _;

use super::StorageError;
use crate::at_rest::{Keyring, hex, record};

#[derive(Clone, Debug, Default)]
pub struct Codec {
    keys: Option<Arc<Keyring>>,
}

impl Codec {
    /// Records stored as plain JSON.
    pub fn plain() -> Self {
        Self { keys: None }
    }

    /// Records sealed under the keyring's current key.
    pub fn encrypted(keys: Arc<Keyring>) -> Self {
        Self { keys: Some(keys) }
    }

    /// Whether records are encrypted at rest.
    pub fn encrypts(&self) -> bool {
        self.keys.is_some()
    }

    pub fn keys(&self) -> Option<&Arc<Keyring>> {
        self.keys.as_ref()
    }

    /// Encodes a record's JSON for storage. `record_id` identifies the record and is bound to the
    /// ciphertext, so a record copied over another's row does not decrypt.
    pub fn encode(&self, record_id: &str, json: &serde_json::Value) -> Vec<u8> {
        let plain = serde_json::to_vec(json).expect("a serde_json::Value always serialises");
        match &self.keys {
            Some(keys) => record::seal(keys, record_id, &plain),
            None => plain,
        }
    }

    /// Decodes stored bytes back into JSON; a corrupt record is an error, never garbage.
    pub fn decode(&self, record_id: &str, bytes: &[u8]) -> Result<serde_json::Value, StorageError> {
        let corrupt = |why: String| StorageError::Corrupt(format!("record {record_id}: {why}"));
        if !record::is_sealed(bytes) {
            return serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()));
        }
        let keys = self.keys.as_ref().ok_or_else(|| corrupt("encrypted at rest, but no key is configured".into()))?;
        let plain = record::open(keys, record_id, bytes).map_err(|e| match e {
            record::OpenError::UnknownKey(id) => {
                corrupt(format!("sealed with key {}, which is not configured", hex(&id)))
            }
            record::OpenError::Damaged => corrupt("fails authentication (damaged or moved)".into()),
        })?;
        serde_json::from_slice(&plain).map_err(|e| corrupt(e.to_string()))
    }
}

impl Codec {
    /// [`Codec::encode`] for a `TEXT` column: plain JSON, or a sealed record in base64 (which
    /// never starts with `{` or `[`, so legacy plain rows stay recognisable).
    pub fn encode_text(&self, record_id: &str, json: &serde_json::Value) -> String {
        match self.keys {
            Some(_) => base64::engine::general_purpose::STANDARD.encode(self.encode(record_id, json)),
            None => json.to_string(),
        }
    }

    pub fn decode_text(&self, record_id: &str, text: &str) -> Result<serde_json::Value, StorageError> {
        if text.starts_with(['{', '[']) {
            return self.decode(record_id, text.as_bytes());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| StorageError::Corrupt(format!("record {record_id}: {e}")))?;
        self.decode(record_id, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at_rest::{Key, generate_key_text};

    #[test]
    fn round_trips_and_reports_corruption() {
        let value = serde_json::json!({"body": "hello", "n": 1});
        let plain = Codec::plain();
        let bytes = plain.encode("$event", &value);
        assert_eq!(plain.decode("$event", &bytes).unwrap(), value);
        let err = plain.decode("$event", b"\x00garbage").unwrap_err();
        assert!(err.to_string().contains("$event"));
    }

    #[test]
    fn encrypts_and_still_reads_legacy_records() {
        let keys = Arc::new(Keyring::new(Key::from_base64(&generate_key_text(), "test").unwrap(), vec![]));
        let codec = Codec::encrypted(keys);
        let value = serde_json::json!({"body": "MARKER"});
        let bytes = codec.encode("$event", &value);
        assert!(!bytes.windows(6).any(|w| w == b"MARKER"));
        assert_eq!(codec.decode("$event", &bytes).unwrap(), value);
        assert!(codec.decode("$other", &bytes).is_err(), "bound to the record's identity");
        assert!(Codec::plain().decode("$event", &bytes).is_err(), "no key, no content");
        let legacy = Codec::plain().encode("$event", &value);
        assert_eq!(codec.decode("$event", &legacy).unwrap(), value);
        let text = codec.encode_text("edu/1", &value);
        assert!(!text.contains("MARKER"));
        assert_eq!(codec.decode_text("edu/1", &text).unwrap(), value);
        assert_eq!(codec.decode_text("edu/1", &value.to_string()).unwrap(), value, "legacy text");
        assert!(codec.decode_text("edu/2", &text).is_err());
    }
}
