//! `/keys/*`: device, one-time, fallback and cross-signing keys, signatures and key changes.

use std::collections::BTreeMap;

use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};

use crate::api::ruma::Ruma;
use crate::e2ee::{cross_signing, device_lists, keys};
use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn upload(state: AppState, request: Ruma<upload_keys::v3::Request>) -> Result<upload_keys::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let upload = keys::Upload {
        device_keys: body.device_keys.as_ref().map(|raw| raw.json()),
        one_time_keys: body.one_time_keys.iter().map(|(id, raw)| (id.to_string(), raw.json())).collect(),
        fallback_keys: body.fallback_keys.iter().map(|(id, raw)| (id.to_string(), raw.json())).collect(),
    };
    let counts = keys::upload(&state, authed, upload).await?;
    Ok(upload_keys::v3::Response::new(counts))
}

pub async fn query(state: AppState, request: Ruma<get_keys::v3::Request>) -> Result<get_keys::v3::Response> {
    let requester = &request.authed()?.user_id;
    let timeout = request.body.timeout.unwrap_or(crate::e2ee::remote::DEFAULT_TIMEOUT);
    let result = keys::query(&state, requester, &request.body.device_keys, timeout).await?;
    let mut response = get_keys::v3::Response::new();
    response.device_keys = result.device_keys;
    response.master_keys = result.master_keys;
    response.self_signing_keys = result.self_signing_keys;
    response.user_signing_keys = result.user_signing_keys;
    response.failures = result.failures;
    Ok(response)
}

pub async fn claim(state: AppState, request: Ruma<claim_keys::v3::Request>) -> Result<claim_keys::v3::Response> {
    request.authed()?;
    let requested = request
        .body
        .one_time_keys
        .iter()
        .map(|(user, devices)| {
            let devices = devices.iter().map(|(device, algorithm)| (device.clone(), algorithm.to_string())).collect();
            (user.clone(), devices)
        })
        .collect();
    let timeout = request.body.timeout.unwrap_or(crate::e2ee::remote::DEFAULT_TIMEOUT);
    let (claimed, failures) = keys::claim(&state, &requested, timeout).await?;
    let mut response = claim_keys::v3::Response::new(claimed);
    response.failures = failures;
    Ok(response)
}

pub async fn changes(
    state: AppState,
    request: Ruma<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response> {
    let authed = request.authed()?;
    let window = crate::sync::device_list_window(&request.body.from, &request.body.to)?;
    let changes = device_lists::changes(&state, authed.user_id.as_str(), window).await?;
    Ok(get_key_changes::v3::Response::new(
        device_lists::user_ids(changes.changed),
        device_lists::user_ids(changes.left),
    ))
}

pub async fn upload_signing_keys(
    state: AppState,
    request: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let upload = cross_signing::SigningKeysUpload {
        master: body.master_key.as_ref().map(|raw| raw.json()),
        self_signing: body.self_signing_key.as_ref().map(|raw| raw.json()),
        user_signing: body.user_signing_key.as_ref().map(|raw| raw.json()),
    };
    cross_signing::upload_signing_keys(&state, authed, upload, body.auth.as_ref()).await?;
    Ok(upload_signing_keys::v3::Response::new())
}

pub async fn upload_signatures(
    state: AppState,
    request: Ruma<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response> {
    let authed = request.authed()?;
    let mut signed = BTreeMap::new();
    for (user_id, keys) in &request.body.signed_keys {
        let mut objects = Vec::new();
        for (key_id, raw) in keys.iter() {
            let value = serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(e.to_string()))?;
            objects.push((key_id.to_owned(), value));
        }
        signed.insert(user_id.clone(), objects);
    }
    let failures = cross_signing::upload_signatures(&state, authed, &signed).await?;
    let mut response = upload_signatures::v3::Response::new();
    for (user_id, by_key) in failures {
        let mut converted = BTreeMap::new();
        for (key_id, failure) in by_key {
            let failure = serde_json::from_value(failure).map_err(|e| Error::internal(e.to_string()))?;
            converted.insert(key_id, failure);
        }
        response.failures.insert(user_id, converted);
    }
    Ok(response)
}
