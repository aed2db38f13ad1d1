//! Signing and verifying canonical JSON with server keys (thin wrappers over ruma-signatures).

use std::collections::BTreeMap;

use ruma::CanonicalJsonObject;
use ruma::serde::Base64;

use crate::keys::ServerSigningKey;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("not a canonical JSON object: {0}")]
    NotCanonical(String),
    #[error("signature check failed: {0}")]
    Verification(String),
}

/// Converts a JSON value to a canonical JSON object (rejects floats, out-of-range integers and
/// non-objects).
pub fn to_canonical_object(value: serde_json::Value) -> Result<CanonicalJsonObject, SigningError> {
    let serde_json::Value::Object(map) = value else {
        return Err(SigningError::NotCanonical("not a JSON object".into()));
    };
    ruma::canonical_json::try_from_json_map(map).map_err(|e| SigningError::NotCanonical(e.to_string()))
}

/// Adds this server's signature to `object` under `signatures.<entity>.<key id>`.
pub fn sign_object(entity: &str, key: &ServerSigningKey, object: &mut CanonicalJsonObject) {
    ruma::signatures::sign_json(entity, key.key_pair(), object)
        .expect("signing a canonical object with a `signatures` object or none cannot fail");
}

/// Verifies `object` is signed by `entity` with the given key (id and unpadded base64 public key).
pub fn verify_object(
    entity: &str,
    key_id: &str,
    public_key_base64: &str,
    object: &CanonicalJsonObject,
) -> Result<(), SigningError> {
    let key =
        Base64::parse(public_key_base64).map_err(|e| SigningError::Verification(format!("bad public key: {e}")))?;
    let mut key_map = BTreeMap::new();
    key_map.insert(entity.to_owned(), BTreeMap::from([(key_id.to_owned(), key)]));
    // ruma checks every signer present; others (a notary's countersignature) are not ours to check.
    let mut only_entity = object.clone();
    if let Some(ruma::CanonicalJsonValue::Object(signatures)) = only_entity.get_mut("signatures") {
        signatures.retain(|signer, _| signer == entity);
    }
    ruma::signatures::verify_json(&key_map, &only_entity).map_err(|e| SigningError::Verification(e.to_string()))
}
