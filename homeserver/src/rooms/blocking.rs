//! Blocked rooms: no one may join, be invited to or knock on a room an admin blocked, here or
//! over federation. Leaving stays possible.

use crate::error::{Error, Result};
use crate::state::AppState;

/// 403 `M_FORBIDDEN` when the room is blocked.
pub async fn refuse_if_blocked(state: &AppState, room_id: &str) -> Result<()> {
    if state.storage.room_blocked_by(room_id).await?.is_some() {
        return Err(Error::forbidden("This room has been blocked on this server"));
    }
    Ok(())
}
