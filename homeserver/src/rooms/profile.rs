//! Profiles: display name and avatar, propagated to every joined room as a new member event.

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{OwnedRoomId, UserId};
use serde_json::json;

use super::send::{send_event, state_template};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{ProfileField, ProfileRow};

/// Longest display name accepted, in characters (as Synapse).
const MAX_DISPLAYNAME_CHARS: usize = 256;

pub async fn profile(state: &AppState, user_id: &UserId) -> Result<ProfileRow> {
    if user_id.server_name() != state.server_name {
        return remote_profile(state, user_id).await;
    }
    local_profile(state, user_id).await
}

/// A local user's profile (`None` fields when unset); 404 for users that do not exist.
pub async fn local_profile(state: &AppState, user_id: &UserId) -> Result<ProfileRow> {
    state.storage.profile(user_id.as_str()).await?.ok_or_else(|| Error::not_found("Profile not found"))
}

/// Asks the user's server (`/query/profile`).
async fn remote_profile(state: &AppState, user_id: &UserId) -> Result<ProfileRow> {
    if !state.config.federation.enabled {
        return Err(Error::not_found("Profile not found"));
    }
    let request = ruma::api::federation::query::get_profile_information::v1::Request::new(user_id.to_owned());
    let answer =
        state.federation.send(user_id.server_name(), &state.signing_key, request).await.map_err(Error::remote)?;
    let text = |field: &str| answer.get(field).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(ProfileRow { displayname: text("displayname"), avatar_url: text("avatar_url") })
}

/// Sets or clears a field of the caller's own profile, then updates their member event in every
/// room they are joined to. The rooms are updated concurrently (each under its own room lock),
/// so their events share commits.
pub async fn set_field(
    state: &AppState,
    caller: &UserId,
    target: &UserId,
    field: ProfileField,
    value: Option<String>,
) -> Result<()> {
    if caller != target {
        return Err(Error::forbidden("You can only change your own profile"));
    }
    match (field, &value) {
        (ProfileField::DisplayName, Some(name)) if name.chars().count() > MAX_DISPLAYNAME_CHARS => {
            return Err(Error::matrix(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadJson,
                format!("Display names are at most {MAX_DISPLAYNAME_CHARS} characters"),
            ));
        }
        (ProfileField::AvatarUrl, Some(url)) if !url.is_empty() && !url.starts_with("mxc://") => {
            return Err(Error::invalid_param("avatar_url must be an mxc:// URI"));
        }
        _ => {}
    }
    let value = value.filter(|v| !v.is_empty());
    state.storage.set_profile_field(caller.as_str(), field, value.as_deref()).await?;

    let rooms: Vec<OwnedRoomId> = state
        .storage
        .memberships_of_user(caller.as_str())
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .filter_map(|m| OwnedRoomId::try_from(m.room_id).ok())
        .collect();
    let mut updates = tokio::task::JoinSet::new();
    for room_id in rooms {
        let (state, caller, value) = (state.clone(), caller.to_owned(), value.clone());
        updates.spawn(async move { update_member_event(&state, &room_id, &caller, field, value).await });
    }
    for result in updates.join_all().await {
        // One room refusing (say, a room where the user may no longer change their member
        // event) must not undo the others; it is logged.
        if let Err(e) = result {
            tracing::warn!(error = %e, "profile change not propagated to a room");
        }
    }
    Ok(())
}

async fn update_member_event(
    state: &AppState,
    room_id: &ruma::RoomId,
    user_id: &UserId,
    field: ProfileField,
    value: Option<String>,
) -> Result<()> {
    let room = super::state::room(state, room_id.as_str()).await?;
    let mut content = super::state::current_state_content(state, &room, "m.room.member", user_id.as_str())
        .await?
        .filter(|c| c["membership"] == "join")
        .ok_or_else(|| Error::internal("not joined any more"))?;
    let key = match field {
        ProfileField::DisplayName => "displayname",
        ProfileField::AvatarUrl => "avatar_url",
    };
    match value {
        Some(value) => content[key] = json!(value),
        None => {
            if let Some(object) = content.as_object_mut() {
                object.remove(key);
            }
        }
    }
    if let Some(object) = content.as_object_mut() {
        object.remove("reason");
    }
    send_event(state, room_id, user_id, state_template("m.room.member", user_id.as_str(), content), None).await?;
    Ok(())
}
