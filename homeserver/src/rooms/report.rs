//! Users reporting events or rooms to the server's admins.

use ruma::{RoomId, UserId};

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::NewContentReport;

/// Longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 1000;

fn reason_text(reason: Option<&str>) -> Result<Option<&str>> {
    match reason {
        Some(reason) if reason.chars().count() > MAX_REASON_CHARS => {
            Err(Error::invalid_param(format!("The reason may be at most {MAX_REASON_CHARS} characters")))
        }
        other => Ok(other),
    }
}

/// Stores a report of an event the reporter can see; 404 when it does not exist or they cannot.
pub async fn report_event(
    state: &AppState,
    reporter: &UserId,
    room_id: &RoomId,
    event_id: &str,
    reason: Option<&str>,
    score: Option<i64>,
) -> Result<i64> {
    let reason = reason_text(reason)?;
    if score.is_some_and(|score| !(-100..=0).contains(&score)) {
        return Err(Error::invalid_param("score must be an integer from -100 (most offensive) to 0"));
    }
    super::timeline::event(state, reporter, room_id, event_id).await.map_err(|e| match e {
        Error::Matrix { .. } => {
            Error::not_found("Unable to report event: it does not exist or you aren't able to see it")
        }
        other => other,
    })?;
    let report = NewContentReport {
        room_id: room_id.as_str(),
        event_id: Some(event_id),
        user_id: reporter.as_str(),
        reason,
        score,
    };
    Ok(state.storage.add_content_report(&report, state.now_ms()).await?)
}

/// Stores a report of a whole room; 404 when the server does not know the room.
pub async fn report_room(state: &AppState, reporter: &UserId, room_id: &RoomId, reason: &str) -> Result<i64> {
    let reason = reason_text(Some(reason))?;
    state.storage.room(room_id.as_str()).await?.ok_or_else(|| Error::not_found("Room not found"))?;
    let report =
        NewContentReport { room_id: room_id.as_str(), event_id: None, user_id: reporter.as_str(), reason, score: None };
    Ok(state.storage.add_content_report(&report, state.now_ms()).await?)
}
