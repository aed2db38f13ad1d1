//! A user's devices: list and delete.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use ruma::OwnedDeviceId;
use serde_json::json;

use super::{Admin, audited, json, local_user_id};
use crate::accounts::admin as account_admin;
use crate::api::PathParams;
use crate::error::Result;
use crate::state::AppState;
use crate::storage::{Connection, DeviceRow};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v2/users/{user_id}/devices", get(list))
        .route("/_synapse/admin/v2/users/{user_id}/devices/{device_id}", get(get_one).delete(delete))
}

/// A device as Synapse lists it; "last seen" comes from the access log when it knows more.
fn device_json(user_id: &str, device: &DeviceRow, seen: Option<&Connection>) -> serde_json::Value {
    let logged = seen.filter(|c| device.last_seen_ts.is_none_or(|ts| c.last_seen >= ts));
    json!({
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": logged.map_or(device.last_seen_ip.clone(), |c| c.ip.clone()),
        "last_seen_ts": logged.map_or(device.last_seen_ts, |c| Some(c.last_seen)),
        "last_seen_user_agent": logged.and_then(|c| c.user_agent.clone()),
        "user_id": user_id,
    })
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(user_id): PathParams<String>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    account_admin::existing_user(&state, &user_id).await?;
    let devices = state.storage.devices(user_id.as_str()).await?;
    let seen = state.storage.last_connection_per_device(user_id.as_str()).await?;
    let devices: Vec<_> = devices.iter().map(|d| device_json(user_id.as_str(), d, seen.get(&d.device_id))).collect();
    Ok(json(StatusCode::OK, json!({"total": devices.len(), "devices": devices})))
}

async fn get_one(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams((user_id, device_id)): PathParams<(String, String)>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    account_admin::existing_user(&state, &user_id).await?;
    let device = state
        .storage
        .device(user_id.as_str(), &device_id)
        .await?
        .ok_or_else(|| crate::error::Error::not_found("Device not found"))?;
    let seen = state.storage.last_connection_per_device(user_id.as_str()).await?;
    Ok(json(StatusCode::OK, device_json(user_id.as_str(), &device, seen.get(&device.device_id))))
}

async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    PathParams((user_id, device_id)): PathParams<(String, String)>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    let device_id = OwnedDeviceId::from(device_id);
    let params = json!({"device_id": device_id.as_str()});
    let target = user_id.to_string();
    let work = {
        let state = state.clone();
        async move { account_admin::delete_device(&state, &user_id, &device_id).await }
    };
    audited(&state, admin.actor(), params, work, move |_| ("delete_device", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({})))
}
