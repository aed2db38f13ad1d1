//! Room aliases (`#name:server` → room ID).

use sqlx::Row;

use super::{Result, Storage};

impl Storage {
    /// Returns false when the alias is already taken.
    pub async fn create_alias(&self, alias: &str, room_id: &str, creator: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (alias) DO NOTHING",
        )
        .bind(alias)
        .bind(room_id)
        .bind(creator)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn alias_room(&self, alias: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT room_id FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get("room_id")).transpose()?)
    }
}
