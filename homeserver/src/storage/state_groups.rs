//! State groups: a room's state after each event, stored as deltas on an earlier group (with a
//! full snapshot whenever a delta chain grows long), and reading states back through the chains.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::json_statements::JsonStatements;
use super::rooms::{EVENT_COLUMNS, EventRow, StateMap};
use super::{JsonColumn, Result, Storage, StorageError};

/// Longest delta chain before a state group is written as a full snapshot.
const MAX_STATE_CHAIN: i64 = 50;

/// The delta chain of state group `$1`: each group on it with its distance from `$1`.
const CHAIN_OF_ONE_GROUP: &str = "WITH RECURSIVE chain (state_group, distance) AS ( \
     SELECT $1, 0 \
     UNION ALL \
     SELECT g.prev_group, chain.distance + 1 FROM state_groups g \
     JOIN chain ON g.state_group = chain.state_group WHERE g.prev_group IS NOT NULL)";

impl Storage {
    /// Creates the empty state group a room starts from (before its create event) and makes it
    /// the room's current state.
    pub async fn create_empty_state_group(&self, room_id: &str) -> Result<i64> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        let group = self.state_group_numbers.next();
        sqlx::query("INSERT INTO state_groups (state_group, room_id, prev_group, chain_len) VALUES ($1, $2, NULL, 0)")
            .bind(group)
            .bind(room_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE rooms SET current_state_group = $2 WHERE room_id = $1")
            .bind(room_id)
            .bind(group)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(group)
    }

    /// The full state of a state group, resolved through its delta chain in one query.
    pub async fn state_at_group(&self, state_group: i64) -> Result<StateMap> {
        Ok(self.states_at_groups(&[state_group]).await?.remove(&state_group).unwrap_or_default())
    }

    /// The full states of several state groups: from the state cache, and one query for the rest.
    pub async fn states_at_groups(&self, groups: &[i64]) -> Result<HashMap<i64, StateMap>> {
        let generation = self.state_cache.generation();
        let (mut states, missing) = self.cached_state_entries(groups, &[]);
        if missing.is_empty() {
            return Ok(states);
        }
        let read = self.read_state_entries(&missing, &[]).await?;
        // Groups with no entries are not cached: a room's first group is empty, and so is the
        // answer for a number not yet written.
        self.state_cache
            .insert_read(generation, read.iter().map(|(group, state)| (*group, std::sync::Arc::new(state.clone()))));
        for group in missing {
            states.entry(group).or_default();
        }
        states.extend(read);
        Ok(states)
    }

    /// The given `(type, state_key)` entries of several state groups: taken from the state cache
    /// where a group's full state is there, the others resolved in one query.
    pub async fn state_entries_at_groups(
        &self,
        groups: &[i64],
        keys: &[(String, String)],
    ) -> Result<HashMap<i64, StateMap>> {
        let (mut states, missing) = self.cached_state_entries(groups, keys);
        states.extend(self.read_state_entries(&missing, keys).await?);
        Ok(states)
    }

    /// The `keys` entries (all when empty) of the groups whose full state is cached, and the
    /// groups that are not; each group once.
    fn cached_state_entries(&self, groups: &[i64], keys: &[(String, String)]) -> (HashMap<i64, StateMap>, Vec<i64>) {
        let mut states = HashMap::with_capacity(groups.len());
        let mut missing = Vec::new();
        let mut wanted = std::collections::HashSet::with_capacity(groups.len());
        for &group in groups {
            if !wanted.insert(group) {
                continue;
            }
            match self.state_cache.get(&group) {
                Some(state) => {
                    states.insert(group, entries_of(&state, keys));
                }
                None => missing.push(group),
            }
        }
        (states, missing)
    }

    /// The given `(type, state_key)` entries (all of them when `keys` is empty) of several state
    /// groups, each resolved through its delta chain, in one query.
    async fn read_state_entries(&self, groups: &[i64], keys: &[(String, String)]) -> Result<HashMap<i64, StateMap>> {
        let mut states: HashMap<i64, StateMap> = HashMap::new();
        if groups.is_empty() {
            return Ok(states);
        }
        let roots: Vec<String> = (1..=groups.len()).map(|i| format!("SELECT ${i}, ${i}, 0")).collect();
        let sql = format!(
            "WITH RECURSIVE chain (root, state_group, distance) AS ( \
                 {} \
                 UNION ALL \
                 SELECT chain.root, g.prev_group, chain.distance + 1 FROM state_groups g \
                 JOIN chain ON g.state_group = chain.state_group WHERE g.prev_group IS NOT NULL) \
             SELECT chain.root, s.event_type, s.state_key, s.event_id FROM state_group_entries s \
             JOIN chain ON s.state_group = chain.state_group {} ORDER BY chain.root, chain.distance DESC",
            roots.join(" UNION ALL "),
            key_filter(groups.len() + 1, keys.len()),
        );
        let mut query = sqlx::query(&sql);
        for group in groups {
            query = query.bind(group);
        }
        for (event_type, state_key) in keys {
            query = query.bind(event_type).bind(state_key);
        }
        // Per root, oldest deltas first, so newer entries overwrite them.
        for row in query.fetch_all(&self.read).await? {
            let root: i64 = row.try_get("root")?;
            states
                .entry(root)
                .or_default()
                .insert((row.try_get("event_type")?, row.try_get("state_key")?), row.try_get("event_id")?);
        }
        Ok(states)
    }

    /// Only the given `(type, state_key)` entries of a state group.
    pub async fn state_entries_at_group(&self, state_group: i64, keys: &[(String, String)]) -> Result<StateMap> {
        if keys.is_empty() {
            return Ok(StateMap::new());
        }
        if let Some(state) = self.state_cache.get(&state_group) {
            return Ok(entries_of(&state, keys));
        }
        let mut conn = self.read.acquire().await?;
        load_state(&mut conn, state_group, keys).await
    }

    /// A few state events of a state group, in a single query (the delta chain walked in SQL).
    pub async fn state_events_at_group(&self, state_group: i64, keys: &[(&str, &str)]) -> Result<Vec<EventRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{CHAIN_OF_ONE_GROUP} SELECT {EVENT_COLUMNS} FROM state_group_entries s \
             JOIN chain ON s.state_group = chain.state_group JOIN events e ON e.event_id = s.event_id \
             {} ORDER BY chain.distance",
            key_filter(2, keys.len())
        );
        let mut query = sqlx::query(&sql).bind(state_group);
        for (event_type, state_key) in keys {
            query = query.bind(*event_type).bind(*state_key);
        }
        let rows = query.fetch_all(&self.read).await?;
        // Newest delta first: the first entry of each key is the one in force.
        let mut seen = std::collections::HashSet::new();
        let mut events = Vec::with_capacity(keys.len());
        for row in &rows {
            let event = EventRow::from_row(&self.codec, row)?;
            if seen.insert((event.event_type.clone(), event.state_key.clone())) {
                events.push(event);
            }
        }
        Ok(events)
    }
}

/// The entries of `keys` that a full state holds. An empty `keys` means all of them.
fn entries_of(state: &StateMap, keys: &[(String, String)]) -> StateMap {
    if keys.is_empty() {
        return state.clone();
    }
    keys.iter().filter_map(|key| state.get(key).map(|id| (key.clone(), id.clone()))).collect()
}

/// Writes a full snapshot state group numbered `group` for `state`.
pub(super) async fn write_snapshot(
    conn: &mut AnyConnection,
    room_id: &str,
    group: i64,
    state: &StateMap,
) -> Result<i64> {
    let mut snapshot = NewStateGroups::default();
    snapshot.add_snapshot(room_id, group, state.iter().map(|((t, k), id)| (t.clone(), k.clone(), id.clone())));
    snapshot.write(conn).await?;
    Ok(group)
}

/// `WHERE` clause matching `count` `(type, state_key)` pairs bound from parameter `$first` on;
/// empty for none.
fn key_filter(first: usize, count: usize) -> String {
    if count == 0 {
        return String::new();
    }
    let clauses: Vec<String> = (0..count)
        .map(|i| format!("(s.event_type = ${} AND s.state_key = ${})", first + 2 * i, first + 1 + 2 * i))
        .collect();
    format!("WHERE {}", clauses.join(" OR "))
}

/// Resolves a state group through its delta chain; with `keys`, only those entries.
async fn load_state(conn: &mut AnyConnection, state_group: i64, keys: &[(String, String)]) -> Result<StateMap> {
    let key_filter = key_filter(2, keys.len());
    let sql = format!(
        "{CHAIN_OF_ONE_GROUP} SELECT s.event_type, s.state_key, s.event_id FROM state_group_entries s \
         JOIN chain ON s.state_group = chain.state_group {key_filter} ORDER BY chain.distance DESC"
    );
    let mut query = sqlx::query(&sql).bind(state_group);
    for (event_type, state_key) in keys {
        query = query.bind(event_type).bind(state_key);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut state = StateMap::with_capacity(rows.len());
    // Oldest deltas first, so newer entries overwrite them.
    for row in rows {
        state.insert((row.try_get("event_type")?, row.try_get("state_key")?), row.try_get("event_id")?);
    }
    Ok(state)
}

/// Numbers for new state groups, handed out in memory (from the highest stored one at start) so
/// a state event's group is known before it is written: the room's next event is built on it
/// while it is committed. A number is never handed out twice in a run; one whose write failed
/// stays unused.
#[derive(Debug, Default)]
pub(super) struct StateGroupNumbers(std::sync::atomic::AtomicI64);

impl StateGroupNumbers {
    /// Continues after the highest group stored.
    pub(super) async fn seed(&self, pool: &sqlx::AnyPool) -> Result<()> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(state_group), 0) + 1 AS next FROM state_groups").fetch_one(pool).await?;
        self.0.store(row.try_get("next")?, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    pub(super) fn next(&self) -> i64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }
}

/// The state groups of a batch of state events, gathered to be written with the batch's other
/// rows (one statement per table) rather than three statements each.
#[derive(Debug, Default)]
pub(super) struct NewStateGroups {
    /// The delta chain length of each group this batch writes or has looked up.
    chain_lens: HashMap<i64, i64>,
    /// `(group, room, previous group, chain length)`, not written yet.
    groups: Vec<(i64, String, Option<i64>, i64)>,
    /// `(group, type, state key, event ID)`, not written yet.
    entries: Vec<(i64, String, String, String)>,
}

impl NewStateGroups {
    /// Adds the state group `group` after a state event: a delta on `before`, or a full
    /// snapshot when the delta chain has grown long.
    pub(super) async fn add(
        &mut self,
        conn: &mut AnyConnection,
        room_id: &str,
        before: i64,
        group: i64,
        entry: &(String, String, String),
    ) -> Result<i64> {
        let chain_len = match self.chain_lens.get(&before) {
            Some(len) => *len,
            None => {
                let len = chain_len_of(conn, before).await?;
                self.chain_lens.insert(before, len);
                len
            }
        };
        if chain_len >= MAX_STATE_CHAIN {
            // The state before may be one gathered here: what is gathered goes in first.
            self.write(conn).await?;
            let mut state = load_state(conn, before, &[]).await?;
            state.insert((entry.0.clone(), entry.1.clone()), entry.2.clone());
            self.add_snapshot(room_id, group, state.into_iter().map(|((t, k), id)| (t, k, id)));
        } else {
            self.entries.push((group, entry.0.clone(), entry.1.clone(), entry.2.clone()));
            self.groups.push((group, room_id.to_owned(), Some(before), chain_len + 1));
            self.chain_lens.insert(group, chain_len + 1);
        }
        Ok(group)
    }

    /// Adds the full snapshot state group `group` with the entries `(type, state key, event ID)`.
    fn add_snapshot(&mut self, room_id: &str, group: i64, entries: impl Iterator<Item = (String, String, String)>) {
        self.entries.extend(entries.map(|(t, k, id)| (group, t, k, id)));
        self.groups.push((group, room_id.to_owned(), None, 0));
        self.chain_lens.insert(group, 0);
    }

    /// Adds the gathered rows to `statements`, and forgets them.
    pub(super) fn queue(&mut self, statements: &mut JsonStatements) {
        let engine = statements.engine();
        statements.push(&std::mem::take(&mut self.groups), |param| {
            format!(
                "INSERT INTO state_groups (state_group, room_id, prev_group, chain_len) {}",
                engine.json_table(param, &[JsonColumn::Int, JsonColumn::Text, JsonColumn::Int, JsonColumn::Int])
            )
        });
        statements.push(&std::mem::take(&mut self.entries), |param| {
            format!(
                "INSERT INTO state_group_entries (state_group, event_type, state_key, event_id) {}",
                engine.json_table(param, &[JsonColumn::Int, JsonColumn::Text, JsonColumn::Text, JsonColumn::Text])
            )
        });
    }

    /// Writes the gathered rows now.
    async fn write(&mut self, conn: &mut AnyConnection) -> Result<()> {
        let mut statements = JsonStatements::new(super::Engine::of(conn));
        self.queue(&mut statements);
        statements.execute(conn).await
    }
}

async fn chain_len_of(conn: &mut AnyConnection, group: i64) -> Result<i64> {
    sqlx::query("SELECT chain_len FROM state_groups WHERE state_group = $1")
        .bind(group)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get("chain_len"))
        .transpose()?
        .ok_or_else(|| StorageError::Corrupt(format!("state group {group} is missing")))
}
