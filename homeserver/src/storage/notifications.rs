//! Push actions: which members an event notified, unread counts since each member's read
//! receipt, and the `/notifications` list.

use sqlx::{AnyConnection, Row};

use super::json_statements::JsonStatements;
use super::rooms::{NewEvent, PushAction};
use super::{Engine, JsonColumn, Result, Storage, flag, placeholders};

/// Unread notifications of a user in one room and thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadCount {
    pub room_id: String,
    pub thread_id: String,
    pub notifications: i64,
    pub highlights: i64,
}

/// A user's unread counts in one room, exact through stream position `through`.
#[derive(Debug)]
pub(super) struct RoomUnread {
    through: i64,
    counts: Vec<UnreadCount>,
}

/// Cached unread counts by `(user, room)`.
pub(super) type UnreadCache = super::cache::Cache<(String, String), std::sync::Arc<RoomUnread>>;

/// `(user, room)` pairs whose unread counts are kept in memory.
pub(super) const CACHED_UNREAD_ROOMS: usize = 20_000;

/// One entry of `/notifications`.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRow {
    pub room_id: String,
    pub event_id: String,
    pub stream_ordering: i64,
    pub actions: serde_json::Value,
    pub read: bool,
}

/// The newest stream position the user has read in the room for a thread: their latest
/// `m.read`/`m.read.private` receipt, unthreaded or for that thread.
const READ_UP_TO: &str = "COALESCE((SELECT MAX(e.stream_ordering) FROM receipts r JOIN events e ON e.event_id = r.event_id \
     WHERE r.room_id = a.room_id AND r.user_id = a.user_id AND r.receipt_type IN ('m.read', 'm.read.private') \
     AND (r.thread_id = '' OR r.thread_id = a.thread_id)), 0)";

/// Adds the push actions of a batch of events, each at its event's stream ordering, to the
/// event writer's statements. Where the engine stages them (see [`Engine::stages_push_actions`])
/// they go to `recent_push_actions`, ordered by position, so a batch appends to a page or two
/// however many members it notifies; [`move_recent_push_actions`] later files them by member.
pub(super) fn queue_push_actions(statements: &mut JsonStatements, actions: &[(&NewEvent, i64, &PushAction)]) {
    use JsonColumn::{Int, Text};
    let engine = statements.engine();
    let (table, key) = if engine.stages_push_actions() {
        ("recent_push_actions", "stream_ordering, user_id")
    } else {
        ("event_push_actions", "user_id, room_id, stream_ordering")
    };
    let rows: Vec<_> = actions
        .iter()
        .map(|(event, stream_ordering, action)| {
            (
                action.user_id.as_str(),
                event.room_id.as_str(),
                event.event_id.as_str(),
                *stream_ordering,
                action.thread_id.as_str(),
                flag(action.highlight),
                action.actions.to_string(),
            )
        })
        .collect();
    statements.push(&rows, |param| {
        format!(
            "INSERT INTO {table} (user_id, room_id, event_id, stream_ordering, thread_id, highlight, actions) \
             {} ON CONFLICT ({key}) DO NOTHING",
            engine.json_table(param, &[Text, Text, Text, Int, Text, Int, Text])
        )
    });
}

/// Recent push actions are moved into `event_push_actions` once this many have been written:
/// the move then adds many rows to each member's range at once. It also bounds the recent
/// rows a count or a `/notifications` page reads without a per-member index.
pub(super) const RECENT_PUSH_ACTIONS_MOVED_AT: usize = 4_096;

/// Moves every recent push action into `event_push_actions` in one transaction, in member
/// order, so each member's range takes its rows together. Only SQLite's event writer (under the
/// event order lock, on the one write connection purges and erasures also use) and a copy into
/// a new database (before anything else uses it) move them.
pub(super) async fn move_recent_push_actions(pool: &sqlx::AnyPool) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let moved = move_recent_push_actions_on(&mut tx).await?;
    tx.commit().await?;
    Ok(moved)
}

async fn move_recent_push_actions_on(conn: &mut AnyConnection) -> Result<u64> {
    const COLUMNS: &str = "user_id, room_id, stream_ordering, event_id, thread_id, highlight, actions";
    let moved = sqlx::query(&format!(
        "INSERT INTO event_push_actions ({COLUMNS}) SELECT {COLUMNS} FROM recent_push_actions \
         WHERE true ORDER BY user_id, room_id, stream_ordering ON CONFLICT (user_id, room_id, stream_ordering) DO NOTHING"
    ))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM recent_push_actions").execute(&mut *conn).await?;
    Ok(moved)
}

impl Engine {
    /// Whether push actions are written to `recent_push_actions` first. SQLite's write-ahead log
    /// takes whole pages, so a row added to each notified member's range of
    /// `event_push_actions` cost a page per member per commit; PostgreSQL logs the rows, and
    /// writes them straight where they belong (its `recent_push_actions` stays empty: a copy
    /// from SQLite moves the rows it brings).
    pub(super) fn stages_push_actions(self) -> bool {
        self == Engine::Sqlite
    }
}

/// Both tables of push actions, read as one.
const PUSH_ACTION_TABLES: [&str; 2] = ["event_push_actions", "recent_push_actions"];

impl Storage {
    /// Unread notification and highlight counts per room and thread, for these rooms, through
    /// stream position `up_to` (which every push action at or before it has committed by).
    ///
    /// Counts are cached per user and room, exact through a stream position: a later call counts
    /// only the push actions since, added to the cached counts (a push action is always newer
    /// than the receipts it is counted against). Receipts and deletions of push actions or
    /// receipts drop the cached counts they change.
    pub async fn unread_counts(&self, user_id: &str, room_ids: &[String], up_to: i64) -> Result<Vec<UnreadCount>> {
        let generation = self.unread_cache.generation();
        let mut counts = Vec::new();
        let mut windows: Vec<(&str, i64, Option<std::sync::Arc<RoomUnread>>)> = Vec::new();
        for room_id in room_ids {
            match self.unread_cache.get(&(user_id.to_owned(), room_id.clone())) {
                Some(cached) if cached.through >= up_to => counts.extend(cached.counts.iter().cloned()),
                Some(cached) => windows.push((room_id, cached.through, Some(cached))),
                None => windows.push((room_id, 0, None)),
            }
        }
        if windows.is_empty() {
            return Ok(counts);
        }
        let after: Vec<(&str, i64)> = windows.iter().map(|(room, after, _)| (*room, *after)).collect();
        let mut new_counts = self.count_unread(user_id, &after, up_to).await?;
        let mut fresh = Vec::with_capacity(windows.len());
        for (room_id, _, cached) in windows {
            let mut room_counts: Vec<UnreadCount> = cached.map(|c| c.counts.clone()).unwrap_or_default();
            for new in new_counts.extract_if(.., |c| c.room_id == room_id) {
                match room_counts.iter_mut().find(|c| c.thread_id == new.thread_id) {
                    Some(count) => {
                        count.notifications += new.notifications;
                        count.highlights += new.highlights;
                    }
                    None => room_counts.push(new),
                }
            }
            counts.extend(room_counts.iter().cloned());
            let entry = RoomUnread { through: up_to, counts: room_counts };
            fresh.push(((user_id.to_owned(), room_id.to_owned()), std::sync::Arc::new(entry)));
        }
        self.unread_cache.insert_read(generation, fresh);
        Ok(counts)
    }

    /// Counts the push actions in each `(room, after)` window that are after the user's read
    /// receipts and at or before `up_to`, per room and thread, in one query.
    async fn count_unread(&self, user_id: &str, windows: &[(&str, i64)], up_to: i64) -> Result<Vec<UnreadCount>> {
        // The read positions first (few rows), joined to the push actions: a correlated lookup
        // per push action made the count cost a receipt search per unread event.
        let rooms = placeholders(3, windows.len());
        let bounds: Vec<String> =
            (0..windows.len()).map(|i| format!("(${}, CAST(${} AS BIGINT))", 3 + i, 3 + windows.len() + i)).collect();
        // Both tables alike; `$min_after` lets the recent rows be read as a range of positions.
        let min_after = 3 + 2 * windows.len();
        let counted = PUSH_ACTION_TABLES.map(|table| {
            format!(
                "SELECT a.room_id, a.thread_id, a.highlight FROM {table} a \
                 JOIN (VALUES {}) AS w ON w.column1 = a.room_id AND a.stream_ordering > w.column2 \
                 LEFT JOIN reads unthreaded ON unthreaded.room_id = a.room_id AND unthreaded.thread_id = '' \
                 LEFT JOIN reads threaded ON threaded.room_id = a.room_id AND threaded.thread_id = a.thread_id \
                     AND threaded.thread_id <> '' \
                 WHERE a.user_id = $1 AND a.room_id IN ({rooms}) AND a.stream_ordering <= $2 \
                 AND a.stream_ordering > ${min_after} \
                 AND a.stream_ordering > COALESCE(unthreaded.pos, threaded.pos, 0) \
                 AND (threaded.pos IS NULL OR a.stream_ordering > threaded.pos)",
                bounds.join(", ")
            )
        });
        let sql = format!(
            "WITH reads AS (SELECT r.room_id, r.thread_id, MAX(e.stream_ordering) AS pos FROM receipts r \
                 JOIN events e ON e.event_id = r.event_id WHERE r.user_id = $1 \
                 AND r.receipt_type IN ('m.read', 'm.read.private') AND r.room_id IN ({rooms}) \
                 GROUP BY r.room_id, r.thread_id) \
             SELECT room_id, thread_id, COUNT(*) AS notifications, CAST(SUM(highlight) AS BIGINT) AS highlights \
             FROM ({}) AS unread GROUP BY room_id, thread_id",
            counted.join(" UNION ALL ")
        );
        let mut query = sqlx::query(&sql).bind(user_id).bind(up_to);
        for (room_id, _) in windows {
            query = query.bind(*room_id);
        }
        for (_, after) in windows {
            query = query.bind(*after);
        }
        let lowest_after = windows.iter().map(|(_, after)| *after).min().unwrap_or(0);
        let rows = query.bind(lowest_after).fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                Ok(UnreadCount {
                    room_id: row.try_get("room_id")?,
                    thread_id: row.try_get("thread_id")?,
                    notifications: row.try_get("notifications")?,
                    highlights: row.try_get("highlights")?,
                })
            })
            .collect()
    }

    /// Forgets the cached unread counts of a user in a room (their read receipt moved).
    pub(super) fn unread_changed(&self, user_id: &str, room_id: &str) {
        self.unread_cache.invalidate([&(user_id.to_owned(), room_id.to_owned())]);
    }

    /// The user's notifications before stream position `before`, newest first.
    pub async fn notifications(
        &self,
        user_id: &str,
        before: i64,
        limit: i64,
        only_highlights: bool,
    ) -> Result<Vec<NotificationRow>> {
        let listed = PUSH_ACTION_TABLES.map(|table| {
            format!(
                "SELECT user_id, room_id, event_id, stream_ordering, thread_id, actions FROM {table} \
                 WHERE user_id = $1 AND stream_ordering < $2 AND ($3 = 0 OR highlight = 1)"
            )
        });
        // The page is cut first: the read status (a receipt lookup) is worked out for its rows only.
        let sql = format!(
            "SELECT a.room_id, a.event_id, a.stream_ordering, a.actions, \
             CASE WHEN a.stream_ordering <= {READ_UP_TO} THEN 1 ELSE 0 END AS is_read \
             FROM ({} ORDER BY stream_ordering DESC LIMIT $4) AS a ORDER BY a.stream_ordering DESC",
            listed.join(" UNION ALL ")
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(before)
            .bind(flag(only_highlights))
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                let actions: String = row.try_get("actions")?;
                Ok(NotificationRow {
                    room_id: row.try_get("room_id")?,
                    event_id: row.try_get("event_id")?,
                    stream_ordering: row.try_get("stream_ordering")?,
                    actions: serde_json::from_str(&actions)
                        .map_err(|e| super::StorageError::Corrupt(format!("push actions: {e}")))?,
                    read: row.try_get::<i64, _>("is_read")? != 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::receipts::NewReceipt;
    use super::super::test_support;
    use super::*;

    fn notified(user_id: &str, thread_id: &str, highlight: bool) -> PushAction {
        PushAction {
            user_id: user_id.into(),
            thread_id: thread_id.into(),
            highlight,
            actions: serde_json::json!(["notify"]),
        }
    }

    fn message(event_id: &str, push_actions: Vec<PushAction>) -> NewEvent {
        NewEvent { push_actions, ..test_support::message("!r:x", event_id) }
    }

    async fn rows_in(storage: &Storage, table: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&storage.read)
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }

    /// Writes an event that notifies nobody, so the move the writer makes after its first batch
    /// is behind us (a write waits for the one before it and anything that followed).
    async fn past_the_first_move(storage: &Storage) {
        storage.persist_event(&message("$first", Vec::new())).await.unwrap();
        storage.persist_event(&message("$second", Vec::new())).await.unwrap();
    }

    /// Counts read from the database, not from the cache.
    async fn fresh_counts(storage: &Storage, user_id: &str) -> Vec<UnreadCount> {
        storage.unread_cache.clear();
        let mut counts = storage.unread_counts(user_id, &["!r:x".to_owned()], i64::MAX).await.unwrap();
        counts.sort_by(|a, b| a.thread_id.cmp(&b.thread_id));
        counts
    }

    fn count(thread_id: &str, notifications: i64, highlights: i64) -> UnreadCount {
        UnreadCount { room_id: "!r:x".into(), thread_id: thread_id.into(), notifications, highlights }
    }

    #[tokio::test]
    async fn counts_and_notifications_read_both_tables_the_same_before_and_after_a_move() {
        for storage in test_support::engines().await {
            storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
            past_the_first_move(&storage).await;
            let mut positions = Vec::new();
            for i in 0..6 {
                let highlight = i % 3 == 0;
                let actions = vec![notified("@bob:x", "main", highlight), notified("@carol:x", "$root", false)];
                positions
                    .push(storage.persist_event(&message(&format!("$e{i}"), actions)).await.unwrap().stream_ordering);
            }
            // Bob has read the first two.
            let receipt = NewReceipt {
                room_id: "!r:x",
                user_id: "@bob:x",
                receipt_type: "m.read",
                thread_id: "",
                event_id: "$e1",
                ts: 1,
            };
            storage.set_receipt(receipt).await.unwrap();
            let staged = if storage.engine().stages_push_actions() { 12 } else { 0 };
            assert_eq!(rows_in(&storage, "recent_push_actions").await, staged);
            let bob_before = fresh_counts(&storage, "@bob:x").await;
            assert_eq!(bob_before, vec![count("main", 4, 1)]);
            assert_eq!(fresh_counts(&storage, "@carol:x").await, vec![count("$root", 6, 0)]);
            let listed_before = storage.notifications("@bob:x", i64::MAX, 10, false).await.unwrap();
            let listed: Vec<(i64, bool)> = listed_before.iter().map(|n| (n.stream_ordering, n.read)).collect();
            let expected: Vec<(i64, bool)> = positions.iter().rev().map(|p| (*p, *p <= positions[1])).collect();
            assert_eq!(listed, expected);

            assert_eq!(move_recent_push_actions(&storage.write).await.unwrap(), staged as u64);
            assert_eq!(
                (rows_in(&storage, "recent_push_actions").await, rows_in(&storage, "event_push_actions").await),
                (0, 12)
            );
            assert_eq!(fresh_counts(&storage, "@bob:x").await, bob_before);
            assert_eq!(storage.notifications("@bob:x", i64::MAX, 10, false).await.unwrap(), listed_before);

            // Newer rows in the recent table add to the moved ones, in counts and in the list.
            let late = vec![notified("@bob:x", "main", true)];
            let newest = storage.persist_event(&message("$e6", late)).await.unwrap().stream_ordering;
            assert_eq!(fresh_counts(&storage, "@bob:x").await, vec![count("main", 5, 2)]);
            let highlights = storage.notifications("@bob:x", i64::MAX, 2, true).await.unwrap();
            let highlighted: Vec<i64> = highlights.iter().map(|n| n.stream_ordering).collect();
            assert_eq!(highlighted, vec![newest, positions[3]]);
        }
    }

    #[tokio::test]
    async fn the_event_writer_moves_recent_push_actions_once_enough_are_written() {
        // PostgreSQL writes them in place: nothing is ever staged there.
        for storage in test_support::engines().await {
            storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
            let staged = i64::from(storage.engine().stages_push_actions());
            // On SQLite, rows an earlier run left move with the first batch.
            if staged == 1 {
                storage
                    .execute_raw_for_tests(
                        "INSERT INTO recent_push_actions (stream_ordering, user_id, room_id, event_id, thread_id, \
                         highlight, actions) VALUES (1, '@left:x', '!r:x', '$left', 'main', 0, '[\"notify\"]')",
                    )
                    .await;
            }
            past_the_first_move(&storage).await;
            assert_eq!(
                (rows_in(&storage, "recent_push_actions").await, rows_in(&storage, "event_push_actions").await),
                (0, staged)
            );
            let few = vec![notified("@bob:x", "main", false)];
            storage.persist_event(&message("$few", few)).await.unwrap();
            assert_eq!(rows_in(&storage, "recent_push_actions").await, staged);
            let many =
                (0..RECENT_PUSH_ACTIONS_MOVED_AT).map(|i| notified(&format!("@u{i}:x"), "main", false)).collect();
            storage.persist_event(&message("$many", many)).await.unwrap();
            // The move follows the reply; the next write waits for it (one writer, in order).
            storage.persist_event(&message("$after", Vec::new())).await.unwrap();
            assert_eq!(rows_in(&storage, "recent_push_actions").await, 0);
            let total = i64::try_from(RECENT_PUSH_ACTIONS_MOVED_AT).unwrap() + 1 + staged;
            assert_eq!(rows_in(&storage, "event_push_actions").await, total);
            assert_eq!(fresh_counts(&storage, "@u7:x").await, vec![count("main", 1, 0)]);
        }
    }
}
