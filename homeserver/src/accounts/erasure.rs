//! Erasure (deactivation with `erase`): the user's messages are redacted for everyone, they
//! leave every room, their media, profile and the rest of their data are deleted.
//!
//! The work can be long (one redaction per message), so it runs as a background job after the
//! deactivation: queued in `user_erasures` first, so a restart resumes it (every step is
//! idempotent). Redactions are sent as the user while still joined, since the auth rules let
//! anyone redact their own events.

use ruma::{OwnedRoomId, OwnedUserId, UserId};

use crate::error::Result;
use crate::state::AppState;
use crate::storage::ProfileField;

/// Messages redacted per page; the job yields between pages so it never holds the room for long.
const PAGE: i64 = 100;

/// Queues the erasure and starts it. The caller has already deactivated the account. An
/// erasure already queued is running (or resumes at the next start): it is not started twice.
pub async fn start(state: &AppState, user_id: &UserId) -> Result<()> {
    state.access_log.forget_user(user_id.as_str());
    // The profile goes at once: it is public and cheap to clear.
    for field in [ProfileField::DisplayName, ProfileField::AvatarUrl] {
        state.storage.set_profile_field(user_id.as_str(), field, None).await?;
    }
    if state.storage.insert_erasure(user_id.as_str(), state.now_ms()).await? {
        spawn(state, user_id.to_owned());
    }
    Ok(())
}

/// At start: resumes erasures a previous run left unfinished.
pub async fn resume(state: &AppState) {
    match state.storage.pending_erasures().await {
        Ok(pending) => {
            for user_id in pending {
                match OwnedUserId::try_from(user_id.as_str()) {
                    Ok(user_id) => {
                        state.access_log.forget_user(user_id.as_str());
                        spawn(state, user_id);
                    }
                    Err(e) => tracing::error!(%user_id, error = %e, "cannot resume the erasure of an invalid user ID"),
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "could not read the pending erasures"),
    }
}

fn spawn(state: &AppState, user_id: OwnedUserId) {
    let state = state.clone();
    tokio::spawn(async move {
        match erase(&state, &user_id).await {
            Ok(()) => tracing::info!(%user_id, "erased a deactivated user's data"),
            Err(e) => tracing::error!(%user_id, error = %e, "erasure failed; it is retried at the next start"),
        }
    });
}

async fn erase(state: &AppState, user_id: &UserId) -> Result<()> {
    let memberships = state.storage.memberships_of_user(user_id.as_str()).await?;
    let mut rooms = Vec::new();
    for membership in &memberships {
        let Ok(room_id) = OwnedRoomId::try_from(membership.room_id.as_str()) else { continue };
        if membership.membership == "join" {
            redact_messages(state, &room_id, user_id).await?;
        }
        rooms.push((room_id, membership.membership.clone()));
    }
    // Cleared before leaving, so the leave events carry no name or avatar.
    state.storage.purge_user_content(user_id.as_str()).await?;
    for (room_id, membership) in rooms {
        if !matches!(membership.as_str(), "join" | "invite" | "knock") {
            continue;
        }
        if let Err(e) = crate::rooms::membership::leave(state, &room_id, user_id, None).await {
            tracing::warn!(%user_id, %room_id, error = %e, "an erased user could not leave a room");
        }
    }
    delete_media(state, user_id).await?;
    // Entries written while the job ran (the deactivation request itself) go too.
    state.access_log.flush().await;
    state.storage.purge_user_content(user_id.as_str()).await?;
    state.storage.compact_search_index().await?;
    state.storage.delete_erasure(user_id.as_str()).await?;
    state.rooms.notify_change();
    Ok(())
}

/// Redacts the user's messages in one room, page by page. Messages already redacted are skipped.
/// Where the room's power levels forbid the user redactions, a local member who may redact
/// others' events does it; a message that still cannot be redacted is logged and the rest still
/// are.
async fn redact_messages(state: &AppState, room_id: &OwnedRoomId, user_id: &UserId) -> Result<()> {
    let mut redactor: OwnedUserId = user_id.to_owned();
    let mut after = i64::MIN;
    loop {
        let page = state.storage.user_messages_page(user_id.as_str(), room_id.as_str(), after, PAGE).await?;
        let Some((last, _)) = page.last() else { return Ok(()) };
        after = *last;
        for (_, event_id) in &page {
            let Some(event) = state.storage.event(event_id).await? else { continue };
            if event.json.pointer("/unsigned/redacted_because").is_some() || is_bare_redaction(&event) {
                continue;
            }
            let mut redacted = crate::rooms::redaction::redact(state, room_id, &redactor, event_id, None, None).await;
            if redacted.is_err()
                && redactor == user_id
                && let Some(moderator) = local_moderator(state, room_id, user_id).await?
            {
                redactor = moderator;
                redacted = crate::rooms::redaction::redact(state, room_id, &redactor, event_id, None, None).await;
            }
            if let Err(e) = redacted {
                tracing::warn!(%user_id, %room_id, %event_id, error = %e, "could not redact an erased user's event");
            }
        }
        tokio::task::yield_now().await;
    }
}

/// The joined local member (other than the user) with the highest power level, if that level
/// lets them redact others' events.
async fn local_moderator(state: &AppState, room_id: &OwnedRoomId, user_id: &UserId) -> Result<Option<OwnedUserId>> {
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
fn is_bare_redaction(event: &crate::storage::EventRow) -> bool {
    event.event_type == "m.room.redaction" && event.json.pointer("/content/reason").is_none()
}

/// Deletes the user's uploads (content, thumbnails and metadata), as the admin media API does.
async fn delete_media(state: &AppState, user_id: &UserId) -> Result<()> {
    let ids = state.storage.user_media_ids(state.server_name.as_str(), user_id.as_str()).await?;
    crate::media::admin::delete_local(state, &ids).await?;
    Ok(())
}
