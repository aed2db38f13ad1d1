//! Account data: per-user (and per-user-per-room) JSON documents with their own stream.

use sqlx::Row;

use super::{Result, Storage, Stream, advance_stream, empty_window};

/// One changed account data entry; `room_id` is empty for global data.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountDataRow {
    pub room_id: String,
    pub data_type: String,
    pub content: serde_json::Value,
    pub stream_id: i64,
}

pub(super) fn record_id(user_id: &str, room_id: &str, data_type: &str) -> String {
    format!("{user_id}/{room_id}/{data_type}")
}

impl Storage {
    /// Stores account data (`room_id` empty for global) and returns its stream position.
    pub async fn set_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: &serde_json::Value,
    ) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let stream_id = advance_stream(&mut tx, Stream::AccountData).await?;
        sqlx::query(
            "INSERT INTO account_data (user_id, room_id, data_type, stream_id, content) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET stream_id = excluded.stream_id, content = excluded.content",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(data_type)
        .bind(stream_id)
        .bind(self.codec.encode(&record_id(user_id, room_id, data_type), content))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stream_id)
    }

    /// One type of global account data for several users, in one query per 1,000 users (a room's
    /// members can outnumber PostgreSQL's bound parameters): user → content, for those who have it.
    pub async fn global_account_data_of_users(
        &self,
        user_ids: &[&str],
        data_type: &str,
    ) -> Result<std::collections::HashMap<String, serde_json::Value>> {
        let mut found = std::collections::HashMap::new();
        for chunk in user_ids.chunks(1_000) {
            let sql = format!(
                "SELECT user_id, content FROM account_data WHERE room_id = '' AND data_type = $1 AND user_id {}",
                self.engine.in_list(2, chunk.len())
            );
            let query = self.engine.bind_list(sqlx::query(&sql).bind(data_type), chunk);
            for row in query.fetch_all(&self.read).await? {
                let user_id: String = row.try_get("user_id")?;
                let bytes: Vec<u8> = row.try_get("content")?;
                let content = self.codec.decode(&record_id(&user_id, "", data_type), &bytes)?;
                found.insert(user_id, content);
            }
        }
        Ok(found)
    }

    pub async fn account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
    ) -> Result<Option<serde_json::Value>> {
        let row =
            sqlx::query("SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3")
                .bind(user_id)
                .bind(room_id)
                .bind(data_type)
                .fetch_optional(&self.read)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let bytes: Vec<u8> = row.try_get("content")?;
        Ok(Some(self.codec.decode(&record_id(user_id, room_id, data_type), &bytes)?))
    }

    /// The user's account data changed in `after < stream_id <= up_to`.
    pub async fn account_data_changes(&self, user_id: &str, after: i64, up_to: i64) -> Result<Vec<AccountDataRow>> {
        if empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT room_id, data_type, stream_id, content FROM account_data \
             WHERE user_id = $1 AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id",
        )
        .bind(user_id)
        .bind(after)
        .bind(up_to)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let room_id: String = row.try_get("room_id")?;
                let data_type: String = row.try_get("data_type")?;
                let bytes: Vec<u8> = row.try_get("content")?;
                let content = self.codec.decode(&record_id(user_id, &room_id, &data_type), &bytes)?;
                Ok(AccountDataRow { room_id, data_type, content, stream_id: row.try_get("stream_id")? })
            })
            .collect()
    }
}
