//! `/sync`: initial and incremental, with long-polling woken by new events.
//!
//! The `since` token is a stream position; an incremental sync reads only events after it, so its
//! cost follows what changed, not the size of history.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ruma::api::client::filter::{FilterDefinition, LazyLoadOptions, RoomEventFilter};
use ruma::api::client::sync::sync_events::v3::{
    InviteState, InvitedRoom, KnockState, KnockedRoom, LeftRoom, Response, State, StateEvents,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UserId};
use serde_json::Value;

use crate::accounts::Authed;
use crate::e2ee::{self, device_lists};
use crate::error::{Error, Result};
use crate::rooms::client_event::{ClientEvent, stripped_state, to_raw};
use crate::rooms::timeline::{filter_visible, filter_visible_given, format_token, matches_filter, parse_token};
use crate::state::AppState;
use crate::storage::{EventRow, MembershipRow, Order};

/// Timeline events per room when the filter does not say.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The longest a client may make us wait.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Stripped state types shown with invites.
pub const INVITE_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
];

pub struct SyncRequest {
    pub since: Option<String>,
    pub full_state: bool,
    pub timeout: Option<Duration>,
    pub filter: FilterDefinition,
    pub set_presence: ruma::presence::PresenceState,
}

pub async fn sync(state: &AppState, authed: &Authed, request: SyncRequest) -> Result<Response> {
    let since = request.since.as_deref().map(parse_sync_token).transpose()?;
    // Keeps the user online while the sync (and its long-poll) runs.
    let _syncing = crate::presence::on_sync(state, &authed.user_id, &request.set_presence).await?;
    let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Subscribe before reading, so an event persisted meanwhile still wakes us.
        let mut wake = state.rooms.subscribe();
        let response = sync_once(state, authed, since, &request).await?;
        let waited_enough = tokio::time::Instant::now() >= deadline || state.rooms.is_stopping();
        if since.is_none() || has_news(&response) || request.full_state || waited_enough {
            return Ok(response);
        }
        let _waiting = state.metrics.sync_waiting();
        match tokio::time::timeout_at(deadline, wake.changed()).await {
            Ok(Ok(())) => continue,
            _ => {
                // Timed out with nothing new: the same position again.
                return Ok(response);
            }
        }
    }
}

/// Whether a long-polling sync has something to return.
fn has_news(response: &Response) -> bool {
    !response.rooms.join.is_empty()
        || !response.rooms.invite.is_empty()
        || !response.rooms.leave.is_empty()
        || !response.rooms.knock.is_empty()
        || !response.account_data.events.is_empty()
        || !response.to_device.events.is_empty()
        || !response.device_lists.changed.is_empty()
        || !response.device_lists.left.is_empty()
        || !response.presence.events.is_empty()
}

/// Which state a joined room's section carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateMode {
    /// Initial sync, `full_state`, or newly joined: the whole state at the timeline's start.
    Full,
    /// A gap (limited timeline): what changed between `since` and the timeline's start.
    Changed,
    /// The timeline holds every change.
    Unchanged,
}

struct RoomPlan {
    room_id: String,
    rows: Vec<EventRow>,
    limited: bool,
    start_group: i64,
    mode: StateMode,
}

async fn sync_once(
    state: &AppState,
    authed: &Authed,
    tokens: Option<SyncToken>,
    request: &SyncRequest,
) -> Result<Response> {
    let since = tokens.map(|t| t.events);
    let since_account_data = tokens.map(|t| t.account_data);
    let since_typing = tokens.and_then(|t| t.typing);
    let since_receipts = tokens.map(|t| t.receipts);
    // Read the typing serial first: a change after this point is reported next time.
    let typing_up_to = state.typing.serial();
    // Stream positions with the memberships (one snapshot); meanwhile the ignored users.
    let ((positions, memberships), ignored) = tokio::try_join!(
        async { Ok(state.storage.sync_start(authed.user_id.as_str()).await?) },
        crate::account_data::ignored_users(state, &authed.user_id),
    )?;
    let up_to = positions.events;
    let account_data_up_to = positions.account_data;
    let receipts_up_to = positions.receipts;
    let device_lists_up_to = positions.device_lists;
    let to_device_up_to = positions.to_device;
    let presence_up_to = positions.presence;
    let mut response = Response::new(String::new());
    let room_filter = &request.filter.room;
    let timeline_filter = &room_filter.timeline;
    let limit = timeline_filter
        .limit
        .map_or(DEFAULT_TIMELINE_LIMIT, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX))
        .clamp(1, 100);
    let lazy_members = matches!(room_filter.state.lazy_load_options, LazyLoadOptions::Enabled { .. });

    let wanted = |m: &MembershipRow| {
        room_filter.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r.as_str() == m.room_id))
            && !room_filter.not_rooms.iter().any(|r| r.as_str() == m.room_id)
    };
    let after = since.unwrap_or(0);
    let joined: Vec<&MembershipRow> = memberships.iter().filter(|m| m.membership == "join" && wanted(m)).collect();
    let joined_ids: Vec<String> = joined.iter().map(|m| m.room_id.clone()).collect();

    let per_room = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let since_presence = tokens.map_or(0, |t| t.presence);
    let presence_window = crate::presence::SyncWindow {
        after: since_presence,
        up_to: presence_up_to,
        events: since.map(|since| (since, up_to)),
        joined_rooms: &joined_ids,
    };
    // Independent reads run concurrently (on PostgreSQL each is a round trip of its own): the
    // encryption sections, every joined room's recent timeline (one query), and the account
    // data, receipts and presence.
    let (to_device_next, recent, account_data, receipts, presence) = tokio::try_join!(
        add_encryption(state, authed, tokens, up_to, device_lists_up_to, to_device_up_to, &mut response),
        async { Ok(state.storage.recent_events_in_rooms(&joined_ids, after, up_to, per_room).await?) },
        async {
            let after = since_account_data.unwrap_or(0);
            Ok(state.storage.account_data_changes(authed.user_id.as_str(), after, account_data_up_to).await?)
        },
        async {
            let after = since_receipts.unwrap_or(0);
            Ok(state.storage.receipt_changes(&joined_ids, after, receipts_up_to).await?)
        },
        crate::presence::for_sync(state, &authed.user_id, presence_window),
    )?;
    response.next_batch = SyncToken {
        events: up_to,
        account_data: account_data_up_to,
        typing: Some(typing_up_to),
        receipts: receipts_up_to,
        device_lists: device_lists_up_to,
        to_device: to_device_next,
        presence: presence_up_to,
    }
    .to_string();
    let mut by_room: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in recent {
        by_room.entry(row.room_id.clone()).or_default().push(row);
    }

    // First pass: each room's timeline window and which state it needs.
    let mut plans = Vec::new();
    let mut windows = Vec::new();
    for membership in &joined {
        let mut rows = by_room.remove(&membership.room_id).unwrap_or_default();
        let newly_joined = since.is_some_and(|s| membership.stream_ordering > s);
        if since.is_some() && rows.is_empty() && !request.full_state {
            continue;
        }
        let limited = rows.len() > limit;
        rows.truncate(limit);
        rows.reverse();
        windows.extend(rows);
        let mode = if since.is_none() || request.full_state || newly_joined {
            StateMode::Full
        } else if limited {
            StateMode::Changed
        } else {
            StateMode::Unchanged
        };
        plans.push(RoomPlan { room_id: membership.room_id.clone(), rows: Vec::new(), limited, start_group: 0, mode });
    }
    // History visibility for every room's window at once; then each room keeps what is visible.
    let mut visible: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in filter_visible_given(state, &authed.user_id, windows, &memberships).await? {
        if crate::account_data::not_ignored(&ignored, &row) {
            visible.entry(row.room_id.clone()).or_default().push(row);
        }
    }
    for plan in &mut plans {
        plan.rows = visible.remove(&plan.room_id).unwrap_or_default();
        plan.start_group = match plan.rows.first() {
            Some(first) => first.state_group_before,
            None => crate::rooms::state::room(state, &plan.room_id).await?.current_state_group()?,
        };
    }

    // Room account data and ephemeral events first: they decide, with the timelines, which rooms
    // the response holds, and so whose unread counts and summaries the next reads fetch.
    let joined_set: HashSet<&str> = joined.iter().map(|m| m.room_id.as_str()).collect();
    add_account_data(account_data, &joined_set, &mut response)?;
    for (room, user_ids) in state.typing.changed_since(&joined_ids, since_typing) {
        let event = serde_json::json!({"type": "m.typing", "content": {"user_ids": user_ids}});
        response.rooms.join.entry(room_id(&room)?).or_default().ephemeral.events.push(to_raw(&event)?);
    }
    add_receipts(authed, receipts, &mut response)?;
    let mut response_rooms: Vec<String> = response.rooms.join.keys().map(ToString::to_string).collect();
    response_rooms.extend(
        plans.iter().filter(|p| !response.rooms.join.contains_key(p.room_id.as_str())).map(|p| p.room_id.clone()),
    );
    // Member counts and heroes may be needed where membership may have changed: a superset of
    // [`rooms_needing_summaries`], which picks from these once the states are known.
    let summary_candidates: Vec<String> = if since.is_none() {
        response_rooms.clone()
    } else {
        plans
            .iter()
            .filter(|p| p.mode != StateMode::Unchanged || p.rows.iter().any(|r| r.event_type == "m.room.member"))
            .map(|p| p.room_id.clone())
            .collect()
    };

    // Full states of every room that needs one, the transaction IDs of the user's own events,
    // the aggregations (threads, edits, references) of every timeline event, member summaries
    // and unread counts: each one query for all rooms, all concurrent.
    let full_groups: Vec<i64> = plans.iter().filter(|p| p.mode == StateMode::Full).map(|p| p.start_group).collect();
    let own_ids: Vec<String> = plans
        .iter()
        .flat_map(|p| p.rows.iter())
        .filter(|r| r.sender == authed.user_id.as_str())
        .map(|r| r.event_id.clone())
        .collect();
    let timeline_ids: Vec<String> = plans.iter().flat_map(|p| p.rows.iter().map(|r| r.event_id.clone())).collect();
    let ((states, state_events), txns, bundles, mut summaries, unread) = tokio::try_join!(
        full_states(state, &full_groups),
        async {
            let (user, device) = (authed.user_id.as_str(), authed.device_id.as_str());
            Ok(state.storage.txn_ids_for_events(user, device, &own_ids).await?)
        },
        crate::rooms::relations::bundled(state, &authed.user_id, &timeline_ids),
        async { Ok(state.storage.member_summaries(&summary_candidates, authed.user_id.as_str(), 5).await?) },
        async { Ok(state.storage.unread_counts(authed.user_id.as_str(), &response_rooms, up_to).await?) },
    )?;
    let now = state.now_ms();

    for plan in plans {
        let timeline_rows: Vec<&EventRow> =
            plan.rows.iter().filter(|row| matches_filter(timeline_filter, row)).collect();
        let state_rows = match plan.mode {
            StateMode::Full => states
                .get(&plan.start_group)
                .map(|map| map.values().filter_map(|id| state_events.get(id).cloned()).collect())
                .unwrap_or_default(),
            StateMode::Changed => changed_state(state, &plan.room_id, since.unwrap_or(0), plan.start_group).await?,
            StateMode::Unchanged => Vec::new(),
        };
        let state_rows = select_state(state_rows, &timeline_rows, &authed.user_id, lazy_members, &room_filter.state);

        let joined_room = response.rooms.join.entry(room_id(&plan.room_id)?).or_default();
        let timeline = &mut joined_room.timeline;
        timeline.limited = plan.limited;
        timeline.prev_batch = Some(format_token(plan.rows.first().map_or(up_to, |r| r.stream_ordering - 1)));
        timeline.events = timeline_rows
            .iter()
            .map(|row| {
                let transaction_id = txns.get(&row.event_id).map(String::as_str);
                let relations = bundles.get(&row.event_id);
                ClientEvent { row, now_ms: now, with_room_id: false, transaction_id, relations }.to_raw()
            })
            .collect::<Result<_>>()?;
        let state_events: Vec<_> = state_rows.iter().map(|row| sync_event(row, now).to_raw()).collect::<Result<_>>()?;
        joined_room.state = State::Before(StateEvents::from(state_events));
    }

    // Rooms whose summary (member counts, heroes) clients need: all on an initial sync, else
    // those whose membership may have changed.
    let wanted_summaries: HashSet<String> = rooms_needing_summaries(&response, since.is_none()).into_iter().collect();
    summaries.retain(|room, _| wanted_summaries.contains(room));
    add_summaries(summaries, &mut response);
    add_unread_counts(unread, timeline_filter.unread_thread_notifications, &mut response);
    let presence_filter = &request.filter.presence;
    let presence_limit =
        presence_filter.limit.map_or(usize::MAX, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX));
    for event in presence.iter().filter(|e| presence_filter_allows(presence_filter, e)).take(presence_limit) {
        response.presence.events.push(to_raw(event)?);
    }

    for membership in memberships.iter().filter(|m| m.membership == "invite" && wanted(m)) {
        if since.is_some_and(|s| membership.stream_ordering <= s) && !request.full_state {
            continue;
        }
        if !ignored.is_empty() {
            let invite = state.storage.event(&membership.event_id).await?;
            if invite.is_some_and(|invite| ignored.contains(&invite.sender)) {
                continue;
            }
        }
        let mut invited = InvitedRoom::new();
        invited.invite_state = InviteState::from(stripped_room_state(state, membership).await?);
        response.rooms.invite.insert(room_id(&membership.room_id)?, invited);
    }

    for membership in memberships.iter().filter(|m| m.membership == "knock" && wanted(m)) {
        if since.is_some_and(|s| membership.stream_ordering <= s) && !request.full_state {
            continue;
        }
        let mut knocked = KnockedRoom::new();
        let mut knock_state = KnockState::new();
        knock_state.events = stripped_room_state(state, membership).await?;
        knocked.knock_state = knock_state;
        response.rooms.knock.insert(room_id(&membership.room_id)?, knocked);
    }

    if let Some(since) = since {
        for membership in memberships.iter().filter(|m| matches!(m.membership.as_str(), "leave" | "ban") && wanted(m)) {
            if membership.stream_ordering <= since || membership.stream_ordering > up_to {
                continue;
            }
            let rows = state
                .storage
                .room_events(
                    &membership.room_id,
                    since,
                    membership.stream_ordering,
                    i64::try_from(limit).unwrap_or(10),
                    Order::NewestFirst,
                )
                .await?;
            let mut rows = filter_visible(state, &authed.user_id, rows).await?;
            rows.reverse();
            let now = state.now_ms();
            let mut left = LeftRoom::new();
            left.timeline.events = rows.iter().map(|row| sync_event(row, now).to_raw()).collect::<Result<_>>()?;
            left.timeline.prev_batch = Some(format_token(rows.first().map_or(since, |r| r.stream_ordering - 1)));
            response.rooms.leave.insert(room_id(&membership.room_id)?, left);
        }
    }
    Ok(response)
}

/// Where a sync left off, per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SyncToken {
    events: i64,
    account_data: i64,
    typing: Option<u64>,
    receipts: i64,
    device_lists: i64,
    to_device: i64,
    presence: i64,
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { events, account_data, typing, receipts, device_lists, to_device, presence } = self;
        let typing = typing.unwrap_or(0);
        write!(f, "s{events}_{account_data}_{typing}_{receipts}_{device_lists}_{to_device}_{presence}")
    }
}

/// Sync tokens are `s<events>_<account data>_<typing>_<receipts>_<device lists>_<to-device>_<presence>`;
/// missing parts (older tokens) count as "from the beginning" for their stream.
fn parse_sync_token(token: &str) -> Result<SyncToken> {
    let invalid = || Error::invalid_param(format!("Invalid since token `{token}`"));
    let events = parse_token(token)?;
    let mut rest = token.split('_').skip(1);
    let mut next = || rest.next().map(|p| p.parse::<i64>().map_err(|_| invalid())).transpose();
    let account_data = next()?.unwrap_or(0);
    let typing = next()?.map(|t| u64::try_from(t).map_err(|_| invalid())).transpose()?;
    let receipts = next()?.unwrap_or(0);
    let device_lists = next()?.unwrap_or(0);
    let to_device = next()?.unwrap_or(0);
    let presence = next()?.unwrap_or(0);
    Ok(SyncToken { events, account_data, typing, receipts, device_lists, to_device, presence })
}

/// The span between two sync tokens that `/keys/changes` asks about.
pub fn device_list_window(from: &str, to: &str) -> Result<device_lists::Window> {
    let (from, to) = (parse_sync_token(from)?, parse_sync_token(to)?);
    Ok(device_lists::Window {
        events_after: from.events,
        events_up_to: to.events,
        lists_after: from.device_lists,
        lists_up_to: to.device_lists,
    })
}

/// To-device messages, one-time key counts, unused fallback key types, and (incremental syncs
/// only) device-list changes. Returns the to-device position the next sync resumes from.
async fn add_encryption(
    state: &AppState,
    authed: &Authed,
    since: Option<SyncToken>,
    events_up_to: i64,
    device_lists_up_to: i64,
    to_device_up_to: i64,
    response: &mut Response,
) -> Result<i64> {
    let after = since.map_or(0, |t| t.to_device);
    let device_list_changes = async {
        let Some(since) = since else { return Ok(None) };
        let window = device_lists::Window {
            events_after: since.events,
            events_up_to,
            lists_after: since.device_lists,
            lists_up_to: device_lists_up_to,
        };
        Ok(Some(device_lists::changes(state, authed.user_id.as_str(), window).await?))
    };
    // Independent reads, concurrent: on PostgreSQL each is a round trip.
    let ((events, next), one_time_key_counts, fallback, device_list_changes) = tokio::try_join!(
        e2ee::to_device::for_sync(state, authed, after, to_device_up_to),
        e2ee::keys::one_time_key_counts(state, authed),
        async {
            let (user, device) = (authed.user_id.as_str(), authed.device_id.as_str());
            Ok::<_, Error>(state.storage.unused_fallback_key_types(user, device).await?)
        },
        device_list_changes,
    )?;
    response.to_device.events = events;
    response.device_one_time_keys_count = one_time_key_counts;
    response.device_unused_fallback_key_types = Some(fallback.iter().map(|a| a.as_str().into()).collect());
    if let Some(changes) = device_list_changes {
        response.device_lists.changed = device_lists::user_ids(changes.changed);
        response.device_lists.left = device_lists::user_ids(changes.left);
    }
    Ok(next)
}

/// Global account data, and room account data for joined rooms, changed since the last sync.
/// A room whose only news is account data appears with an empty timeline.
fn add_account_data(
    changes: Vec<crate::storage::AccountDataRow>,
    joined: &HashSet<&str>,
    response: &mut Response,
) -> Result<()> {
    for change in changes {
        let event = serde_json::json!({"type": change.data_type, "content": change.content});
        if change.room_id.is_empty() {
            response.account_data.events.push(to_raw(&event)?);
        } else if joined.contains(change.room_id.as_str()) {
            let room = response.rooms.join.entry(room_id(&change.room_id)?).or_default();
            room.account_data.events.push(to_raw(&event)?);
        }
    }
    Ok(())
}

/// Receipts in joined rooms changed since the last sync, as one `m.receipt` event per room.
/// Private receipts are shown only to their owner.
fn add_receipts(authed: &Authed, receipts: Vec<crate::storage::ReceiptRow>, response: &mut Response) -> Result<()> {
    let mut by_room: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
    for receipt in receipts {
        if receipt.receipt_type == "m.read.private" && receipt.user_id != authed.user_id.as_str() {
            continue;
        }
        let mut info = serde_json::json!({"ts": receipt.ts});
        if !receipt.thread_id.is_empty() {
            info["thread_id"] = receipt.thread_id.into();
        }
        let content = by_room.entry(receipt.room_id).or_default();
        let event = content.entry(receipt.event_id).or_insert_with(|| serde_json::json!({}));
        event[&receipt.receipt_type][&receipt.user_id] = info;
    }
    for (room, content) in by_room {
        let event = serde_json::json!({"type": "m.receipt", "content": content});
        response.rooms.join.entry(room_id(&room)?).or_default().ephemeral.events.push(to_raw(&event)?);
    }
    Ok(())
}

/// The filter's `presence` section (clients switch presence off with `not_types: ["*"]`).
fn presence_filter_allows(filter: &ruma::api::client::filter::Filter, event: &Value) -> bool {
    use crate::rooms::timeline::glob_matches;
    let sender = event["sender"].as_str().unwrap_or_default();
    let event_type = event["type"].as_str().unwrap_or_default();
    filter.types.as_ref().is_none_or(|types| types.iter().any(|t| glob_matches(t, event_type)))
        && !filter.not_types.iter().any(|t| glob_matches(t, event_type))
        && filter.senders.as_ref().is_none_or(|senders| senders.iter().any(|s| s.as_str() == sender))
        && !filter.not_senders.iter().any(|s| s.as_str() == sender)
}

/// An event in a room's /sync section (which is keyed by room, so events carry no room ID).
fn sync_event(row: &EventRow, now_ms: i64) -> ClientEvent<'_> {
    ClientEvent { row, now_ms, with_room_id: false, transaction_id: None, relations: None }
}

/// Unread notification and highlight counts for every joined room in the response: per thread
/// when the filter asks for that, otherwise all threads together.
fn add_unread_counts(counts: Vec<crate::storage::UnreadCount>, per_thread: bool, response: &mut Response) {
    use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
    let uint = |n: i64| ruma::UInt::try_from(n).unwrap_or_default();
    let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
    for count in counts {
        let Some(room) = response.rooms.join.get_mut(count.room_id.as_str()) else { continue };
        if per_thread && count.thread_id != "main" {
            let Ok(thread) = ruma::OwnedEventId::try_from(count.thread_id.as_str()) else { continue };
            let mut unread = UnreadNotificationsCount::new();
            unread.notification_count = Some(uint(count.notifications));
            unread.highlight_count = Some(uint(count.highlights));
            room.unread_thread_notifications.insert(thread, unread);
        } else {
            let total = totals.entry(count.room_id).or_default();
            total.0 += count.notifications;
            total.1 += count.highlights;
        }
    }
    for (room_id, room) in response.rooms.join.iter_mut() {
        let (notifications, highlights) = totals.get(room_id.as_str()).copied().unwrap_or_default();
        room.unread_notifications.notification_count = Some(uint(notifications));
        room.unread_notifications.highlight_count = Some(uint(highlights));
    }
}

/// Rooms whose member counts and heroes (which clients use to name rooms without a name, like
/// DMs) are sent: all on an initial sync, otherwise those whose membership may have changed.
fn rooms_needing_summaries(response: &Response, initial: bool) -> Vec<String> {
    response
        .rooms
        .join
        .iter()
        .filter(|(_, room)| {
            initial
                || room.timeline.events.iter().any(|e| e.json().get().contains("\"m.room.member\""))
                || matches!(&room.state, State::Before(s) if !s.events.is_empty())
        })
        .map(|(id, _)| id.to_string())
        .collect()
}

fn add_summaries(summaries: HashMap<String, crate::storage::MemberSummary>, response: &mut Response) {
    for (room_id, summary) in summaries {
        let Some(room) = response.rooms.join.get_mut(room_id.as_str()) else { continue };
        room.summary.joined_member_count = Some(ruma::UInt::try_from(summary.joined).unwrap_or_default());
        room.summary.invited_member_count = Some(ruma::UInt::try_from(summary.invited).unwrap_or_default());
        room.summary.heroes = summary.heroes.into_iter().filter_map(|u| ruma::OwnedUserId::try_from(u).ok()).collect();
    }
}

/// The full states at `groups`, and their events by ID.
async fn full_states(
    state: &AppState,
    groups: &[i64],
) -> Result<(HashMap<i64, crate::storage::StateMap>, HashMap<String, EventRow>)> {
    let states = state.storage.states_at_groups(groups).await?;
    let ids: Vec<String> =
        states.values().flat_map(|m| m.values().cloned()).collect::<HashSet<_>>().into_iter().collect();
    let events = state.storage.events_by_id(&ids).await?.into_iter().map(|row| (row.event_id.clone(), row)).collect();
    Ok((states, events))
}

fn room_id(id: &str) -> Result<OwnedRoomId> {
    OwnedRoomId::try_from(id).map_err(|e| Error::internal(format!("stored room ID: {e}")))
}

/// State entries at `start_group` that differ from the room's state at stream position `since`.
async fn changed_state(state: &AppState, room_id: &str, since: i64, start_group: i64) -> Result<Vec<EventRow>> {
    let before = state.storage.room_event_at_or_before(room_id, since).await?;
    let old = match before {
        Some(row) => state.storage.state_at_group(row.state_group_after).await?,
        None => Default::default(),
    };
    let new = state.storage.state_at_group(start_group).await?;
    let changed: Vec<String> = new.into_iter().filter(|(key, id)| old.get(key) != Some(id)).map(|(_, id)| id).collect();
    Ok(state.storage.events_by_id(&changed).await?)
}

/// Applies the state filter and, with lazy loading, keeps only the members the timeline needs.
fn select_state(
    rows: Vec<EventRow>,
    timeline: &[&EventRow],
    user_id: &UserId,
    lazy_members: bool,
    filter: &RoomEventFilter,
) -> Vec<EventRow> {
    let timeline_ids: HashSet<&str> = timeline.iter().map(|r| r.event_id.as_str()).collect();
    let senders: HashSet<&str> = timeline.iter().map(|r| r.sender.as_str()).collect();
    rows.into_iter()
        .filter(|row| !timeline_ids.contains(row.event_id.as_str()))
        .filter(|row| matches_filter(filter, row))
        .filter(|row| {
            !lazy_members
                || row.event_type != "m.room.member"
                || row.state_key.as_deref().is_some_and(|key| senders.contains(key) || key == user_id.as_str())
        })
        .collect()
}

/// The stripped state shown for an invite or a knock, with the membership event itself.
async fn stripped_room_state(
    state: &AppState,
    membership: &MembershipRow,
) -> Result<Vec<Raw<ruma::events::AnyStrippedStateEvent>>> {
    let invite =
        state.storage.event(&membership.event_id).await?.ok_or_else(|| Error::internal("invite event missing"))?;
    // An invite into a room we are not in carries the state its server sent.
    let remote = state.storage.remote_invite_state(&membership.room_id, &membership.user_id, &invite.event_id).await?;
    if let Some(serde_json::Value::Array(stripped)) = remote {
        let mut events: Vec<serde_json::Value> = stripped;
        events.push(stripped_state(&invite));
        return events.iter().map(to_raw).collect();
    }
    let keys: Vec<(String, String)> = INVITE_STATE_TYPES.iter().map(|t| ((*t).to_owned(), String::new())).collect();
    let entries = state.storage.state_entries_at_group(invite.state_group_after, &keys).await?;
    let ids: Vec<String> = entries.into_values().collect();
    let mut rows = state.storage.events_by_id(&ids).await?;
    rows.push(invite);
    rows.iter().map(|row| to_raw(&stripped_state(row))).collect()
}

/// Resolves the `filter` parameter: inline JSON or a stored filter ID.
pub async fn resolve_filter(
    state: &AppState,
    user_id: &UserId,
    filter: Option<ruma::api::client::sync::sync_events::v3::Filter>,
) -> Result<FilterDefinition> {
    use ruma::api::client::sync::sync_events::v3::Filter;
    match filter {
        None => Ok(FilterDefinition::default()),
        Some(Filter::FilterDefinition(definition)) => Ok(definition),
        Some(Filter::FilterId(id)) => {
            let json = state.storage.filter(user_id.as_str(), &id).await?;
            let json = json.ok_or_else(|| Error::not_found("Unknown filter"))?;
            serde_json::from_str(&json).map_err(|e| Error::internal(format!("stored filter: {e}")))
        }
        Some(_) => Err(Error::invalid_param("Unsupported filter")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_older_tokens_start_missing_streams_at_zero() {
        let token = SyncToken {
            events: 9,
            account_data: 1,
            typing: Some(2),
            receipts: 3,
            device_lists: 4,
            to_device: 5,
            presence: 6,
        };
        assert_eq!(parse_sync_token(&token.to_string()).unwrap(), token);
        let old = parse_sync_token("s9_1_2_3_4_5").unwrap();
        assert_eq!(old, SyncToken { presence: 0, ..token });
        assert!(parse_sync_token("s9_1_2_3_4_5_x").is_err());
    }
}
