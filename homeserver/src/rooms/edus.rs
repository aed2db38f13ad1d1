//! Ephemeral data units between servers: typing, read receipts, presence, to-device messages
//! and device-list changes.

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
        let content = &value["content"];
        let handled = match value["edu_type"].as_str().unwrap_or_default() {
            "m.typing" => receive_typing(state, origin, content).await,
            "m.receipt" => receive_receipts(state, origin, content).await,
            "m.presence" => receive_presence(state, origin, content).await,
            "m.direct_to_device" => receive_to_device(state, origin, content).await,
            "m.device_list_update" | "m.signing_key_update" => receive_key_change(state, origin, content).await,
            _ => Ok(()),
        };
        if let Err(e) = handled {
            tracing::info!(%origin, edu_type = %value["edu_type"], error = %e, "ignored an EDU");
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
    origin_user(origin, &content["user_id"])?;
    super::acl::check(state, room_id, origin.as_str()).await?;
    let timeout = content["typing"].as_bool().unwrap_or(false).then_some(REMOTE_TYPING);
    crate::typing::set_typing(state, user_id, user_id, room_id, timeout).await
}

/// The user an EDU speaks for, who must belong to the sending server.
fn origin_user<'a>(origin: &ServerName, user_id: &'a serde_json::Value) -> Result<&'a UserId> {
    let user_id = user_id.as_str().and_then(|id| <&UserId>::try_from(id).ok());
    user_id
        .filter(|user| user.server_name() == origin)
        .ok_or_else(|| crate::error::Error::forbidden("A server can only speak for its own users"))
}

/// Public read receipts of the sending server's users, in rooms they are joined to.
async fn receive_receipts(state: &AppState, origin: &ServerName, content: &serde_json::Value) -> Result<()> {
    let mut changed = false;
    for (room_id, receipts) in content.as_object().into_iter().flatten() {
        let Ok(room_id) = <&RoomId>::try_from(room_id.as_str()) else { continue };
        if super::acl::check(state, room_id, origin.as_str()).await.is_err() {
            continue;
        }
        for (user_id, receipt) in receipts["m.read"].as_object().into_iter().flatten() {
            let Ok(user) = <&UserId>::try_from(user_id.as_str()) else { continue };
            if user.server_name() != origin {
                continue;
            }
            let joined = state.storage.membership(room_id.as_str(), user.as_str()).await?;
            if joined.is_none_or(|m| m.membership != "join") {
                continue;
            }
            let Some(event_id) = receipt["event_ids"].as_array().and_then(|ids| ids.first()).and_then(|id| id.as_str())
            else {
                continue;
            };
            let ts = receipt["data"]["ts"].as_i64().unwrap_or_else(|| state.now_ms());
            state
                .storage
                .set_receipt(crate::storage::NewReceipt {
                    room_id: room_id.as_str(),
                    user_id: user.as_str(),
                    receipt_type: "m.read",
                    thread_id: receipt["data"]["thread_id"].as_str().unwrap_or(""),
                    event_id,
                    ts,
                })
                .await?;
            changed = true;
        }
    }
    if changed {
        state.rooms.notify_change();
    }
    Ok(())
}

async fn receive_presence(state: &AppState, origin: &ServerName, content: &serde_json::Value) -> Result<()> {
    for update in content["push"].as_array().into_iter().flatten() {
        let Ok(user_id) = origin_user(origin, &update["user_id"]) else { continue };
        let Some(presence) = update["presence"].as_str() else { continue };
        let last_active_ago = update["last_active_ago"].as_u64().unwrap_or(0);
        crate::presence::receive_remote(state, user_id, presence, update["status_msg"].as_str(), last_active_ago)
            .await?;
    }
    Ok(())
}

/// Tells the servers of a local user's room-mates that their presence changed.
pub async fn send_presence(
    state: &AppState,
    user_id: &UserId,
    presence: &str,
    status_msg: Option<&str>,
    last_active_ago: u64,
) -> Result<()> {
    if !state.config.federation.enabled || user_id.server_name() != state.server_name {
        return Ok(());
    }
    let destinations = servers_sharing_a_room_with(state, user_id.as_str()).await?;
    if destinations.is_empty() {
        return Ok(());
    }
    let mut update = serde_json::json!({
        "user_id": user_id,
        "presence": presence,
        "last_active_ago": last_active_ago,
        "currently_active": presence == "online" && last_active_ago < 60_000,
    });
    if let Some(status_msg) = status_msg {
        update["status_msg"] = status_msg.into();
    }
    let edu = serde_json::json!({"edu_type": "m.presence", "content": {"push": [update]}});
    state.storage.queue_edu(&destinations, &edu).await?;
    state.outbox.wake(state, &destinations);
    Ok(())
}

/// Tells the other servers in the room about a local user's public read receipt.
pub async fn send_receipt(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    event_id: &str,
    thread_id: Option<&str>,
) -> Result<()> {
    if !state.config.federation.enabled {
        return Ok(());
    }
    let destinations = remote_servers_in_room(state, room_id).await?;
    if destinations.is_empty() {
        return Ok(());
    }
    let mut data = serde_json::json!({"ts": state.now_ms()});
    if let Some(thread_id) = thread_id {
        data["thread_id"] = thread_id.into();
    }
    let edu = serde_json::json!({"edu_type": "m.receipt", "content": {
        room_id.as_str(): {"m.read": {user_id.as_str(): {"event_ids": [event_id], "data": data}}},
    }});
    state.storage.queue_edu(&destinations, &edu).await?;
    state.outbox.wake(state, &destinations);
    Ok(())
}

/// To-device messages for local users' devices.
async fn receive_to_device(state: &AppState, origin: &ServerName, content: &serde_json::Value) -> Result<()> {
    let sender = origin_user(origin, &content["sender"])?;
    let Some(event_type) = content["type"].as_str() else {
        return Ok(());
    };
    let mut queued = Vec::new();
    for (user_id, devices) in content["messages"].as_object().into_iter().flatten() {
        let Ok(user_id) = <&UserId>::try_from(user_id.as_str()) else { continue };
        if user_id.server_name() != state.server_name {
            continue;
        }
        for (device, message) in devices.as_object().into_iter().flatten() {
            queued.push(crate::storage::NewToDeviceMessage {
                user_id: user_id.to_string(),
                device_id: (device != "*").then(|| device.clone()),
                content: message.clone(),
            });
        }
    }
    // A retried transaction is answered from its stored result, so its EDUs are not applied
    // twice; `message_id` needs no bookkeeping of its own.
    let delivered = state.storage.deliver_remote_to_device(sender.as_str(), event_type, &queued).await?;
    if delivered > 0 {
        state.rooms.notify_change();
    }
    Ok(())
}

/// A remote user's devices or cross-signing keys changed: local users sharing a room with
/// them see it in `device_lists.changed` and query the keys again (which asks that server).
async fn receive_key_change(state: &AppState, origin: &ServerName, content: &serde_json::Value) -> Result<()> {
    let user_id = origin_user(origin, &content["user_id"])?;
    state.storage.note_device_list_change(user_id.as_str()).await?;
    state.rooms.notify_change();
    Ok(())
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

/// Servers other than ours with a user joined to any room `user_id` is joined to: who must hear
/// about that user's presence and devices.
pub async fn servers_sharing_a_room_with(state: &AppState, user_id: &str) -> Result<Vec<String>> {
    let us = state.server_name.as_str();
    let servers: std::collections::BTreeSet<String> = state
        .storage
        .room_mates(user_id)
        .await?
        .iter()
        .map(|mate| crate::rooms::head::server_of(mate).to_owned())
        .filter(|server| server != us)
        .collect();
    Ok(servers.into_iter().collect())
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
