//! Push actions: which members an event notified, unread counts since each member's read
//! receipt, and the `/notifications` list.

use sqlx::{AnyConnection, Row};

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

/// Push-action rows written per statement at most (a batch's rows are one JSON parameter).
const PUSH_ACTIONS_PER_INSERT: usize = 2_000;

/// Writes the push actions of a batch of events on the event writer's transaction, each at its
/// event's stream ordering, in one statement (see [`Engine::json_table`]). A member's rows are
/// adjacent, so a batch dirties about one page per member however many events it holds.
pub(super) async fn insert_push_actions(
    conn: &mut AnyConnection,
    actions: &[(&NewEvent, i64, &PushAction)],
) -> Result<()> {
    use JsonColumn::{Int, Text};
    if actions.is_empty() {
        return Ok(());
    }
    let engine = Engine::of(conn);
    let sql = format!(
        "INSERT INTO event_push_actions (user_id, room_id, event_id, stream_ordering, thread_id, highlight, actions) \
         {} ON CONFLICT (user_id, room_id, stream_ordering) DO NOTHING",
        engine.json_table(1, &[Text, Text, Text, Int, Text, Int, Text])
    );
    for chunk in actions.chunks(PUSH_ACTIONS_PER_INSERT) {
        let rows: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(event, stream_ordering, action)| {
                serde_json::json!([
                    action.user_id,
                    event.room_id,
                    event.event_id,
                    stream_ordering,
                    action.thread_id,
                    flag(action.highlight),
                    action.actions.to_string(),
                ])
            })
            .collect();
        sqlx::query(&sql).bind(serde_json::Value::Array(rows).to_string()).execute(&mut *conn).await?;
    }
    Ok(())
}

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
        let sql = format!(
            "WITH reads AS (SELECT r.room_id, r.thread_id, MAX(e.stream_ordering) AS pos FROM receipts r \
                 JOIN events e ON e.event_id = r.event_id WHERE r.user_id = $1 \
                 AND r.receipt_type IN ('m.read', 'm.read.private') AND r.room_id IN ({rooms}) \
                 GROUP BY r.room_id, r.thread_id) \
             SELECT a.room_id, a.thread_id, COUNT(*) AS notifications, CAST(SUM(a.highlight) AS BIGINT) AS highlights \
             FROM event_push_actions a \
             JOIN (VALUES {}) AS w ON w.column1 = a.room_id AND a.stream_ordering > w.column2 \
             LEFT JOIN reads unthreaded ON unthreaded.room_id = a.room_id AND unthreaded.thread_id = '' \
             LEFT JOIN reads threaded ON threaded.room_id = a.room_id AND threaded.thread_id = a.thread_id \
                 AND threaded.thread_id <> '' \
             WHERE a.user_id = $1 AND a.room_id IN ({rooms}) AND a.stream_ordering <= $2 \
             AND a.stream_ordering > COALESCE(unthreaded.pos, threaded.pos, 0) \
             AND (threaded.pos IS NULL OR a.stream_ordering > threaded.pos) \
             GROUP BY a.room_id, a.thread_id",
            bounds.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(user_id).bind(up_to);
        for (room_id, _) in windows {
            query = query.bind(*room_id);
        }
        for (_, after) in windows {
            query = query.bind(*after);
        }
        let rows = query.fetch_all(&self.read).await?;
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
        let sql = format!(
            "SELECT a.room_id, a.event_id, a.stream_ordering, a.actions, \
             CASE WHEN a.stream_ordering <= {READ_UP_TO} THEN 1 ELSE 0 END AS is_read \
             FROM event_push_actions a WHERE a.user_id = $1 AND a.stream_ordering < $2 \
             AND ($3 = 0 OR a.highlight = 1) ORDER BY a.stream_ordering DESC LIMIT $4"
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
