//! Purging a room's old history as an admin: timeline events before a point go from the
//! database; state events stay, so the room's state and auth chains remain whole.

use ruma::RoomId;

use crate::error::Result;
use crate::state::AppState;
use crate::storage::PurgePoint;

/// Removes the events under the room's send lock, then drops its cached head. Returns how
/// many events went.
pub async fn purge_history(state: &AppState, room_id: &RoomId, point: PurgePoint, delete_local: bool) -> Result<u64> {
    let slot = state.rooms.room_lock(room_id);
    let mut head = slot.lock().await;
    let purged = state.storage.purge_history(room_id.as_str(), point, state.server_name.as_str(), delete_local).await?;
    *head = None;
    Ok(purged)
}
