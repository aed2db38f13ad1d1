//! The erasure's real redactions: the user's messages, and the room name, topic and avatar they
//! set that are still current, are redacted for everyone with `m.room.redaction` events (other
//! servers get them like any other event).

use ruma::{OwnedUserId, RoomId, UserId};

use crate::error::Result;
use crate::rooms::redaction::redact;
use crate::state::AppState;
use crate::storage::EventRow;

/// Messages redacted per page; the job yields between pages so it never holds the room for long.
const PAGE: i64 = 100;

/// State whose content is the sender's own words or picture, not a setting of the room: when
/// current, it is redacted for everyone (the room loses its name, topic or avatar).
pub(super) const AUTHORED_STATE: &[&str] = &["m.room.name", "m.room.topic", "m.room.avatar"];

/// Redacts the user's messages and current authored state in one room: as the user while they
/// are joined (the auth rules let anyone redact their own events), else, or where the room's
/// power levels forbid them, as the joined local member with the highest power level if that
/// member may redact others' events. What nobody here may redact is left to the pruning pass.
pub(super) async fn redact_in_room(state: &AppState, room_id: &RoomId, user_id: &UserId, joined: bool) -> Result<()> {
    let redactor = if joined { Some(user_id.to_owned()) } else { local_moderator(state, room_id, user_id).await? };
    let Some(mut redactor) = redactor else { return Ok(()) };
    let current = current_authored_state(state, room_id, user_id).await?;
    redact_each(state, room_id, user_id, &mut redactor, &current).await?;
    let mut after = i64::MIN;
    loop {
        let page = state.storage.user_messages_page(user_id.as_str(), room_id.as_str(), after, PAGE).await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.stream_ordering;
        redact_each(state, room_id, user_id, &mut redactor, &page).await?;
        tokio::task::yield_now().await;
    }
}

/// Redacts the events not redacted yet; the first refusal hands the job to a local moderator.
/// An event that still cannot be redacted is logged (the pruning pass gets it) and the rest are.
async fn redact_each(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    redactor: &mut OwnedUserId,
    events: &[EventRow],
) -> Result<()> {
    for event in events {
        if event.json.pointer("/unsigned/redacted_because").is_some() || is_bare_redaction(event) {
            continue;
        }
        let event_id = event.event_id.as_str();
        let mut redacted = redact(state, room_id, redactor, event_id, None, None).await;
        if redacted.is_err()
            && *redactor == user_id
            && let Some(moderator) = local_moderator(state, room_id, user_id).await?
        {
            *redactor = moderator;
            redacted = redact(state, room_id, redactor, event_id, None, None).await;
        }
        if let Err(e) = redacted {
            tracing::warn!(%user_id, %room_id, %event_id, error = %e, "could not redact an erased user's event");
        }
    }
    Ok(())
}

/// The room's current name, topic and avatar events the user sent.
async fn current_authored_state(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<Vec<EventRow>> {
    let Some(room) = state.storage.room(room_id.as_str()).await? else { return Ok(Vec::new()) };
    let Some(group) = room.current_state_group else { return Ok(Vec::new()) };
    let keys: Vec<(String, String)> = AUTHORED_STATE.iter().map(|t| ((*t).to_owned(), String::new())).collect();
    let ids: Vec<String> = state.storage.state_entries_at_group(group, &keys).await?.into_values().collect();
    let events = state.storage.events_by_id(&ids).await?;
    Ok(events.into_iter().filter(|e| e.sender == user_id.as_str()).collect())
}

/// The joined local member (other than the user) with the highest power level, if that level
/// lets them redact others' events.
async fn local_moderator(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<Option<OwnedUserId>> {
    if state.storage.room(room_id.as_str()).await?.is_none_or(|room| room.current_state_group.is_none()) {
        return Ok(None);
    }
    let room = crate::rooms::state::room(state, room_id.as_str()).await?;
    let levels = crate::rooms::state::power_levels(state, &room).await?;
    let members = state.storage.room_memberships(room_id.as_str()).await?;
    let best = members
        .iter()
        .filter(|m| m.membership == "join" && m.user_id != user_id.as_str())
        .filter_map(|m| OwnedUserId::try_from(m.user_id.as_str()).ok())
        .filter(|u| u.server_name() == state.server_name)
        .max_by_key(|u| levels.user_level(u.as_str()));
    Ok(best.filter(|u| levels.user_level(u.as_str()) >= levels.redact()))
}

/// A redaction without a reason holds nothing of the user's (this job's own are such), so it is
/// left alone; one with a reason is redacted in turn.
pub(super) fn is_bare_redaction(event: &EventRow) -> bool {
    event.event_type == "m.room.redaction" && event.json.pointer("/content/reason").is_none()
}
