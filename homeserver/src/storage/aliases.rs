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

impl Storage {
    /// The alias's room and creator.
    pub async fn alias_entry(&self, alias: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| Ok((r.try_get("room_id")?, r.try_get("creator")?))).transpose()
    }

    pub async fn delete_alias(&self, alias: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM room_aliases WHERE alias = $1").bind(alias).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn room_aliases(&self, room_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("alias")?)).collect()
    }

    /// Rooms published in the room directory, with their joined member counts.
    pub async fn public_rooms(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT r.room_id, (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') \
             AS joined FROM rooms r WHERE r.is_public = 1",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("room_id")?, r.try_get("joined")?))).collect()
    }
}
