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
    SealedColumn { table: "events", key: &[("event_id", Text)], column: "json", record_id: |k| k[0].text().to_owned() },
    SealedColumn {
        table: "to_device_messages",
        key: &[("stream_id", Int)],
        column: "content",
        record_id: |k| super::to_device::record_id(k[0].int()),
    },
    SealedColumn {
        table: "account_data",
        key: &[("user_id", Text), ("room_id", Text), ("data_type", Text)],
        column: "content",
        record_id: |k| super::account_data::record_id(k[0].text(), k[1].text(), k[2].text()),
    },
    SealedColumn {
        table: "key_backup_versions",
        key: &[("user_id", Text), ("version", Int)],
        column: "auth_data",
        record_id: |k| super::key_backup::version_record_id(k[0].text(), k[1].int()),
    },
    SealedColumn {
        table: "key_backup_keys",
        key: &[("user_id", Text), ("version", Int), ("room_id", Text), ("session_id", Text)],
        column: "session_data",
        record_id: |k| super::key_backup::key_record_id(k[0].text(), k[1].int(), k[2].text(), k[3].text()),
    },
    SealedColumn {
        table: "uiaa_sessions",
        key: &[("session_id", Text)],
        column: "completed",
        record_id: |k| k[0].text().to_owned(),
    },
    SealedColumn {
        table: "device_keys",
        key: &[("user_id", Text), ("device_id", Text)],
        column: "key_json",
        record_id: |k| super::e2ee_keys::device_record_id(k[0].text(), k[1].text()),
    },
    SealedColumn {
        table: "one_time_keys",
        key: &[("user_id", Text), ("device_id", Text), ("algorithm", Text), ("key_id", Text)],
        column: "key_json",
        record_id: |k| super::e2ee_keys::one_time_record_id(k[0].text(), k[1].text(), k[3].text()),
    },
    SealedColumn {
        table: "fallback_keys",
        key: &[("user_id", Text), ("device_id", Text), ("algorithm", Text), ("key_id", Text)],
        column: "key_json",
        record_id: |k| super::e2ee_keys::one_time_record_id(k[0].text(), k[1].text(), k[3].text()),
    },
    SealedColumn {
        table: "cross_signing_keys",
        key: &[("user_id", Text), ("key_type", Text)],
        column: "key_json",
        record_id: |k| super::e2ee_keys::cross_signing_record_id(k[0].text(), k[1].text()),
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
            "SELECT {keys}, {column} FROM {table} ORDER BY {keys} LIMIT $1 OFFSET $2",
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
                let bytes: Vec<u8> = row.try_get(sealed.column)?;
                if record::is_sealed(&bytes) && record::key_id(&bytes) == Some(current) {
                    continue;
                }
                let key = key_values(row, sealed)?;
                let record_id = (sealed.record_id)(&key);
                let json = self.codec.decode(&record_id, &bytes)?;
                let mut query = sqlx::query(&update).bind(self.codec.encode(&record_id, &json));
                for value in &key {
                    query = match value {
                        KeyValue::Text(text) => query.bind(text.clone()),
                        KeyValue::Int(n) => query.bind(*n),
                    };
                }
                resealed += query.bind(bytes).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < batch {
                return Ok(resealed);
            }
            offset += batch;
        }
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
