//! User-interactive authentication sessions.

use sqlx::Row;

use super::{Result, Storage};

#[derive(Debug, Clone, PartialEq)]
pub struct UiaaSessionRow {
    pub session_id: String,
    pub user_id: Option<String>,
    pub purpose: String,
    /// The service's record of what the client has completed so far.
    pub progress: serde_json::Value,
    pub created_ts: i64,
}

impl Storage {
    pub async fn create_uiaa_session(
        &self,
        session_id: &str,
        user_id: Option<&str>,
        purpose: &str,
        progress: &serde_json::Value,
        now: i64,
    ) -> Result<()> {
        let completed = self.codec.encode(session_id, progress);
        sqlx::query(
            "INSERT INTO uiaa_sessions (session_id, user_id, purpose, completed, created_ts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(purpose)
        .bind(completed)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn uiaa_session(&self, session_id: &str) -> Result<Option<UiaaSessionRow>> {
        let row = sqlx::query(
            "SELECT session_id, user_id, purpose, completed, created_ts FROM uiaa_sessions WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let completed_bytes: Vec<u8> = row.try_get("completed")?;
        let progress = self.codec.decode(session_id, &completed_bytes)?;
        Ok(Some(UiaaSessionRow {
            session_id: row.try_get("session_id")?,
            user_id: row.try_get("user_id")?,
            purpose: row.try_get("purpose")?,
            progress,
            created_ts: row.try_get("created_ts")?,
        }))
    }

    pub async fn set_uiaa_progress(&self, session_id: &str, progress: &serde_json::Value) -> Result<()> {
        let bytes = self.codec.encode(session_id, progress);
        sqlx::query("UPDATE uiaa_sessions SET completed = $2 WHERE session_id = $1")
            .bind(session_id)
            .bind(bytes)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn delete_uiaa_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uiaa_sessions WHERE session_id = $1").bind(session_id).execute(&self.write).await?;
        Ok(())
    }

    /// Removes sessions created before `cutoff`; returns how many.
    pub async fn delete_uiaa_sessions_before(&self, cutoff: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM uiaa_sessions WHERE created_ts < $1").bind(cutoff).execute(&self.write).await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::engines;

    #[tokio::test]
    async fn sessions_store_completed_stages_and_expire() {
        for storage in engines().await {
            let empty = serde_json::json!({});
            storage.create_uiaa_session("s1", Some("@a:test"), "delete_device", &empty, 100).await.unwrap();
            storage.create_uiaa_session("s2", None, "register", &empty, 200).await.unwrap();
            let progress = serde_json::json!({"stages": ["m.login.password"]});
            storage.set_uiaa_progress("s1", &progress).await.unwrap();
            let s1 = storage.uiaa_session("s1").await.unwrap().unwrap();
            assert_eq!(s1.progress, progress);
            assert_eq!(s1.user_id.as_deref(), Some("@a:test"));
            assert_eq!(storage.delete_uiaa_sessions_before(150).await.unwrap(), 1);
            assert!(storage.uiaa_session("s1").await.unwrap().is_none());
            assert!(storage.uiaa_session("s2").await.unwrap().is_some());
        }
    }
}
