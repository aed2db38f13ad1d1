//! Presence: each user's latest state, with its own stream for `/sync`.

use sqlx::Row;

use super::{Result, Storage, Stream, advance_stream, empty_window};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    pub user_id: String,
    /// `online`, `offline` or `unavailable`.
    pub state: String,
    pub status_msg: Option<String>,
    /// When the user was last active, as of the last stored change.
    pub last_active_ts: i64,
    pub stream_id: i64,
}

const COLUMNS: &str = "p.user_id, p.state, p.status_msg, p.last_active_ts, p.stream_id";

fn from_row(row: &sqlx::any::AnyRow) -> Result<PresenceRow> {
    Ok(PresenceRow {
        user_id: row.try_get("user_id")?,
        state: row.try_get("state")?,
        status_msg: row.try_get("status_msg")?,
        last_active_ts: row.try_get("last_active_ts")?,
        stream_id: row.try_get("stream_id")?,
    })
}

impl Storage {
    /// Stores a user's presence and returns its stream position.
    pub async fn set_presence(
        &self,
        user_id: &str,
        state: &str,
        status_msg: Option<&str>,
        last_active_ts: i64,
    ) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let stream_id = advance_stream(&mut tx, Stream::Presence).await?;
        sqlx::query(
            "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg, \
             last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id",
        )
        .bind(user_id)
        .bind(state)
        .bind(status_msg)
        .bind(last_active_ts)
        .bind(stream_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stream_id)
    }

    pub async fn presence(&self, user_id: &str) -> Result<Option<PresenceRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM presence p WHERE p.user_id = $1"))
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Presence changed in `after < stream_id <= up_to` of the user and of everyone sharing a
    /// joined room with them, in one query (the room-mates are computed once, not per row).
    pub async fn presence_changes_for(&self, user_id: &str, after: i64, up_to: i64) -> Result<Vec<PresenceRow>> {
        if empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM presence p WHERE p.stream_id > $2 AND p.stream_id <= $3 AND (p.user_id = $1 \
             OR p.user_id IN (SELECT theirs.user_id FROM memberships mine \
             JOIN memberships theirs ON theirs.room_id = mine.room_id \
             WHERE mine.user_id = $1 AND mine.membership = 'join' AND theirs.membership = 'join')) \
             ORDER BY p.stream_id"
        ))
        .bind(user_id)
        .bind(after)
        .bind(up_to)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The stored presence of these users, in one query.
    pub async fn presence_of_users(&self, user_ids: &[String]) -> Result<Vec<PresenceRow>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT {COLUMNS} FROM presence p WHERE p.user_id {}", self.engine.in_list(1, user_ids.len()));
        let rows = self.engine.bind_list(sqlx::query(&sql), user_ids).fetch_all(&self.read).await?;
        rows.iter().map(from_row).collect()
    }

    /// Everyone not stored as offline (to time them out after a restart).
    pub async fn presence_not_offline(&self) -> Result<Vec<PresenceRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM presence p WHERE p.state <> 'offline'"))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether two users are both joined to some room.
    pub async fn share_a_room(&self, a: &str, b: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS shared FROM memberships x JOIN memberships y ON y.room_id = x.room_id \
             WHERE x.user_id = $1 AND x.membership = 'join' AND y.user_id = $2 AND y.membership = 'join' LIMIT 1",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }
}
