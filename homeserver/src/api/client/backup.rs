//! `/room_keys/*`: server-side key backup versions and the keys stored under them.

use std::collections::BTreeMap;

use ruma::api::client::backup::{
    RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version,
    delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version,
    get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
    update_backup_version,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};

use crate::api::ruma::Ruma;
use crate::e2ee::backup;
use crate::error::{Error, Result};
use crate::rooms::client_event::to_raw;
use crate::state::AppState;
use crate::storage::{BackupKeyRow, BackupVersionRow, KeyScope};

fn count(info: &BackupVersionRow) -> UInt {
    UInt::try_from(info.count).unwrap_or_default()
}

/// Sessions grouped by room, as the responses nest them.
fn by_room<T>(rows: Vec<BackupKeyRow>) -> Result<BTreeMap<OwnedRoomId, BTreeMap<String, Raw<T>>>> {
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<T>>> = BTreeMap::new();
    for row in rows {
        let room_id = OwnedRoomId::try_from(row.room_id).map_err(|e| Error::internal(e.to_string()))?;
        rooms.entry(room_id).or_default().insert(row.session_id, to_raw(&row.data)?);
    }
    Ok(rooms)
}

pub async fn create_version(
    state: AppState,
    request: Ruma<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let version = backup::create_version(&state, user_id, request.body.algorithm.json()).await?;
    Ok(create_backup_version::v3::Response::new(version))
}

pub async fn latest_version(
    state: AppState,
    request: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response> {
    let info = backup::version_info(&state, request.authed()?.user_id.as_str(), None).await?;
    let algorithm = to_raw(&info.algorithm)?;
    Ok(get_latest_backup_info::v3::Response::new(
        algorithm,
        count(&info),
        info.etag.to_string(),
        info.version.to_string(),
    ))
}

pub async fn version(
    state: AppState,
    request: Ruma<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let info = backup::version_info(&state, user_id, Some(&request.body.version)).await?;
    let algorithm = to_raw(&info.algorithm)?;
    Ok(get_backup_info::v3::Response::new(algorithm, count(&info), info.etag.to_string(), info.version.to_string()))
}

pub async fn update_version(
    state: AppState,
    request: Ruma<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    backup::update_version(&state, user_id, &body.version, body.algorithm.json()).await?;
    Ok(update_backup_version::v3::Response::new())
}

pub async fn delete_version(
    state: AppState,
    request: Ruma<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response> {
    backup::delete_version(&state, request.authed()?.user_id.as_str(), &request.body.version).await?;
    Ok(delete_backup_version::v3::Response::new())
}

pub async fn put_keys(
    state: AppState,
    request: Ruma<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let mut rows = Vec::new();
    for (room_id, room) in &body.rooms {
        for (session_id, raw) in &room.sessions {
            rows.push(backup::key_row(room_id.as_str(), session_id, raw.json())?);
        }
    }
    let info = backup::put_keys(&state, user_id, &body.version, rows).await?;
    Ok(add_backup_keys::v3::Response::new(info.etag.to_string(), count(&info)))
}

pub async fn put_room_keys(
    state: AppState,
    request: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let rows = body
        .sessions
        .iter()
        .map(|(session_id, raw)| backup::key_row(body.room_id.as_str(), session_id, raw.json()))
        .collect::<Result<Vec<_>>>()?;
    let info = backup::put_keys(&state, user_id, &body.version, rows).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(info.etag.to_string(), count(&info)))
}

pub async fn put_session_key(
    state: AppState,
    request: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let row = backup::key_row(body.room_id.as_str(), &body.session_id, body.session_data.json())?;
    let info = backup::put_keys(&state, user_id, &body.version, vec![row]).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(info.etag.to_string(), count(&info)))
}

pub async fn get_keys(
    state: AppState,
    request: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let rows = backup::keys(&state, user_id, &request.body.version, KeyScope::default()).await?;
    let rooms = by_room(rows)?.into_iter().map(|(room, sessions)| (room, RoomKeyBackup::new(sessions))).collect();
    Ok(get_backup_keys::v3::Response::new(rooms))
}

pub async fn get_room_keys(
    state: AppState,
    request: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let scope = KeyScope { room_id: Some(body.room_id.as_str()), session_id: None };
    let rows = backup::keys(&state, user_id, &body.version, scope).await?;
    let sessions = by_room(rows)?.into_values().next().unwrap_or_default();
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

pub async fn get_session_key(
    state: AppState,
    request: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let scope = KeyScope { room_id: Some(body.room_id.as_str()), session_id: Some(&body.session_id) };
    let row = backup::keys(&state, user_id, &body.version, scope).await?.into_iter().next();
    let row = row.ok_or_else(|| Error::not_found("No key backed up for this session"))?;
    Ok(get_backup_keys_for_session::v3::Response::new(to_raw(&row.data)?))
}

pub async fn delete_keys(
    state: AppState,
    request: Ruma<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let info = backup::delete_keys(&state, user_id, &request.body.version, KeyScope::default()).await?;
    Ok(delete_backup_keys::v3::Response::new(info.etag.to_string(), count(&info)))
}

pub async fn delete_room_keys(
    state: AppState,
    request: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let scope = KeyScope { room_id: Some(body.room_id.as_str()), session_id: None };
    let info = backup::delete_keys(&state, user_id, &body.version, scope).await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(info.etag.to_string(), count(&info)))
}

pub async fn delete_session_key(
    state: AppState,
    request: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response> {
    let user_id = request.authed()?.user_id.as_str();
    let body = &request.body;
    let scope = KeyScope { room_id: Some(body.room_id.as_str()), session_id: Some(&body.session_id) };
    let info = backup::delete_keys(&state, user_id, &body.version, scope).await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(info.etag.to_string(), count(&info)))
}
