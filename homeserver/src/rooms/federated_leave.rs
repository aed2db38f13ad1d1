//! Leaving over federation: answering `make_leave`/`send_leave` (a remote user rejecting our
//! invite), and rejecting an invite into a room this server is not in, through the server that
//! sent it.

use ruma::api::federation::membership::{create_leave_event, prepare_leave_event};
use ruma::{OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value;

use super::federated_membership::{accept_membership, sign_membership_template, through_first_server};
use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn send_leave(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &str,
    event: &serde_json::value::RawValue,
) -> Result<()> {
    accept_membership(state, origin, room_id, event_id, event, "leave").await.map(|_| ())
}

/// Leaves (rejects an invite into) a room we are not in, through the first of `servers` that
/// takes the leave.
pub async fn leave_remote(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    servers: &[OwnedServerName],
    content: Value,
) -> Result<()> {
    through_first_server(state, servers, "leave the room", |server| {
        let content = content.clone();
        async move { leave_via(state, &server, room_id, user_id, content).await }
    })
    .await
}

async fn leave_via(
    state: &AppState,
    server: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    content: Value,
) -> Result<()> {
    let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
    let made = state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?;
    let version = made.room_version.unwrap_or(RoomVersionId::V1);
    if !super::federated_join::FEDERATED_ROOM_VERSIONS.contains(&version) {
        return Err(super::federated_join::incompatible(&version));
    }
    let leave = sign_membership_template(state, &version, room_id, user_id, made.event.get(), content, "leave")?;
    let raw = serde_json::value::to_raw_value(&leave.json).map_err(|e| Error::internal(e.to_string()))?;
    let request = create_leave_event::v2::Request::new(room_id.to_owned(), leave.event_id.clone(), raw);
    state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?;
    let event = super::send::new_event(&leave, &leave.sender, 0, None)?;
    state.storage.record_remote_leave(room_id.as_str(), user_id.as_str(), &event).await?;
    state.rooms.notify_change();
    Ok(())
}
