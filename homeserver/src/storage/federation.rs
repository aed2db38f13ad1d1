//! Federation tables: other servers' keys, received transactions, the per-destination outbox.

use sqlx::{AnyConnection, Row};

use super::{Result, Storage, Stream, advance_stream, placeholders};

/// A stored public key of another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRow {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired_ts: Option<i64>,
}

/// Events and EDUs waiting for one destination, oldest first.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    /// `(stream ordering, event JSON)`.
    pub pdus: Vec<(i64, serde_json::Value)>,
    /// `(position, EDU JSON)`.
    pub edus: Vec<(i64, serde_json::Value)>,
}

impl OutboxBatch {
    pub fn is_empty(&self) -> bool {
        self.pdus.is_empty() && self.edus.is_empty()
    }
}

/// The identity of a queued EDU (its associated data when sealed).
pub(super) fn edu_record_id(destination: &str, position: i64) -> String {
    format!("outbox_edu/{destination}/{position}")
}

/// Queues an EDU for one destination inside a transaction.
pub(super) async fn insert_edu(
    codec: &super::Codec,
    tx: &mut AnyConnection,
    destination: &str,
    edu: &serde_json::Value,
) -> Result<()> {
    let position = advance_stream(tx, Stream::FederationEdus).await?;
    sqlx::query("INSERT INTO federation_outbox_edus (destination, position, edu) VALUES ($1, $2, $3)")
        .bind(destination)
        .bind(position)
        .bind(codec.encode_text(&edu_record_id(destination, position), edu))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Storage {
    pub async fn server_keys(&self, server_name: &str) -> Result<Vec<ServerKeyRow>> {
        let rows = sqlx::query(
            "SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_keys WHERE server_name = $1",
        )
        .bind(server_name)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ServerKeyRow {
                    key_id: row.try_get("key_id")?,
                    public_key: row.try_get("public_key")?,
                    valid_until_ts: row.try_get("valid_until_ts")?,
                    expired_ts: row.try_get("expired_ts")?,
                })
            })
            .collect()
    }

    /// Stores a verified key object and its keys (replacing what was known of them).
    pub async fn store_server_keys(
        &self,
        server_name: &str,
        keys: &[ServerKeyRow],
        object: &serde_json::Value,
        valid_until_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        // Keys the server no longer publishes (not even as retired ones) are not trusted again.
        if !keys.is_empty() {
            let sql = format!(
                "DELETE FROM server_keys WHERE server_name = $1 AND key_id NOT IN ({})",
                placeholders(2, keys.len())
            );
            let mut forget = sqlx::query(&sql).bind(server_name);
            for key in keys {
                forget = forget.bind(&key.key_id);
            }
            forget.execute(&mut *tx).await?;
        }
        for key in keys {
            sqlx::query(
                "INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (server_name, key_id) DO UPDATE SET \
                 public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts, \
                 expired_ts = excluded.expired_ts",
            )
            .bind(server_name)
            .bind(&key.key_id)
            .bind(&key.public_key)
            .bind(key.valid_until_ts)
            .bind(key.expired_ts)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO server_key_objects (server_name, valid_until_ts, fetched_ts, json) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (server_name) DO UPDATE SET valid_until_ts = excluded.valid_until_ts, \
             fetched_ts = excluded.fetched_ts, json = excluded.json",
        )
        .bind(server_name)
        .bind(valid_until_ts)
        .bind(now_ms)
        .bind(object.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The key object last fetched from a server, with its expiry.
    pub async fn server_key_object(&self, server_name: &str) -> Result<Option<(serde_json::Value, i64)>> {
        let row = sqlx::query("SELECT json, valid_until_ts FROM server_key_objects WHERE server_name = $1")
            .bind(server_name)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get("json")?;
        let value = serde_json::from_str(&json).map_err(|e| super::StorageError::Corrupt(e.to_string()))?;
        Ok(Some((value, row.try_get("valid_until_ts")?)))
    }

    /// The answer given to an earlier delivery of a transaction.
    pub async fn federation_txn_response(&self, origin: &str, txn_id: &str) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT response FROM federation_txns WHERE origin = $1 AND txn_id = $2")
            .bind(origin)
            .bind(txn_id)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("response")?;
        Ok(serde_json::from_str(&text).ok())
    }

    pub async fn store_federation_txn(
        &self,
        origin: &str,
        txn_id: &str,
        response: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO federation_txns (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (origin, txn_id) DO NOTHING",
        )
        .bind(origin)
        .bind(txn_id)
        .bind(response.to_string())
        .bind(now_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Users joined to any room `user_id` is joined to (including the user).
    pub async fn room_mates(&self, user_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT other.user_id FROM memberships mine \
             JOIN memberships other ON other.room_id = mine.room_id AND other.membership = 'join' \
             WHERE mine.user_id = $1 AND mine.membership = 'join'",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("user_id")?)).collect()
    }

    /// Queues one EDU for several destinations.
    pub async fn queue_edu(&self, destinations: &[String], edu: &serde_json::Value) -> Result<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        let mut tx = self.write.begin().await?;
        for destination in destinations {
            insert_edu(&self.codec, &mut tx, destination, edu).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Destinations with anything waiting (to resume sending after a restart).
    pub async fn outbox_destinations(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT destination FROM federation_outbox_pdus UNION SELECT destination FROM federation_outbox_edus",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("destination")?)).collect()
    }

    /// The oldest waiting events and EDUs for a destination.
    pub async fn outbox_batch(&self, destination: &str, max_pdus: i64, max_edus: i64) -> Result<OutboxBatch> {
        let pdu_rows = sqlx::query(
            "SELECT o.stream_ordering, e.event_id, e.json FROM federation_outbox_pdus o \
             JOIN events e ON e.stream_ordering = o.stream_ordering \
             WHERE o.destination = $1 ORDER BY o.stream_ordering LIMIT $2",
        )
        .bind(destination)
        .bind(max_pdus)
        .fetch_all(&self.read)
        .await?;
        let mut batch = OutboxBatch::default();
        for row in &pdu_rows {
            let event_id: String = row.try_get("event_id")?;
            let bytes: Vec<u8> = row.try_get("json")?;
            batch.pdus.push((row.try_get("stream_ordering")?, self.codec.decode(&event_id, &bytes)?));
        }
        let edu_rows = sqlx::query(
            "SELECT position, edu FROM federation_outbox_edus WHERE destination = $1 ORDER BY position LIMIT $2",
        )
        .bind(destination)
        .bind(max_edus)
        .fetch_all(&self.read)
        .await?;
        for row in &edu_rows {
            let (position, text): (i64, String) = (row.try_get("position")?, row.try_get("edu")?);
            batch.edus.push((position, self.codec.decode_text(&edu_record_id(destination, position), &text)?));
        }
        Ok(batch)
    }

    /// Removes what a destination has acknowledged.
    pub async fn delete_outbox(&self, destination: &str, pdus: &[i64], edus: &[i64]) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for (table, column, ids) in
            [("federation_outbox_pdus", "stream_ordering", pdus), ("federation_outbox_edus", "position", edus)]
        {
            if ids.is_empty() {
                continue;
            }
            let sql =
                format!("DELETE FROM {table} WHERE destination = $1 AND {column} IN ({})", placeholders(2, ids.len()));
            let mut query = sqlx::query(&sql).bind(destination);
            for id in ids {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
