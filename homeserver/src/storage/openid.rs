//! OpenID tokens: short-lived, stored as hashes, resolved by other servers' `userinfo` calls.

use sqlx::Row;

use super::{Result, Storage};

impl Storage {
    /// Stores a new token and sweeps expired ones.
    pub async fn insert_openid_token(&self, token_hash: &[u8], user_id: &str, expires_ts: i64, now: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM openid_tokens WHERE expires_ts <= $1").bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(user_id)
            .bind(expires_ts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user a token was issued to, if it is still valid and the account active.
    pub async fn openid_token_user(&self, token_hash: &[u8], now: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT t.user_id FROM openid_tokens t JOIN users u ON u.user_id = t.user_id \
             WHERE t.token_hash = $1 AND t.expires_ts > $2 AND u.deactivated = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|row| row.try_get("user_id")).transpose()?)
    }
}
