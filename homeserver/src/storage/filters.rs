//! Client filters, stored as JSON text and addressed by a per-user ID.

use sqlx::Row;

use super::{Result, Storage};

impl Storage {
    /// Stores a filter and returns its new ID (a per-user counter).
    pub async fn create_filter(&self, user_id: &str, json: &str) -> Result<String> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM filters WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        let filter_id = row.try_get::<i64, _>("n")?.to_string();
        sqlx::query("INSERT INTO filters (user_id, filter_id, json) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(&filter_id)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(filter_id)
    }

    pub async fn filter(&self, user_id: &str, filter_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user_id)
            .bind(filter_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get("json")).transpose()?)
    }
}
