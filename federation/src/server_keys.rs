//! Other servers' signing keys: checking a published key object before trusting it.
//!
//! A key object (`/_matrix/key/v2/server`, or one entry of a notary's answer) names its server,
//! lists current and retired keys, and must be signed by every current key it lists.

use std::collections::BTreeMap;

use ruma::CanonicalJsonObject;
use ruma::canonical_json::CanonicalJsonValue;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerKeysError {
    #[error("malformed key object: {0}")]
    Malformed(String),
    #[error("the key object is for {found}, not {expected}")]
    WrongServer { expected: String, found: String },
    #[error("the key object is not signed by its own key {0}")]
    NotSelfSigned(String),
}

/// One public key of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    pub key_base64: String,
    /// Set for retired keys: signatures made after this time are not valid.
    pub expired_ts: Option<i64>,
}

/// A key object whose self-signatures verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedServerKeys {
    pub server_name: String,
    pub valid_until_ts: i64,
    pub keys: Vec<PublicKey>,
    /// The object as published, for serving it again as a notary.
    pub object: CanonicalJsonObject,
}

fn field<'a>(object: &'a CanonicalJsonObject, name: &str) -> Result<&'a CanonicalJsonValue, ServerKeysError> {
    object.get(name).ok_or_else(|| ServerKeysError::Malformed(format!("no `{name}`")))
}

fn keys_of(value: Option<&CanonicalJsonValue>, retired: bool) -> Result<Vec<PublicKey>, ServerKeysError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let CanonicalJsonValue::Object(map) = value else {
        return Err(ServerKeysError::Malformed("keys are not an object".into()));
    };
    map.iter()
        .map(|(key_id, entry)| {
            let CanonicalJsonValue::Object(entry) = entry else {
                return Err(ServerKeysError::Malformed(format!("key {key_id} is not an object")));
            };
            let key_base64 = entry
                .get("key")
                .and_then(CanonicalJsonValue::as_str)
                .ok_or_else(|| ServerKeysError::Malformed(format!("key {key_id} has no `key`")))?
                .to_owned();
            let expired_ts = match entry.get("expired_ts") {
                Some(CanonicalJsonValue::Integer(ts)) => Some(i64::from(*ts)),
                _ if retired => return Err(ServerKeysError::Malformed(format!("key {key_id} has no `expired_ts`"))),
                _ => None,
            };
            Ok(PublicKey { key_id: key_id.clone(), key_base64, expired_ts })
        })
        .collect()
}

/// Checks a key object claimed to belong to `expected_server`: the name matches and every
/// current key has signed it.
pub fn verify_server_keys(
    object: CanonicalJsonObject,
    expected_server: &str,
) -> Result<VerifiedServerKeys, ServerKeysError> {
    let server_name = field(&object, "server_name")?
        .as_str()
        .ok_or_else(|| ServerKeysError::Malformed("`server_name` is not a string".into()))?
        .to_owned();
    if server_name != expected_server {
        return Err(ServerKeysError::WrongServer { expected: expected_server.to_owned(), found: server_name });
    }
    let valid_until_ts = match field(&object, "valid_until_ts")? {
        CanonicalJsonValue::Integer(ts) => i64::from(*ts),
        _ => return Err(ServerKeysError::Malformed("`valid_until_ts` is not an integer".into())),
    };
    let current = keys_of(object.get("verify_keys"), false)?;
    if current.is_empty() {
        return Err(ServerKeysError::Malformed("no current keys".into()));
    }
    for key in &current {
        crate::signing::verify_object(&server_name, &key.key_id, &key.key_base64, &object)
            .map_err(|_| ServerKeysError::NotSelfSigned(key.key_id.clone()))?;
    }
    let mut keys = current;
    keys.extend(keys_of(object.get("old_verify_keys"), true)?);
    Ok(VerifiedServerKeys { server_name, valid_until_ts, keys, object })
}

/// `server → key ID → public key`, the shape ruma's verification functions take.
pub type KeyMap = BTreeMap<String, BTreeMap<String, ruma::serde::Base64>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerSigningKey;
    use crate::keys::{OldVerifyKey, signed_server_keys};

    #[test]
    fn a_self_signed_key_object_verifies() {
        let key = ServerSigningKey::generate();
        let old = OldVerifyKey {
            key_id: "ed25519:old".into(),
            public_key_base64: ServerSigningKey::generate().public_key_base64(),
            expired_ts: 1_000,
        };
        let object = signed_server_keys("remote.test", &key, &[old], 99_000);
        let verified = verify_server_keys(object, "remote.test").unwrap();
        assert_eq!(verified.valid_until_ts, 99_000);
        assert_eq!(verified.keys.len(), 2);
        assert!(verified.keys.iter().any(|k| k.key_id == key.key_id() && k.expired_ts.is_none()));
        assert!(verified.keys.iter().any(|k| k.key_id == "ed25519:old" && k.expired_ts == Some(1_000)));
    }

    #[test]
    fn keys_claimed_for_another_server_or_unsigned_are_refused() {
        let key = ServerSigningKey::generate();
        let object = signed_server_keys("remote.test", &key, &[], 99_000);
        assert!(matches!(verify_server_keys(object.clone(), "victim.test"), Err(ServerKeysError::WrongServer { .. })));

        // Someone replaces the key with their own but cannot sign with it.
        let mut forged = object;
        let impostor = ServerSigningKey::generate();
        let verify_keys = serde_json::json!({ key.key_id(): { "key": impostor.public_key_base64() } });
        forged.insert("verify_keys".into(), serde_json::from_value(verify_keys).unwrap());
        assert_eq!(verify_server_keys(forged, "remote.test"), Err(ServerKeysError::NotSelfSigned(key.key_id())));
    }
}
