//! Rooms, their events and memberships (state groups are in `state_groups`).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::state_groups::StateGroupNumbers;
use super::{Engine, Result, Storage, empty_window, flag, placeholders};

/// A state map: `(event type, state key)` → event ID.
pub type StateMap = HashMap<(String, String), String>;

/// Rooms whose timelines one query reads (SQLite allows at most 500 parts in a compound select).
const ROOMS_PER_TIMELINE_QUERY: usize = 100;

/// The walk of room `room` (an SQL expression) back from `$2` to `$1` (exclusive): at most `$3`
/// accepted events, newest first. Reads only the timeline index.
fn timeline_walk(room: &str) -> String {
    format!(
        "SELECT e.event_id FROM events e WHERE e.room_id = {room} AND e.stream_ordering > $1 \
         AND e.stream_ordering <= $2 AND e.outlier = 0 AND e.rejected_reason IS NULL \
         ORDER BY e.stream_ordering DESC LIMIT $3"
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub is_public: bool,
    pub current_state_group: Option<i64>,
    /// A direct chat: created here with `is_direct`, or first known here through an invite
    /// that said `is_direct` (set once, never by later events).
    pub is_direct: bool,
}

/// A stored event with its position and state groups.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub state_group_before: i64,
    pub state_group_after: i64,
    pub rejected_reason: Option<String>,
    /// Shared: cached events are handed out without copying their JSON.
    pub json: std::sync::Arc<serde_json::Value>,
}

pub(super) const EVENT_COLUMNS: &str = "e.stream_ordering, e.event_id, e.room_id, e.event_type, e.state_key, e.sender, e.depth, \
     e.origin_server_ts, e.state_group_before, e.state_group_after, e.rejected_reason, e.json";

impl EventRow {
    pub(super) fn from_row(codec: &super::codec::Codec, row: &AnyRow) -> Result<Self> {
        let event_id: String = row.try_get("event_id")?;
        let bytes: Vec<u8> = row.try_get("json")?;
        let json = std::sync::Arc::new(codec.decode(&event_id, &bytes)?);
        Ok(Self {
            stream_ordering: row.try_get("stream_ordering")?,
            event_id,
            room_id: row.try_get("room_id")?,
            event_type: row.try_get("event_type")?,
            state_key: row.try_get("state_key")?,
            sender: row.try_get("sender")?,
            depth: row.try_get("depth")?,
            origin_server_ts: row.try_get("origin_server_ts")?,
            state_group_before: row.try_get("state_group_before")?,
            state_group_after: row.try_get("state_group_after")?,
            rejected_reason: row.try_get("rejected_reason")?,
            json,
        })
    }
}

/// Which end of a range of events to read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// An event to persist, with everything derived from it that must change atomically.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub room_id: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// The signed event JSON.
    pub json: serde_json::Value,
    pub prev_events: Vec<String>,
    pub rejected_reason: Option<String>,
    /// State group of the room state before the event.
    pub state_group_before: i64,
    /// For a state event, the number its state group gets when taken in advance (see
    /// [`Storage::reserve_state_group`]); else the writer takes one.
    pub state_group_after: Option<i64>,
    /// The client transaction that sent it: (user, device, txn ID).
    pub txn: Option<(String, String, String)>,
    /// Known only for a room's state or auth chain (received when joining over federation): kept
    /// out of the timeline, the current state and the forward extremities.
    pub outlier: bool,
    /// Other servers to send the event to (queued in the same transaction).
    pub destinations: Vec<String>,
    /// Set when the event joins forks of the DAG: the room's current state is then this
    /// resolved state group, not the state after the event, with these membership rows
    /// `(user, membership, event ID)` that differ from before.
    pub resolved_current: Option<ResolvedCurrent>,
    /// Members the event notifies, written in the event's transaction so unread counts never
    /// lag the timeline.
    pub push_actions: Vec<PushAction>,
}

/// The room's current state after an event that met a fork (see [`NewEvent::resolved_current`]).
#[derive(Debug, Clone)]
pub struct ResolvedCurrent {
    pub state_group: i64,
    pub memberships: Vec<(String, String, String)>,
}

/// A member's push rule outcome for an event that notifies them (stored with the event's room,
/// ID and stream ordering).
#[derive(Debug, Clone, PartialEq)]
pub struct PushAction {
    pub user_id: String,
    /// The thread root's event ID, or `main`.
    pub thread_id: String,
    pub highlight: bool,
    /// The rule's actions, as JSON (for `/notifications`).
    pub actions: serde_json::Value,
}

/// Where an event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persisted {
    pub stream_ordering: i64,
    pub state_group_after: i64,
}

impl Storage {
    pub async fn create_room(
        &self,
        room_id: &str,
        room_version: &str,
        creator: &str,
        is_public: bool,
        is_direct: bool,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public, is_direct) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(room_id)
        .bind(room_version)
        .bind(creator)
        .bind(now)
        .bind(flag(is_public))
        .bind(flag(is_direct))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn room(&self, room_id: &str) -> Result<Option<RoomRow>> {
        let row = sqlx::query(
            "SELECT room_id, room_version, creator, is_public, current_state_group, is_direct FROM rooms \
             WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RoomRow {
            room_id: row.try_get("room_id")?,
            room_version: row.try_get("room_version")?,
            creator: row.try_get("creator")?,
            is_public: row.try_get::<i64, _>("is_public")? != 0,
            current_state_group: row.try_get("current_state_group")?,
            is_direct: row.try_get::<i64, _>("is_direct")? != 0,
        }))
    }

    pub async fn set_room_public(&self, room_id: &str, is_public: bool) -> Result<()> {
        sqlx::query("UPDATE rooms SET is_public = $2 WHERE room_id = $1")
            .bind(room_id)
            .bind(flag(is_public))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Persists an event and everything that follows from it atomically, in the order events
    /// are accepted. Concurrent callers' events are committed together in one transaction by the
    /// event writer (group commit).
    pub async fn persist_event(&self, event: &NewEvent) -> Result<Persisted> {
        self.event_writer.persist(event.clone()).await
    }

    /// Persists an event and, when it starts a new state group, caches `state_after` as that
    /// group's full state (the caller's copy of the state after the event, e.g. a room head's).
    pub async fn persist_event_sharing_state(
        &self,
        event: &NewEvent,
        state_after: Option<StateMap>,
    ) -> Result<Persisted> {
        self.queue_event_sharing_state(event.clone(), state_after).await?.committed().await
    }

    /// [`Self::queue_event`], caching `state_after` as [`Self::persist_event_sharing_state`]
    /// does once the event is committed.
    pub async fn queue_event_sharing_state(
        &self,
        event: NewEvent,
        state_after: Option<StateMap>,
    ) -> Result<super::QueuedEvent> {
        let shared_state = state_after.map(|state| super::event_writer::SharedState {
            cache: self.state_cache.clone(),
            generation: self.state_cache.generation(),
            state_group_before: event.state_group_before,
            state,
        });
        self.event_writer.enqueue(event, shared_state).await
    }

    /// A number for the state group after a state event, taken before the event is queued (see
    /// [`NewEvent::state_group_after`]) so the room's next event can be built on it at once.
    pub fn reserve_state_group(&self) -> i64 {
        self.state_group_numbers.next()
    }

    /// Queues an event for writing without waiting for its commit: events are committed in the
    /// order they are queued, so a room's next event may be built on it at once.
    pub async fn queue_event(&self, event: NewEvent) -> Result<super::QueuedEvent> {
        self.event_writer.enqueue(event, None).await
    }

    pub async fn forward_extremities(&self, room_id: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT f.event_id, e.depth FROM forward_extremities f JOIN events e ON e.event_id = f.event_id \
             WHERE f.room_id = $1 ORDER BY e.depth DESC, e.stream_ordering DESC",
        )
        .bind(room_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("event_id")?, row.try_get("depth")?))).collect()
    }

    pub async fn event(&self, event_id: &str) -> Result<Option<EventRow>> {
        Ok(self.events_by_id(std::slice::from_ref(&event_id.to_owned())).await?.pop())
    }

    /// Events by ID, from the event cache and one query for the rest; missing IDs are simply
    /// absent, and each event comes once.
    pub async fn events_by_id(&self, event_ids: &[String]) -> Result<Vec<EventRow>> {
        let generation = self.event_cache.generation();
        let mut events = Vec::with_capacity(event_ids.len());
        let mut wanted = std::collections::HashSet::with_capacity(event_ids.len());
        let mut missing = Vec::new();
        for id in event_ids {
            if !wanted.insert(id.as_str()) {
                continue;
            }
            match self.event_cache.get(id.as_str()) {
                Some(event) => events.push(event),
                None => missing.push(id),
            }
        }
        if missing.is_empty() {
            return Ok(events);
        }
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id {}", self.engine.in_list(1, missing.len()));
        let read = self.engine.bind_list(sqlx::query(&sql), &missing).fetch_all(&self.read).await?;
        let read = read.iter().map(|row| EventRow::from_row(&self.codec, row)).collect::<Result<Vec<_>>>()?;
        self.event_cache.insert_read(generation, read.iter().map(|event| (event.event_id.clone(), event.clone())));
        events.extend(read);
        Ok(events)
    }

    /// Forgets cached copies of events whose rows a committed write changed or deleted.
    pub(super) fn events_changed<'a>(&self, event_ids: impl IntoIterator<Item = &'a str>) {
        self.event_cache.invalidate(event_ids);
    }

    /// Accepted events of a room with `after < stream_ordering <= up_to`, at most `limit`, from
    /// the newest or the oldest end of that range.
    pub async fn room_events(
        &self,
        room_id: &str,
        after: i64,
        up_to: i64,
        limit: i64,
        order: Order,
    ) -> Result<Vec<EventRow>> {
        let direction = match order {
            Order::NewestFirst => "DESC",
            Order::OldestFirst => "ASC",
        };
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.stream_ordering > $2 \
             AND e.stream_ordering <= $3 AND e.rejected_reason IS NULL AND e.outlier = 0 ORDER BY e.stream_ordering {direction} LIMIT $4"
        ))
        .bind(room_id)
        .bind(after)
        .bind(up_to)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| EventRow::from_row(&self.codec, row)).collect()
    }

    /// For several rooms at once: the newest accepted events with `after < stream_ordering <=
    /// up_to`, at most `per_room` each, newest first within a room. Each room is its own
    /// `LIMIT`ed walk of the `(room_id, stream_ordering, …, event_id)` index, so the cost follows
    /// `per_room`, not the rooms' history; the walks are combined into one query per chunk of
    /// rooms and read only the index. The events come from the cache (which holds the newest),
    /// the rest by ID.
    pub async fn recent_events_in_rooms(
        &self,
        room_ids: &[String],
        after: i64,
        up_to: i64,
        per_room: i64,
    ) -> Result<Vec<EventRow>> {
        if empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let mut event_ids = Vec::new();
        for chunk in room_ids.chunks(ROOMS_PER_TIMELINE_QUERY) {
            let ids = match self.engine {
                Engine::Sqlite => {
                    let walks: Vec<String> = (0..chunk.len())
                        .map(|i| format!("SELECT * FROM ({}) AS walk{i}", timeline_walk(&format!("${}", 4 + i))))
                        .collect();
                    let sql = format!(
                        "SELECT {} AS ids FROM ({}) AS walks",
                        self.engine.json_rows(&["event_id"], ""),
                        walks.join(" UNION ALL ")
                    );
                    let mut query = sqlx::query(&sql).bind(after).bind(up_to).bind(per_room);
                    for room_id in chunk {
                        query = query.bind(room_id);
                    }
                    query.fetch_one(&self.read).await?
                }
                // One statement whatever the number of rooms (passed as a JSON array): its plan
                // is made once per connection, where a union of one walk per room was planned
                // anew for each room count, and planning it cost more than running it.
                Engine::Postgres => {
                    let sql = format!(
                        "SELECT {} AS ids FROM json_array_elements_text(CAST($4 AS json)) AS r (room_id) \
                         CROSS JOIN LATERAL ({}) AS w",
                        self.engine.json_rows(&["w.event_id"], ""),
                        timeline_walk("r.room_id")
                    );
                    let rooms = serde_json::json!(chunk).to_string();
                    sqlx::query(&sql).bind(after).bind(up_to).bind(per_room).bind(rooms).fetch_one(&self.read).await?
                }
            };
            event_ids.extend(super::json_rows_in::<String>(&ids, "ids")?);
        }
        let mut events = self.events_by_id(&event_ids).await?;
        events.sort_by(|a, b| a.room_id.cmp(&b.room_id).then(b.stream_ordering.cmp(&a.stream_ordering)));
        Ok(events)
    }

    /// The newest stream position (0 for an empty server).
    pub async fn max_stream_ordering(&self) -> Result<i64> {
        let row = sqlx::query(&format!("SELECT MAX(n) AS max FROM ({HIGHEST_ORDERINGS}) AS highest"))
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("max")?)
    }

    /// The last accepted event of a room at or before a stream position.
    pub async fn room_event_at_or_before(&self, room_id: &str, stream_ordering: i64) -> Result<Option<EventRow>> {
        let rows = self.room_events(room_id, i64::MIN, stream_ordering, 1, Order::NewestFirst).await?;
        Ok(rows.into_iter().next())
    }

    /// The accepted event closest to `ts` (milliseconds): the first at or after it going
    /// forward, the last at or before it going backward.
    pub async fn event_near_timestamp(&self, room_id: &str, ts: i64, forward: bool) -> Result<Option<EventRow>> {
        let (comparison, order) = if forward { (">=", "ASC") } else { ("<=", "DESC") };
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.origin_server_ts {comparison} $2 \
             AND e.rejected_reason IS NULL AND e.outlier = 0 ORDER BY e.origin_server_ts {order}, e.stream_ordering {order} LIMIT 1"
        ))
        .bind(room_id)
        .bind(ts)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(|row| EventRow::from_row(&self.codec, row)).transpose()
    }

    /// The first event after `after` that set the same state entry.
    pub async fn next_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        after: i64,
    ) -> Result<Option<EventRow>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.event_type = $2 AND e.state_key = $3 \
             AND e.stream_ordering > $4 AND e.outlier = 0 ORDER BY e.stream_ordering LIMIT 1"
        ))
        .bind(room_id)
        .bind(event_type)
        .bind(state_key)
        .bind(after)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(|row| EventRow::from_row(&self.codec, row)).transpose()
    }

    /// Replaces an event's stored JSON (with its redacted form); the original is not kept.
    pub async fn replace_event_json(&self, event_id: &str, json: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE events SET json = $2 WHERE event_id = $1")
            .bind(event_id)
            .bind(self.codec.encode(event_id, json))
            .execute(&self.write)
            .await?;
        self.events_changed([event_id]);
        Ok(())
    }

    /// Every stored event (outliers too) that set one state entry of a room, oldest first.
    pub async fn state_events_for_key(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.event_type = $2 AND e.state_key = $3 \
             ORDER BY e.stream_ordering"
        ))
        .bind(room_id)
        .bind(event_type)
        .bind(state_key)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| EventRow::from_row(&self.codec, row)).collect()
    }

    /// Replaces several events' stored JSON and drops the search and relation rows of `pruned`
    /// (their content is gone), in one transaction.
    pub async fn replace_pruned_events(
        &self,
        updates: &[(String, serde_json::Value)],
        pruned: &[String],
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for (event_id, json) in updates {
            sqlx::query("UPDATE events SET json = $2 WHERE event_id = $1")
                .bind(event_id)
                .bind(self.codec.encode(event_id, json))
                .execute(&mut *tx)
                .await?;
        }
        for ids in pruned.chunks(500) {
            let ids_in = placeholders(1, ids.len());
            let deletes = [
                super::search::delete_search_rows_of(&format!("event_id IN ({ids_in})")),
                format!("DELETE FROM event_relations WHERE event_id IN ({ids_in})"),
            ];
            for sql in &deletes {
                let mut query = sqlx::query(sql);
                for id in ids {
                    query = query.bind(id);
                }
                query.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        self.events_changed(updates.iter().map(|(event_id, _)| event_id.as_str()));
        Ok(())
    }

    pub async fn txn_event_id(&self, user_id: &str, device_id: &str, txn_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3")
            .bind(user_id)
            .bind(device_id)
            .bind(txn_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get("event_id")).transpose()?)
    }

    /// Transaction IDs a device used for any of `event_ids`: event ID → txn ID.
    pub async fn txn_ids_for_events(
        &self,
        user_id: &str,
        device_id: &str,
        event_ids: &[String],
    ) -> Result<HashMap<String, String>> {
        if event_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT event_id, txn_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND event_id {}",
            self.engine.in_list(3, event_ids.len())
        );
        let query = self.engine.bind_list(sqlx::query(&sql).bind(user_id).bind(device_id), event_ids);
        let rows = query.fetch_all(&self.read).await?;
        rows.iter().map(|row| Ok((row.try_get("event_id")?, row.try_get("txn_id")?))).collect()
    }
}

/// The newest stored event's ordering and the newest one a room purge removed: the next event
/// goes after both.
pub(super) const HIGHEST_ORDERINGS: &str = "SELECT COALESCE(MAX(stream_ordering), 0) AS n FROM events \
     UNION ALL SELECT position AS n FROM stream_positions WHERE stream = 'events_purged'";

/// Writes one event and everything that follows from it (state group, forward extremities,
/// current state, membership, transaction ID) on `tx`, with the next stream ordering.
/// The event writer's remembered next ordering is forgotten: this write takes one it cannot see.
pub(super) async fn insert_event(
    codec: &super::codec::Codec,
    tx: &mut AnyConnection,
    event: &NewEvent,
    next: &NextOrdering,
    groups: &StateGroupNumbers,
) -> Result<Persisted> {
    next.forget();
    let stream_ordering = next_stream_ordering(tx).await?;
    insert_event_at(codec, tx, event, stream_ordering, groups).await
}

/// The stream ordering the next event gets, as the event writer last committed it, so a batch
/// need not ask the database; unknown (0) until the first batch, after a failed one, and after
/// any other write of events. Read and changed only under the event order lock.
#[derive(Debug, Default)]
pub(super) struct NextOrdering(std::sync::atomic::AtomicI64);

impl NextOrdering {
    pub(super) fn known(&self) -> Option<i64> {
        Some(self.0.load(std::sync::atomic::Ordering::Relaxed)).filter(|next| *next > 0)
    }

    pub(super) fn set(&self, next: i64) {
        self.0.store(next, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn forget(&self) {
        self.set(0);
    }
}

/// The stream ordering the next event written on `tx` gets.
pub(super) async fn next_stream_ordering(tx: &mut AnyConnection) -> Result<i64> {
    let row = sqlx::query(&format!("SELECT MAX(n) + 1 AS next FROM ({HIGHEST_ORDERINGS}) AS highest"))
        .fetch_one(&mut *tx)
        .await?;
    Ok(row.try_get("next")?)
}

/// [`insert_event`] at a stream ordering the caller has determined (the event writer numbers a
/// whole batch from one lookup).
pub(super) async fn insert_event_at(
    codec: &super::codec::Codec,
    tx: &mut AnyConnection,
    event: &NewEvent,
    stream_ordering: i64,
    groups: &StateGroupNumbers,
) -> Result<Persisted> {
    let mut new_groups = super::state_groups::NewStateGroups::default();
    let state_group_after = super::event_batch::state_group_of(tx, event, groups, &mut new_groups).await?;
    let mut statements = super::json_statements::JsonStatements::new(super::Engine::of(tx));
    new_groups.queue(&mut statements);
    super::event_batch::queue_events(codec, &mut statements, &[(event, stream_ordering, state_group_after)]);
    statements.execute(tx).await?;
    Ok(Persisted { stream_ordering, state_group_after })
}

/// Sets a user's membership row from a member event that is in the room's current state.
pub(super) async fn upsert_membership(
    tx: &mut AnyConnection,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_id: &str,
    stream_ordering: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten, \
         last_join_ordering) VALUES ($1, $2, $3, $4, $5, 0, CASE WHEN $3 = 'join' THEN $5 ELSE NULL END) \
         ON CONFLICT (room_id, user_id) DO UPDATE SET \
         membership = excluded.membership, event_id = excluded.event_id, \
         stream_ordering = excluded.stream_ordering, forgotten = 0, \
         last_join_ordering = COALESCE(excluded.last_join_ordering, memberships.last_join_ordering)",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(membership)
    .bind(event_id)
    .bind(stream_ordering)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support;
    use super::*;

    fn event(event_id: &str, state_key: Option<&str>, state_group_before: i64) -> NewEvent {
        let event_type = if state_key.is_some() { "m.room.topic" } else { "m.room.message" };
        NewEvent {
            event_type: event_type.into(),
            state_key: state_key.map(str::to_owned),
            state_group_before,
            state_group_after: None,
            ..test_support::message("!r:x", event_id)
        }
    }

    #[tokio::test]
    async fn events_queued_on_a_state_event_whose_write_failed_fail_with_it() {
        for storage in test_support::engines().await {
            storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
            let empty = storage.create_empty_state_group("!r:x").await.unwrap();
            // Built on a group that does not exist, so its write fails; the next two are built
            // on the group it was to create, queued before that is known.
            let mut broken = event("$broken", Some(""), empty + 1_000_000);
            let lost = *broken.state_group_after.insert(storage.reserve_state_group());
            let mut next_state = event("$next", Some("x"), lost);
            let next_group = *next_state.state_group_after.insert(storage.reserve_state_group());
            let queued = [broken, next_state, event("$after", None, next_group)];
            let mut waiting = Vec::new();
            for event in queued {
                waiting.push(storage.queue_event(event).await.unwrap());
            }
            // Written independently, in the same batches: unaffected.
            let mut fine = event("$fine", Some("y"), empty);
            let fine_group = *fine.state_group_after.insert(storage.reserve_state_group());
            let fine = storage.queue_event(fine).await.unwrap();
            for queued in waiting {
                assert!(queued.committed().await.is_err(), "an event on a lost group was written");
            }
            assert_eq!(fine.committed().await.unwrap().state_group_after, fine_group, "the reserved number is used");
            for id in ["$broken", "$next", "$after"] {
                assert!(storage.event(id).await.unwrap().is_none(), "{id} was stored");
            }
            assert!(storage.event("$fine").await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn a_state_event_shares_the_state_after_it_and_a_message_shares_nothing() {
        for storage in test_support::engines().await {
            storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
            let topic: StateMap = [(("m.room.topic".to_owned(), String::new()), "$topic".to_owned())].into();
            let empty = storage.create_empty_state_group("!r:x").await.unwrap();
            let persisted = storage
                .persist_event_sharing_state(&event("$topic", Some(""), empty), Some(topic.clone()))
                .await
                .unwrap();
            let group = persisted.state_group_after;
            assert_ne!(group, empty, "a state event starts a group");
            assert_eq!(storage.state_cache.get(&group).as_deref(), Some(&topic));
            // What was shared is what the database holds for the group.
            storage.state_cache.clear();
            assert_eq!(storage.state_at_group(group).await.unwrap(), topic);

            let bogus: StateMap = [(("x".to_owned(), "y".to_owned()), "$bogus".to_owned())].into();
            let message = storage.persist_event_sharing_state(&event("$m", None, group), Some(bogus)).await.unwrap();
            assert_eq!(message.state_group_after, group);
            assert_eq!(storage.state_cache.get(&group).as_deref(), Some(&topic));
        }
    }
}
