//! Ephemeral data units between servers. Typing notifications go both ways; other EDU types
//! (receipts, presence, device lists, to-device) are accepted and not acted on yet.

use std::time::Duration;

use ruma::api::federation::transactions::edu::Edu;
use ruma::serde::Raw;
use ruma::{RoomId, ServerName, UserId};

use crate::error::Result;
use crate::state::AppState;

/// How long a remote user's typing lasts: EDUs carry no timeout, so the sender repeats them.
const REMOTE_TYPING: Duration = Duration::from_secs(30);

/// Applies the EDUs of a received transaction; a bad EDU is logged and skipped.
pub async fn receive_edus(state: &AppState, origin: &ServerName, edus: &[Raw<Edu>]) {
    for raw in edus {
        let value: serde_json::Value = match raw.deserialize_as() {
            Ok(value) => value,
            Err(_) => continue,
        };
        if value["edu_type"] == "m.typing"
            && let Err(e) = receive_typing(state, origin, &value["content"]).await
        {
            tracing::info!(%origin, error = %e, "ignored a typing EDU");
        }
    }
}

async fn receive_typing(state: &AppState, origin: &ServerName, content: &serde_json::Value) -> Result<()> {
    let (Some(room_id), Some(user_id)) = (content["room_id"].as_str(), content["user_id"].as_str()) else {
        return Ok(());
    };
    let (Ok(room_id), Ok(user_id)) = (<&RoomId>::try_from(room_id), <&UserId>::try_from(user_id)) else {
        return Ok(());
    };
    if user_id.server_name() != origin {
        return Err(crate::error::Error::forbidden("A server can only send typing of its own users"));
    }
    let timeout = content["typing"].as_bool().unwrap_or(false).then_some(REMOTE_TYPING);
    crate::typing::set_typing(state, user_id, user_id, room_id, timeout).await
}

/// Tells the other servers in the room that a local user started or stopped typing.
pub async fn send_typing(state: &AppState, room_id: &RoomId, user_id: &UserId, typing: bool) -> Result<()> {
    if !state.config.federation.enabled || user_id.server_name() != state.server_name {
        return Ok(());
    }
    let destinations = remote_servers_in_room(state, room_id).await?;
    let edu = serde_json::json!({
        "edu_type": "m.typing",
        "content": {"room_id": room_id, "user_id": user_id, "typing": typing},
    });
    state.storage.queue_edu(&destinations, &edu).await?;
    state.outbox.wake(state, &destinations);
    Ok(())
}

/// Servers other than ours with a joined member in the room.
pub async fn remote_servers_in_room(state: &AppState, room_id: &RoomId) -> Result<Vec<String>> {
    let mut servers: Vec<String> = state
        .storage
        .room_memberships(room_id.as_str())
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| crate::rooms::head::server_of(&m.user_id).to_owned())
        .filter(|server| server != state.server_name.as_str())
        .collect();
    servers.sort();
    servers.dedup();
    Ok(servers)
}
