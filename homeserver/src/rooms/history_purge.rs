//! Purging a room's old history as an admin: timeline events before a point go from the
//! database; state events stay, so the room's state and auth chains remain whole.

use ruma::RoomId;

use crate::error::Result;
use crate::state::AppState;
use crate::storage::PurgePoint;

/// Removes the events in batches (`retention.purge_batch_size` per transaction), each under the
/// room's send lock, dropping its cached head after each. Returns how many events went.
pub async fn purge_history(state: &AppState, room_id: &RoomId, point: PurgePoint, delete_local: bool) -> Result<u64> {
    let slot = state.rooms.room_lock(room_id);
    let batch_size = state.config.retention.purge_batch_size;
    let mut purged = 0;
    loop {
        let mut head = slot.lock().await;
        let batch = state
            .storage
            .purge_history_batch(room_id.as_str(), point, state.server_name.as_str(), delete_local, batch_size)
            .await?;
        *head = None;
        if batch.is_empty() {
            return Ok(purged);
        }
        purged += batch.len() as u64;
    }
}
