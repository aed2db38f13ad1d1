//! Walking the room DAG backwards through `prev_events`, one query per generation: what
//! `/backfill` and `/get_missing_events` answer with.

use std::collections::HashSet;

use crate::error::Result;
use crate::state::AppState;
use crate::storage::EventRow;

/// The most events one walk returns.
pub const MAX_EVENTS: usize = 100;

fn prev_event_ids(row: &EventRow) -> Vec<String> {
    row.json["prev_events"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Accepted events of `room_id` reached backwards from `start` (included when
/// `include_start`), not going past `stop` or below `min_depth`, at most `limit`; deepest first.
pub async fn preceding(
    state: &AppState,
    room_id: &str,
    start: Vec<String>,
    include_start: bool,
    stop: &HashSet<String>,
    limit: usize,
    min_depth: i64,
) -> Result<Vec<EventRow>> {
    let limit = limit.min(MAX_EVENTS);
    let mut seen: HashSet<String> = stop.clone();
    let mut found = Vec::new();
    let mut level: Vec<String> = if include_start {
        start
    } else {
        let rows = state.storage.events_by_id(&start).await?;
        rows.iter().filter(|row| row.room_id == room_id).flat_map(prev_event_ids).collect()
    };
    while !level.is_empty() && found.len() < limit {
        let ids: Vec<String> = level.drain(..).filter(|id| seen.insert(id.clone())).collect();
        if ids.is_empty() {
            break;
        }
        let mut rows = state.storage.events_by_id(&ids).await?;
        rows.retain(|row| row.room_id == room_id && row.rejected_reason.is_none() && row.depth >= min_depth);
        rows.sort_by_key(|row| std::cmp::Reverse(row.depth));
        for row in rows {
            if found.len() == limit {
                break;
            }
            level.extend(prev_event_ids(&row));
            found.push(row);
        }
    }
    found.sort_by(|a, b| b.depth.cmp(&a.depth).then(b.stream_ordering.cmp(&a.stream_ordering)));
    Ok(found)
}
