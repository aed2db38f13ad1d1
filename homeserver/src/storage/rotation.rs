//! Key rotation for sealed records: every record not yet under the codec's current key (older
//! keys, or plain JSON from before encryption was on) is decoded and sealed again, in bounded
//! batches, each its own transaction. An update only lands if the row still holds the bytes that
//! were read, so a record the running server rewrote meanwhile is never overwritten with older
//! content (the next pass picks it up).

use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Result, Storage, StorageError};
use crate::at_rest::record;

/// One table column that holds sealed records.
struct SealedColumn {
    table: &'static str,
    /// The primary key, in order; `BIGINT` ones are marked.
    key: &'static [(&'static str, KeyKind)],
    column: &'static str,
    /// A `TEXT` column (base64 when sealed, see `Codec::encode_text`) rather than bytes.
    text: bool,
    /// The record's identity (its associated data), from its key values.
    record_id: fn(&[KeyValue]) -> String,
}

#[derive(Clone, Copy)]
enum KeyKind {
    Text,
    Int,
}

#[derive(Clone, Debug)]
enum KeyValue {
    Text(String),
    Int(i64),
}

impl KeyValue {
    fn text(&self) -> &str {
        match self {
            Self::Text(text) => text,
            Self::Int(_) => "",
        }
    }

    fn int(&self) -> i64 {
        match self {
            Self::Int(n) => *n,
            Self::Text(_) => 0,
        }
    }
}

use KeyKind::{Int, Text};

/// Every column the codec writes. A new sealed column must be added here to be rotated.
const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "events",
        key: &[("event_id", Text)],
        column: "json",
        text: false,
        record_id: |k| k[0].text().to_owned(),
    },
    SealedColumn {
        table: "to_device_messages",
        key: &[("stream_id", Int)],
        column: "content",
        text: false,
        record_id: |k| super::to_device::record_id(k[0].int()),
    },
    SealedColumn {
        table: "account_data",
        key: &[("user_id", Text), ("room_id", Text), ("data_type", Text)],
        column: "content",
        text: false,
        record_id: |k| super::account_data::record_id(k[0].text(), k[1].text(), k[2].text()),
    },
    SealedColumn {
        table: "key_backup_versions",
        key: &[("user_id", Text), ("version", Int)],
        column: "auth_data",
        text: false,
        record_id: |k| super::key_backup::version_record_id(k[0].text(), k[1].int()),
    },
    SealedColumn {
        table: "key_backup_keys",
        key: &[("user_id", Text), ("version", Int), ("room_id", Text), ("session_id", Text)],
        column: "session_data",
        text: false,
        record_id: |k| super::key_backup::key_record_id(k[0].text(), k[1].int(), k[2].text(), k[3].text()),
    },
    SealedColumn {
        table: "uiaa_sessions",
        key: &[("session_id", Text)],
        column: "completed",
        text: false,
        record_id: |k| k[0].text().to_owned(),
    },
    SealedColumn {
        table: "device_keys",
        key: &[("user_id", Text), ("device_id", Text)],
        column: "key_json",
        text: false,
        record_id: |k| super::e2ee_keys::device_record_id(k[0].text(), k[1].text()),
    },
    SealedColumn {
        table: "one_time_keys",
        key: &[("user_id", Text), ("device_id", Text), ("algorithm", Text), ("key_id", Text)],
        column: "key_json",
        text: false,
        record_id: |k| super::e2ee_keys::one_time_record_id(k[0].text(), k[1].text(), k[3].text()),
    },
    SealedColumn {
        table: "fallback_keys",
        key: &[("user_id", Text), ("device_id", Text), ("algorithm", Text), ("key_id", Text)],
        column: "key_json",
        text: false,
        record_id: |k| super::e2ee_keys::one_time_record_id(k[0].text(), k[1].text(), k[3].text()),
    },
    SealedColumn {
        table: "cross_signing_keys",
        key: &[("user_id", Text), ("key_type", Text)],
        column: "key_json",
        text: false,
        record_id: |k| super::e2ee_keys::cross_signing_record_id(k[0].text(), k[1].text()),
    },
    SealedColumn {
        table: "media",
        key: &[("origin", Text), ("media_id", Text)],
        column: "sealed_filename",
        text: false,
        record_id: |k| super::media::filename_record_id(k[0].text(), k[1].text()),
    },
    SealedColumn {
        table: "federation_outbox_edus",
        key: &[("destination", Text), ("position", Int)],
        column: "edu",
        text: true,
        record_id: |k| super::federation::edu_record_id(k[0].text(), k[1].int()),
    },
    SealedColumn {
        table: "remote_invites",
        key: &[("room_id", Text), ("user_id", Text)],
        column: "stripped_state",
        text: true,
        record_id: |k| super::remote_rooms::invite_record_id(k[0].text(), k[1].text()),
    },
    SealedColumn {
        table: "redaction_holds",
        key: &[("event_id", Text)],
        column: "json",
        text: false,
        record_id: |k| super::redaction_holds::record_id(k[0].text()),
    },
];

impl Storage {
    /// Seals every record under the current key, `batch` rows at a time. Returns how many were
    /// resealed. Passes repeat until one finds nothing to do (rows added or removed meanwhile
    /// shift the pages), at most a few times; the key-check record is resealed at the end.
    pub async fn reseal_records(&self, batch: i64) -> Result<u64> {
        let keys = self.codec.keys().ok_or_else(|| StorageError::Key("encryption at rest is off".into()))?.clone();
        let current = keys.current().id();
        let mut total = 0;
        for _pass in 0..5 {
            let mut resealed = 0;
            for sealed in SEALED {
                resealed += self.reseal_column(sealed, current, batch).await?;
            }
            total += resealed;
            if resealed == 0 {
                break;
            }
        }
        self.store_key_check().await?;
        Ok(total)
    }

    async fn reseal_column(&self, sealed: &SealedColumn, current: crate::at_rest::KeyId, batch: i64) -> Result<u64> {
        let key_columns: Vec<&str> = sealed.key.iter().map(|(name, _)| *name).collect();
        let select = format!(
            "SELECT {keys}, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {keys} LIMIT $1 OFFSET $2",
            keys = key_columns.join(", "),
            column = sealed.column,
            table = sealed.table,
        );
        let conditions: Vec<String> =
            key_columns.iter().enumerate().map(|(i, name)| format!("{name} = ${}", i + 2)).collect();
        let update = format!(
            "UPDATE {table} SET {column} = $1 WHERE {conditions} AND {column} = ${old}",
            table = sealed.table,
            column = sealed.column,
            conditions = conditions.join(" AND "),
            old = key_columns.len() + 2,
        );
        let mut resealed = 0;
        let mut offset = 0;
        loop {
            let rows = sqlx::query(&select).bind(batch).bind(offset).fetch_all(&self.read).await?;
            let mut tx = self.write.begin().await?;
            for row in &rows {
                let stored = Stored::read(row, sealed)?;
                if stored.key_id() == Some(current) {
                    continue;
                }
                let key = key_values(row, sealed)?;
                let record_id = (sealed.record_id)(&key);
                let mut query = match &stored {
                    Stored::Bytes(bytes) => {
                        sqlx::query(&update).bind(self.codec.encode(&record_id, &self.codec.decode(&record_id, bytes)?))
                    }
                    Stored::Text(text) => sqlx::query(&update)
                        .bind(self.codec.encode_text(&record_id, &self.codec.decode_text(&record_id, text)?)),
                };
                for value in &key {
                    query = match value {
                        KeyValue::Text(text) => query.bind(text.clone()),
                        KeyValue::Int(n) => query.bind(*n),
                    };
                }
                query = match stored {
                    Stored::Bytes(bytes) => query.bind(bytes),
                    Stored::Text(text) => query.bind(text),
                };
                resealed += query.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < batch {
                return Ok(resealed);
            }
            offset += batch;
        }
    }
}

/// A sealed column's value as read.
enum Stored {
    Bytes(Vec<u8>),
    Text(String),
}

impl Stored {
    fn read(row: &AnyRow, sealed: &SealedColumn) -> Result<Self> {
        Ok(if sealed.text { Self::Text(row.try_get(sealed.column)?) } else { Self::Bytes(row.try_get(sealed.column)?) })
    }

    /// The key it is sealed with; `None` when plain.
    fn key_id(&self) -> Option<crate::at_rest::KeyId> {
        let bytes = match self {
            Self::Bytes(bytes) => std::borrow::Cow::Borrowed(bytes.as_slice()),
            Self::Text(text) if text.starts_with(['{', '[']) => return None,
            Self::Text(text) => {
                std::borrow::Cow::Owned(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).ok()?)
            }
        };
        if record::is_sealed(&bytes) { record::key_id(&bytes) } else { None }
    }
}

fn key_values(row: &AnyRow, sealed: &SealedColumn) -> Result<Vec<KeyValue>> {
    sealed
        .key
        .iter()
        .map(|(name, kind)| {
            Ok(match kind {
                Text => KeyValue::Text(row.try_get(*name)?),
                Int => KeyValue::Int(row.try_get(*name)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::Codec;
    use super::super::test_support::{connect_with, engine_urls};
    use crate::at_rest::{Key, Keyring};

    fn codec(current: u8, older: &[u8]) -> Codec {
        let older = older.iter().map(|b| Key::from_bytes(&[*b; 32])).collect();
        Codec::encrypted(Arc::new(Keyring::new(Key::from_bytes(&[current; 32]), older)))
    }

    #[tokio::test]
    async fn rotating_to_the_current_key_seals_records_from_before_encryption() {
        for url in engine_urls().await {
            let plain = connect_with(&url, Codec::plain()).await;
            let edu = serde_json::json!({"edu_type": "m.receipt", "content": {"note": "LEGACYMARKER"}});
            plain.queue_edu(&["remote.example".to_owned()], &edu).await.unwrap();
            plain.close().await;
            let sealing = connect_with(&url, codec(1, &[])).await;
            sealing.check_key().await.unwrap();
            assert_eq!(sealing.reseal_records(10).await.unwrap(), 1);
            let raw: String =
                sqlx::query_scalar("SELECT edu FROM federation_outbox_edus").fetch_one(&sealing.read).await.unwrap();
            assert!(!raw.contains("LEGACYMARKER"), "{raw}");
            assert_eq!(sealing.outbox_batch("remote.example", 10, 10).await.unwrap().edus[0].1, edu);
            sealing.close().await;
        }
    }

    #[tokio::test]
    async fn outbox_edus_are_sealed_and_rotated() {
        for url in engine_urls().await {
            let old = connect_with(&url, codec(1, &[])).await;
            old.check_key().await.unwrap();
            let edu = serde_json::json!({"edu_type": "m.direct_to_device", "content": {"body": "EDUMARKER"}});
            old.queue_edu(&["remote.example".to_owned()], &edu).await.unwrap();
            let raw: String =
                sqlx::query_scalar("SELECT edu FROM federation_outbox_edus").fetch_one(&old.read).await.unwrap();
            assert!(!raw.contains("EDUMARKER"), "{raw}");
            old.close().await;

            let rotating = connect_with(&url, codec(2, &[1])).await;
            rotating.check_key().await.unwrap();
            assert!(rotating.reseal_records(1).await.unwrap() >= 1);
            rotating.close().await;

            let new = connect_with(&url, codec(2, &[])).await;
            new.check_key().await.unwrap();
            let batch = new.outbox_batch("remote.example", 10, 10).await.unwrap();
            assert_eq!(batch.edus[0].1, edu);
            new.close().await;
            let stale = connect_with(&url, codec(1, &[])).await;
            assert!(stale.check_key().await.is_err(), "the old key is refused after rotation");
            stale.close().await;
        }
    }
}
