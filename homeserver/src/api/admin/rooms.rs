//! Rooms: list (sorted, searched, paged), details, members and state.

use std::cmp::Ordering;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminQuery, Page, backwards, json};
use crate::api::PathParams;
use crate::error::{Error, Result};
use crate::rooms::client_event::client_event;
use crate::rooms::summary::{self, RoomSummary};
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/rooms", get(list))
        .route("/_synapse/admin/v1/rooms/{room_id}", get(details))
        .route("/_synapse/admin/v1/rooms/{room_id}/members", get(members))
        .route("/_synapse/admin/v1/rooms/{room_id}/state", get(room_state))
}

fn summary_json(room: &RoomSummary) -> Value {
    json!({
        "room_id": room.room_id,
        "name": room.name,
        "canonical_alias": room.canonical_alias,
        "joined_members": room.joined_members,
        "joined_local_members": room.joined_local_members,
        "version": room.version,
        "creator": room.creator,
        "encryption": room.encryption,
        "federatable": room.federatable,
        "public": room.public,
        "join_rules": room.join_rules,
        "guest_access": room.guest_access,
        "history_visibility": room.history_visibility,
        "state_events": room.state_events,
        "room_type": room.room_type,
    })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    from: Option<String>,
    limit: Option<i64>,
    order_by: Option<String>,
    dir: Option<String>,
    search_term: Option<String>,
}

/// Orders two optional texts with missing values last, as SQL's `NULLS LAST`.
fn by_text(a: &Option<String>, b: &Option<String>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

type Comparator = fn(&RoomSummary, &RoomSummary) -> Ordering;

fn comparator(order_by: Option<&str>) -> Result<Comparator> {
    Ok(match order_by {
        None | Some("name" | "alphabetical") => |a, b| by_text(&a.name, &b.name),
        Some("size" | "joined_members") => |a, b| b.joined_members.cmp(&a.joined_members),
        Some("joined_local_members") => |a, b| b.joined_local_members.cmp(&a.joined_local_members),
        Some("canonical_alias") => |a, b| by_text(&a.canonical_alias, &b.canonical_alias),
        Some("version") => |a, b| a.version.cmp(&b.version),
        Some("creator") => |a, b| a.creator.cmp(&b.creator),
        Some("state_events") => |a, b| b.state_events.cmp(&a.state_events),
        Some("public") => |a, b| b.public.cmp(&a.public),
        Some("encryption") => |a, b| by_text(&a.encryption, &b.encryption),
        Some("federatable") => |a, b| b.federatable.cmp(&a.federatable),
        Some("join_rules") => |a, b| by_text(&a.join_rules, &b.join_rules),
        Some("guest_access") => |a, b| by_text(&a.guest_access, &b.guest_access),
        Some("history_visibility") => |a, b| by_text(&a.history_visibility, &b.history_visibility),
        Some(other) => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    })
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    AdminQuery(params): AdminQuery<ListParams>,
) -> Result<Response> {
    let page = Page::parse(params.from.as_deref(), params.limit, 100)?;
    let compare = comparator(params.order_by.as_deref())?;
    let reverse = backwards(params.dir.as_deref(), false)?;
    let mut rooms = summary::all(&state).await?;
    if let Some(term) = params.search_term.filter(|t| !t.is_empty()).map(|t| t.to_lowercase()) {
        let matches = |text: &Option<String>| text.as_ref().is_some_and(|t| t.to_lowercase().contains(&term));
        rooms.retain(|room| {
            matches(&room.name) || matches(&room.canonical_alias) || room.room_id.to_lowercase().contains(&term)
        });
    }
    // Ties fall back to the room ID so pages never overlap.
    rooms.sort_by(|a, b| compare(a, b).then_with(|| a.room_id.cmp(&b.room_id)));
    if reverse {
        rooms.reverse();
    }
    let total = i64::try_from(rooms.len()).unwrap_or(i64::MAX);
    let start = usize::try_from(page.from).unwrap_or(usize::MAX).min(rooms.len());
    let end = start.saturating_add(usize::try_from(page.limit).unwrap_or(usize::MAX)).min(rooms.len());
    let shown: Vec<Value> = rooms[start..end].iter().map(summary_json).collect();
    let mut body = json!({"rooms": shown, "offset": page.from, "total_rooms": total});
    if let Some(next) = page.next(end - start, total) {
        body["next_batch"] = json!(next);
    }
    if page.from > 0 {
        body["prev_batch"] = json!((page.from - page.limit).max(0));
    }
    Ok(json(StatusCode::OK, body))
}

async fn details(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(room_id): PathParams<String>,
) -> Result<Response> {
    let room = summary::summary(&state, &room_id).await?;
    let mut body = summary_json(&room);
    body["topic"] = json!(room.topic);
    body["avatar"] = json!(room.avatar);
    Ok(json(StatusCode::OK, body))
}

async fn members(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(room_id): PathParams<String>,
) -> Result<Response> {
    state.storage.room(&room_id).await?.ok_or_else(|| Error::not_found("Room not found"))?;
    let members: Vec<String> = state
        .storage
        .room_memberships(&room_id)
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.user_id)
        .collect();
    Ok(json(StatusCode::OK, json!({"total": members.len(), "members": members})))
}

async fn room_state(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(room_id): PathParams<String>,
) -> Result<Response> {
    let room = crate::rooms::state::room(&state, &room_id).await?;
    let events = crate::rooms::state::state_events(&state, room.current_state_group()?).await?;
    let now = state.now_ms();
    let events: Vec<Value> = events.iter().map(|row| client_event(row, now, true, None)).collect();
    Ok(json(StatusCode::OK, json!({"state": events})))
}
