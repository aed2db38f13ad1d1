//! Device keys, one-time keys and fallback keys: upload, query and claim.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, UInt, UserId};
use serde_json::{Value, json};

use super::{add_signature, as_object, json_value};
use crate::accounts::Authed;
use crate::error::{Error, Result};
use crate::rooms::client_event::to_raw;
use crate::state::AppState;
use crate::storage::{CrossSigningKeyRow, KeySignatureRow};

/// Keys a client uploads for its own device.
pub struct Upload<'a> {
    pub device_keys: Option<&'a serde_json::value::RawValue>,
    /// `(algorithm:key id, key)`.
    pub one_time_keys: Vec<(String, &'a serde_json::value::RawValue)>,
    pub fallback_keys: Vec<(String, &'a serde_json::value::RawValue)>,
}

/// Stores the device's keys and returns its remaining one-time key counts.
pub async fn upload(
    state: &AppState,
    authed: &Authed,
    upload: Upload<'_>,
) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
    let user_id = authed.user_id.as_str();
    let device_id = authed.device_id.as_str();
    if let Some(raw) = upload.device_keys {
        let mut keys = json_value(raw)?;
        let object = as_object(&keys, "device_keys")?;
        if object.get("user_id").and_then(Value::as_str) != Some(user_id)
            || object.get("device_id").and_then(Value::as_str) != Some(device_id)
        {
            return Err(Error::invalid_param("device_keys must be for the device of this access token"));
        }
        serde_json::from_value::<ruma::encryption::DeviceKeys>(keys.clone())
            .map_err(|e| Error::bad_json(format!("device_keys: {e}")))?;
        // `unsigned` is ours to fill in when others query the keys.
        if let Some(object) = keys.as_object_mut() {
            object.remove("unsigned");
        }
        if state.storage.set_device_keys(user_id, device_id, &keys).await? {
            state.rooms.notify_change();
        }
    }

    let mut one_time = Vec::with_capacity(upload.one_time_keys.len());
    for (key_id, raw) in &upload.one_time_keys {
        let (algorithm, name) = split_key_id(key_id)?;
        one_time.push((algorithm.to_owned(), name.to_owned(), json_value(raw)?));
    }
    let conflicts = state.storage.add_one_time_keys(user_id, device_id, &one_time).await?;
    if !conflicts.is_empty() {
        return Err(Error::invalid_param(format!(
            "One-time key {} already exists with different content",
            conflicts.join(", ")
        )));
    }

    for (key_id, raw) in &upload.fallback_keys {
        let (algorithm, name) = split_key_id(key_id)?;
        state.storage.set_fallback_key(user_id, device_id, algorithm, name, &json_value(raw)?).await?;
    }
    one_time_key_counts(state, authed).await
}

/// The device's one-time key counts; `signed_curve25519` is always present, since clients
/// decide from it whether to upload more.
pub async fn one_time_key_counts(state: &AppState, authed: &Authed) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
    let counts = state.storage.one_time_key_counts(authed.user_id.as_str(), authed.device_id.as_str()).await?;
    let mut counts: BTreeMap<OneTimeKeyAlgorithm, UInt> = counts
        .into_iter()
        .map(|(algorithm, n)| (algorithm.as_str().into(), UInt::try_from(n).unwrap_or_default()))
        .collect();
    counts.entry(OneTimeKeyAlgorithm::SignedCurve25519).or_default();
    Ok(counts)
}

fn split_key_id(key_id: &str) -> Result<(&str, &str)> {
    key_id
        .split_once(':')
        .filter(|(algorithm, name)| !algorithm.is_empty() && !name.is_empty())
        .ok_or_else(|| Error::bad_json(format!("Key ID `{key_id}` is not algorithm:name")))
}

/// The answer to `/keys/query`, as JSON maps keyed like the response.
#[derive(Default)]
pub struct QueryResult {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<ruma::encryption::DeviceKeys>>>,
    pub master_keys: BTreeMap<OwnedUserId, Raw<ruma::encryption::CrossSigningKey>>,
    pub self_signing_keys: BTreeMap<OwnedUserId, Raw<ruma::encryption::CrossSigningKey>>,
    pub user_signing_keys: BTreeMap<OwnedUserId, Raw<ruma::encryption::CrossSigningKey>>,
    pub failures: BTreeMap<String, Value>,
}

/// Device and cross-signing keys of the requested users (all devices when the list is empty).
pub async fn query(
    state: &AppState,
    requester: &UserId,
    requested: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    timeout: std::time::Duration,
) -> Result<QueryResult> {
    let (local, remote) = split_local(state, requested.keys());
    let mut result = query_local(state, Some(requester), requested, &local).await?;
    super::remote::query(state, requested, &remote, timeout, &mut result).await;
    Ok(result)
}

/// The keys of local users; `requester` is `None` for another server asking, which sees no
/// user-signing keys and only users' signatures of their own keys.
pub async fn query_local(
    state: &AppState,
    requester: Option<&UserId>,
    requested: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    local: &[OwnedUserId],
) -> Result<QueryResult> {
    let mut result = QueryResult::default();
    let local_ids: Vec<String> = local.iter().map(|u| u.to_string()).collect();
    let signatures = visible_signatures(state, requester, &local_ids).await?;

    for row in state.storage.device_keys_of_users(&local_ids).await? {
        let user_id = OwnedUserId::try_from(row.user_id.as_str()).map_err(|e| Error::internal(e.to_string()))?;
        let wanted = &requested[&user_id];
        if !wanted.is_empty() && !wanted.iter().any(|d| d.as_str() == row.device_id) {
            continue;
        }
        let mut keys = row.keys;
        for signature in signatures.get(&(row.user_id.clone(), row.device_id.clone())).into_iter().flatten() {
            add_signature(&mut keys, &signature.signer_user_id, &signature.signer_key_id, &signature.signature);
        }
        keys["unsigned"] = json!({"device_display_name": row.display_name});
        let device_id = OwnedDeviceId::from(row.device_id.as_str());
        result.device_keys.entry(user_id).or_default().insert(device_id, to_raw(&keys)?);
    }

    for row in state.storage.cross_signing_keys_of_users(&local_ids).await? {
        let CrossSigningKeyRow { user_id, key_type, public_key, mut key } = row;
        // A user's user-signing key says whom they trust: only they may see it.
        if key_type == "user_signing" && requester.is_none_or(|r| user_id != r.as_str()) {
            continue;
        }
        for signature in signatures.get(&(user_id.clone(), public_key)).into_iter().flatten() {
            add_signature(&mut key, &signature.signer_user_id, &signature.signer_key_id, &signature.signature);
        }
        let user_id = OwnedUserId::try_from(user_id).map_err(|e| Error::internal(e.to_string()))?;
        let map = match key_type.as_str() {
            "master" => &mut result.master_keys,
            "self_signing" => &mut result.self_signing_keys,
            _ => &mut result.user_signing_keys,
        };
        map.insert(user_id, to_raw(&key)?);
    }
    Ok(result)
}

/// Signatures the requester may see on these users' keys, by `(user, key id)`: a user's
/// signatures of their own keys are public; a signature of someone else's key only its signer sees.
async fn visible_signatures(
    state: &AppState,
    requester: Option<&UserId>,
    user_ids: &[String],
) -> Result<HashMap<(String, String), Vec<KeySignatureRow>>> {
    let mut visible: HashMap<(String, String), Vec<KeySignatureRow>> = HashMap::new();
    for signature in state.storage.key_signatures_on(user_ids).await? {
        let by_requester = requester.is_some_and(|r| signature.signer_user_id == r.as_str());
        if signature.signer_user_id == signature.target_user_id || by_requester {
            let key = (signature.target_user_id.clone(), signature.target_key_id.clone());
            visible.entry(key).or_default().push(signature);
        }
    }
    Ok(visible)
}

/// One key per requested device: a one-time key, or the fallback key when none is left.
pub async fn claim(
    state: &AppState,
    requested: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    timeout: std::time::Duration,
) -> Result<(Claimed, BTreeMap<String, Value>)> {
    let (local, remote) = split_local(state, requested.keys());
    let mut claimed = claim_local(state, requested, &local).await?;
    let mut failures = BTreeMap::new();
    super::remote::claim(state, requested, &remote, timeout, &mut claimed, &mut failures).await;
    Ok((claimed, failures))
}

type Claimed = BTreeMap<OwnedUserId, ruma::api::client::keys::claim_keys::v3::OneTimeKeys>;

/// Claims keys of local users' devices.
pub async fn claim_local(
    state: &AppState,
    requested: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    local: &[OwnedUserId],
) -> Result<Claimed> {
    let mut claimed = Claimed::new();
    for user_id in local {
        for (device_id, algorithm) in &requested[user_id] {
            let Some((key_id, key)) = state.storage.claim_key(user_id.as_str(), device_id.as_str(), algorithm).await?
            else {
                continue;
            };
            let key_id = ruma::OwnedOneTimeKeyId::try_from(key_id.as_str())
                .map_err(|e| Error::internal(format!("stored one-time key ID: {e}")))?;
            claimed
                .entry(user_id.clone())
                .or_default()
                .entry(device_id.clone())
                .or_default()
                .insert(key_id, to_raw(&key)?);
        }
    }
    Ok(claimed)
}

/// Splits requested users into local ones and the names of the remote servers.
pub fn split_local<'a>(
    state: &AppState,
    users: impl Iterator<Item = &'a OwnedUserId>,
) -> (Vec<OwnedUserId>, Vec<String>) {
    let mut local = Vec::new();
    let mut remote = HashSet::new();
    for user_id in users {
        if user_id.server_name() == state.server_name {
            local.push(user_id.clone());
        } else {
            remote.insert(user_id.server_name().to_string());
        }
    }
    let mut remote: Vec<String> = remote.into_iter().collect();
    remote.sort();
    (local, remote)
}
