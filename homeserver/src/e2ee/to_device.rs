//! To-device messages: sent to one device or all of a user's devices, delivered through /sync,
//! and deleted once the device acknowledges them.

use std::collections::BTreeMap;

use ruma::api::client::to_device::send_event_to_device::v3::Messages;
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use serde_json::json;

use super::json_value;
use crate::accounts::Authed;
use crate::error::Result;
use crate::rooms::client_event::to_raw;
use crate::state::AppState;
use crate::storage::NewToDeviceMessage;

/// Most messages one sync delivers; the rest follow in the next sync, which returns at once.
pub const MAX_PER_SYNC: i64 = 100;

/// Queues the messages for local devices. A repeated transaction ID is a no-op, so a retried
/// request is not delivered twice. Messages for other servers' users go to their servers as
/// `m.direct_to_device` EDUs.
pub async fn send(
    state: &AppState,
    authed: &Authed,
    event_type: &str,
    txn_id: &str,
    messages: &Messages,
) -> Result<()> {
    let mut queued = Vec::new();
    let mut remote: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for (user_id, devices) in messages {
        if user_id.server_name() != state.server_name {
            let per_device: serde_json::Map<String, serde_json::Value> = devices
                .iter()
                .map(|(device, content)| Ok((device.to_string(), json_value(content.json())?)))
                .collect::<Result<_>>()?;
            remote.entry(user_id.server_name().to_string()).or_default().insert(user_id.to_string(), per_device.into());
            continue;
        }
        for (device, content) in devices {
            let device_id = match device {
                DeviceIdOrAllDevices::DeviceId(device_id) => Some(device_id.to_string()),
                DeviceIdOrAllDevices::AllDevices => None,
            };
            queued.push(NewToDeviceMessage {
                user_id: user_id.to_string(),
                device_id,
                content: json_value(content.json())?,
            });
        }
    }
    let sender = authed.user_id.as_str();
    let edus: Vec<(String, serde_json::Value)> = if state.config.federation.enabled {
        remote
            .into_iter()
            .map(|(server, messages)| {
                // Unique per sending device and transaction, so the receiver can drop repeats.
                let message_id = format!("{}-{txn_id}", authed.device_id);
                let edu = json!({"edu_type": "m.direct_to_device", "content": {
                    "sender": sender, "type": event_type, "message_id": message_id, "messages": messages,
                }});
                (server, edu)
            })
            .collect()
    } else {
        Vec::new()
    };
    let queued =
        state.storage.queue_to_device(sender, authed.device_id.as_str(), txn_id, event_type, &queued, &edus).await?;
    if queued.is_some_and(|count| count > 0) {
        state.rooms.notify_change();
    }
    if queued.is_some() {
        let destinations: Vec<String> = edus.into_iter().map(|(server, _)| server).collect();
        state.outbox.wake(state, &destinations);
    }
    Ok(())
}

/// Messages for the syncing device after `after` (deleting those up to `after`, which the device
/// has acknowledged by syncing from there) and the position to resume from.
pub async fn for_sync<T>(state: &AppState, authed: &Authed, after: i64, up_to: i64) -> Result<(Vec<Raw<T>>, i64)> {
    let (user_id, device_id) = (authed.user_id.as_str(), authed.device_id.as_str());
    // The messages up to `after` were delivered; those after it are read meanwhile.
    let acknowledge = async {
        if after > 0 {
            state.storage.acknowledge_to_device(user_id, device_id, after).await?;
        }
        Ok::<_, crate::storage::StorageError>(())
    };
    let ((), rows) = tokio::try_join!(
        acknowledge,
        state.storage.to_device_messages(user_id, device_id, after, up_to, MAX_PER_SYNC)
    )?;
    let next = match rows.last() {
        Some(last) if i64::try_from(rows.len()).unwrap_or(i64::MAX) >= MAX_PER_SYNC => last.stream_id,
        _ => up_to,
    };
    // Messages from ignored users are acknowledged with the rest but never shown.
    let ignored = if rows.is_empty() {
        Default::default()
    } else {
        crate::account_data::ignored_users(state, &authed.user_id).await?
    };
    let events = rows
        .into_iter()
        .filter(|row| !ignored.contains(&row.sender))
        .map(|row| to_raw(&json!({"type": row.event_type, "sender": row.sender, "content": row.content})))
        .collect::<Result<_>>()?;
    Ok((events, next))
}
