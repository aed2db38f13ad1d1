//! Membership changes: join, invite, leave, kick, ban, unban, forget.

use ruma::{OwnedRoomId, OwnedServerName, RoomId, UserId};
use serde_json::{Value, json};

use super::send::{ClientTxn, Sent, send_event, state_template};
use crate::error::{Error, Result};
use crate::state::AppState;

async fn member_content(state: &AppState, user_id: &UserId, membership: &str, reason: Option<&str>) -> Result<Value> {
    let mut content = json!({"membership": membership});
    if (membership == "join" || membership == "invite")
        && let Some(profile) = state.storage.profile(user_id.as_str()).await?
    {
        if let Some(name) = profile.displayname {
            content["displayname"] = json!(name);
        }
        if let Some(avatar) = profile.avatar_url {
            content["avatar_url"] = json!(avatar);
        }
    }
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    Ok(content)
}

async fn set_membership(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    content: Value,
) -> Result<Sent> {
    send_event(state, room_id, sender, state_template("m.room.member", target.as_str(), content), None::<ClientTxn>)
        .await
}

/// Joins a room: here when this server is in it, otherwise over federation through `via` (and
/// the server named in the room ID). Joining a room one is already in is a no-op.
pub async fn join(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    reason: Option<&str>,
    via: &[OwnedServerName],
) -> Result<OwnedRoomId> {
    super::blocking::refuse_if_blocked(state, room_id.as_str()).await?;
    let current = state.storage.membership(room_id.as_str(), user_id.as_str()).await?;
    if current.as_ref().is_some_and(|m| m.membership == "join") {
        return Ok(room_id.to_owned());
    }
    let content = member_content(state, user_id, "join", reason).await?;
    if is_resident(state, room_id).await? {
        set_membership(state, room_id, user_id, user_id, content).await?;
    } else {
        // The server that invited us is in the room: join through it too.
        let mut servers = via.to_vec();
        if let Some(invite) = current.filter(|m| m.membership == "invite")
            && let Some(event) = state.storage.event(&invite.event_id).await?
            && let Ok(sender) = <&UserId>::try_from(event.sender.as_str())
        {
            servers.push(sender.server_name().to_owned());
        }
        super::federated_join::join_remote(state, room_id, user_id, &servers, content).await?;
    }
    Ok(room_id.to_owned())
}

/// Whether this server takes part in the room: it created it, or one of its users is joined.
pub(crate) async fn is_resident(state: &AppState, room_id: &RoomId) -> Result<bool> {
    if state.storage.room(room_id.as_str()).await?.is_none() {
        return Ok(false);
    }
    if room_id.server_name().is_some_and(|server| server == state.server_name) {
        return Ok(true);
    }
    let us = state.server_name.as_str();
    let members = state.storage.room_memberships(room_id.as_str()).await?;
    Ok(members.iter().any(|m| m.membership == "join" && super::head::server_of(&m.user_id) == us))
}

/// Knocks on a room (room versions 7 and later with the `knock` join rule): here when we are in
/// it, otherwise over federation through `via` (and the server in the room ID).
pub async fn knock(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    reason: Option<&str>,
    via: &[OwnedServerName],
) -> Result<()> {
    super::blocking::refuse_if_blocked(state, room_id.as_str()).await?;
    if !is_resident(state, room_id).await? {
        let content = member_content(state, user_id, "knock", reason).await?;
        let mut servers = via.to_vec();
        servers.extend(room_id.server_name().map(ToOwned::to_owned));
        return super::federated_knock::knock_remote(state, room_id, user_id, &servers, content).await;
    }
    let current = state.storage.membership(room_id.as_str(), user_id.as_str()).await?;
    match current.as_ref().map(|m| m.membership.as_str()) {
        Some("join") => return Err(Error::forbidden("You are already in the room")),
        Some("ban") => return Err(Error::forbidden("You are banned from the room")),
        _ => {}
    }
    let content = member_content(state, user_id, "knock", reason).await?;
    set_membership(state, room_id, user_id, user_id, content).await?;
    Ok(())
}

pub async fn invite(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    reason: Option<&str>,
) -> Result<()> {
    super::blocking::refuse_if_blocked(state, room_id.as_str()).await?;
    let remote = target.server_name() != state.server_name;
    if !remote && state.storage.user(target.as_str()).await?.is_none() {
        return Err(Error::not_found("Unknown user"));
    }
    require_joined(state, room_id, sender).await?;
    let current = state.storage.membership(room_id.as_str(), target.as_str()).await?;
    match current.as_ref().map(|m| m.membership.as_str()) {
        Some("join") => return Err(Error::forbidden(format!("{target} is already in the room"))),
        Some("ban") => return Err(Error::forbidden(format!("{target} is banned from the room"))),
        _ => {}
    }
    let content = member_content(state, target, "invite", reason).await?;
    if remote {
        super::federated_invite::invite_remote(state, room_id, sender, target, content).await?;
    } else {
        set_membership(state, room_id, sender, target, content).await?;
    }
    Ok(())
}

/// Leaves a room, or rejects an invite.
pub async fn leave(state: &AppState, room_id: &RoomId, user_id: &UserId, reason: Option<&str>) -> Result<()> {
    let current = state.storage.membership(room_id.as_str(), user_id.as_str()).await?;
    match current.as_ref().map(|m| m.membership.as_str()) {
        Some("join" | "invite" | "knock") => {}
        Some("leave") => return Ok(()),
        _ => return Err(Error::forbidden("You are not in this room")),
    }
    let content = member_content(state, user_id, "leave", reason).await?;
    if is_resident(state, room_id).await? {
        set_membership(state, room_id, user_id, user_id, content).await?;
    } else {
        // An invite (or knock) into a room we are not in: reject it where it came from.
        let mut servers = Vec::new();
        if let Some(event) = state.storage.event(&current.map(|m| m.event_id).unwrap_or_default()).await?
            && let Ok(sender) = <&UserId>::try_from(event.sender.as_str())
        {
            servers.push(sender.server_name().to_owned());
        }
        servers.extend(room_id.server_name().map(ToOwned::to_owned));
        super::federated_leave::leave_remote(state, room_id, user_id, &servers, content).await?;
    }
    Ok(())
}

/// Kick (`leave` for someone else), ban or unban, as `sender`.
pub async fn moderate(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    action: Moderation,
    reason: Option<&str>,
) -> Result<()> {
    require_joined(state, room_id, sender).await?;
    let current = state.storage.membership(room_id.as_str(), target.as_str()).await?;
    let current = current.as_ref().map(|m| m.membership.as_str());
    let membership = match action {
        Moderation::Kick => {
            if !matches!(current, Some("join" | "invite" | "knock")) {
                return Err(Error::forbidden(format!("{target} is not in the room")));
            }
            "leave"
        }
        Moderation::Ban => "ban",
        Moderation::Unban => {
            if current != Some("ban") {
                return Err(Error::forbidden(format!("{target} is not banned")));
            }
            "leave"
        }
    };
    let content = member_content(state, target, membership, reason).await?;
    set_membership(state, room_id, sender, target, content).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    Kick,
    Ban,
    Unban,
}

/// Forgets a room the user has left.
pub async fn forget(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<()> {
    let current = state.storage.membership(room_id.as_str(), user_id.as_str()).await?;
    match current.as_ref().map(|m| m.membership.as_str()) {
        Some("leave" | "ban") => {
            state.storage.forget_room(room_id.as_str(), user_id.as_str()).await.map_err(Into::into)
        }
        Some(_) => Err(Error::matrix(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Unknown,
            "Leave the room before forgetting it",
        )),
        None => Err(Error::not_found("You have never been in this room")),
    }
}

/// Fails with 403 unless `user_id` is joined to the room (404 if the room is unknown).
pub async fn require_joined(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<()> {
    let membership = state.storage.membership(room_id.as_str(), user_id.as_str()).await?;
    if membership.is_some_and(|m| m.membership == "join") {
        return Ok(());
    }
    if state.storage.room(room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Unknown room"));
    }
    Err(Error::forbidden("You are not joined to this room"))
}
