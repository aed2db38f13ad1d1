//! Server-side key backup (`/room_keys`). Keys are encrypted by the client for its backup key;
//! the server keeps the best copy of each session's key and an etag that changes with the set.

use http::StatusCode;
use ruma::api::error::{ErrorKind, WrongRoomKeysVersionErrorData};
use serde_json::Value;

use super::{as_object, json_value};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{BackupKeyRow, BackupVersionRow, KeyScope};

/// Parses a version path or query parameter; an unparsable one names no version that exists.
fn parse_version(version: &str) -> Result<i64> {
    version.parse().map_err(|_| unknown_version(version))
}

fn unknown_version(version: &str) -> Error {
    Error::not_found(format!("Unknown backup version {version}"))
}

/// The algorithm's name, checking the body is `{"algorithm": "...", "auth_data": {...}}`.
fn algorithm_name(algorithm: &Value) -> Result<String> {
    let object = as_object(algorithm, "backup version")?;
    let name = object.get("algorithm").and_then(Value::as_str).ok_or_else(|| Error::bad_json("algorithm missing"))?;
    if !object.get("auth_data").is_some_and(Value::is_object) {
        return Err(Error::bad_json("auth_data must be a JSON object"));
    }
    Ok(name.to_owned())
}

pub async fn create_version(
    state: &AppState,
    user_id: &str,
    algorithm: &serde_json::value::RawValue,
) -> Result<String> {
    let algorithm = json_value(algorithm)?;
    let name = algorithm_name(&algorithm)?;
    Ok(state.storage.create_backup_version(user_id, &name, &algorithm).await?.to_string())
}

/// A version's info, or the newest version's when `version` is `None`.
pub async fn version_info(state: &AppState, user_id: &str, version: Option<&str>) -> Result<BackupVersionRow> {
    let number = version.map(parse_version).transpose()?;
    state.storage.backup_version(user_id, number).await?.ok_or_else(|| match version {
        Some(version) => unknown_version(version),
        None => Error::not_found("No backup version exists"),
    })
}

/// Replaces a version's auth data; the algorithm cannot change.
pub async fn update_version(
    state: &AppState,
    user_id: &str,
    version: &str,
    algorithm: &serde_json::value::RawValue,
) -> Result<()> {
    let current = version_info(state, user_id, Some(version)).await?;
    let algorithm = json_value(algorithm)?;
    let name = algorithm_name(&algorithm)?;
    if current.algorithm.get("algorithm").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(Error::invalid_param("The algorithm of a backup version cannot change"));
    }
    if algorithm.get("version").and_then(Value::as_str).is_some_and(|v| v != version) {
        return Err(Error::invalid_param("The version in the body does not match the path"));
    }
    let mut stored = algorithm;
    if let Some(object) = stored.as_object_mut() {
        object.remove("version");
    }
    state.storage.update_backup_version(user_id, current.version, &stored).await?;
    Ok(())
}

pub async fn delete_version(state: &AppState, user_id: &str, version: &str) -> Result<()> {
    if !state.storage.delete_backup_version(user_id, parse_version(version)?).await? {
        return Err(unknown_version(version));
    }
    Ok(())
}

/// Stores keys into the current version; writing to an older version is refused so two clients
/// cannot fork the backup.
pub async fn put_keys(
    state: &AppState,
    user_id: &str,
    version: &str,
    keys: Vec<BackupKeyRow>,
) -> Result<BackupVersionRow> {
    let latest = state.storage.backup_version(user_id, None).await?.ok_or_else(|| unknown_version(version))?;
    if parse_version(version).ok() != Some(latest.version) {
        return Err(Error::matrix(
            StatusCode::FORBIDDEN,
            ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(latest.version.to_string())),
            "Wrong backup version",
        ));
    }
    Ok(state.storage.put_backup_keys(user_id, latest.version, &keys).await?)
}

/// Turns one uploaded `KeyBackupData` into a row, reading the fields the replacement rule needs.
pub fn key_row(room_id: &str, session_id: &str, raw: &serde_json::value::RawValue) -> Result<BackupKeyRow> {
    let data = json_value(raw)?;
    let parsed: ruma::api::client::backup::KeyBackupData =
        serde_json::from_value(data.clone()).map_err(|e| Error::bad_json(format!("session {session_id}: {e}")))?;
    Ok(BackupKeyRow {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        first_message_index: i64::try_from(u64::from(parsed.first_message_index)).unwrap_or(i64::MAX),
        forwarded_count: i64::try_from(u64::from(parsed.forwarded_count)).unwrap_or(i64::MAX),
        is_verified: parsed.is_verified,
        data,
    })
}

pub async fn keys(state: &AppState, user_id: &str, version: &str, scope: KeyScope<'_>) -> Result<Vec<BackupKeyRow>> {
    let info = version_info(state, user_id, Some(version)).await?;
    Ok(state.storage.backup_keys(user_id, info.version, scope).await?)
}

pub async fn delete_keys(
    state: &AppState,
    user_id: &str,
    version: &str,
    scope: KeyScope<'_>,
) -> Result<BackupVersionRow> {
    let info = version_info(state, user_id, Some(version)).await?;
    Ok(state.storage.delete_backup_keys(user_id, info.version, scope).await?)
}
