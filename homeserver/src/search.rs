//! `POST /search` for room events: full-text matches in the rooms the user is joined to, filtered
//! by history visibility and the request's filter, with context, groupings and pagination.
//!
//! Pagination tokens are `<ceiling>-<offset>`: the newest stream position the first page saw
//! (so events sent meanwhile do not shift later pages) and how many index rows were consumed.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::api::client::search::search_events::v3::{
    Criteria, EventContextResult, GroupingKey, OrderBy, ResultGroup, ResultGroupMap, ResultRoomEvents, SearchKeys,
    SearchResult, UserProfile,
};
use ruma::{OwnedEventId, OwnedMxcUri, OwnedRoomId, OwnedUserId, UInt, UserId};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::rooms::client_event::{client_event, to_raw};
use crate::rooms::timeline::{filter_visible, format_token, glob_matches, matches_filter};
use crate::state::AppState;
use crate::storage::{EventRow, Order, SearchHit, SearchOrder, SearchQuery};

/// Results per page when the filter does not say, and at most.
const DEFAULT_LIMIT: u64 = 10;
const MAX_LIMIT: u64 = 100;
/// Context events on either side at most.
const MAX_CONTEXT: u64 = 50;
/// Words of a search term that are used at most, and the longest word (no real word is longer;
/// PostgreSQL would drop it anyway).
const MAX_TERMS: usize = 16;
const MAX_WORD_CHARS: usize = 100;
/// Most index reads per request while skipping events the user may not see.
const MAX_SCAN_ROUNDS: usize = 10;

/// Splits a search term into lower-case words; punctuation separates words and is dropped.
pub fn terms(search_term: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    search_term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty() && word.chars().count() <= MAX_WORD_CHARS)
        .map(str::to_lowercase)
        .filter(|word| seen.insert(word.clone()))
        .take(MAX_TERMS)
        .collect()
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageToken {
    ceiling: i64,
    offset: i64,
}

impl PageToken {
    fn parse(token: &str) -> Result<Self> {
        let invalid = || Error::invalid_param("Invalid next_batch token");
        let (ceiling, offset) = token.split_once('-').ok_or_else(invalid)?;
        let ceiling = ceiling.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(invalid)?;
        let offset = offset.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(invalid)?;
        Ok(Self { ceiling, offset })
    }

    fn format(self) -> String {
        format!("{}-{}", self.ceiling, self.offset)
    }
}

fn search_keys(keys: Option<&[SearchKeys]>) -> Result<Vec<&'static str>> {
    let Some(keys) = keys else { return Ok(vec!["content.body", "content.name", "content.topic"]) };
    keys.iter()
        .map(|key| match key {
            SearchKeys::ContentBody => Ok("content.body"),
            SearchKeys::ContentName => Ok("content.name"),
            SearchKeys::ContentTopic => Ok("content.topic"),
            other => Err(Error::invalid_param(format!("Unknown search key `{}`", other.as_str()))),
        })
        .collect()
}

/// The event type each key is read from.
fn key_event_type(key: &str) -> &'static str {
    match key {
        "content.name" => "m.room.name",
        "content.topic" => "m.room.topic",
        _ => "m.room.message",
    }
}

/// Keys whose event type the filter's `types` / `not_types` allow, so the index query (and the
/// count) already leaves the other types out.
fn keys_for_types(keys: Vec<&'static str>, filter: &ruma::api::client::filter::RoomEventFilter) -> Vec<&'static str> {
    keys.into_iter()
        .filter(|key| {
            let event_type = key_event_type(key);
            filter.types.as_ref().is_none_or(|types| types.iter().any(|t| glob_matches(t, event_type)))
                && !filter.not_types.iter().any(|t| glob_matches(t, event_type))
        })
        .collect()
}

fn search_order(order: Option<&OrderBy>) -> Result<SearchOrder> {
    match order {
        None | Some(OrderBy::Rank) => Ok(SearchOrder::Rank),
        Some(OrderBy::Recent) => Ok(SearchOrder::Recent),
        Some(other) => Err(Error::invalid_param(format!("Unknown order_by `{}`", other.as_str()))),
    }
}

fn grouping_keys(criteria: &Criteria) -> Result<Vec<GroupingKey>> {
    criteria
        .groupings
        .group_by
        .iter()
        .filter_map(|grouping| grouping.key.clone())
        .map(|key| match key {
            GroupingKey::RoomId | GroupingKey::Sender => Ok(key),
            other => Err(Error::invalid_param(format!("Unknown grouping key `{}`", other.as_str()))),
        })
        .collect()
}

pub async fn search_room_events(
    state: &AppState,
    user_id: &UserId,
    criteria: &Criteria,
    next_batch: Option<&str>,
) -> Result<ResultRoomEvents> {
    if state.storage.encrypts_at_rest() {
        // A plaintext index would defeat encryption at rest, so there is none (README: threat model).
        return Err(Error::matrix(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Unknown,
            "Server-side search is disabled: this server encrypts its data at rest",
        ));
    }
    let keys = search_keys(criteria.keys.as_deref())?;
    let order = search_order(criteria.order_by.as_ref())?;
    let groupings = grouping_keys(criteria)?;
    let filter = &criteria.filter;
    let keys = keys_for_types(keys, filter);
    let limit = filter.limit.map_or(DEFAULT_LIMIT, u64::from).clamp(1, MAX_LIMIT);
    let limit = usize::try_from(limit).unwrap_or(10);
    let page = match next_batch {
        Some(token) => PageToken::parse(token)?,
        None => PageToken { ceiling: state.storage.max_stream_ordering().await?, offset: 0 },
    };

    let rooms: Vec<String> = state
        .storage
        .memberships_of_user(user_id.as_str())
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.room_id)
        .filter(|room| filter.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r.as_str() == room)))
        .filter(|room| !filter.not_rooms.iter().any(|r| r.as_str() == room))
        .collect();
    let words = terms(&criteria.search_term);
    let senders: Option<Vec<String>> = filter.senders.as_ref().map(|s| s.iter().map(ToString::to_string).collect());
    let not_senders: Vec<String> = filter.not_senders.iter().map(ToString::to_string).collect();
    let query = SearchQuery {
        terms: &words,
        keys: &keys,
        rooms: &rooms,
        senders: senders.as_deref(),
        not_senders: &not_senders,
        up_to: page.ceiling,
    };

    let ignored = crate::account_data::ignored_users(state, user_id).await?;
    let mut found: Vec<(SearchHit, EventRow)> = Vec::new();
    let mut offset = page.offset;
    let mut more = false;
    for _ in 0..MAX_SCAN_ROUNDS {
        let want = limit - found.len();
        // One extra row tells whether another page exists.
        let want_sql = i64::try_from(want).unwrap_or(i64::MAX);
        let mut hits = state.storage.search_events(&query, order, offset, want_sql + 1).await?;
        more = hits.len() > want;
        hits.truncate(want);
        offset += i64::try_from(hits.len()).unwrap_or(0);
        found.extend(
            visible(state, user_id, hits, |row| {
                matches_filter(filter, row) && crate::account_data::not_ignored(&ignored, row)
            })
            .await?,
        );
        if !more || found.len() >= limit {
            break;
        }
    }

    let now = state.now_ms();
    let mut events: Vec<Value> = found.iter().map(|(_, row)| client_event(row, now, true, None)).collect();
    crate::rooms::relations::bundle(state, user_id, &mut events).await?;
    let mut results = Vec::with_capacity(found.len());
    for ((hit, row), event) in found.iter().zip(&events) {
        let mut result = SearchResult::new();
        result.rank = Some(hit.rank);
        result.result = Some(to_raw(event)?);
        result.context = context(state, user_id, row, criteria, now).await?;
        results.push(result);
    }

    let mut response = ResultRoomEvents::new();
    response.count = Some(UInt::try_from(state.storage.count_search_events(&query).await?).unwrap_or_default());
    response.highlights = words.clone();
    response.next_batch = more.then(|| PageToken { ceiling: page.ceiling, offset }.format());
    response.groups.extend(groups(&found, &groupings)?);
    if criteria.include_state == Some(true) {
        response.state = room_states(state, &found).await?;
    }
    response.results = results;
    Ok(response)
}

/// The hits' events that the user may see and the filter keeps, in hit order.
async fn visible(
    state: &AppState,
    user_id: &UserId,
    hits: Vec<SearchHit>,
    keep: impl Fn(&EventRow) -> bool,
) -> Result<Vec<(SearchHit, EventRow)>> {
    let ids: Vec<String> = hits.iter().map(|h| h.event_id.clone()).collect();
    let mut by_room: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in state.storage.events_by_id(&ids).await? {
        if row.rejected_reason.is_none() {
            by_room.entry(row.room_id.clone()).or_default().push(row);
        }
    }
    // History visibility is checked per room (the check reads the user's membership there).
    let mut allowed: HashMap<String, EventRow> = HashMap::new();
    for (_, rows) in by_room {
        for row in filter_visible(state, user_id, rows).await? {
            allowed.insert(row.event_id.clone(), row);
        }
    }
    Ok(hits
        .into_iter()
        .filter_map(|hit| {
            let row = allowed.remove(&hit.event_id)?;
            keep(&row).then_some((hit, row))
        })
        .collect())
}

/// Events before and after a result, and the senders' profiles when asked for.
async fn context(
    state: &AppState,
    user_id: &UserId,
    row: &EventRow,
    criteria: &Criteria,
    now: i64,
) -> Result<EventContextResult> {
    let settings = &criteria.event_context;
    let before_limit = i64::try_from(u64::from(settings.before_limit).min(MAX_CONTEXT)).unwrap_or(5);
    let after_limit = i64::try_from(u64::from(settings.after_limit).min(MAX_CONTEXT)).unwrap_or(5);
    let mut result = EventContextResult::new();
    if before_limit == 0 && after_limit == 0 && !settings.include_profile {
        return Ok(result);
    }
    let up_to = state.storage.max_stream_ordering().await?;
    let before = if before_limit > 0 {
        state.storage.room_events(&row.room_id, 0, row.stream_ordering - 1, before_limit, Order::NewestFirst).await?
    } else {
        Vec::new()
    };
    let after = if after_limit > 0 {
        state.storage.room_events(&row.room_id, row.stream_ordering, up_to, after_limit, Order::OldestFirst).await?
    } else {
        Vec::new()
    };
    result.start = Some(format_token(before.last().map_or(row.stream_ordering - 1, |r| r.stream_ordering - 1)));
    result.end = Some(format_token(after.last().map_or(row.stream_ordering, |r| r.stream_ordering)));
    let before = filter_visible(state, user_id, before).await?;
    let after = filter_visible(state, user_id, after).await?;
    if settings.include_profile {
        let senders: HashSet<&str> =
            before.iter().chain(&after).map(|r| r.sender.as_str()).chain([row.sender.as_str()]).collect();
        result.profile_info = profiles(state, row.state_group_after, &senders).await?;
    }
    let mut before: Vec<Value> = before.iter().map(|r| client_event(r, now, true, None)).collect();
    let mut after: Vec<Value> = after.iter().map(|r| client_event(r, now, true, None)).collect();
    crate::rooms::relations::bundle(state, user_id, &mut before).await?;
    crate::rooms::relations::bundle(state, user_id, &mut after).await?;
    result.events_before = before.iter().map(to_raw).collect::<Result<_>>()?;
    result.events_after = after.iter().map(to_raw).collect::<Result<_>>()?;
    Ok(result)
}

/// Display names and avatars of `senders` from their member events in a room state.
async fn profiles(
    state: &AppState,
    state_group: i64,
    senders: &HashSet<&str>,
) -> Result<BTreeMap<OwnedUserId, UserProfile>> {
    let keys: Vec<(String, String)> = senders.iter().map(|s| ("m.room.member".to_owned(), (*s).to_owned())).collect();
    let entries = state.storage.state_entries_at_group(state_group, &keys).await?;
    let ids: Vec<String> = entries.into_values().collect();
    let mut profiles = BTreeMap::new();
    for member in state.storage.events_by_id(&ids).await? {
        let Some(user) = member.state_key.as_deref().and_then(|k| OwnedUserId::try_from(k).ok()) else { continue };
        let content = &member.json["content"];
        let mut profile = UserProfile::new();
        profile.displayname = content["displayname"].as_str().map(str::to_owned);
        profile.avatar_url = content["avatar_url"].as_str().map(OwnedMxcUri::from);
        profiles.insert(user, profile);
    }
    Ok(profiles)
}

/// Results grouped by room and/or sender; `order` is the position of the group's first result.
fn groups(found: &[(SearchHit, EventRow)], keys: &[GroupingKey]) -> Result<Vec<ResultGroupMap>> {
    let mut maps = Vec::new();
    for key in keys {
        let mut grouped: BTreeMap<String, ResultGroup> = BTreeMap::new();
        for (_, row) in found {
            let group_key = if *key == GroupingKey::RoomId { &row.room_id } else { &row.sender };
            let next_order = UInt::try_from(grouped.len()).unwrap_or_default();
            let group = grouped.entry(group_key.clone()).or_insert_with(|| {
                let mut group = ResultGroup::new();
                group.order = Some(next_order);
                group
            });
            let event_id =
                OwnedEventId::try_from(row.event_id.as_str()).map_err(|e| Error::internal(format!("event ID: {e}")))?;
            group.results.push(event_id);
        }
        let map = if *key == GroupingKey::RoomId {
            ResultGroupMap::RoomId(
                grouped.into_iter().filter_map(|(k, v)| Some((OwnedRoomId::try_from(k).ok()?, v))).collect(),
            )
        } else {
            ResultGroupMap::Sender(
                grouped.into_iter().filter_map(|(k, v)| Some((OwnedUserId::try_from(k).ok()?, v))).collect(),
            )
        };
        maps.push(map);
    }
    Ok(maps)
}

/// The current state of each room with a result (`include_state`).
async fn room_states(
    state: &AppState,
    found: &[(SearchHit, EventRow)],
) -> Result<BTreeMap<OwnedRoomId, Vec<ruma::serde::Raw<ruma::events::AnyStateEvent>>>> {
    let rooms: HashSet<&str> = found.iter().map(|(_, row)| row.room_id.as_str()).collect();
    let now = state.now_ms();
    let mut states = BTreeMap::new();
    for room_id in rooms {
        let room = crate::rooms::state::room(state, room_id).await?;
        let events = crate::rooms::state::state_events(state, room.current_state_group()?).await?;
        let raw = events.iter().map(|row| to_raw(&client_event(row, now, true, None))).collect::<Result<_>>()?;
        let room_id = OwnedRoomId::try_from(room_id).map_err(|e| Error::internal(format!("room ID: {e}")))?;
        states.insert(room_id, raw);
    }
    Ok(states)
}

/// Events indexed per backfill step.
const BACKFILL_BATCH: i64 = 500;

/// Indexes, in the background, events persisted before the search index existed (an upgraded
/// installation); new events are indexed as they are persisted. Resumes where it stopped.
pub fn start_backfill(state: std::sync::Weak<crate::state::Inner>) {
    tokio::spawn(async move {
        let Some(inner) = state.upgrade() else { return };
        let up_to = match inner.storage.max_stream_ordering().await {
            Ok(position) => position,
            Err(e) => return tracing::warn!(error = %e, "search backfill could not start"),
        };
        drop(inner);
        let mut indexed = 0;
        loop {
            let Some(inner) = state.upgrade() else { return };
            if inner.rooms.is_stopping() {
                return;
            }
            match inner.storage.backfill_search_index(up_to, BACKFILL_BATCH).await {
                Ok(0) => break,
                Ok(n) => indexed += n,
                Err(e) => return tracing::warn!(error = %e, "search backfill stopped; it resumes at the next start"),
            }
            drop(inner);
            // Leave room for other writers between batches.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if indexed > 0 {
            tracing::info!(events = indexed, "search index backfilled");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_words_without_punctuation() {
        assert_eq!(terms("Hello, \"world\" -hello* AND:x"), vec!["hello", "world", "and", "x"]);
        assert!(terms("  ***  ").is_empty());
        assert_eq!(terms("Grüße"), vec!["grüße"]);
        assert_eq!(terms(&format!("{} short", "x".repeat(101))), vec!["short"]);
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = PageToken { ceiling: 42, offset: 10 };
        assert_eq!(PageToken::parse(&token.format()).unwrap(), token);
        for bad in ["", "1", "a-b", "-1-2", "1--2", "1-2-3"] {
            assert!(PageToken::parse(bad).is_err(), "{bad}");
        }
    }
}
