//! Reading timelines: history visibility, `/messages` pagination, single events.

use std::collections::{HashMap, HashSet};

use ruma::api::client::filter::RoomEventFilter;
use ruma::{RoomId, UserId};
use serde_json::Value;

use super::client_event::client_event;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{EventRow, MembershipRow, Order};

/// Where history starts: events fetched from other servers (backfilled) sit at negative
/// positions, before everything this server saw happen.
pub const HISTORY_FLOOR: i64 = i64::MIN;

/// Stream tokens are `s<position>`: "everything up to and including this position".
pub fn format_token(position: i64) -> String {
    format!("s{position}")
}

pub fn parse_token(token: &str) -> Result<i64> {
    token
        .strip_prefix('s')
        .and_then(|n| n.split('_').next())
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token `{token}`")))
}

/// Keeps the events `user_id` may see under the room's history visibility at each event (the
/// spec's algorithm): world-readable events, events while they were joined (or invited, for
/// "invited"), "shared" events sent before they last joined or while they are joined, and their
/// own membership changes.
/// Rows may come from several rooms; the lookups are batched (three queries in all).
pub async fn filter_visible(state: &AppState, user_id: &UserId, rows: Vec<EventRow>) -> Result<Vec<EventRow>> {
    if rows.is_empty() {
        return Ok(rows);
    }
    let rooms: Vec<String> = rows.iter().map(|r| r.room_id.clone()).collect::<HashSet<_>>().into_iter().collect();
    // Independent reads, concurrent: on PostgreSQL each is a round trip.
    let (memberships, by_group) = tokio::try_join!(
        async { Ok(state.storage.memberships_of_user_in(user_id.as_str(), &rooms).await?) },
        visibility_at_groups(state, user_id, &rows),
    )?;
    Ok(keep_visible(user_id, rows, &memberships, &by_group))
}

/// [`filter_visible`] for a caller that has just read the user's memberships in the rows' rooms
/// (a sync), which saves reading them again.
pub async fn filter_visible_given(
    state: &AppState,
    user_id: &UserId,
    rows: Vec<EventRow>,
    memberships: &[MembershipRow],
) -> Result<Vec<EventRow>> {
    if rows.is_empty() {
        return Ok(rows);
    }
    let by_group = visibility_at_groups(state, user_id, &rows).await?;
    Ok(keep_visible(user_id, rows, memberships, &by_group))
}

fn keep_visible(
    user_id: &UserId,
    rows: Vec<EventRow>,
    memberships: &[MembershipRow],
    by_group: &HashMap<i64, (String, String)>,
) -> Vec<EventRow> {
    let memberships: HashMap<&str, &MembershipRow> = memberships.iter().map(|m| (m.room_id.as_str(), m)).collect();
    rows.into_iter()
        .filter(|row| {
            if row.state_key.as_deref() == Some(user_id.as_str()) && row.event_type == "m.room.member" {
                return true;
            }
            let membership_now = memberships.get(row.room_id.as_str());
            let currently_joined = membership_now.is_some_and(|m| m.membership == "join");
            let last_join = membership_now.and_then(|m| m.last_join_ordering);
            let (visibility, membership) = &by_group[&row.state_group_after];
            match visibility.as_str() {
                "world_readable" => true,
                "shared" => {
                    membership == "join" || currently_joined || last_join.is_some_and(|j| j >= row.stream_ordering)
                }
                "invited" => membership == "join" || membership == "invite",
                _ => membership == "join",
            }
        })
        .collect()
}

/// The history visibility and the user's membership at each row's state (after the event).
/// Events between two state changes share a state group, so each group is looked up once.
async fn visibility_at_groups(
    state: &AppState,
    user_id: &UserId,
    rows: &[EventRow],
) -> Result<HashMap<i64, (String, String)>> {
    let groups: Vec<i64> = rows.iter().map(|r| r.state_group_after).collect::<HashSet<_>>().into_iter().collect();
    let keys =
        [("m.room.history_visibility".to_owned(), String::new()), ("m.room.member".to_owned(), user_id.to_string())];
    let entries = state.storage.state_entries_at_groups(&groups, &keys).await?;
    let ids: Vec<String> =
        entries.values().flat_map(|m| m.values().cloned()).collect::<HashSet<_>>().into_iter().collect();
    let events: HashMap<String, EventRow> =
        state.storage.events_by_id(&ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
    let content = |id: Option<&String>, field: &str, default: &str| {
        id.and_then(|id| events.get(id)).and_then(|e| e.json["content"][field].as_str()).unwrap_or(default).to_owned()
    };
    Ok(groups
        .into_iter()
        .map(|group| {
            let entries = entries.get(&group);
            let entry = |key: &(String, String)| entries.and_then(|m| m.get(key));
            let visibility = content(entry(&keys[0]), "history_visibility", "shared");
            let membership = content(entry(&keys[1]), "membership", "leave");
            (group, (visibility, membership))
        })
        .collect())
}

/// Applies a room event filter's type and sender rules.
pub fn matches_filter(filter: &RoomEventFilter, row: &EventRow) -> bool {
    let type_matches = |pattern: &String| glob_matches(pattern, &row.event_type);
    if filter.not_types.iter().any(type_matches) {
        return false;
    }
    if let Some(types) = &filter.types
        && !types.iter().any(type_matches)
    {
        return false;
    }
    if filter.not_senders.iter().any(|s| s.as_str() == row.sender) {
        return false;
    }
    if let Some(senders) = &filter.senders
        && !senders.iter().any(|s| s.as_str() == row.sender)
    {
        return false;
    }
    true
}

/// Filter type patterns may end in `*`.
pub fn glob_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// The newest stream position `user_id` may read in a room: now for members, the moment they
/// left for former members. `None` when they were never in the room.
pub async fn readable_up_to(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<Option<i64>> {
    Ok(readable(state, room_id, user_id).await?.map(|(ceiling, _)| ceiling))
}

/// [`readable_up_to`] and the membership it follows from.
async fn readable(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<Option<(i64, MembershipRow)>> {
    // The newest position is read alongside, though former members do not need it: it is one
    // cheap query, and on PostgreSQL waiting for the membership first is one more round trip.
    let (membership, newest) = tokio::try_join!(
        async { Ok::<_, Error>(state.storage.membership(room_id.as_str(), user_id.as_str()).await?) },
        async { Ok(state.storage.max_stream_ordering().await?) },
    )?;
    Ok(membership.map(|m| {
        let ceiling = if m.membership == "join" || m.membership == "invite" { newest } else { m.stream_ordering };
        (ceiling, m)
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}

pub struct MessagesPage {
    pub chunk: Vec<EventRow>,
    /// `unsigned.m.relations` of the chunk's events that have any, by event ID.
    pub relations: HashMap<String, Value>,
    pub start: String,
    pub end: Option<String>,
}

/// Most rows examined per `/messages` request while skipping invisible or filtered events.
const MAX_SCAN_ROUNDS: usize = 10;

/// A `/messages` request.
pub struct MessagesQuery<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub dir: Direction,
    pub limit: usize,
    pub filter: &'a RoomEventFilter,
}

/// A page of `/messages`. Each stage's independent reads run concurrently (on PostgreSQL each
/// is a round trip): the room, membership, newest position and ignored users; then the events;
/// then their visibility and their bundled relations.
pub async fn messages(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    query: MessagesQuery<'_>,
) -> Result<MessagesPage> {
    let (_, readable, ignored) = tokio::try_join!(
        super::state::room(state, room_id.as_str()),
        readable(state, room_id, user_id),
        crate::account_data::ignored_users(state, user_id),
    )?;
    let Some((ceiling, membership)) = readable else {
        return Err(Error::forbidden("You have not been in this room"));
    };
    let memberships = [membership];
    let MessagesQuery { from, to, dir, limit, filter } = query;
    let limit = limit.clamp(1, 1000);
    let from_position = match from {
        Some(token) => parse_token(token)?,
        None if dir == Direction::Backward => ceiling,
        None => HISTORY_FLOOR,
    };
    let to_position = to.map(parse_token).transpose()?;

    let mut chunk = Vec::new();
    let mut relations = HashMap::new();
    let mut cursor = from_position;
    let mut exhausted = false;
    let mut history_started = false;
    let mut backfilled = false;
    for _ in 0..MAX_SCAN_ROUNDS {
        let want = i64::try_from(limit - chunk.len()).unwrap_or(1);
        let mut rows = match dir {
            Direction::Backward => {
                let floor = to_position.unwrap_or(HISTORY_FLOOR);
                state
                    .storage
                    .room_events(room_id.as_str(), floor, cursor.min(ceiling), want, Order::NewestFirst)
                    .await?
            }
            Direction::Forward => {
                let up_to = to_position.map_or(ceiling, |t| t.min(ceiling));
                state.storage.room_events(room_id.as_str(), cursor, up_to, want, Order::OldestFirst).await?
            }
        };
        let fetched = rows.len();
        // Going back, the room's creation is where its history starts: nothing to fetch from
        // other servers, and no `end` token, so clients need not ask for an empty page.
        let reached_creation = dir == Direction::Backward
            && rows.last().is_some_and(|row| row.event_type == "m.room.create" && row.state_key.as_deref() == Some(""));
        if let Some(last) = rows.last() {
            cursor = match dir {
                Direction::Backward => last.stream_ordering - 1,
                Direction::Forward => last.stream_ordering,
            };
        }
        // The filters that need no reads first; then relations are looked up for every event
        // left, visible or not, so that the two lookups need not wait for each other.
        rows.retain(|row| matches_filter(filter, row) && crate::account_data::not_ignored(&ignored, row));
        let ids: Vec<String> = rows.iter().map(|row| row.event_id.clone()).collect();
        let (visible, bundled) = tokio::try_join!(
            filter_visible_given(state, user_id, rows, &memberships),
            super::relations::bundled(state, user_id, &ids),
        )?;
        relations.extend(bundled);
        chunk.extend(visible);
        if reached_creation {
            history_started = true;
            break;
        }
        if (fetched as i64) < want {
            // Past the start of what we have: a room joined over federation has older history
            // on other servers. Ask once per request.
            if dir == Direction::Backward && !backfilled && to_position.is_none() {
                backfilled = true;
                if super::backfill::fetch_older(state, room_id).await? > 0 {
                    continue;
                }
            }
            exhausted = true;
            break;
        }
        if chunk.len() >= limit {
            break;
        }
    }
    let end = if history_started || (exhausted && chunk.is_empty()) { None } else { Some(format_token(cursor)) };
    Ok(MessagesPage { chunk, relations, start: format_token(from_position), end })
}

/// One event, if it is in the room and visible to the user.
pub async fn event(state: &AppState, user_id: &UserId, room_id: &RoomId, event_id: &str) -> Result<Value> {
    let not_found = || Error::not_found("Event not found");
    let row = state.storage.event(event_id).await?.ok_or_else(not_found)?;
    if row.room_id != room_id.as_str() || row.rejected_reason.is_some() {
        return Err(not_found());
    }
    let Some(ceiling) = readable_up_to(state, room_id, user_id).await? else {
        return Err(not_found());
    };
    if row.stream_ordering > ceiling {
        return Err(not_found());
    }
    let visible = filter_visible(state, user_id, vec![row]).await?;
    let row = visible.into_iter().next().ok_or_else(not_found)?;
    let mut events = [client_event(&row, state.now_ms(), true, None)];
    super::relations::bundle(state, user_id, &mut events).await?;
    let [event] = events;
    Ok(event)
}

/// `/context`: events around one event, and the room state at the last event returned.
pub struct Context {
    pub event: Value,
    pub before: Vec<Value>,
    pub after: Vec<Value>,
    pub state: Vec<Value>,
    pub start: String,
    pub end: String,
}

pub async fn context(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    event_id: &str,
    limit: usize,
    filter: &RoomEventFilter,
) -> Result<Context> {
    let event = self::event(state, user_id, room_id, event_id).await?;
    let row = state.storage.event(event_id).await?.ok_or_else(|| Error::not_found("Event not found"))?;
    let ceiling = readable_up_to(state, room_id, user_id).await?.unwrap_or(0);
    let half = i64::try_from(limit.min(100).div_ceil(2)).unwrap_or(5);
    let before_rows = state
        .storage
        .room_events(room_id.as_str(), HISTORY_FLOOR, row.stream_ordering - 1, half, Order::NewestFirst)
        .await?;
    let after_rows =
        state.storage.room_events(room_id.as_str(), row.stream_ordering, ceiling, half, Order::OldestFirst).await?;
    let start = format_token(before_rows.last().map_or(row.stream_ordering - 1, |r| r.stream_ordering - 1));
    let end = format_token(after_rows.last().map_or(row.stream_ordering, |r| r.stream_ordering));
    let state_group = after_rows.last().map_or(row.state_group_after, |r| r.state_group_after);
    let ignored = crate::account_data::ignored_users(state, user_id).await?;
    let shown = |r: &EventRow| matches_filter(filter, r) && crate::account_data::not_ignored(&ignored, r);
    let visible_before: Vec<EventRow> =
        filter_visible(state, user_id, before_rows).await?.into_iter().filter(|r| shown(r)).collect();
    let visible_after: Vec<EventRow> =
        filter_visible(state, user_id, after_rows).await?.into_iter().filter(|r| shown(r)).collect();
    let lazy = matches!(filter.lazy_load_options, ruma::api::client::filter::LazyLoadOptions::Enabled { .. });
    let senders: std::collections::HashSet<&str> =
        visible_before.iter().chain(&visible_after).map(|r| r.sender.as_str()).chain([row.sender.as_str()]).collect();
    let state_rows = super::state::state_events(state, state_group).await?;
    let now = state.now_ms();
    let state_events = state_rows
        .iter()
        .filter(|r| {
            !lazy || r.event_type != "m.room.member" || r.state_key.as_deref().is_some_and(|k| senders.contains(k))
        })
        .map(|r| client_event(r, now, true, None))
        .collect();
    let mut before: Vec<Value> = visible_before.iter().map(|r| client_event(r, now, true, None)).collect();
    let mut after: Vec<Value> = visible_after.iter().map(|r| client_event(r, now, true, None)).collect();
    super::relations::bundle(state, user_id, &mut before).await?;
    super::relations::bundle(state, user_id, &mut after).await?;
    Ok(Context { event, before, after, state: state_events, start, end })
}

/// `/timestamp_to_event`: the visible event nearest a point in time.
pub async fn event_near_timestamp(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    ts: i64,
    dir: Direction,
) -> Result<(String, i64)> {
    super::state::room(state, room_id.as_str()).await?;
    let ceiling = readable_up_to(state, room_id, user_id)
        .await?
        .ok_or_else(|| Error::forbidden("You have not been in this room"))?;
    let row = state.storage.event_near_timestamp(room_id.as_str(), ts, dir == Direction::Forward).await?;
    let row = row.filter(|r| r.stream_ordering <= ceiling);
    let visible = match row {
        Some(row) => filter_visible(state, user_id, vec![row]).await?.into_iter().next(),
        None => None,
    };
    let row = visible.ok_or_else(|| Error::not_found("No event found in that direction"))?;
    Ok((row.event_id, row.origin_server_ts))
}
