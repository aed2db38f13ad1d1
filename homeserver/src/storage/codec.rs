//! The single place where record content is turned into stored bytes and back.
//!
//! Every JSON record the server stores (event content, session state, …) passes through these two
//! functions, so encryption at rest can later be added here without touching any query.

use super::StorageError;

/// Encodes a record's JSON for storage. `record_id` identifies the record (it will be bound to the
/// ciphertext as associated data once encryption at rest exists).
pub fn encode_record(_record_id: &str, json: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(json).expect("a serde_json::Value always serialises")
}

/// Decodes stored bytes back into JSON; a corrupt record is an error, never garbage.
pub fn decode_record(record_id: &str, bytes: &[u8]) -> Result<serde_json::Value, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("record {record_id}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_corruption() {
        let value = serde_json::json!({"body": "hello", "n": 1});
        let bytes = encode_record("$event", &value);
        assert_eq!(decode_record("$event", &bytes).unwrap(), value);
        let err = decode_record("$event", b"\x00garbage").unwrap_err();
        assert!(err.to_string().contains("$event"));
    }
}
