//! Devices: list, get, rename, delete (one or many, behind a password stage).

use ruma::api::client::device::{Device, delete_device, delete_devices, get_device, get_devices, update_device};
use ruma::{MilliSecondsSinceUnixEpoch, UInt};

use crate::accounts;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::DeviceRow;

fn to_device(row: DeviceRow) -> Device {
    let mut device = Device::new(row.device_id.into());
    device.display_name = row.display_name;
    device.last_seen_ip = row.last_seen_ip;
    device.last_seen_ts = row.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    device
}

fn unknown_device() -> Error {
    Error::not_found("Unknown device")
}

pub async fn list(state: AppState, request: Ruma<get_devices::v3::Request>) -> Result<get_devices::v3::Response> {
    let rows = state.storage.devices(request.authed()?.user_id.as_str()).await?;
    Ok(get_devices::v3::Response::new(rows.into_iter().map(to_device).collect()))
}

pub async fn get(state: AppState, request: Ruma<get_device::v3::Request>) -> Result<get_device::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let row = state.storage.device(user_id, request.body.device_id.as_str()).await?;
    Ok(get_device::v3::Response::new(to_device(row.ok_or_else(unknown_device)?)))
}

pub async fn update(state: AppState, request: Ruma<update_device::v3::Request>) -> Result<update_device::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let updated =
        state.storage.set_device_display_name(user_id, body.device_id.as_str(), body.display_name.as_deref()).await?;
    if !updated {
        return Err(unknown_device());
    }
    Ok(update_device::v3::Response::new())
}

pub async fn delete(state: AppState, request: Ruma<delete_device::v3::Request>) -> Result<delete_device::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    if state.storage.device(authed.user_id.as_str(), body.device_id.as_str()).await?.is_none() {
        return Err(unknown_device());
    }
    let ids = [body.device_id.clone()];
    accounts::delete_devices(&state, authed, &ids, body.auth.as_ref(), "delete_device").await?;
    Ok(delete_device::v3::Response::new())
}

pub async fn delete_many(
    state: AppState,
    request: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    let body = &request.body;
    accounts::delete_devices(&state, request.authed()?, &body.devices, body.auth.as_ref(), "delete_devices").await?;
    Ok(delete_devices::v3::Response::new())
}
