//! Knocking over federation: answering `make_knock`/`send_knock` for our rooms, and knocking on
//! a room of another server (the knock then shows in `/sync` with the room's stripped state).

use ruma::api::federation::membership::{RawStrippedState, create_knock_event, prepare_knock_event};
use ruma::{OwnedServerName, RoomId, ServerName, UserId};
use serde_json::Value;

use super::federated_invite::{current_outsider_state, stripped_of};
use super::federated_join::{FEDERATED_ROOM_VERSIONS, incompatible};
use super::federated_membership::{accept_membership, sign_membership_template, through_first_server};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::RemoteInvite;

/// Accepts the knock and answers with what the knocker may see of the room.
pub async fn send_knock(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &str,
    event: &serde_json::value::RawValue,
) -> Result<Vec<RawStrippedState>> {
    let row = accept_membership(state, origin, room_id, event_id, event, "knock").await?;
    let knocker = <&UserId>::try_from(row.sender.as_str()).map_err(|e| Error::internal(e.to_string()))?;
    let room = super::state::room(state, room_id.as_str()).await?;
    current_outsider_state(state, &room, knocker).await
}

/// Knocks on a room we are not in, through the first of `servers` that takes the knock.
pub async fn knock_remote(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    servers: &[OwnedServerName],
    content: Value,
) -> Result<()> {
    if !state.config.federation.enabled {
        return Err(Error::not_found("Unknown room (federation is disabled)"));
    }
    through_first_server(state, servers, "knock on the room", |server| {
        let content = content.clone();
        async move { knock_via(state, &server, room_id, user_id, content).await }
    })
    .await
}

async fn knock_via(
    state: &AppState,
    server: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    content: Value,
) -> Result<()> {
    let mut request = prepare_knock_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
    request.ver = FEDERATED_ROOM_VERSIONS.to_vec();
    let made = state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?;
    if !FEDERATED_ROOM_VERSIONS.contains(&made.room_version) {
        return Err(incompatible(&made.room_version));
    }
    let knock =
        sign_membership_template(state, &made.room_version, room_id, user_id, made.event.get(), content, "knock")?;
    let raw = serde_json::value::to_raw_value(&knock.json).map_err(|e| Error::internal(e.to_string()))?;
    let request = create_knock_event::v1::Request::new(room_id.to_owned(), knock.event_id.clone(), raw);
    let answer = state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?;
    let stripped: Vec<Value> = answer.knock_room_state.iter().filter_map(stripped_of).collect();
    let creator = stripped
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .and_then(|e| e["sender"].as_str())
        .unwrap_or(server.as_str())
        .to_owned();
    let event = super::send::new_event(&knock, &knock.sender, 0, None)?;
    state
        .storage
        .store_remote_invite(&RemoteInvite {
            room_id: room_id.as_str(),
            room_version: made.room_version.as_str(),
            creator: &creator,
            now: state.now_ms(),
            event: &event,
            user_id: user_id.as_str(),
            membership: "knock",
            stripped_state: &Value::Array(stripped),
        })
        .await?;
    state.rooms.notify_change();
    Ok(())
}
