//! Relations: `/relations` (children of an event), `/threads` (thread roots by latest activity),
//! and the aggregations bundled into events' `unsigned.m.relations`.

use std::collections::HashMap;

use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use super::client_event::client_event;
use super::timeline::{filter_visible, format_token, parse_token};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{Order, RelationQuery};

/// How deep `recurse` follows relations of relations.
const MAX_DEPTH: usize = 3;
/// Most events one page returns.
const MAX_PAGE: i64 = 100;

/// Adds `unsigned.m.relations` to client-format events that have threads, edits or references.
pub async fn bundle(state: &AppState, user_id: &UserId, events: &mut [Value]) -> Result<()> {
    let ids: Vec<String> = events.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect();
    let bundled = bundled(state, user_id, &ids).await?;
    for event in events.iter_mut() {
        let Some(relations) = event["event_id"].as_str().and_then(|id| bundled.get(id)).cloned() else { continue };
        if !event["unsigned"].is_object() {
            event["unsigned"] = json!({});
        }
        event["unsigned"]["m.relations"] = relations;
    }
    Ok(())
}

/// `unsigned.m.relations` of the events that have threads, edits or references, by event ID.
pub async fn bundled(state: &AppState, user_id: &UserId, event_ids: &[String]) -> Result<HashMap<String, Value>> {
    let aggregations = state.storage.aggregations(user_id.as_str(), event_ids).await?;
    if aggregations.is_empty() {
        return Ok(HashMap::new());
    }
    let needed: Vec<String> = aggregations
        .values()
        .flat_map(|a| a.thread.iter().map(|(_, latest, _)| latest.clone()).chain(a.latest_edit.clone()))
        .collect();
    let now = state.now_ms();
    let related: HashMap<String, Value> = state
        .storage
        .events_by_id(&needed)
        .await?
        .iter()
        .map(|row| (row.event_id.clone(), client_event(row, now, true, None)))
        .collect();
    let mut bundled = HashMap::with_capacity(aggregations.len());
    for (event_id, aggregation) in aggregations {
        let mut relations = serde_json::Map::new();
        if let Some((count, latest, participated)) = &aggregation.thread
            && let Some(latest_event) = related.get(latest)
        {
            relations.insert(
                "m.thread".into(),
                json!({"latest_event": latest_event, "count": count, "current_user_participated": participated}),
            );
        }
        if let Some(edit) = aggregation.latest_edit.as_ref().and_then(|id| related.get(id)) {
            relations.insert("m.replace".into(), edit.clone());
        }
        if !aggregation.references.is_empty() {
            let chunk: Vec<Value> = aggregation.references.iter().map(|id| json!({"event_id": id})).collect();
            relations.insert("m.reference".into(), json!({"chunk": chunk}));
        }
        if !relations.is_empty() {
            bundled.insert(event_id, Value::Object(relations));
        }
    }
    Ok(bundled)
}

/// A `/relations` request.
pub struct RelationsRequest<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub limit: Option<u64>,
    pub forwards: bool,
    pub recurse: bool,
}

pub struct RelationsPage {
    pub chunk: Vec<Value>,
    pub next_batch: Option<String>,
    pub recursion_depth: Option<u64>,
}

/// Events relating to `event_id` (and, with `recurse`, to those, up to three levels), newest
/// first unless `forwards`. Tokens are stream positions, as in `/messages`.
pub async fn relations(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    event_id: &str,
    request: RelationsRequest<'_>,
) -> Result<RelationsPage> {
    let parent = state.storage.event(event_id).await?.filter(|e| e.room_id == room_id.as_str());
    let parent = parent.ok_or_else(|| Error::not_found("Event not found"))?;
    if filter_visible(state, user_id, vec![parent]).await?.is_empty() {
        return Err(Error::not_found("Event not found"));
    }
    let limit = request.limit.map_or(50, |l| i64::try_from(l).unwrap_or(MAX_PAGE)).clamp(1, MAX_PAGE);
    let from = request.from.map(parse_token).transpose()?;
    let to = request.to.map(parse_token).transpose()?;
    // Positions are inclusive in tokens ("up to and including"), as for /sync and /messages.
    let (after, before, order) = if request.forwards {
        (from.unwrap_or(0), to.map_or(i64::MAX, |t| t.saturating_add(1)), Order::OldestFirst)
    } else {
        (to.unwrap_or(0), from.map_or(i64::MAX, |f| f.saturating_add(1)), Order::NewestFirst)
    };
    let page = RelationQuery {
        rel_type: request.rel_type,
        event_type: request.event_type,
        after,
        before,
        limit: limit + 1,
        order,
    };

    // With `recurse`, walk down level by level (bounded); the page is then taken over the
    // children of every event above the deepest level found.
    let mut parents = vec![event_id.to_owned()];
    let mut depth = 1;
    if request.recurse {
        let everything =
            RelationQuery { rel_type: None, event_type: None, after: 0, before: i64::MAX, limit: 1000, order };
        let mut level = parents.clone();
        let mut levels_found = 0;
        while levels_found < MAX_DEPTH {
            let children: Vec<String> =
                state.storage.relations(&level, everything).await?.into_iter().map(|r| r.event_id).collect();
            if children.is_empty() {
                break;
            }
            levels_found += 1;
            if levels_found < MAX_DEPTH {
                parents.extend(children.iter().cloned());
            }
            level = children;
        }
        depth = levels_found.max(1);
    }
    let mut rows = state.storage.relations(&parents, page).await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_batch = more
        .then(|| rows.last())
        .flatten()
        .map(|last| format_token(if request.forwards { last.stream_ordering } else { last.stream_ordering - 1 }));
    let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    let chunk = visible_in_order(state, user_id, room_id, &ids).await?;
    Ok(RelationsPage { chunk, next_batch, recursion_depth: request.recurse.then_some(depth as u64) })
}

/// Thread roots of a room, most recently active first; `participated` keeps the threads the
/// user started or replied in.
pub async fn threads(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    participated: bool,
    from: Option<&str>,
    limit: Option<u64>,
) -> Result<(Vec<Value>, Option<String>)> {
    let limit = limit.map_or(20, |l| i64::try_from(l).unwrap_or(MAX_PAGE)).clamp(1, MAX_PAGE);
    let before = from.map(parse_token).transpose()?.map_or(i64::MAX, |f| f.saturating_add(1));
    let participant = participated.then_some(user_id.as_str());
    let mut roots = state.storage.threads(room_id.as_str(), participant, before, limit + 1).await?;
    let more = i64::try_from(roots.len()).unwrap_or(i64::MAX) > limit;
    roots.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_batch = more.then(|| roots.last()).flatten().map(|(_, latest)| format_token(latest - 1));
    let ids: Vec<String> = roots.iter().map(|(id, _)| id.clone()).collect();
    let chunk = visible_in_order(state, user_id, room_id, &ids).await?;
    Ok((chunk, next_batch))
}

/// These events of the room in the given order, as the user may see them, with aggregations.
/// (A relation can only point into its own room; others are dropped.)
async fn visible_in_order(state: &AppState, user_id: &UserId, room_id: &RoomId, ids: &[String]) -> Result<Vec<Value>> {
    let mut events = state.storage.events_by_id(ids).await?;
    events.retain(|e| e.room_id == room_id.as_str());
    let position: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    events.sort_by_key(|e| position.get(e.event_id.as_str()).copied().unwrap_or(usize::MAX));
    let visible = filter_visible(state, user_id, events).await?;
    let now = state.now_ms();
    let mut chunk: Vec<Value> = visible.iter().map(|row| client_event(row, now, true, None)).collect();
    bundle(state, user_id, &mut chunk).await?;
    Ok(chunk)
}
