//! Deleting a room as an admin (Synapse's "delete room" v2): every local member leaves, the
//! room's local aliases go, optionally the room is blocked, its members are moved to a new
//! notice room, and its data is purged from the database.

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use super::create::{CreateRoom, Preset, create_room};
use super::send::{ClientTxn, send_event};
use crate::error::{Error, Result};
use crate::state::AppState;

/// What the admin asked for.
#[derive(Debug, Clone)]
pub struct Shutdown {
    pub block: bool,
    pub purge: bool,
    pub force_purge: bool,
    /// Creator of the room the members are moved to; no new room when absent.
    pub new_room_user_id: Option<OwnedUserId>,
    pub room_name: Option<String>,
    pub message: Option<String>,
}

/// Synapse's `shutdown_room` report.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    pub kicked_users: Vec<String>,
    pub failed_to_kick_users: Vec<String>,
    pub local_aliases: Vec<String>,
    pub new_room_id: Option<OwnedRoomId>,
}

impl ShutdownReport {
    pub fn to_json(&self) -> Value {
        json!({
            "kicked_users": self.kicked_users,
            "failed_to_kick_users": self.failed_to_kick_users,
            "local_aliases": self.local_aliases,
            "new_room_id": self.new_room_id,
        })
    }
}

const DEFAULT_ROOM_NAME: &str = "Content Violation Notification";
const DEFAULT_MESSAGE: &str = "Sharing illegal content on this server is not permitted and rooms in violation will be \
     blocked.";

/// Runs a room deletion. `admin` is recorded as the blocker. Local members who cannot be made
/// to leave are reported, and then stop a purge unless `force_purge`.
pub async fn shutdown(
    state: &AppState,
    room_id: &RoomId,
    admin: &UserId,
    request: &Shutdown,
    report: &mut ShutdownReport,
) -> Result<()> {
    if request.block {
        state.storage.block_room(room_id.as_str(), admin.as_str(), state.now_ms()).await?;
    }
    if state.storage.room(room_id.as_str()).await?.is_none() {
        // Blocking an unknown room in advance is all there is to do.
        return Ok(());
    }
    if let Some(creator) = &request.new_room_user_id {
        report.new_room_id = Some(notice_room(state, creator, request).await?);
    }
    let us = state.server_name.as_str();
    let members = state.storage.room_memberships(room_id.as_str()).await?;
    let local = members
        .into_iter()
        .filter(|m| matches!(m.membership.as_str(), "join" | "invite" | "knock"))
        .filter(|m| super::head::server_of(&m.user_id) == us);
    for member in local {
        let Ok(user_id) = OwnedUserId::try_from(member.user_id.clone()) else { continue };
        match move_out(state, room_id, &user_id, report.new_room_id.as_deref()).await {
            Ok(()) => report.kicked_users.push(member.user_id),
            Err(e) => {
                tracing::warn!(%room_id, user = %member.user_id, error = %e, "could not remove a member of a deleted room");
                report.failed_to_kick_users.push(member.user_id);
            }
        }
    }
    for alias in state.storage.room_aliases(room_id.as_str()).await? {
        if state.storage.delete_alias(&alias).await? {
            report.local_aliases.push(alias);
        }
    }
    state.storage.set_room_public(room_id.as_str(), false).await?;
    if request.purge {
        if !report.failed_to_kick_users.is_empty() && !request.force_purge {
            return Err(Error::invalid_param(
                "Some local members could not be removed; use force_purge to purge anyway",
            ));
        }
        purge(state, room_id, request.block).await?;
    }
    Ok(())
}

/// The member leaves (rejecting an invite or withdrawing a knock) and joins the notice room
/// when there is one. The room is not forgotten for them: a forgotten room drops out of
/// `/sync`, and their clients would never learn they left.
async fn move_out(state: &AppState, room_id: &RoomId, user_id: &UserId, new_room: Option<&RoomId>) -> Result<()> {
    super::membership::leave(state, room_id, user_id, None).await?;
    if let Some(new_room) = new_room {
        super::membership::join(state, new_room, user_id, None, &[]).await?;
    }
    Ok(())
}

/// A public room where only its creator may speak, with the admin's message.
async fn notice_room(state: &AppState, creator: &UserId, request: &Shutdown) -> Result<OwnedRoomId> {
    if creator.server_name() != state.server_name || state.storage.user(creator.as_str()).await?.is_none() {
        return Err(Error::invalid_param("new_room_user_id must be a local user"));
    }
    let room = CreateRoom {
        preset: Some(Preset::PublicChat),
        name: Some(request.room_name.clone().unwrap_or_else(|| DEFAULT_ROOM_NAME.to_owned())),
        power_level_content_override: Some(json!({"users_default": -10})),
        ..CreateRoom::default()
    };
    let room_id = create_room(state, creator, room).await?;
    let body = request.message.clone().unwrap_or_else(|| DEFAULT_MESSAGE.to_owned());
    let template = federation::pdu::EventTemplate {
        event_type: "m.room.message".into(),
        state_key: None,
        content: json!({"msgtype": "m.text", "body": body}),
        redacts: None,
    };
    send_event(state, &room_id, creator, template, None::<ClientTxn>).await?;
    Ok(room_id)
}

/// Removes the room's data under its send lock, then drops its cached head.
pub async fn purge(state: &AppState, room_id: &RoomId, keep_room_row: bool) -> Result<()> {
    let slot = state.rooms.room_lock(room_id);
    let mut head = slot.lock().await;
    state.storage.purge_room(room_id.as_str(), keep_room_row).await?;
    *head = None;
    drop(head);
    state.rooms.notify_change();
    Ok(())
}
