//! Users, profiles and devices.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::e2ee_keys::mark_device_lists_changed;
use super::tokens::{NewTokens, insert_tokens};
use super::{Result, Storage, flag, placeholders};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
    pub created_ts: i64,
}

impl UserRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            user_id: row.try_get("user_id")?,
            password_hash: row.try_get("password_hash")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            deactivated: row.try_get::<i64, _>("deactivated")? != 0,
            created_ts: row.try_get("created_ts")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

impl DeviceRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            device_id: row.try_get("device_id")?,
            display_name: row.try_get("display_name")?,
            last_seen_ts: row.try_get("last_seen_ts")?,
            last_seen_ip: row.try_get("last_seen_ip")?,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileRow {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    DisplayName,
    AvatarUrl,
}

/// A device to create (or reuse) at login or registration, with its first tokens.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub device_id: String,
    pub display_name: Option<String>,
    pub ip: Option<String>,
    pub tokens: NewTokens,
}

/// What registering an account did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    Created,
    UserIdTaken,
    /// The registration token was used up or expired between validation and registration.
    RegistrationTokenUnusable,
}

/// A new account to register.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    pub user_id: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub displayname: &'a str,
    pub registration_token: Option<&'a str>,
}

const USER_COLUMNS: &str = "user_id, password_hash, is_admin, deactivated, created_ts";

impl Storage {
    /// Creates a user, its profile, and optionally a first device with tokens, in one transaction.
    /// Consumes one use of `registration_token` in the same transaction.
    pub async fn register_account(
        &self,
        account: NewAccount<'_>,
        device: Option<&NewDevice>,
        now: i64,
    ) -> Result<RegisterOutcome> {
        let mut tx = self.write.begin().await?;
        if let Some(token) = account.registration_token {
            let used = sqlx::query(
                "UPDATE registration_tokens SET completed = completed + 1 \
                 WHERE token = $1 AND (uses_allowed IS NULL OR completed < uses_allowed) \
                 AND (expiry_time IS NULL OR expiry_time > $2)",
            )
            .bind(token)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if used.rows_affected() != 1 {
                return Ok(RegisterOutcome::RegistrationTokenUnusable);
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO users (user_id, password_hash, is_admin, deactivated, created_ts) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(account.user_id)
        .bind(account.password_hash)
        .bind(flag(account.is_admin))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            return Ok(RegisterOutcome::UserIdTaken);
        }
        sqlx::query("INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)")
            .bind(account.user_id)
            .bind(account.displayname)
            .execute(&mut *tx)
            .await?;
        if let Some(device) = device {
            upsert_device_with_tokens(&mut tx, account.user_id, device, now).await?;
        }
        tx.commit().await?;
        Ok(RegisterOutcome::Created)
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1"))
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(UserRow::from_row).transpose()
    }

    pub async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn set_admin(&self, user_id: &str, is_admin: bool) -> Result<()> {
        sqlx::query("UPDATE users SET is_admin = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(flag(is_admin))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Marks the user deactivated, removes the password and every device (and so every token).
    /// The row stays so the user ID can never be registered again.
    pub async fn deactivate_user(&self, user_id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM devices WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM cross_signing_keys WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        mark_device_lists_changed(&mut tx, &[user_id]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates the device (or reuses it, keeping its name unless a new one is given), revokes
    /// every token the device had, and stores the new tokens — one transaction.
    pub async fn login_device(&self, user_id: &str, device: &NewDevice, now: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        upsert_device_with_tokens(&mut tx, user_id, device, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn devices(&self, user_id: &str) -> Result<Vec<DeviceRow>> {
        let rows = sqlx::query(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices \
             WHERE user_id = $1 ORDER BY device_id",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(DeviceRow::from_row).collect()
    }

    pub async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRow>> {
        let row = sqlx::query(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices \
             WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(DeviceRow::from_row).transpose()
    }

    /// Returns false when the device does not exist.
    pub async fn set_device_display_name(&self, user_id: &str, device_id: &str, name: Option<&str>) -> Result<bool> {
        // Other users see device names through /keys/query, so a rename is a device-list change.
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        mark_device_lists_changed(&mut tx, &[user_id]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes devices with everything they own (tokens, keys, to-device inbox) and tells the
    /// user's contacts that the device list changed.
    pub async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> Result<()> {
        if device_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.write.begin().await?;
        let sql =
            format!("DELETE FROM devices WHERE user_id = $1 AND device_id IN ({})", placeholders(2, device_ids.len()));
        let mut query = sqlx::query(&sql).bind(user_id);
        for device_id in device_ids {
            query = query.bind(device_id);
        }
        if query.execute(&mut *tx).await?.rows_affected() > 0 {
            mark_device_lists_changed(&mut tx, &[user_id]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes every device of the user except `keep`.
    pub async fn delete_other_devices(&self, user_id: &str, keep: Option<&str>) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let deleted = sqlx::query("DELETE FROM devices WHERE user_id = $1 AND ($2 IS NULL OR device_id <> $2)")
            .bind(user_id)
            .bind(keep)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted > 0 {
            mark_device_lists_changed(&mut tx, &[user_id]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn profile_displayname(&self, user_id: &str) -> Result<Option<String>> {
        Ok(self.profile(user_id).await?.and_then(|p| p.displayname))
    }

    /// A local user's profile, `None` for unknown users.
    pub async fn profile(&self, user_id: &str) -> Result<Option<ProfileRow>> {
        let row = sqlx::query("SELECT displayname, avatar_url FROM profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| {
            Ok(ProfileRow { displayname: row.try_get("displayname")?, avatar_url: row.try_get("avatar_url")? })
        })
        .transpose()
    }

    /// Sets (or with `None` clears) the display name or avatar URL.
    pub async fn set_profile_field(&self, user_id: &str, field: ProfileField, value: Option<&str>) -> Result<()> {
        let sql = match field {
            ProfileField::DisplayName => "UPDATE profiles SET displayname = $2 WHERE user_id = $1",
            ProfileField::AvatarUrl => "UPDATE profiles SET avatar_url = $2 WHERE user_id = $1",
        };
        sqlx::query(sql).bind(user_id).bind(value).execute(&self.write).await?;
        Ok(())
    }
}

async fn upsert_device_with_tokens(
    conn: &mut AnyConnection,
    user_id: &str,
    device: &NewDevice,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip) \
         VALUES ($1, $2, $3, $4, $4, $5) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET \
         display_name = COALESCE(excluded.display_name, devices.display_name), \
         last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip",
    )
    .bind(user_id)
    .bind(&device.device_id)
    .bind(device.display_name.as_deref())
    .bind(now)
    .bind(device.ip.as_deref())
    .execute(&mut *conn)
    .await?;
    // A login onto an existing device replaces whatever session it had.
    sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(&device.device_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(&device.device_id)
        .execute(&mut *conn)
        .await?;
    insert_tokens(conn, user_id, &device.device_id, &device.tokens, now).await
}

#[cfg(test)]
mod tests {
    use super::super::test_support::engines;
    use super::*;

    fn tokens(seed: u8) -> NewTokens {
        NewTokens { access_hash: vec![seed; 32], access_expires_ts: None, refresh: None }
    }

    fn account(user_id: &str) -> NewAccount<'_> {
        NewAccount {
            user_id,
            password_hash: Some("hash"),
            is_admin: false,
            displayname: "alice",
            registration_token: None,
        }
    }

    #[tokio::test]
    async fn register_device_login_and_deactivate() {
        for storage in engines().await {
            let device =
                NewDevice { device_id: "DEV1".into(), display_name: Some("phone".into()), ip: None, tokens: tokens(1) };
            assert_eq!(
                storage.register_account(account("@alice:test"), Some(&device), 10).await.unwrap(),
                RegisterOutcome::Created
            );
            assert_eq!(
                storage.register_account(account("@alice:test"), None, 11).await.unwrap(),
                RegisterOutcome::UserIdTaken
            );
            let user = storage.user("@alice:test").await.unwrap().unwrap();
            assert_eq!(user.password_hash.as_deref(), Some("hash"));
            assert!(!user.is_admin && !user.deactivated);
            assert_eq!(storage.profile_displayname("@alice:test").await.unwrap().as_deref(), Some("alice"));

            // Logging in again on the same device revokes its old token and keeps its name.
            let again = NewDevice { display_name: None, tokens: tokens(2), ..device.clone() };
            storage.login_device("@alice:test", &again, 20).await.unwrap();
            assert!(storage.access_token(&[1; 32]).await.unwrap().is_none());
            let token = storage.access_token(&[2; 32]).await.unwrap().unwrap();
            assert_eq!(token.device_id, "DEV1");
            let devices = storage.devices("@alice:test").await.unwrap();
            assert_eq!(devices.len(), 1);
            assert_eq!(devices[0].display_name.as_deref(), Some("phone"));

            storage.deactivate_user("@alice:test").await.unwrap();
            assert!(storage.access_token(&[2; 32]).await.unwrap().is_none());
            assert!(storage.devices("@alice:test").await.unwrap().is_empty());
            let user = storage.user("@alice:test").await.unwrap().unwrap();
            assert!(user.deactivated && user.password_hash.is_none());
        }
    }

    #[tokio::test]
    async fn registration_token_is_consumed_atomically() {
        for storage in engines().await {
            storage.create_registration_token("tok", Some(1), None, 0).await.unwrap();
            let mut first = account("@a:test");
            first.registration_token = Some("tok");
            assert_eq!(storage.register_account(first, None, 1).await.unwrap(), RegisterOutcome::Created);
            let mut second = account("@b:test");
            second.registration_token = Some("tok");
            assert_eq!(
                storage.register_account(second, None, 2).await.unwrap(),
                RegisterOutcome::RegistrationTokenUnusable
            );
            assert!(storage.user("@b:test").await.unwrap().is_none());
            let row = storage.registration_token("tok").await.unwrap().unwrap();
            assert_eq!(row.completed, 1);
        }
    }
}
