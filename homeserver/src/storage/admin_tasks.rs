//! Blocked rooms and the background admin tasks (room deletions, history purges).

use sqlx::Row;

use super::{Result, Storage};

/// A background admin task as stored: its status and, once known, its result or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTaskRow {
    pub task_id: String,
    pub kind: String,
    pub room_id: String,
    pub status: String,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

fn task_from_row(row: &sqlx::any::AnyRow) -> Result<AdminTaskRow> {
    let result: Option<String> = row.try_get("result")?;
    let result = result
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| super::StorageError::Corrupt(format!("admin task result: {e}")))?;
    Ok(AdminTaskRow {
        task_id: row.try_get("task_id")?,
        kind: row.try_get("kind")?,
        room_id: row.try_get("room_id")?,
        status: row.try_get("status")?,
        result,
        error: row.try_get("error")?,
    })
}

const TASK_COLUMNS: &str = "task_id, kind, room_id, status, result, error";

impl Storage {
    /// Blocks a room (again: the first blocker is kept).
    pub async fn block_room(&self, room_id: &str, blocked_by: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(room_id)
        .bind(blocked_by)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn unblock_room(&self, room_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM blocked_rooms WHERE room_id = $1").bind(room_id).execute(&self.write).await?;
        Ok(())
    }

    /// Who blocked the room, when it is blocked.
    pub async fn room_blocked_by(&self, room_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT blocked_by FROM blocked_rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| Ok(row.try_get("blocked_by")?)).transpose()
    }

    pub async fn insert_admin_task(&self, task_id: &str, kind: &str, room_id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_tasks (task_id, kind, room_id, status, created_ts, updated_ts) \
             VALUES ($1, $2, $3, 'scheduled', $4, $4)",
        )
        .bind(task_id)
        .bind(kind)
        .bind(room_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records a task's progress; `result` and `error` replace what was stored when given.
    pub async fn update_admin_task(
        &self,
        task_id: &str,
        status: &str,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE admin_tasks SET status = $2, result = COALESCE($3, result), error = COALESCE($4, error), \
             updated_ts = $5 WHERE task_id = $1",
        )
        .bind(task_id)
        .bind(status)
        .bind(result.map(ToString::to_string))
        .bind(error)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn admin_task(&self, task_id: &str) -> Result<Option<AdminTaskRow>> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM admin_tasks WHERE task_id = $1"))
            .bind(task_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    /// A room's tasks of one kind, oldest first.
    pub async fn admin_tasks_of_room(&self, room_id: &str, kind: &str) -> Result<Vec<AdminTaskRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM admin_tasks WHERE room_id = $1 AND kind = $2 ORDER BY created_ts, task_id"
        ))
        .bind(room_id)
        .bind(kind)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Tasks a stopped server left unfinished: they can no longer finish.
    pub async fn fail_interrupted_admin_tasks(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE admin_tasks SET status = 'failed', error = 'The server stopped before the task finished', \
             updated_ts = $1 WHERE status IN ('scheduled', 'active')",
        )
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }
}
