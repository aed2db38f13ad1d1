//! Our users' encryption keys for other servers: device lists, key queries and key claims.

use std::collections::BTreeMap;

use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::{OwnedDeviceId, OwnedUserId, UInt};

use crate::api::ruma::Ruma;
use crate::e2ee::keys;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::Stream;

/// Only this server's users are answered for; others are left out.
fn local_users<T>(state: &AppState, requested: &BTreeMap<OwnedUserId, T>) -> Vec<OwnedUserId> {
    requested.keys().filter(|user| user.server_name() == state.server_name).cloned().collect()
}

pub async fn query(state: AppState, request: Ruma<get_keys::v1::Request>) -> Result<get_keys::v1::Response> {
    request.origin()?;
    let requested = &request.body.device_keys;
    let result = keys::query_local(&state, None, requested, &local_users(&state, requested)).await?;
    let mut response = get_keys::v1::Response::new(result.device_keys);
    response.master_keys = result.master_keys;
    response.self_signing_keys = result.self_signing_keys;
    Ok(response)
}

pub async fn claim(state: AppState, request: Ruma<claim_keys::v1::Request>) -> Result<claim_keys::v1::Response> {
    request.origin()?;
    let requested: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>> = request
        .body
        .one_time_keys
        .iter()
        .map(|(user, devices)| {
            (user.clone(), devices.iter().map(|(device, algorithm)| (device.clone(), algorithm.to_string())).collect())
        })
        .collect();
    let claimed = keys::claim_local(&state, &requested, &local_users(&state, &requested)).await?;
    Ok(claim_keys::v1::Response::new(claimed))
}

pub async fn devices(state: AppState, request: Ruma<get_devices::v1::Request>) -> Result<get_devices::v1::Response> {
    request.origin()?;
    let user_id = &request.body.user_id;
    if user_id.server_name() != state.server_name {
        return Err(Error::not_found("Not a user of this server"));
    }
    let requested = BTreeMap::from([(user_id.clone(), Vec::new())]);
    let result = keys::query_local(&state, None, &requested, std::slice::from_ref(user_id)).await?;
    let names: BTreeMap<String, Option<String>> = state
        .storage
        .devices(user_id.as_str())
        .await?
        .into_iter()
        .map(|device| (device.device_id, device.display_name))
        .collect();
    let stream_id = state.storage.stream_position(Stream::DeviceLists).await?;
    let mut response = get_devices::v1::Response::new(user_id.clone(), UInt::try_from(stream_id).unwrap_or_default());
    for (device_id, keys) in result.device_keys.into_values().flatten() {
        let mut device = get_devices::v1::UserDevice::new(device_id.clone(), keys);
        device.device_display_name = names.get(device_id.as_str()).cloned().flatten();
        response.devices.push(device);
    }
    response.master_key = result.master_keys.into_values().next();
    response.self_signing_key = result.self_signing_keys.into_values().next();
    Ok(response)
}
