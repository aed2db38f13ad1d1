//! Registration tokens (`m.login.registration_token`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Storage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenRow {
    pub token: String,
    pub uses_allowed: Option<i64>,
    pub completed: i64,
    pub expiry_time: Option<i64>,
}

impl RegistrationTokenRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            token: row.try_get("token")?,
            uses_allowed: row.try_get("uses_allowed")?,
            completed: row.try_get("completed")?,
            expiry_time: row.try_get("expiry_time")?,
        })
    }

    /// Whether the token can still be used at `now` (milliseconds).
    pub fn is_valid(&self, now: i64) -> bool {
        self.uses_allowed.is_none_or(|allowed| self.completed < allowed) && self.expiry_time.is_none_or(|t| t > now)
    }
}

impl Storage {
    /// Returns false when a token with this value already exists.
    pub async fn create_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<i64>,
        expiry_time: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO registration_tokens (token, uses_allowed, completed, expiry_time, created_ts) \
             VALUES ($1, $2, 0, $3, $4) ON CONFLICT (token) DO NOTHING",
        )
        .bind(token)
        .bind(uses_allowed)
        .bind(expiry_time)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn registration_token(&self, token: &str) -> Result<Option<RegistrationTokenRow>> {
        let row =
            sqlx::query("SELECT token, uses_allowed, completed, expiry_time FROM registration_tokens WHERE token = $1")
                .bind(token)
                .fetch_optional(&self.read)
                .await?;
        row.as_ref().map(RegistrationTokenRow::from_row).transpose()
    }

    pub async fn registration_tokens(&self) -> Result<Vec<RegistrationTokenRow>> {
        let rows = sqlx::query(
            "SELECT token, uses_allowed, completed, expiry_time FROM registration_tokens ORDER BY created_ts, token",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(RegistrationTokenRow::from_row).collect()
    }

    /// Changes a token's limits; `None` leaves one alone, `Some(None)` removes it. Returns false
    /// when there was no such token.
    pub async fn update_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<Option<i64>>,
        expiry_time: Option<Option<i64>>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE registration_tokens SET \
             uses_allowed = CASE WHEN $2 = 1 THEN $3 ELSE uses_allowed END, \
             expiry_time = CASE WHEN $4 = 1 THEN $5 ELSE expiry_time END WHERE token = $1",
        )
        .bind(token)
        .bind(i64::from(uses_allowed.is_some()))
        .bind(uses_allowed.flatten())
        .bind(i64::from(expiry_time.is_some()))
        .bind(expiry_time.flatten())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Returns false when there was no such token.
    pub async fn delete_registration_token(&self, token: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM registration_tokens WHERE token = $1").bind(token).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }
}
