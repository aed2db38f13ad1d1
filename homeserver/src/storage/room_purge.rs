//! Removing a room's data from the database: all of it (room deletion) or the history before a
//! point (history purges and retention).

use sqlx::Row;

use super::{Result, Storage};

/// Where a history purge stops: events before this are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgePoint {
    /// Events ordered before this stream ordering.
    Before(i64),
    /// Events whose `origin_server_ts` is before this time (ms).
    BeforeTs(i64),
}

/// Tables keyed by the room ID whose rows go with a deleted room, after the event-keyed ones.
const ROOM_TABLES: &[&str] = &[
    "forward_extremities",
    "memberships",
    "receipts",
    "room_aliases",
    "account_data",
    "event_push_actions",
    "recent_push_actions",
    "event_relations",
    "remote_invites",
    "content_reports",
    "key_backup_keys",
    "state_groups",
    "redaction_holds",
];

impl Storage {
    /// Deletes every trace of a room: events, state, memberships, receipts, relations, search
    /// rows, notifications, aliases, room account data, queued federation PDUs. The `rooms` row
    /// stays when `keep_room_row` (a blocked room), taken out of the directory.
    pub async fn purge_room(&self, room_id: &str, keep_room_row: bool) -> Result<()> {
        // Event writes wait, so no stream ordering or state group is assigned mid-purge.
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        // Remember the newest position before it may go, so it is never handed out again.
        sqlx::query(
            "UPDATE stream_positions SET position = (SELECT COALESCE(MAX(stream_ordering), 0) FROM events) \
             WHERE stream = 'events_purged' AND position < (SELECT COALESCE(MAX(stream_ordering), 0) FROM events)",
        )
        .execute(&mut *tx)
        .await?;
        // Rows keyed by event or stream ordering first, while the events still say which.
        for sql in [
            "DELETE FROM federation_outbox_pdus WHERE stream_ordering IN \
             (SELECT stream_ordering FROM events WHERE room_id = $1)",
            &super::search::delete_search_rows_of("room_id = $1"),
            "DELETE FROM event_txns WHERE event_id IN (SELECT event_id FROM events WHERE room_id = $1)",
            "DELETE FROM state_group_entries WHERE state_group IN \
             (SELECT state_group FROM state_groups WHERE room_id = $1)",
        ] {
            sqlx::query(sql).bind(room_id).execute(&mut *tx).await?;
        }
        for table in ROOM_TABLES {
            sqlx::query(&format!("DELETE FROM {table} WHERE room_id = $1")).bind(room_id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM events WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
        if keep_room_row {
            sqlx::query("UPDATE rooms SET is_public = 0, current_state_group = NULL WHERE room_id = $1")
                .bind(room_id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("DELETE FROM rooms WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        // The room's events are gone, and its state group numbers may be handed out again.
        self.event_cache.clear();
        self.state_cache.clear();
        self.unread_cache.clear();
        Ok(())
    }

    /// The room's forward extremities among its timeline events sent before `before_ts`: what a
    /// retention purge keeps for the DAG, redacted.
    pub async fn expired_extremities(&self, room_id: &str, before_ts: i64) -> Result<Vec<super::EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM forward_extremities f JOIN events e ON e.event_id = f.event_id \
             WHERE f.room_id = $1 AND e.origin_server_ts < $2 AND e.state_key IS NULL AND e.outlier = 0",
            super::rooms::EVENT_COLUMNS
        ))
        .bind(room_id)
        .bind(before_ts)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| super::EventRow::from_row(&self.codec, row)).collect()
    }

    /// Deletes the oldest `limit` of the room's timeline events before `point`, in one
    /// transaction, and returns them (callers loop until none are left, so a long history never
    /// sits in memory or holds the writer at once). Never state events (the DAG's state must stay
    /// resolvable), outliers or forward extremities (the next event's parents), and events of
    /// `local_server`'s users only when `delete_local`.
    pub async fn purge_history_batch(
        &self,
        room_id: &str,
        point: PurgePoint,
        local_server: &str,
        delete_local: bool,
        limit: u32,
    ) -> Result<Vec<super::EventRow>> {
        let (bound_column, bound) = match point {
            PurgePoint::Before(ordering) => ("stream_ordering", ordering),
            PurgePoint::BeforeTs(ts) => ("origin_server_ts", ts),
        };
        // No wildcards can occur in a server name, so the suffix needs no escaping.
        let local_senders = format!("%:{local_server}");
        let purgeable = format!(
            "room_id = $1 AND {bound_column} < $2 AND state_key IS NULL AND outlier = 0 \
             AND ($3 = 1 OR sender NOT LIKE $4) \
             AND event_id NOT IN (SELECT event_id FROM forward_extremities WHERE room_id = $1)"
        );
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM events e WHERE {purgeable} ORDER BY e.stream_ordering LIMIT $5",
            super::rooms::EVENT_COLUMNS
        ))
        .bind(room_id)
        .bind(bound)
        .bind(super::flag(delete_local))
        .bind(&local_senders)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let batch = rows.iter().map(|row| super::EventRow::from_row(&self.codec, row)).collect::<Result<Vec<_>>>()?;
        let Some(last) = batch.last().map(|event| event.stream_ordering) else { return Ok(batch) };
        // The batch is exactly the purgeable events up to its newest (no event is written
        // meanwhile: the event order lock is held).
        let purged = format!("SELECT stream_ordering FROM events WHERE {purgeable} AND stream_ordering <= $5");
        // Rows that point at the purged events first, then the events themselves.
        for sql in [
            "DELETE FROM federation_outbox_pdus WHERE stream_ordering IN ({purged})",
            "DELETE FROM event_push_actions WHERE room_id = $1 AND stream_ordering IN ({purged})",
            "DELETE FROM recent_push_actions WHERE room_id = $1 AND stream_ordering IN ({purged})",
            "DELETE FROM event_relations WHERE room_id = $1 AND stream_ordering IN ({purged})",
            "DELETE FROM event_search WHERE room_id = $1 AND stream_ordering IN ({purged})",
            "DELETE FROM receipts WHERE room_id = $1 AND event_id IN \
             (SELECT event_id FROM events WHERE stream_ordering IN ({purged}))",
            "DELETE FROM event_txns WHERE event_id IN \
             (SELECT event_id FROM events WHERE stream_ordering IN ({purged}))",
            "DELETE FROM redaction_holds WHERE room_id = $1 AND event_id IN \
             (SELECT event_id FROM events WHERE stream_ordering IN ({purged}))",
            "DELETE FROM events WHERE stream_ordering IN ({purged})",
        ] {
            sqlx::query(&sql.replace("{purged}", &purged))
                .bind(room_id)
                .bind(bound)
                .bind(super::flag(delete_local))
                .bind(&local_senders)
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.events_changed(batch.iter().map(|event| event.event_id.as_str()));
        // Push actions and receipts of the batch are gone.
        self.unread_cache.clear();
        Ok(batch)
    }

    /// The stream ordering of an event of the room (`None` when it is not one of its events).
    pub async fn event_ordering_in_room(&self, room_id: &str, event_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT stream_ordering FROM events WHERE room_id = $1 AND event_id = $2")
            .bind(room_id)
            .bind(event_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| Ok(row.try_get("stream_ordering")?)).transpose()
    }
}
