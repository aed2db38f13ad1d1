//! Message retention (MSC1763): each room's effective policy (the server default or the room's
//! `m.room.retention` event, clamped to the allowed range), and the purge of expired timeline
//! events, run periodically and on an admin's request.
//!
//! The purge reuses the admin history purge (`Storage::purge_history`): state events, outliers
//! and forward extremities stay. An expired extremity is kept for the DAG (the next event's
//! parent) in redacted form, so its content goes too. Media of this server that an expired
//! event names is deleted with it. Afterwards the freed space is reclaimed so the content is
//! gone from the database files (`Storage::reclaim_deleted_space`).

use std::collections::BTreeSet;
use std::time::Duration;

use federation::pdu::rules_for;
use ruma::RoomId;
use serde::Serialize;
use serde_json::Value;

use super::state::{Room, current_state_content, room, to_pdu};
use crate::config::RetentionConfig;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{EventRow, PurgePoint};

pub const RETENTION_EVENT: &str = "m.room.retention";

/// A room's lifetimes in force, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Events younger than this are kept whatever `max_lifetime` says.
    pub min_lifetime: Option<u64>,
    /// Events older than this are purged; `None` keeps them forever.
    pub max_lifetime: Option<u64>,
}

/// The policy from the server's configuration and the room's `m.room.retention` content.
/// Lifetimes are clamped to the allowed range; a `max_lifetime` below `min_lifetime` is raised
/// to it. With retention off nothing expires.
pub fn effective_policy(config: &RetentionConfig, room_content: Option<&Value>) -> Policy {
    if !config.enabled {
        return Policy::default();
    }
    let lifetime = |key: &str| room_content.and_then(|content| content.get(key)).and_then(Value::as_u64);
    let clamp = |ms: u64| {
        let ms = ms.max(config.allowed_min_lifetime_ms);
        if config.allowed_max_lifetime_ms == 0 { ms } else { ms.min(config.allowed_max_lifetime_ms) }
    };
    let min_lifetime = lifetime("min_lifetime").map(clamp);
    let default_max = Some(config.default_max_lifetime_ms).filter(|&ms| ms > 0);
    let max_lifetime = lifetime("max_lifetime").or(default_max).map(clamp);
    let max_lifetime = match (min_lifetime, max_lifetime) {
        (Some(min), Some(max)) => Some(max.max(min)),
        (_, max) => max,
    };
    Policy { min_lifetime, max_lifetime }
}

/// The room's `m.room.retention` content, if it has one.
pub async fn room_policy_content(state: &AppState, room: &Room) -> Result<Option<Value>> {
    current_state_content(state, room, RETENTION_EVENT, "").await
}

/// The effective policy of a room.
pub async fn room_policy(state: &AppState, room: &Room) -> Result<Policy> {
    Ok(effective_policy(&state.config.retention, room_policy_content(state, room).await?.as_ref()))
}

/// What one purge run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeSummary {
    pub rooms: u64,
    pub purged_events: u64,
    pub redacted_events: u64,
    pub deleted_media: u64,
    /// SQLite's WAL could not be emptied this time (a reader held it); the next run retries.
    pub wal_checkpoint_busy: bool,
}

/// Purges expired events in every room, then reclaims the freed space.
pub async fn purge_expired(state: &AppState) -> Result<PurgeSummary> {
    let mut summary = PurgeSummary::default();
    if !state.config.retention.enabled {
        return Ok(summary);
    }
    for room_id in state.storage.all_room_ids().await? {
        let Ok(room_id) = RoomId::parse(&room_id) else { continue };
        let room = room(state, room_id.as_str()).await?;
        let Some(max_lifetime) = room_policy(state, &room).await?.max_lifetime else { continue };
        let max_lifetime = i64::try_from(max_lifetime).unwrap_or(i64::MAX);
        let before_ts = state.now_ms().saturating_sub(max_lifetime);
        let room_summary = purge_room(state, &room, before_ts).await?;
        if room_summary.purged_events + room_summary.redacted_events > 0 {
            summary.rooms += 1;
        }
        summary.purged_events += room_summary.purged_events;
        summary.redacted_events += room_summary.redacted_events;
        summary.deleted_media += room_summary.deleted_media;
    }
    if summary.purged_events + summary.redacted_events + summary.deleted_media > 0 {
        summary.wal_checkpoint_busy = state.storage.reclaim_deleted_space().await?.wal_busy;
    }
    Ok(summary)
}

/// Removes the room's timeline events sent before `before_ts` under its send lock.
async fn purge_room(state: &AppState, room: &Room, before_ts: i64) -> Result<PurgeSummary> {
    let room_id = room.row.room_id.as_str();
    let slot = state.rooms.room_lock(&RoomId::parse(room_id).map_err(|e| Error::internal(e.to_string()))?);
    let mut head = slot.lock().await;
    let expired = state.storage.timeline_events_before_ts(room_id, before_ts).await?;
    if expired.is_empty() {
        return Ok(PurgeSummary::default());
    }
    let media = local_media_ids(state, &expired);
    let purged_events =
        state.storage.purge_history(room_id, PurgePoint::BeforeTs(before_ts), state.server_name.as_str(), true).await?;
    // What is left of the expired events are the forward extremities.
    let ids: Vec<String> = expired.iter().map(|event| event.event_id.clone()).collect();
    let mut redacted_events = 0;
    for kept in state.storage.events_by_id(&ids).await? {
        if redact_in_place(state, room, &kept).await? {
            redacted_events += 1;
        }
    }
    *head = None;
    drop(head);
    let media = named_by_nothing_else(state, media).await?;
    let deleted_media = crate::media::admin::delete_local(state, &media).await?;
    Ok(PurgeSummary {
        purged_events,
        redacted_events,
        deleted_media: deleted_media.len() as u64,
        ..PurgeSummary::default()
    })
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

/// Keeps only the media nothing else names: not a user's or a room's avatar (now or once), not in
/// a message or sticker still stored (a forward of the file, say).
async fn named_by_nothing_else(state: &AppState, mut media: BTreeSet<String>) -> Result<Vec<String>> {
    if media.is_empty() {
        return Ok(Vec::new());
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
    Ok(media.into_iter().collect())
}

/// Runs the purge every `purge_interval_secs` while the server runs (when retention is on).
pub fn start_purger(state: std::sync::Weak<crate::state::Inner>, config: &RetentionConfig) {
    if !config.enabled {
        return;
    }
    let every = Duration::from_secs(config.purge_interval_secs.max(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = state.upgrade() else { return };
            let state = AppState::from_inner(inner);
            if state.rooms.is_stopping() {
                return;
            }
            match purge_expired(&state).await {
                Ok(summary) if summary.purged_events + summary.redacted_events > 0 => {
                    tracing::info!(?summary, "retention purge");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention purge failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(default_max: u64, allowed_min: u64, allowed_max: u64) -> RetentionConfig {
        RetentionConfig {
            enabled: true,
            default_max_lifetime_ms: default_max,
            allowed_min_lifetime_ms: allowed_min,
            allowed_max_lifetime_ms: allowed_max,
            purge_interval_secs: 60,
        }
    }

    #[test]
    fn off_means_nothing_expires() {
        let off = RetentionConfig { enabled: false, ..config(1000, 0, 0) };
        assert_eq!(effective_policy(&off, Some(&json!({"max_lifetime": 5}))), Policy::default());
    }

    #[test]
    fn the_room_overrides_the_default_within_the_allowed_range() {
        let config = config(10_000, 1_000, 100_000);
        assert_eq!(effective_policy(&config, None).max_lifetime, Some(10_000));
        assert_eq!(effective_policy(&config, Some(&json!({"max_lifetime": 5_000}))).max_lifetime, Some(5_000));
        assert_eq!(effective_policy(&config, Some(&json!({"max_lifetime": 10}))).max_lifetime, Some(1_000));
        assert_eq!(effective_policy(&config, Some(&json!({"max_lifetime": 1u64 << 40}))).max_lifetime, Some(100_000));
        // Not a number: the default applies.
        assert_eq!(effective_policy(&config, Some(&json!({"max_lifetime": "soon"}))).max_lifetime, Some(10_000));
    }

    #[test]
    fn min_lifetime_wins_over_a_shorter_max_lifetime() {
        let policy = effective_policy(&config(0, 0, 0), Some(&json!({"min_lifetime": 7_000, "max_lifetime": 2_000})));
        assert_eq!(policy, Policy { min_lifetime: Some(7_000), max_lifetime: Some(7_000) });
    }

    #[test]
    fn no_default_and_no_room_policy_keeps_forever() {
        assert_eq!(effective_policy(&config(0, 0, 0), Some(&json!({"min_lifetime": 5}))).max_lifetime, None);
    }
}
