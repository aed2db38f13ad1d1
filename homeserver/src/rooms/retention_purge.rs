//! The retention purge: expired timeline events go from every room, run periodically and on an
//! admin's request, and redacted originals whose `min_lifetime` hold has ended are erased.
//!
//! Events go in batches of `purge_batch_size`, each its own transaction under the room's send
//! lock, so a long history never sits in memory and writers wait one batch at most. State
//! events, outliers and forward extremities stay (`Storage::purge_history_batch`); an expired
//! extremity is kept for the DAG (the next event's parent) in redacted form, so its content goes
//! too. Media of this server that an expired event names is deleted with it. Afterwards the
//! freed space is reclaimed so the content is gone from the database files
//! (`Storage::reclaim_deleted_space`).

use std::collections::BTreeSet;
use std::time::Duration;

use federation::pdu::rules_for;
use ruma::RoomId;
use serde::Serialize;
use serde_json::Value;

use super::retention::room_policy;
use super::state::{Room, room, to_pdu};
use crate::config::RetentionConfig;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{EventRow, PurgePoint};

/// What one purge run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeSummary {
    pub rooms: u64,
    pub purged_events: u64,
    pub redacted_events: u64,
    pub deleted_media: u64,
    /// Transactions the events were deleted in.
    pub batches: u64,
    /// Redacted events whose held original was erased (their `min_lifetime` had passed).
    pub erased_held_redactions: u64,
    /// SQLite's WAL could not be emptied this time (a reader held it); the next run retries.
    pub wal_checkpoint_busy: bool,
}

impl PurgeSummary {
    fn removed_anything(&self) -> bool {
        self.purged_events + self.redacted_events + self.deleted_media + self.erased_held_redactions > 0
    }
}

/// Purges expired events in every room and erases released redaction holds, then reclaims the
/// freed space. With retention off, no `min_lifetime` applies any more: every hold is erased.
pub async fn purge_expired(state: &AppState) -> Result<PurgeSummary> {
    let mut summary = PurgeSummary::default();
    if !state.config.retention.enabled {
        summary.erased_held_redactions = state.storage.erase_released_holds(i64::MAX).await?;
    } else {
        for room_id in state.storage.all_room_ids().await? {
            let Ok(room_id) = RoomId::parse(&room_id) else { continue };
            let room = room(state, room_id.as_str()).await?;
            let Some(max_lifetime) = room_policy(state, &room).await?.policy.max_lifetime else { continue };
            let max_lifetime = i64::try_from(max_lifetime).unwrap_or(i64::MAX);
            let before_ts = state.now_ms().saturating_sub(max_lifetime);
            let room_summary = purge_room(state, &room, before_ts).await?;
            if room_summary.purged_events + room_summary.redacted_events > 0 {
                summary.rooms += 1;
            }
            summary.purged_events += room_summary.purged_events;
            summary.redacted_events += room_summary.redacted_events;
            summary.deleted_media += room_summary.deleted_media;
            summary.batches += room_summary.batches;
        }
        summary.erased_held_redactions = state.storage.erase_released_holds(state.now_ms()).await?;
    }
    if summary.removed_anything() {
        summary.wal_checkpoint_busy = state.storage.reclaim_deleted_space().await?.wal_busy;
    }
    Ok(summary)
}

/// Removes the room's timeline events sent before `before_ts`, batch by batch.
async fn purge_room(state: &AppState, room: &Room, before_ts: i64) -> Result<PurgeSummary> {
    let room_id = room.row.room_id.as_str();
    let slot = state.rooms.room_lock(&RoomId::parse(room_id).map_err(|e| Error::internal(e.to_string()))?);
    let batch_size = state.config.retention.purge_batch_size;
    let mut summary = PurgeSummary::default();
    loop {
        let mut head = slot.lock().await;
        let point = PurgePoint::BeforeTs(before_ts);
        let batch =
            state.storage.purge_history_batch(room_id, point, state.server_name.as_str(), true, batch_size).await?;
        *head = None;
        drop(head);
        if batch.is_empty() {
            break;
        }
        summary.batches += 1;
        summary.purged_events += batch.len() as u64;
        summary.deleted_media += delete_unnamed_media(state, local_media_ids(state, &batch)).await?;
    }
    // What is left of the expired events are the forward extremities.
    let mut head = slot.lock().await;
    let kept = state.storage.expired_extremities(room_id, before_ts).await?;
    for event in &kept {
        if redact_in_place(state, room, event).await? {
            summary.redacted_events += 1;
        }
    }
    *head = None;
    drop(head);
    summary.deleted_media += delete_unnamed_media(state, local_media_ids(state, &kept)).await?;
    Ok(summary)
}

/// Replaces a kept event with its redacted form (no `redacted_because`: no one redacted it).
/// Returns false when there was no content left to remove.
async fn redact_in_place(state: &AppState, room: &Room, event: &EventRow) -> Result<bool> {
    if event.json.get("content").and_then(Value::as_object).is_none_or(|content| content.is_empty()) {
        return Ok(false);
    }
    let rules = rules_for(&room.version).map_err(|e| Error::internal(e.to_string()))?;
    let redacted = ruma::canonical_json::redact(to_pdu(event)?.json, &rules.redaction, None)
        .map_err(|e| Error::internal(format!("redaction failed: {e}")))?;
    let redacted = serde_json::to_value(&redacted).map_err(|e| Error::internal(e.to_string()))?;
    state.storage.replace_event_json(&event.event_id, &redacted).await?;
    state.storage.delete_relation(&event.event_id).await?;
    state.storage.delete_search_entry(&event.event_id).await?;
    Ok(true)
}

/// The IDs of this server's media the events name (`url`, and `info.thumbnail_url`).
fn local_media_ids(state: &AppState, events: &[EventRow]) -> BTreeSet<String> {
    let prefix = format!("mxc://{}/", state.server_name);
    let mut ids = BTreeSet::new();
    for event in events {
        let content = &event.json["content"];
        for url in [&content["url"], &content["info"]["thumbnail_url"]] {
            if let Some(id) = url.as_str().and_then(|url| url.strip_prefix(&prefix)) {
                ids.insert(id.to_owned());
            }
        }
    }
    ids
}

/// Deletes the media nothing else names: not a user's or a room's avatar (now or once), not in
/// a message or sticker still stored (a forward of the file, say). Returns how many went.
async fn delete_unnamed_media(state: &AppState, mut media: BTreeSet<String>) -> Result<u64> {
    if media.is_empty() {
        return Ok(0);
    }
    let prefix = format!("mxc://{}/", state.server_name);
    let urls: std::collections::HashSet<String> = media.iter().map(|id| format!("{prefix}{id}")).collect();
    let avatars = state.storage.profile_avatar_urls().await?.into_iter().chain(state.storage.room_avatar_urls().await?);
    let named = state.storage.media_urls_still_named(&urls).await?;
    for url in avatars.chain(named) {
        if let Some(id) = url.strip_prefix(&prefix) {
            media.remove(id);
        }
    }
    let media: Vec<String> = media.into_iter().collect();
    Ok(crate::media::admin::delete_local(state, &media).await?.len() as u64)
}

/// Runs the purge every `purge_interval_secs` while the server runs (when retention is on). With
/// retention off it runs once at start, erasing any redaction holds left from when it was on.
pub fn start_purger(state: std::sync::Weak<crate::state::Inner>, config: &RetentionConfig) {
    let every = config.enabled.then(|| Duration::from_secs(config.purge_interval_secs.max(1)));
    tokio::spawn(async move {
        loop {
            if let Some(every) = every {
                tokio::time::sleep(every).await;
            }
            let Some(inner) = state.upgrade() else { return };
            let state = AppState::from_inner(inner);
            if state.rooms.is_stopping() {
                return;
            }
            match purge_expired(&state).await {
                Ok(summary) if summary.removed_anything() => tracing::info!(?summary, "retention purge"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention purge failed"),
            }
            if every.is_none() {
                return;
            }
        }
    });
}
