//! Server-side key backup: versions (each with its algorithm and auth data) and the encrypted
//! room keys stored under them. The server only sees the fields it needs to pick the better key.

use sqlx::{AnyConnection, Row};

use super::{Result, Storage, flag};

#[derive(Debug, Clone, PartialEq)]
pub struct BackupVersionRow {
    pub version: i64,
    /// `{"algorithm": …, "auth_data": …}` as the client sent it.
    pub algorithm: serde_json::Value,
    pub etag: i64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupKeyRow {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    /// The whole `KeyBackupData` object.
    pub data: serde_json::Value,
}

impl BackupKeyRow {
    /// The spec's replacement rule: a verified key beats an unverified one, then the lower first
    /// message index wins, then the lower forwarded count.
    fn better_than(&self, old: &Self) -> bool {
        if self.is_verified != old.is_verified {
            return self.is_verified;
        }
        if self.first_message_index != old.first_message_index {
            return self.first_message_index < old.first_message_index;
        }
        self.forwarded_count < old.forwarded_count
    }
}

pub(super) fn version_record_id(user_id: &str, version: i64) -> String {
    format!("backup_version/{user_id}/{version}")
}

pub(super) fn key_record_id(user_id: &str, version: i64, room_id: &str, session_id: &str) -> String {
    format!("backup_key/{user_id}/{version}/{room_id}/{session_id}")
}

/// Room and session filters for reading or deleting keys; `None` means all.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyScope<'a> {
    pub room_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

const SCOPE_SQL: &str =
    "user_id = $1 AND version = $2 AND ($3 IS NULL OR room_id = $3) AND ($4 IS NULL OR session_id = $4)";

impl Storage {
    /// Creates a new backup version, numbered one past every earlier one (deleted ones included).
    pub async fn create_backup_version(
        &self,
        user_id: &str,
        algorithm_name: &str,
        algorithm: &serde_json::Value,
    ) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS latest FROM key_backup_versions WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        let version: i64 = row.try_get::<i64, _>("latest")? + 1;
        sqlx::query("INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(version)
            .bind(algorithm_name)
            .bind(self.codec.encode(&version_record_id(user_id, version), algorithm))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// A live backup version, or the newest live one when `version` is `None`.
    pub async fn backup_version(&self, user_id: &str, version: Option<i64>) -> Result<Option<BackupVersionRow>> {
        let row = sqlx::query(
            "SELECT v.version, v.auth_data, v.etag, \
             (SELECT COUNT(*) FROM key_backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version) AS n \
             FROM key_backup_versions v WHERE v.user_id = $1 AND v.deleted = 0 AND ($2 IS NULL OR v.version = $2) \
             ORDER BY v.version DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(version)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let version: i64 = row.try_get("version")?;
        let bytes: Vec<u8> = row.try_get("auth_data")?;
        Ok(Some(BackupVersionRow {
            version,
            algorithm: self.codec.decode(&version_record_id(user_id, version), &bytes)?,
            etag: row.try_get("etag")?,
            count: row.try_get("n")?,
        }))
    }

    /// Replaces a live version's auth data; false when there is no such version.
    pub async fn update_backup_version(
        &self,
        user_id: &str,
        version: i64,
        algorithm: &serde_json::Value,
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE key_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user_id)
        .bind(version)
        .bind(self.codec.encode(&version_record_id(user_id, version), algorithm))
        .execute(&self.write)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes a version and its keys; false when there was no such live version.
    pub async fn delete_backup_version(&self, user_id: &str, version: i64) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let result = sqlx::query(
            "UPDATE key_backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user_id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    /// Stores keys under a version, each only where it beats the stored key for its session.
    /// The etag changes when anything was stored. Returns the version's new state.
    pub async fn put_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        keys: &[BackupKeyRow],
    ) -> Result<BackupVersionRow> {
        let mut tx = self.write.begin().await?;
        let mut changed = false;
        for key in keys {
            let existing = sqlx::query(
                "SELECT first_message_index, forwarded_count, is_verified FROM key_backup_keys \
                 WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4",
            )
            .bind(user_id)
            .bind(version)
            .bind(&key.room_id)
            .bind(&key.session_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                let old = BackupKeyRow {
                    first_message_index: row.try_get("first_message_index")?,
                    forwarded_count: row.try_get("forwarded_count")?,
                    is_verified: row.try_get::<i64, _>("is_verified")? != 0,
                    ..key.clone()
                };
                if !key.better_than(&old) {
                    continue;
                }
            }
            upsert_backup_key(&self.codec, &mut tx, user_id, version, key).await?;
            changed = true;
        }
        if changed {
            sqlx::query("UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
                .bind(user_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.backup_version(user_id, Some(version))
            .await?
            .ok_or_else(|| super::StorageError::Corrupt("backup version vanished".into()))
    }

    pub async fn backup_keys(&self, user_id: &str, version: i64, scope: KeyScope<'_>) -> Result<Vec<BackupKeyRow>> {
        let rows = sqlx::query(&format!(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data \
             FROM key_backup_keys WHERE {SCOPE_SQL} ORDER BY room_id, session_id"
        ))
        .bind(user_id)
        .bind(version)
        .bind(scope.room_id)
        .bind(scope.session_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let room_id: String = row.try_get("room_id")?;
                let session_id: String = row.try_get("session_id")?;
                let bytes: Vec<u8> = row.try_get("session_data")?;
                let data = self.codec.decode(&key_record_id(user_id, version, &room_id, &session_id), &bytes)?;
                Ok(BackupKeyRow {
                    first_message_index: row.try_get("first_message_index")?,
                    forwarded_count: row.try_get("forwarded_count")?,
                    is_verified: row.try_get::<i64, _>("is_verified")? != 0,
                    room_id,
                    session_id,
                    data,
                })
            })
            .collect()
    }

    /// Deletes keys in scope (changing the etag if any went) and returns the version's new state.
    pub async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: KeyScope<'_>,
    ) -> Result<BackupVersionRow> {
        let mut tx = self.write.begin().await?;
        let deleted = sqlx::query(&format!("DELETE FROM key_backup_keys WHERE {SCOPE_SQL}"))
            .bind(user_id)
            .bind(version)
            .bind(scope.room_id)
            .bind(scope.session_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted > 0 {
            sqlx::query("UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
                .bind(user_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.backup_version(user_id, Some(version))
            .await?
            .ok_or_else(|| super::StorageError::Corrupt("backup version vanished".into()))
    }
}

async fn upsert_backup_key(
    codec: &super::Codec,
    conn: &mut AnyConnection,
    user_id: &str,
    version: i64,
    key: &BackupKeyRow,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, \
         is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
         first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, \
         is_verified = excluded.is_verified, session_data = excluded.session_data",
    )
    .bind(user_id)
    .bind(version)
    .bind(&key.room_id)
    .bind(&key.session_id)
    .bind(key.first_message_index)
    .bind(key.forwarded_count)
    .bind(flag(key.is_verified))
    .bind(codec.encode(&key_record_id(user_id, version, &key.room_id, &key.session_id), &key.data))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
