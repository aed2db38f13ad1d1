//! End-to-end encryption support. The server never decrypts anything: it stores the keys clients
//! publish, hands out one-time keys, routes to-device messages, keeps encrypted key backups, and
//! tells clients whose devices changed.

pub mod backup;
pub mod cross_signing;
pub mod device_lists;
pub mod keys;
pub mod remote;
pub mod to_device;

use crate::error::{Error, Result};

/// Parses client-supplied raw JSON into a value.
fn json_value(raw: &serde_json::value::RawValue) -> Result<serde_json::Value> {
    serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(e.to_string()))
}

/// The JSON object form of a value, or a bad-JSON error naming `what`.
fn as_object<'a>(value: &'a serde_json::Value, what: &str) -> Result<&'a serde_json::Map<String, serde_json::Value>> {
    value.as_object().ok_or_else(|| Error::bad_json(format!("{what} must be a JSON object")))
}

/// The key's content without `signatures` and `unsigned`: what a signature covers, and what
/// must match when a client re-sends a stored key.
fn signed_part(value: &serde_json::Value) -> serde_json::Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("signatures");
        object.remove("unsigned");
    }
    value
}

/// Adds `signatures[signer][key_id] = signature` to a key object.
fn add_signature(key: &mut serde_json::Value, signer: &str, key_id: &str, signature: &str) {
    let Some(object) = key.as_object_mut() else { return };
    let signatures = object.entry("signatures").or_insert_with(|| serde_json::json!({}));
    if !signatures.is_object() {
        *signatures = serde_json::json!({});
    }
    let by_signer =
        signatures.as_object_mut().expect("just made an object").entry(signer).or_insert_with(|| serde_json::json!({}));
    if let Some(by_signer) = by_signer.as_object_mut() {
        by_signer.insert(key_id.to_owned(), signature.into());
    }
}
