//! Account data (global and per room) and room tags, with the change wake-up for `/sync`.

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::state::AppState;

/// Types the server manages itself; clients change them through their own endpoints.
const SERVER_MANAGED: &[&str] = &["m.fully_read", "m.push_rules"];

fn own(caller: &UserId, target: &UserId) -> Result<()> {
    if caller == target { Ok(()) } else { Err(Error::forbidden("You can only access your own account data")) }
}

/// Stores account data (`room_id` `None` for global) and wakes the user's syncs.
pub async fn set(
    state: &AppState,
    caller: &UserId,
    target: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
    content: Value,
) -> Result<()> {
    own(caller, target)?;
    if SERVER_MANAGED.contains(&data_type) {
        return Err(Error::matrix(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BadJson,
            format!("{data_type} cannot be set through the account data API"),
        ));
    }
    if !content.is_object() {
        return Err(Error::bad_json("Account data must be a JSON object"));
    }
    let room = room_id.map_or("", |r| r.as_str());
    state.storage.set_account_data(target.as_str(), room, data_type, &content).await?;
    state.rooms.notify_change();
    Ok(())
}

pub async fn get(
    state: &AppState,
    caller: &UserId,
    target: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
) -> Result<Value> {
    own(caller, target)?;
    let room = room_id.map_or("", |r| r.as_str());
    state
        .storage
        .account_data(target.as_str(), room, data_type)
        .await?
        .ok_or_else(|| Error::not_found("Account data not found"))
}

/// A room's tags (`m.tag` room account data): tag name → tag info.
pub async fn tags(state: &AppState, caller: &UserId, target: &UserId, room_id: &RoomId) -> Result<Value> {
    own(caller, target)?;
    let content = state.storage.account_data(target.as_str(), room_id.as_str(), "m.tag").await?;
    Ok(content.map(|c| c["tags"].clone()).filter(Value::is_object).unwrap_or_else(|| json!({})))
}

/// Adds or replaces (`info` `Some`) or removes one tag.
pub async fn set_tag(
    state: &AppState,
    caller: &UserId,
    target: &UserId,
    room_id: &RoomId,
    tag: &str,
    info: Option<Value>,
) -> Result<()> {
    let mut all = tags(state, caller, target, room_id).await?;
    if let Some(map) = all.as_object_mut() {
        match info {
            Some(info) => {
                map.insert(tag.to_owned(), info);
            }
            None => {
                map.remove(tag);
            }
        }
    }
    state.storage.set_account_data(target.as_str(), room_id.as_str(), "m.tag", &json!({"tags": all})).await?;
    state.rooms.notify_change();
    Ok(())
}

/// The users `user_id` ignores (`m.ignored_user_list`): their events and invites are hidden.
pub async fn ignored_users(state: &AppState, user_id: &UserId) -> Result<std::collections::HashSet<String>> {
    let content = state.storage.account_data(user_id.as_str(), "", "m.ignored_user_list").await?;
    let ignored = content.as_ref().and_then(|c| c["ignored_users"].as_object());
    Ok(ignored.map(|users| users.keys().cloned().collect()).unwrap_or_default())
}

/// Whether an event stays visible despite the ignore list: state events always do (the room
/// must stay consistent), other events only from users not ignored.
pub fn not_ignored(ignored: &std::collections::HashSet<String>, row: &crate::storage::EventRow) -> bool {
    row.state_key.is_some() || !ignored.contains(&row.sender)
}
