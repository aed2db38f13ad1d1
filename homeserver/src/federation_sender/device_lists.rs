//! Announcing local users' device changes to the servers that share a room with them, as
//! `m.device_list_update` EDUs. A task follows the device-list stream from a stored bookmark,
//! so every change is announced once even across restarts, wherever in the code it was made.

use std::collections::BTreeSet;

use serde_json::json;

use crate::error::Result;
use crate::rooms::head::server_of;
use crate::state::AppState;
use crate::storage::Stream;

const CHECK_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the announcer (when federation is on).
pub fn start(state: &AppState) {
    if !state.config.federation.enabled {
        return;
    }
    let mut changes = state.rooms.subscribe();
    let weak = state.weak();
    tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let state = AppState::from_inner(inner);
            if let Err(e) = announce_pending(&state).await {
                tracing::warn!(error = %e, "could not announce device-list changes");
            }
            if state.rooms.is_stopping() {
                return;
            }
            drop(state);
            // Every persisted event bumps the change counter; looking at most a few times a
            // second keeps this off the send path's back while delaying announcements little.
            tokio::time::sleep(CHECK_AT_MOST_EVERY).await;
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
}

async fn announce_pending(state: &AppState) -> Result<()> {
    let announced = state.storage.stream_position(Stream::DeviceListsAnnounced).await?;
    let current = state.storage.stream_position(Stream::DeviceLists).await?;
    if current <= announced {
        return Ok(());
    }
    let us = state.server_name.as_str();
    let mut woken = BTreeSet::new();
    for user_id in state.storage.device_list_changes(announced, current).await? {
        if server_of(&user_id) != us {
            continue;
        }
        woken.extend(announce(state, &user_id, current).await?);
    }
    state.storage.set_stream_position(Stream::DeviceListsAnnounced, current).await?;
    state.outbox.wake(state, &woken.into_iter().collect::<Vec<_>>());
    Ok(())
}

/// Queues an update per device of `user_id` for every other server sharing a room with them;
/// receivers that cannot place it (no `prev_id`) fetch the whole list again.
async fn announce(state: &AppState, user_id: &str, stream_id: i64) -> Result<Vec<String>> {
    let servers = crate::rooms::edus::servers_sharing_a_room_with(state, user_id).await?;
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    let keys = state.storage.device_keys_of_users(&[user_id.to_owned()]).await?;
    let devices = state.storage.devices(user_id).await?;
    for device in &devices {
        let mut content = json!({
            "user_id": user_id,
            "device_id": device.device_id,
            "stream_id": stream_id,
            "prev_id": [],
            "deleted": false,
        });
        if let Some(name) = &device.display_name {
            content["device_display_name"] = json!(name);
        }
        if let Some(row) = keys.iter().find(|k| k.device_id == device.device_id) {
            content["keys"] = row.keys.clone();
        }
        state.storage.queue_edu(&servers, &json!({"edu_type": "m.device_list_update", "content": content})).await?;
    }
    if devices.is_empty() {
        // The last device went: say so with the user's key change.
        let edu = json!({"edu_type": "m.signing_key_update", "content": {"user_id": user_id}});
        state.storage.queue_edu(&servers, &edu).await?;
    }
    Ok(servers)
}
