//! Read receipts and read markers.

use ruma::{RoomId, UserId};
use serde_json::json;

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::NewReceipt;

/// Which receipt a client posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Read,
    ReadPrivate,
    /// The `m.fully_read` marker, kept as room account data.
    FullyRead,
}

/// Records a receipt (or the fully-read marker) for an event the user can see in the room.
pub async fn post(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    kind: ReceiptKind,
    event_id: &str,
    thread_id: Option<&str>,
) -> Result<()> {
    crate::rooms::membership::require_joined(state, room_id, user_id).await?;
    // The event must be one the user can see in this room.
    crate::rooms::timeline::event(state, user_id, room_id, event_id).await?;
    match kind {
        ReceiptKind::FullyRead => {
            let content = json!({"event_id": event_id});
            state.storage.set_account_data(user_id.as_str(), room_id.as_str(), "m.fully_read", &content).await?;
        }
        ReceiptKind::Read | ReceiptKind::ReadPrivate => {
            let receipt_type = if kind == ReceiptKind::Read { "m.read" } else { "m.read.private" };
            state
                .storage
                .set_receipt(NewReceipt {
                    room_id: room_id.as_str(),
                    user_id: user_id.as_str(),
                    receipt_type,
                    thread_id: thread_id.unwrap_or(""),
                    event_id,
                    ts: state.now_ms(),
                })
                .await?;
            if kind == ReceiptKind::Read {
                // Public receipts are shown to everyone in the room, on every server.
                crate::rooms::edus::send_receipt(state, room_id, user_id, event_id, thread_id).await?;
            }
        }
    }
    state.rooms.notify_change();
    Ok(())
}

/// `POST /read_markers`: any of the fully-read marker and the public and private receipts.
pub async fn set_markers(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    markers: &[(ReceiptKind, Option<&str>)],
) -> Result<()> {
    if markers.iter().all(|(_, event)| event.is_none()) {
        return Err(Error::missing_param("Give at least one of m.fully_read, m.read, m.read.private"));
    }
    for (kind, event_id) in markers {
        if let Some(event_id) = event_id {
            post(state, user_id, room_id, *kind, event_id, None).await?;
        }
    }
    Ok(())
}
