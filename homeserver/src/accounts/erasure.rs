//! Erasure (deactivation with `erase`): the user's messages are redacted for everyone, they
//! leave every room, what no redaction reached is pruned locally, and their media, profile and
//! the rest of their data are deleted.
//!
//! The work can be long (one redaction per message), so it runs as a background job after the
//! deactivation: queued in `user_erasures` first, so a restart resumes it (every step is
//! idempotent). The steps: real redactions ([`redactions`]), leaving, local pruning
//! ([`pruning`]), then deleting the rest.

mod pruning;
mod redactions;

use ruma::{OwnedRoomId, OwnedUserId, UserId};

use crate::error::Result;
use crate::state::AppState;
use crate::storage::ProfileField;

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
    let memberships = state.storage.erasure_rooms(user_id.as_str()).await?;
    let rooms: Vec<(OwnedRoomId, String)> = memberships
        .into_iter()
        .filter_map(|(room_id, membership)| Some((OwnedRoomId::try_from(room_id).ok()?, membership)))
        .collect();
    for (room_id, membership) in &rooms {
        redactions::redact_in_room(state, room_id, user_id, membership == "join").await?;
    }
    // Cleared before leaving, so the leave events carry no name or avatar.
    state.storage.purge_user_content(user_id.as_str()).await?;
    for (room_id, membership) in &rooms {
        if !matches!(membership.as_str(), "join" | "invite" | "knock") {
            continue;
        }
        if let Err(e) = crate::rooms::membership::leave(state, room_id, user_id, None).await {
            tracing::warn!(%user_id, %room_id, error = %e, "an erased user could not leave a room");
        }
    }
    // After leaving: their last join is then an old member event, pruned like the others.
    for (room_id, _) in &rooms {
        let pruned = pruning::prune_leftovers(state, room_id, user_id).await?;
        if pruned > 0 {
            tracing::info!(%user_id, %room_id, pruned, "pruned an erased user's events no redaction reached");
        }
    }
    delete_media(state, user_id).await?;
    // Entries written while the job ran (the deactivation request itself) go too.
    state.access_log.flush().await;
    state.storage.purge_user_content(user_id.as_str()).await?;
    // Rewrites the search index and empties the WAL (SQLite) or vacuums (PostgreSQL), so the old
    // page images holding the content leave the files too.
    if state.storage.reclaim_deleted_space().await?.wal_busy {
        tracing::warn!(%user_id, "the WAL could not be emptied after an erasure (a reader was busy); the next checkpoint does it");
    }
    state.storage.delete_erasure(user_id.as_str()).await?;
    state.rooms.notify_change();
    Ok(())
}

/// Deletes the user's uploads (content, thumbnails and metadata), as the admin media API does.
async fn delete_media(state: &AppState, user_id: &UserId) -> Result<()> {
    let ids = state.storage.user_media_ids(state.server_name.as_str(), user_id.as_str()).await?;
    crate::media::admin::delete_local(state, &ids).await?;
    Ok(())
}
