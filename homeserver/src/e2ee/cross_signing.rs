//! Cross-signing: uploading the master, self-signing and user-signing keys, and uploading
//! signatures made with them (or with a device key) over other keys. Every signature is verified
//! before it is stored.

use std::collections::BTreeMap;

use ruma::api::client::uiaa::AuthData;
use ruma::{OwnedUserId, UserId};
use serde_json::{Value, json};

use super::{add_signature, as_object, json_value, signed_part};
use crate::accounts::{Authed, uiaa};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{CrossSigningKeyRow, KeySignatureRow};

const KEY_TYPES: [&str; 3] = ["master", "self_signing", "user_signing"];

/// The keys of a `/keys/device_signing/upload` request, by key type.
pub struct SigningKeysUpload<'a> {
    pub master: Option<&'a serde_json::value::RawValue>,
    pub self_signing: Option<&'a serde_json::value::RawValue>,
    pub user_signing: Option<&'a serde_json::value::RawValue>,
}

/// A checked cross-signing key.
struct ParsedKey {
    key_type: &'static str,
    public_key: String,
    key: Value,
}

pub async fn upload_signing_keys(
    state: &AppState,
    authed: &Authed,
    upload: SigningKeysUpload<'_>,
    auth: Option<&AuthData>,
) -> Result<()> {
    let user_id = authed.user_id.as_str();
    let mut uploaded = Vec::new();
    for (key_type, raw) in KEY_TYPES.into_iter().zip([upload.master, upload.self_signing, upload.user_signing]) {
        if let Some(raw) = raw {
            uploaded.push(parse_key(key_type, user_id, json_value(raw)?)?);
        }
    }
    let existing = state.storage.cross_signing_keys_of_users(&[user_id.to_owned()]).await?;
    let stored = |key_type: &str| existing.iter().find(|row| row.key_type == key_type);
    if uploaded.iter().all(|new| stored(new.key_type).is_some_and(|old| old.key == new.key)) {
        // Nothing new (a retried request): nothing to authorise.
        return Ok(());
    }
    // Replacing existing keys needs the password; the first upload does not (MSC3967).
    if stored("master").is_some() {
        let request = uiaa::UiaaRequest {
            purpose: "device_signing_upload",
            flows: uiaa::password_flows(),
            user: Some(&authed.user_id),
        };
        uiaa::check(state, auth, request).await?;
    }

    let master_public = match uploaded.iter().find(|k| k.key_type == "master") {
        Some(master) => master.public_key.clone(),
        None => stored("master")
            .map(|row| row.public_key.clone())
            .ok_or_else(|| Error::missing_param("A master key is needed before other cross-signing keys"))?,
    };
    for key in uploaded.iter().filter(|k| k.key_type != "master") {
        if !has_valid_signature(&key.key, user_id, &format!("ed25519:{master_public}"), &master_public) {
            let message = format!("The {} key is not signed by the master key", key.key_type);
            return Err(Error::custom(http::StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE", message));
        }
    }
    let rows: Vec<(String, String, Value)> =
        uploaded.into_iter().map(|k| (k.key_type.to_owned(), k.public_key, k.key)).collect();
    state.storage.set_cross_signing_keys(user_id, &rows).await?;
    state.rooms.notify_change();
    Ok(())
}

/// Checks a cross-signing key's owner, usage and single ed25519 key.
fn parse_key(key_type: &'static str, user_id: &str, key: Value) -> Result<ParsedKey> {
    let invalid = |why: &str| Error::invalid_param(format!("{key_type} key: {why}"));
    serde_json::from_value::<ruma::encryption::CrossSigningKey>(key.clone())
        .map_err(|e| Error::bad_json(format!("{key_type} key: {e}")))?;
    let object = as_object(&key, key_type)?;
    if object.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(invalid("user_id must be the uploading user"));
    }
    let has_usage = object
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|usage| usage.iter().any(|u| u.as_str() == Some(key_type)));
    if !has_usage {
        return Err(invalid(&format!("usage must include {key_type}")));
    }
    let keys = object.get("keys").and_then(Value::as_object).ok_or_else(|| invalid("keys missing"))?;
    let [(key_id, public)] = keys.iter().collect::<Vec<_>>()[..] else {
        return Err(invalid("must contain exactly one key"));
    };
    let public_key = public.as_str().unwrap_or_default();
    if key_id.strip_prefix("ed25519:") != Some(public_key) || public_key.is_empty() {
        return Err(invalid("the key ID must be ed25519:<public key>"));
    }
    Ok(ParsedKey { key_type, public_key: public_key.to_owned(), key })
}

/// Whether `key` carries a valid signature by `signer` under `key_id` for `public_key`.
fn has_valid_signature(key: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let signature = key.pointer(&format!("/signatures/{}/{}", escape(signer), escape(key_id))).and_then(Value::as_str);
    let Some(signature) = signature else { return false };
    // Only this one signature, so the check is about exactly this signer and key.
    let mut object = signed_part(key);
    add_signature(&mut object, signer, key_id, signature);
    let Ok(canonical) = federation::signing::to_canonical_object(object) else { return false };
    federation::signing::verify_object(signer, key_id, public_key, &canonical).is_ok()
}

/// Escapes a JSON pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Per-key failures of a `/keys/signatures/upload`: user → key ID → `{errcode, error}`.
pub type SignatureFailures = BTreeMap<OwnedUserId, BTreeMap<String, Value>>;

/// Verifies and stores the signatures the user made over keys: their own devices (with the
/// self-signing key), their own master key (with a device key), other users' master keys (with
/// the user-signing key). Each bad signature is reported; the good ones are kept.
pub async fn upload_signatures(
    state: &AppState,
    authed: &Authed,
    signed: &BTreeMap<OwnedUserId, Vec<(String, Value)>>,
) -> Result<SignatureFailures> {
    let signer = authed.user_id.as_str();
    let target_ids: Vec<String> = signed.keys().map(ToString::to_string).chain([signer.to_owned()]).collect();
    let cross_signing = state.storage.cross_signing_keys_of_users(&target_ids).await?;
    let devices = state.storage.device_keys_of_users(&target_ids).await?;
    let cross_key = |user: &str, key_type: &str| -> Option<&CrossSigningKeyRow> {
        cross_signing.iter().find(|row| row.user_id == user && row.key_type == key_type)
    };

    let mut failures = SignatureFailures::new();
    let mut accepted = Vec::new();
    for (target_user, keys) in signed {
        for (key_id, object) in keys {
            let outcome = check_signed_key(
                signer,
                target_user,
                key_id,
                object,
                &cross_key,
                |device_id| {
                    devices
                        .iter()
                        .find(|d| d.user_id == target_user.as_str() && d.device_id == device_id)
                        .map(|d| &d.keys)
                },
                |device_id| devices.iter().find(|d| d.user_id == signer && d.device_id == device_id).map(|d| &d.keys),
            );
            match outcome {
                Ok(mut signatures) => accepted.append(&mut signatures),
                Err((errcode, error)) => {
                    failures
                        .entry(target_user.clone())
                        .or_default()
                        .insert(key_id.clone(), json!({"errcode": errcode, "error": error}));
                }
            }
        }
    }
    state.storage.add_key_signatures(&accepted).await?;
    if !accepted.is_empty() {
        state.rooms.notify_change();
    }
    Ok(failures)
}

type Failure = (&'static str, String);

/// Checks one signed key object and returns the signer's new signatures on it.
fn check_signed_key<'a>(
    signer: &str,
    target_user: &UserId,
    key_id: &str,
    object: &Value,
    cross_key: &impl Fn(&str, &str) -> Option<&'a CrossSigningKeyRow>,
    target_device: impl Fn(&str) -> Option<&'a Value>,
    signer_device: impl Fn(&str) -> Option<&'a Value>,
) -> Result<Vec<KeySignatureRow>, Failure> {
    let target = target_user.as_str();
    // Which stored key is being signed, and which of the signer's keys may sign it.
    let (stored, allowed_signer): (&Value, SignerKind) = if target == signer {
        if let Some(master) = cross_key(target, "master").filter(|m| m.public_key == key_id) {
            (&master.key, SignerKind::OwnDevice)
        } else if let Some(device) = target_device(key_id) {
            (device, SignerKind::CrossSigning("self_signing"))
        } else {
            return Err(("M_NOT_FOUND", format!("No key {key_id} of {target}")));
        }
    } else {
        match cross_key(target, "master").filter(|m| m.public_key == key_id) {
            Some(master) => (&master.key, SignerKind::CrossSigning("user_signing")),
            None => return Err(("M_NOT_FOUND", format!("No master key {key_id} of {target}"))),
        }
    };
    if signed_part(stored) != signed_part(object) {
        return Err(("M_INVALID_SIGNATURE", "The signed object does not match the stored key".to_owned()));
    }
    let Some(signatures) = object.pointer(&format!("/signatures/{}", escape(signer))).and_then(Value::as_object) else {
        return Err(("M_INVALID_SIGNATURE", "No signature by the uploading user".to_owned()));
    };

    let mut new = Vec::new();
    for (signer_key_id, signature) in signatures {
        let already = stored.pointer(&format!("/signatures/{}/{}", escape(signer), escape(signer_key_id)));
        if already == Some(signature) {
            continue;
        }
        let public_key = match allowed_signer {
            SignerKind::OwnDevice => signer_key_id
                .strip_prefix("ed25519:")
                .and_then(&signer_device)
                .and_then(|keys| keys.pointer(&format!("/keys/{}", escape(signer_key_id))))
                .and_then(Value::as_str),
            SignerKind::CrossSigning(key_type) => cross_key(signer, key_type)
                .filter(|k| format!("ed25519:{}", k.public_key) == *signer_key_id)
                .map(|k| k.public_key.as_str()),
        };
        let Some(public_key) = public_key else {
            return Err(("M_INVALID_SIGNATURE", format!("{signer_key_id} may not sign this key")));
        };
        let Some(signature) = signature.as_str() else {
            return Err(("M_INVALID_SIGNATURE", "Signatures must be strings".to_owned()));
        };
        if !has_valid_signature(object, signer, signer_key_id, public_key) {
            return Err(("M_INVALID_SIGNATURE", format!("Invalid signature by {signer_key_id}")));
        }
        new.push(KeySignatureRow {
            target_user_id: target.to_owned(),
            target_key_id: key_id.to_owned(),
            signer_user_id: signer.to_owned(),
            signer_key_id: signer_key_id.clone(),
            signature: signature.to_owned(),
        });
    }
    Ok(new)
}

#[derive(Clone, Copy)]
enum SignerKind {
    /// One of the signer's own device keys (signing their master key).
    OwnDevice,
    /// The signer's cross-signing key of this type.
    CrossSigning(&'static str),
}
