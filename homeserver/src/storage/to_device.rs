//! To-device messages: a per-device inbox on its own stream, emptied as the device acknowledges.

use std::collections::HashSet;

use sqlx::Row;

use super::{Result, Storage, Stream, advance_stream_by, empty_window, placeholders, row_values};

/// A message for one device, or for all of the user's devices when `device_id` is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToDeviceMessage {
    pub user_id: String,
    pub device_id: Option<String>,
    pub content: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToDeviceRow {
    pub stream_id: i64,
    pub sender: String,
    pub event_type: String,
    pub content: serde_json::Value,
}

pub(super) fn record_id(stream_id: i64) -> String {
    format!("to_device/{stream_id}")
}

impl Storage {
    /// Queues messages from `sender`'s device under a transaction ID. A repeated transaction ID
    /// delivers nothing again. Messages for devices that do not exist are dropped, as the spec
    /// allows. Returns how many messages were queued, `None` for a repeated transaction.
    pub async fn queue_to_device(
        &self,
        sender: &str,
        sender_device: &str,
        txn_id: &str,
        event_type: &str,
        messages: &[NewToDeviceMessage],
        remote: &[(String, serde_json::Value)],
    ) -> Result<Option<usize>> {
        let mut tx = self.write.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
        )
        .bind(sender)
        .bind(sender_device)
        .bind(txn_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(None);
        }
        // Messages for other servers' users leave as EDUs, queued in the same transaction.
        for (destination, edu) in remote {
            super::federation::insert_edu(&self.codec, &mut tx, destination, edu).await?;
        }
        let delivered = deliver(&self.codec, &mut tx, sender, event_type, messages).await?;
        tx.commit().await?;
        Ok(Some(delivered))
    }

    /// Delivers messages another server relayed (its transactions are deduplicated already).
    pub async fn deliver_remote_to_device(
        &self,
        sender: &str,
        event_type: &str,
        messages: &[NewToDeviceMessage],
    ) -> Result<usize> {
        let mut tx = self.write.begin().await?;
        let delivered = deliver(&self.codec, &mut tx, sender, event_type, messages).await?;
        tx.commit().await?;
        Ok(delivered)
    }

    /// Up to `limit` messages for the device after `after` and at most `up_to`, oldest first.
    pub async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<ToDeviceRow>> {
        if empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT stream_id, sender, event_type, content FROM to_device_messages \
             WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 AND stream_id <= $4 \
             ORDER BY stream_id LIMIT $5",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(after)
        .bind(up_to)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let stream_id: i64 = row.try_get("stream_id")?;
                let bytes: Vec<u8> = row.try_get("content")?;
                Ok(ToDeviceRow {
                    stream_id,
                    sender: row.try_get("sender")?,
                    event_type: row.try_get("event_type")?,
                    content: self.codec.decode(&record_id(stream_id), &bytes)?,
                })
            })
            .collect()
    }

    /// Deletes the device's messages up to `up_to`: the device has acknowledged them by syncing
    /// from a token past them. Checks with a read first, so a sync with nothing to acknowledge
    /// does not queue behind writers.
    pub async fn acknowledge_to_device(&self, user_id: &str, device_id: &str, up_to: i64) -> Result<u64> {
        let pending = sqlx::query(
            "SELECT stream_id FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3 LIMIT 1",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(up_to)
        .fetch_optional(&self.read)
        .await?;
        if pending.is_none() {
            return Ok(0);
        }
        let result =
            sqlx::query("DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3")
                .bind(user_id)
                .bind(device_id)
                .bind(up_to)
                .execute(&self.write)
                .await?;
        Ok(result.rows_affected())
    }
}

/// Queues messages for the recipients' devices: one device, or all of a user's devices for
/// `device_id: None`; devices that do not exist get nothing. Returns how many were queued.
async fn deliver(
    codec: &super::Codec,
    conn: &mut sqlx::AnyConnection,
    sender: &str,
    event_type: &str,
    messages: &[NewToDeviceMessage],
) -> Result<usize> {
    // Resolve recipients inside the transaction, so "all devices" means the devices that exist now.
    let users: Vec<&str> = messages.iter().map(|m| m.user_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
    let mut devices: HashSet<(String, String)> = HashSet::new();
    if !users.is_empty() {
        let sql = format!("SELECT user_id, device_id FROM devices WHERE user_id IN ({})", placeholders(1, users.len()));
        let mut query = sqlx::query(&sql);
        for user in &users {
            query = query.bind(*user);
        }
        for row in query.fetch_all(&mut *conn).await? {
            devices.insert((row.try_get("user_id")?, row.try_get("device_id")?));
        }
    }
    let mut deliveries: Vec<(&str, String, &serde_json::Value)> = Vec::new();
    for message in messages {
        match &message.device_id {
            Some(device_id) => {
                if devices.contains(&(message.user_id.clone(), device_id.clone())) {
                    deliveries.push((&message.user_id, device_id.clone(), &message.content));
                }
            }
            None => {
                let mut all: Vec<&String> =
                    devices.iter().filter(|(user, _)| *user == message.user_id).map(|(_, d)| d).collect();
                all.sort();
                deliveries.extend(all.into_iter().map(|d| (message.user_id.as_str(), d.clone(), &message.content)));
            }
        }
    }
    if deliveries.is_empty() {
        return Ok(0);
    }
    let count = i64::try_from(deliveries.len()).unwrap_or(i64::MAX);
    let last = advance_stream_by(conn, Stream::ToDevice, count).await?;
    let mut stream_id = last - count;
    for chunk in deliveries.chunks(100) {
        let sql = format!(
            "INSERT INTO to_device_messages (stream_id, user_id, device_id, sender, event_type, content) VALUES {}",
            row_values(chunk.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for (user_id, device_id, content) in chunk {
            stream_id += 1;
            query = query
                .bind(stream_id)
                .bind(*user_id)
                .bind(device_id.as_str())
                .bind(sender)
                .bind(event_type)
                .bind(codec.encode(&record_id(stream_id), content));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(deliveries.len())
}
