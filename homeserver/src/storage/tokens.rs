//! Access and refresh tokens, stored only as hashes.

use sqlx::{AnyConnection, Row};

use super::{Result, Storage};

/// Hashes of the tokens to issue for one device session.
#[derive(Debug, Clone)]
pub struct NewTokens {
    pub access_hash: Vec<u8>,
    pub access_expires_ts: Option<i64>,
    /// Refresh token hash and its expiry, when the client asked for one.
    pub refresh: Option<(Vec<u8>, Option<i64>)>,
}

/// What an access token resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRow {
    pub user_id: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub is_admin: bool,
    pub deactivated: bool,
}

pub(super) async fn insert_tokens(
    conn: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
    tokens: &NewTokens,
    now: i64,
) -> Result<()> {
    if let Some((refresh_hash, refresh_expires)) = &tokens.refresh {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, expires_ts) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(refresh_hash.as_slice())
        .bind(user_id)
        .bind(device_id)
        .bind(now)
        .bind(*refresh_expires)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_hash) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tokens.access_hash.as_slice())
    .bind(user_id)
    .bind(device_id)
    .bind(now)
    .bind(tokens.access_expires_ts)
    .bind(tokens.refresh.as_ref().map(|(hash, _)| hash.as_slice()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The device a refresh token belonged to, when it was exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshedDevice {
    pub user_id: String,
    pub device_id: String,
}

impl Storage {
    pub async fn access_token(&self, token_hash: &[u8]) -> Result<Option<AccessTokenRow>> {
        let row = sqlx::query(
            "SELECT t.user_id, t.device_id, t.expires_ts, u.is_admin, u.deactivated \
             FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AccessTokenRow {
            user_id: row.try_get("user_id")?,
            device_id: row.try_get("device_id")?,
            expires_ts: row.try_get("expires_ts")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            deactivated: row.try_get::<i64, _>("deactivated")? != 0,
        }))
    }

    /// Exchanges a refresh token: the old refresh token and the access tokens issued with it are
    /// revoked and `new` is stored for the same device, atomically. Returns `None` when the
    /// refresh token is unknown or expired.
    pub async fn exchange_refresh_token(
        &self,
        old_hash: &[u8],
        new: &NewTokens,
        now: i64,
    ) -> Result<Option<RefreshedDevice>> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT user_id, device_id, expires_ts FROM refresh_tokens WHERE token_hash = $1")
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_ts: Option<i64> = row.try_get("expires_ts")?;
        if expires_ts.is_some_and(|ts| ts <= now) {
            return Ok(None);
        }
        let device = RefreshedDevice { user_id: row.try_get("user_id")?, device_id: row.try_get("device_id")? };
        // Access tokens that reference the old refresh token go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = $1").bind(old_hash).execute(&mut *tx).await?;
        insert_tokens(&mut tx, &device.user_id, &device.device_id, new, now).await?;
        tx.commit().await?;
        Ok(Some(device))
    }
}

#[cfg(test)]
mod tests {
    use super::super::accounts::{NewAccount, NewDevice};
    use super::super::test_support::engines;
    use super::*;

    #[tokio::test]
    async fn refresh_rotates_tokens() {
        for storage in engines().await {
            let account = NewAccount {
                user_id: "@bob:test",
                password_hash: None,
                is_admin: true,
                displayname: "bob",
                registration_token: None,
            };
            let first = NewTokens {
                access_hash: vec![1; 32],
                access_expires_ts: Some(100),
                refresh: Some((vec![9; 32], None)),
            };
            let device = NewDevice { device_id: "D".into(), display_name: None, ip: None, tokens: first };
            storage.register_account(account, Some(&device), 0).await.unwrap();
            let row = storage.access_token(&[1; 32]).await.unwrap().unwrap();
            assert!(row.is_admin);
            assert_eq!(row.expires_ts, Some(100));

            let second = NewTokens {
                access_hash: vec![2; 32],
                access_expires_ts: Some(200),
                refresh: Some((vec![8; 32], Some(50))),
            };
            let refreshed = storage.exchange_refresh_token(&[9; 32], &second, 10).await.unwrap().unwrap();
            assert_eq!(refreshed.device_id, "D");
            assert!(storage.access_token(&[1; 32]).await.unwrap().is_none(), "old access token revoked");
            assert!(storage.access_token(&[2; 32]).await.unwrap().is_some());
            // The old refresh token cannot be used twice.
            assert!(storage.exchange_refresh_token(&[9; 32], &second, 11).await.unwrap().is_none());
            // An expired refresh token is refused.
            let third = NewTokens { access_hash: vec![3; 32], access_expires_ts: None, refresh: None };
            assert!(storage.exchange_refresh_token(&[8; 32], &third, 60).await.unwrap().is_none());
        }
    }
}
