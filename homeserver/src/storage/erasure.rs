//! Erasure of a deactivated user's data: the pending-erasure queue, the pages of their events to
//! redact or prune, and one transaction removing what they left behind.

use sqlx::Row;

use super::rooms::{EVENT_COLUMNS, EventRow};
use super::{Result, Storage};

impl Storage {
    /// Queues an erasure; false when one is already queued (asking twice keeps the first).
    pub async fn insert_erasure(&self, user_id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO user_erasures (user_id, requested_ts) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn pending_erasures(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT user_id FROM user_erasures ORDER BY requested_ts").fetch_all(&self.read).await?;
        rows.iter().map(|row| Ok(row.try_get("user_id")?)).collect()
    }

    pub async fn delete_erasure(&self, user_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM user_erasures WHERE user_id = $1").bind(user_id).execute(&self.write).await?;
        Ok(())
    }

    /// Every room the user has a membership in, forgotten ones included (they hold messages
    /// too): `(room_id, membership)`.
    pub async fn erasure_rooms(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT room_id, membership FROM memberships WHERE user_id = $1 ORDER BY room_id")
            .bind(user_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("room_id")?, row.try_get("membership")?))).collect()
    }

    /// One page of the user's non-state events in a room after `after` (redactions included:
    /// theirs can carry a reason), oldest first.
    pub async fn user_messages_page(
        &self,
        user_id: &str,
        room_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let filter = "e.sender = $2 AND e.state_key IS NULL AND e.outlier = 0 AND e.rejected_reason IS NULL";
        self.room_events_page(filter, user_id, room_id, after, limit).await
    }

    /// One page of every stored event of a room that holds the user's content, after `after`:
    /// those they sent and the member events about them (which carry their name and avatar),
    /// outliers and rejected ones included, oldest first.
    pub async fn user_events_page(
        &self,
        user_id: &str,
        room_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let filter = "(e.sender = $2 OR (e.event_type = 'm.room.member' AND e.state_key = $2))";
        self.room_events_page(filter, user_id, room_id, after, limit).await
    }

    /// A page of a room's events after `after` matching `filter` (which may use the user as
    /// `$2`), oldest first.
    async fn room_events_page(
        &self,
        filter: &str,
        user_id: &str,
        room_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = $1 AND e.stream_ordering > $3 AND {filter} \
             ORDER BY e.stream_ordering LIMIT $4"
        ))
        .bind(room_id)
        .bind(user_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| EventRow::from_row(&self.codec, row)).collect()
    }

    /// Removes what an erased user left outside their (redacted) events, in one transaction:
    /// index rows and push actions of their events, to-device messages they sent, their account
    /// data, key backups, filters, receipts, presence, notifications and access-log entries.
    /// Returns the number of rows removed.
    pub async fn purge_user_content(&self, user_id: &str) -> Result<u64> {
        const STATEMENTS: &[&str] = &[
            "DELETE FROM event_search WHERE sender = $1",
            "DELETE FROM event_relations WHERE sender = $1",
            "DELETE FROM event_push_actions WHERE event_id IN (SELECT event_id FROM events WHERE sender = $1)",
            "DELETE FROM event_push_actions WHERE user_id = $1",
            "DELETE FROM recent_push_actions WHERE event_id IN (SELECT event_id FROM events WHERE sender = $1)",
            "DELETE FROM recent_push_actions WHERE user_id = $1",
            "DELETE FROM to_device_messages WHERE sender = $1",
            "DELETE FROM account_data WHERE user_id = $1",
            "DELETE FROM key_backup_keys WHERE user_id = $1",
            "DELETE FROM key_backup_versions WHERE user_id = $1",
            "DELETE FROM filters WHERE user_id = $1",
            "DELETE FROM receipts WHERE user_id = $1",
            "DELETE FROM presence WHERE user_id = $1",
            "DELETE FROM access_log WHERE user_id = $1",
            "UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = $1",
        ];
        // A move of push actions between their two tables is one transaction on SQLite's single
        // write connection, like this one, so the two never interleave.
        let mut tx = self.write.begin().await?;
        let mut removed = 0;
        for statement in STATEMENTS {
            removed += sqlx::query(statement).bind(user_id).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        // The user's push actions and receipts, and others' push actions for their events.
        self.unread_cache.clear();
        Ok(removed)
    }
}
