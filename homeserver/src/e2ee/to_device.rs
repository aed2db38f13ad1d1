//! To-device messages: sent to one device or all of a user's devices, delivered through /sync,
//! and deleted once the device acknowledges them.

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
/// request is not delivered twice. Messages for other servers' users are dropped until
/// federation exists.
pub async fn send(
    state: &AppState,
    authed: &Authed,
    event_type: &str,
    txn_id: &str,
    messages: &Messages,
) -> Result<()> {
    let mut queued = Vec::new();
    for (user_id, devices) in messages {
        if user_id.server_name() != state.server_name {
            tracing::debug!(server = %user_id.server_name(), "dropping to-device message for a remote user");
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
    let count = state.storage.queue_to_device(sender, authed.device_id.as_str(), txn_id, event_type, &queued).await?;
    if count > 0 {
        state.rooms.notify_change();
    }
    Ok(())
}

/// Messages for the syncing device after `after` (deleting those up to `after`, which the device
/// has acknowledged by syncing from there) and the position to resume from.
pub async fn for_sync<T>(state: &AppState, authed: &Authed, after: i64, up_to: i64) -> Result<(Vec<Raw<T>>, i64)> {
    let (user_id, device_id) = (authed.user_id.as_str(), authed.device_id.as_str());
    if after > 0 {
        state.storage.acknowledge_to_device(user_id, device_id, after).await?;
    }
    let rows = state.storage.to_device_messages(user_id, device_id, after, up_to, MAX_PER_SYNC).await?;
    let next = match rows.last() {
        Some(last) if i64::try_from(rows.len()).unwrap_or(i64::MAX) >= MAX_PER_SYNC => last.stream_id,
        _ => up_to,
    };
    let events = rows
        .into_iter()
        .map(|row| to_raw(&json!({"type": row.event_type, "sender": row.sender, "content": row.content})))
        .collect::<Result<_>>()?;
    Ok((events, next))
}
