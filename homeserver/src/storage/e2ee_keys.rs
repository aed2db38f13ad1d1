//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys, the
//! signatures added to them later, and the stream of device-list changes.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::{Result, Storage, Stream, advance_stream, empty_window, flag, placeholders, row_values, statement_chunks};

/// A device's uploaded identity keys, with the device's display name.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceKeysRow {
    pub user_id: String,
    pub device_id: String,
    pub keys: serde_json::Value,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CrossSigningKeyRow {
    pub user_id: String,
    /// `master`, `self_signing` or `user_signing`.
    pub key_type: String,
    /// The unpadded base64 public key (the key's ID without `ed25519:`).
    pub public_key: String,
    pub key: serde_json::Value,
}

/// One signature added to a device key or cross-signing key after upload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySignatureRow {
    pub target_user_id: String,
    /// A device ID, or a cross-signing key's public key.
    pub target_key_id: String,
    pub signer_user_id: String,
    /// e.g. `ed25519:<device ID or public key>`.
    pub signer_key_id: String,
    pub signature: String,
}

pub(super) fn device_record_id(user_id: &str, device_id: &str) -> String {
    format!("device_keys/{user_id}/{device_id}")
}

pub(super) fn one_time_record_id(user_id: &str, device_id: &str, key_id: &str) -> String {
    format!("one_time_key/{user_id}/{device_id}/{key_id}")
}

pub(super) fn cross_signing_record_id(user_id: &str, key_type: &str) -> String {
    format!("cross_signing_key/{user_id}/{key_type}")
}

/// Records that these users' devices or keys changed, at one new device-list position.
pub(super) async fn mark_device_lists_changed(conn: &mut AnyConnection, user_ids: &[&str]) -> Result<()> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let stream_id = advance_stream(conn, Stream::DeviceLists).await?;
    for user_id in user_ids {
        sqlx::query(
            "INSERT INTO device_list_changes (user_id, stream_id) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
        )
        .bind(*user_id)
        .bind(stream_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Storage {
    /// Stores a device's identity keys; returns whether they changed (and were announced).
    pub async fn set_device_keys(&self, user_id: &str, device_id: &str, keys: &serde_json::Value) -> Result<bool> {
        let record_id = device_record_id(user_id, device_id);
        let mut tx = self.write.begin().await?;
        let existing = sqlx::query("SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            let bytes: Vec<u8> = row.try_get("key_json")?;
            if self.codec.decode(&record_id, &bytes)? == *keys {
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(self.codec.encode(&record_id, keys))
        .execute(&mut *tx)
        .await?;
        mark_device_lists_changed(&mut tx, &[user_id]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Device keys of these users' devices, with display names.
    pub async fn device_keys_of_users(&self, user_ids: &[String]) -> Result<Vec<DeviceKeysRow>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM device_keys k \
             JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id \
             WHERE k.user_id IN ({})",
            placeholders(1, user_ids.len())
        );
        let mut query = sqlx::query(&sql);
        for user_id in user_ids {
            query = query.bind(user_id);
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                let user_id: String = row.try_get("user_id")?;
                let device_id: String = row.try_get("device_id")?;
                let bytes: Vec<u8> = row.try_get("key_json")?;
                let keys = self.codec.decode(&device_record_id(&user_id, &device_id), &bytes)?;
                Ok(DeviceKeysRow { user_id, device_id, keys, display_name: row.try_get("display_name")? })
            })
            .collect()
    }

    /// Adds one-time keys `(algorithm, key ID, key)`. A key ID already stored with other content
    /// is a conflict: nothing is stored and the conflicting IDs are returned.
    pub async fn add_one_time_keys(
        &self,
        user_id: &str,
        device_id: &str,
        keys: &[(String, String, serde_json::Value)],
    ) -> Result<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write.begin().await?;
        let stored = self.stored_one_time_keys(&mut tx, user_id, device_id).await?;
        let mut conflicts = Vec::new();
        let mut new_keys = Vec::new();
        for (algorithm, key_id, key) in keys {
            let full_id = format!("{algorithm}:{key_id}");
            match stored.get(&full_id) {
                Some(old) if old == key => {}
                Some(_) => conflicts.push(full_id),
                None => new_keys.push((algorithm, full_id, key)),
            }
        }
        if !conflicts.is_empty() {
            return Ok(conflicts);
        }
        // Clients send an upload again when unsure it arrived, sometimes while the first is still
        // being stored: keys a concurrent upload stored meanwhile are skipped, then compared.
        let mut inserted = HashSet::new();
        for chunk in statement_chunks(&new_keys, 5) {
            let sql = format!(
                "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES {} \
                 ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING RETURNING key_id",
                row_values(chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for (algorithm, full_id, key) in chunk {
                query = query
                    .bind(user_id)
                    .bind(device_id)
                    .bind(algorithm.as_str())
                    .bind(full_id.as_str())
                    .bind(self.codec.encode(&one_time_record_id(user_id, device_id, full_id), key));
            }
            for row in query.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>("key_id")?);
            }
        }
        if inserted.len() < new_keys.len() {
            let stored = self.stored_one_time_keys(&mut tx, user_id, device_id).await?;
            let conflicts: Vec<String> = new_keys
                .iter()
                // Gone again means claimed since the other upload stored it: not a conflict.
                .filter(|(_, full_id, key)| {
                    !inserted.contains(full_id) && stored.get(full_id).is_some_and(|old| old != *key)
                })
                .map(|(_, full_id, _)| full_id.clone())
                .collect();
            if !conflicts.is_empty() {
                return Ok(conflicts);
            }
        }
        tx.commit().await?;
        Ok(Vec::new())
    }

    /// The device's one-time keys, by `algorithm:key ID`.
    async fn stored_one_time_keys(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        device_id: &str,
    ) -> Result<HashMap<String, serde_json::Value>> {
        let rows = sqlx::query("SELECT key_id, key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .fetch_all(&mut *conn)
            .await?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in &rows {
            let key_id: String = row.try_get("key_id")?;
            let bytes: Vec<u8> = row.try_get("key_json")?;
            let key = self.codec.decode(&one_time_record_id(user_id, device_id, &key_id), &bytes)?;
            stored.insert(key_id, key);
        }
        Ok(stored)
    }

    /// How many one-time keys the device has left, per algorithm.
    pub async fn one_time_key_counts(&self, user_id: &str, device_id: &str) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT algorithm, COUNT(*) AS n FROM one_time_keys WHERE user_id = $1 AND device_id = $2 \
             GROUP BY algorithm",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("algorithm")?, row.try_get("n")?))).collect()
    }

    /// Replaces the device's fallback key for the algorithm. Re-uploading the same key keeps its
    /// `used` mark; a new key starts unused.
    pub async fn set_fallback_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
        key_id: &str,
        key: &serde_json::Value,
    ) -> Result<()> {
        let full_id = format!("{algorithm}:{key_id}");
        let encoded = self.codec.encode(&one_time_record_id(user_id, device_id, &full_id), key);
        let mut tx = self.write.begin().await?;
        let existing = sqlx::query(
            "SELECT key_id, key_json FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let old_id: String = row.try_get("key_id")?;
            let bytes: Vec<u8> = row.try_get("key_json")?;
            if old_id == full_id && self.codec.decode(&one_time_record_id(user_id, device_id, &old_id), &bytes)? == *key
            {
                return Ok(());
            }
        }
        sqlx::query(
            "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, device_id, algorithm) \
             DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .bind(full_id.as_str())
        .bind(encoded)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Algorithms for which the device has a fallback key nobody has claimed yet.
    pub async fn unused_fallback_key_types(&self, user_id: &str, device_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0 \
             ORDER BY algorithm",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("algorithm")?)).collect()
    }

    /// Claims a key of the algorithm for the device: a one-time key, removed so nobody else gets
    /// it, or else the fallback key, marked used. Returns `(algorithm:key_id, key)`.
    pub async fn claim_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<(String, serde_json::Value)>> {
        // A concurrent claim may take the key we picked (PostgreSQL then deletes nothing); pick
        // again. Each round removes a key or finds none left, so a few rounds suffice.
        for _ in 0..8 {
            let row = sqlx::query(
                "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = \
                 (SELECT key_id FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
                  ORDER BY key_id LIMIT 1) RETURNING key_id, key_json",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .fetch_optional(&self.write)
            .await?;
            if let Some(row) = row {
                let key_id: String = row.try_get("key_id")?;
                let bytes: Vec<u8> = row.try_get("key_json")?;
                let key = self.codec.decode(&one_time_record_id(user_id, device_id, &key_id), &bytes)?;
                return Ok(Some((key_id, key)));
            }
            if self.one_time_key_counts(user_id, device_id).await?.get(algorithm).copied().unwrap_or(0) == 0 {
                break;
            }
        }
        let row = sqlx::query(
            "UPDATE fallback_keys SET used = $4 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
             RETURNING key_id, key_json",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .bind(flag(true))
        .fetch_optional(&self.write)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key_id: String = row.try_get("key_id")?;
        let bytes: Vec<u8> = row.try_get("key_json")?;
        let key = self.codec.decode(&one_time_record_id(user_id, device_id, &key_id), &bytes)?;
        Ok(Some((key_id, key)))
    }

    /// Stores cross-signing keys `(key type, public key, key)` and announces the change.
    pub async fn set_cross_signing_keys(
        &self,
        user_id: &str,
        keys: &[(String, String, serde_json::Value)],
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for (key_type, public_key, key) in keys {
            sqlx::query(
                "INSERT INTO cross_signing_keys (user_id, key_type, public_key, key_json) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = excluded.public_key, \
                 key_json = excluded.key_json",
            )
            .bind(user_id)
            .bind(key_type.as_str())
            .bind(public_key.as_str())
            .bind(self.codec.encode(&cross_signing_record_id(user_id, key_type), key))
            .execute(&mut *tx)
            .await?;
        }
        mark_device_lists_changed(&mut tx, &[user_id]).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn cross_signing_keys_of_users(&self, user_ids: &[String]) -> Result<Vec<CrossSigningKeyRow>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT user_id, key_type, public_key, key_json FROM cross_signing_keys WHERE user_id IN ({})",
            placeholders(1, user_ids.len())
        );
        let mut query = sqlx::query(&sql);
        for user_id in user_ids {
            query = query.bind(user_id);
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                let user_id: String = row.try_get("user_id")?;
                let key_type: String = row.try_get("key_type")?;
                let bytes: Vec<u8> = row.try_get("key_json")?;
                let key = self.codec.decode(&cross_signing_record_id(&user_id, &key_type), &bytes)?;
                Ok(CrossSigningKeyRow { user_id, key_type, public_key: row.try_get("public_key")?, key })
            })
            .collect()
    }

    /// Adds verified signatures and announces a change of every signed user's keys.
    pub async fn add_key_signatures(&self, signatures: &[KeySignatureRow]) -> Result<()> {
        if signatures.is_empty() {
            return Ok(());
        }
        let mut tx = self.write.begin().await?;
        for signature in signatures {
            sqlx::query(
                "INSERT INTO key_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) \
                 DO UPDATE SET signature = excluded.signature",
            )
            .bind(&signature.target_user_id)
            .bind(&signature.target_key_id)
            .bind(&signature.signer_user_id)
            .bind(&signature.signer_key_id)
            .bind(&signature.signature)
            .execute(&mut *tx)
            .await?;
        }
        let targets: HashSet<&str> = signatures.iter().map(|s| s.target_user_id.as_str()).collect();
        let targets: Vec<&str> = targets.into_iter().collect();
        mark_device_lists_changed(&mut tx, &targets).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Signatures on the keys of these users.
    pub async fn key_signatures_on(&self, target_user_ids: &[String]) -> Result<Vec<KeySignatureRow>> {
        if target_user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature FROM key_signatures \
             WHERE target_user_id IN ({})",
            placeholders(1, target_user_ids.len())
        );
        let mut query = sqlx::query(&sql);
        for user_id in target_user_ids {
            query = query.bind(user_id);
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                Ok(KeySignatureRow {
                    target_user_id: row.try_get("target_user_id")?,
                    target_key_id: row.try_get("target_key_id")?,
                    signer_user_id: row.try_get("signer_user_id")?,
                    signer_key_id: row.try_get("signer_key_id")?,
                    signature: row.try_get("signature")?,
                })
            })
            .collect()
    }

    /// Records that a user's devices or keys changed (another server told us about its user).
    pub async fn note_device_list_change(&self, user_id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        mark_device_lists_changed(&mut tx, &[user_id]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Users whose devices or keys changed in `after < position <= up_to`.
    pub async fn device_list_changes(&self, after: i64, up_to: i64) -> Result<Vec<String>> {
        if empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT user_id FROM device_list_changes WHERE stream_id > $1 AND stream_id <= $2 ORDER BY user_id",
        )
        .bind(after)
        .bind(up_to)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("user_id")?)).collect()
    }

    /// Which of `candidates` share a joined room with the user.
    pub async fn users_sharing_a_room(&self, user_id: &str, candidates: &[String]) -> Result<HashSet<String>> {
        if candidates.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT DISTINCT theirs.user_id FROM memberships mine \
             JOIN memberships theirs ON theirs.room_id = mine.room_id \
             WHERE mine.user_id = $1 AND mine.membership = 'join' AND theirs.membership = 'join' \
             AND theirs.user_id IN ({})",
            placeholders(2, candidates.len())
        );
        let mut query = sqlx::query(&sql).bind(user_id);
        for candidate in candidates {
            query = query.bind(candidate);
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter().map(|row| Ok(row.try_get("user_id")?)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::accounts::{NewAccount, NewDevice};
    use super::super::test_support::engines;
    use super::super::tokens::NewTokens;

    fn keys(prefix: &str, content: &str) -> Vec<(String, String, serde_json::Value)> {
        (0..20)
            .map(|i| ("signed_curve25519".to_owned(), format!("{prefix}{i}"), serde_json::json!({"key": content})))
            .collect()
    }

    #[tokio::test]
    async fn concurrent_uploads_of_one_time_keys_agree() {
        for storage in engines().await {
            let account = NewAccount {
                user_id: "@k:test",
                password_hash: None,
                is_admin: false,
                displayname: "k",
                registration_token: None,
            };
            let tokens = NewTokens { access_hash: vec![1; 32], access_expires_ts: None, refresh: None };
            let device = NewDevice { device_id: "D".into(), display_name: None, ip: None, tokens };
            storage.register_account(account, Some(&device), 0).await.unwrap();
            for round in 0..10 {
                // The same upload twice at once (a client's retry) stores it once, without error.
                let same = keys(&format!("same{round}_"), "a");
                let (first, second) = tokio::join!(
                    storage.add_one_time_keys("@k:test", "D", &same),
                    storage.add_one_time_keys("@k:test", "D", &same)
                );
                assert_eq!((first.unwrap(), second.unwrap()), (vec![], vec![]));
                // Different keys under the same IDs: one upload wins, the other is told of the conflict.
                let id = format!("clash{round}_");
                let (keys_a, keys_b) = (keys(&id, "a"), keys(&id, "b"));
                let (first, second) = tokio::join!(
                    storage.add_one_time_keys("@k:test", "D", &keys_a),
                    storage.add_one_time_keys("@k:test", "D", &keys_b)
                );
                let (first, second) = (first.unwrap(), second.unwrap());
                assert!(first.is_empty() != second.is_empty(), "{first:?} {second:?}");
                assert_eq!(first.len() + second.len(), 20);
            }
            let counts = storage.one_time_key_counts("@k:test", "D").await.unwrap();
            assert_eq!(counts.get("signed_curve25519"), Some(&400));
        }
    }
}
