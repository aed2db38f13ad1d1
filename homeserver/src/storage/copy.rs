//! Copying a whole database to another engine (`myelin migrate-db`): every table, row for row,
//! in one transaction on the target, streamed from the source in bounded batches.

use futures_util::TryStreamExt as _;
use sqlx::{AnyConnection, Row};

use super::{Engine, Result, Storage, StorageError};

/// Every table, parents before children (foreign keys). A unit test checks the list is complete.
pub const TABLES: &[&str] = &[
    "users",
    "profiles",
    "devices",
    "refresh_tokens",
    "access_tokens",
    "uiaa_sessions",
    "registration_tokens",
    "rooms",
    "events",
    "forward_extremities",
    "state_groups",
    "state_group_entries",
    "memberships",
    "event_txns",
    "room_aliases",
    "filters",
    "stream_positions",
    "account_data",
    "receipts",
    "event_push_actions",
    "recent_push_actions",
    "event_relations",
    "event_search",
    "device_keys",
    "one_time_keys",
    "fallback_keys",
    "cross_signing_keys",
    "key_signatures",
    "device_list_changes",
    "to_device_messages",
    "to_device_txns",
    "key_backup_versions",
    "key_backup_keys",
    "media",
    "media_thumbnails",
    "remote_media_thumbnails",
    "audit_log",
    "audit_head",
    "access_log",
    "content_reports",
    "server_keys",
    "server_key_objects",
    "federation_txns",
    "federation_outbox_pdus",
    "federation_outbox_edus",
    "remote_invites",
    "presence",
    "openid_tokens",
    "blocked_rooms",
    "admin_tasks",
    "at_rest_key_check",
    "user_erasures",
    "redaction_holds",
];

/// How a column's values are read and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Bytes,
}

/// One value on its way from source to target.
enum Value {
    Integer(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// Rows per INSERT: about a thousand parameters. SQLite looks parameters up by name linearly,
/// so much bigger statements cost quadratic time.
fn batch_rows(columns: usize) -> usize {
    (1_000 / columns.max(1)).clamp(1, 200)
}

impl Storage {
    /// The target's columns of `table`, with how to carry their values.
    async fn columns(&self, conn: &mut AnyConnection, table: &str) -> Result<Vec<(String, Kind)>> {
        let rows = match self.engine {
            Engine::Postgres => {
                sqlx::query(
                    "SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns \
                     WHERE table_name = $1 AND table_schema = current_schema() ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&mut *conn)
                .await?
            }
            Engine::Sqlite => {
                sqlx::query("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                let declared: String = row.try_get("type")?;
                let declared = declared.to_ascii_lowercase();
                let kind = if declared.contains("int") {
                    Kind::Integer
                } else if declared.contains("blob") || declared.contains("bytea") {
                    Kind::Bytes
                } else if declared.contains("text") || declared.contains("char") {
                    Kind::Text
                } else {
                    return Err(StorageError::Corrupt(format!("{table}.{name}: unsupported column type {declared}")));
                };
                Ok((name, kind))
            })
            .collect()
    }

    /// Rows in each table, for comparing a copy with its source.
    pub async fn table_counts(&self) -> Result<Vec<(&'static str, i64)>> {
        let mut counts = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}")).fetch_one(&self.read).await?;
            counts.push((*table, row.try_get("n")?));
        }
        Ok(counts)
    }

    /// Copies every row of `self` into `target`, which must hold no users or events yet. One
    /// transaction on the target: an interrupted copy leaves it empty. Returns rows per table.
    pub async fn copy_into(&self, target: &Storage) -> Result<Vec<(&'static str, i64)>> {
        for table in ["users", "events"] {
            let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}")).fetch_one(&target.read).await?;
            if row.try_get::<i64, _>("n")? > 0 {
                return Err(StorageError::Corrupt(format!("the target database is not empty (it has {table})")));
            }
        }
        let mut tx = target.write.begin().await?;
        // The target's own migrations seeded these; the source's positions replace them.
        sqlx::query("DELETE FROM stream_positions").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM audit_head").execute(&mut *tx).await?;
        let mut copied = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let columns = target.columns(&mut tx, table).await?;
            let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
            let select = format!("SELECT {} FROM {table}", names.join(", "));
            let mut rows = sqlx::query(&select).fetch(&self.read);
            let mut batch: Vec<Vec<Value>> = Vec::new();
            let mut count = 0i64;
            while let Some(row) = rows.try_next().await? {
                batch.push(read_row(&row, &columns)?);
                if batch.len() >= batch_rows(columns.len()) {
                    insert_batch(&mut tx, table, &names, std::mem::take(&mut batch)).await?;
                }
                count += 1;
            }
            if !batch.is_empty() {
                insert_batch(&mut tx, table, &names, batch).await?;
            }
            copied.push((*table, count));
        }
        tx.commit().await?;
        Ok(copied)
    }
}

/// Opens both databases (bringing each to the current schema) and copies `from` into `to`.
pub async fn copy_database(from: &str, to: &str) -> Result<Vec<(&'static str, i64)>> {
    let options = |url: &str| super::StorageOptions {
        url: url.to_owned(),
        max_connections: 4,
        acquire_timeout: std::time::Duration::from_secs(30),
        // A large copy runs long statements by design.
        statement_timeout: std::time::Duration::ZERO,
        // Records are copied as opaque bytes: encrypted ones stay encrypted under the same key.
        codec: super::Codec::plain(),
        cached_events: 0,
        cached_state_entries: 0,
    };
    let source = Storage::connect(&options(from)).await?;
    let target = Storage::connect(&options(to)).await?;
    let mut result = source.copy_into(&target).await;
    if result.is_ok() {
        // Push actions a SQLite source had not yet filed by member: filed now, since PostgreSQL's
        // event writer never moves them (the returned counts are those copied).
        if let Err(e) = super::notifications::move_recent_push_actions(&target.write).await {
            result = Err(e);
        }
    }
    source.close().await;
    target.close().await;
    result
}

fn read_row(row: &sqlx::any::AnyRow, columns: &[(String, Kind)]) -> Result<Vec<Value>> {
    columns
        .iter()
        .map(|(name, kind)| {
            Ok(match kind {
                Kind::Integer => Value::Integer(row.try_get(name.as_str())?),
                Kind::Text => Value::Text(row.try_get(name.as_str())?),
                Kind::Bytes => Value::Bytes(row.try_get(name.as_str())?),
            })
        })
        .collect()
}

async fn insert_batch(conn: &mut AnyConnection, table: &str, names: &[&str], rows: Vec<Vec<Value>>) -> Result<()> {
    let width = names.len();
    let sql = format!("INSERT INTO {table} ({}) VALUES {}", names.join(", "), super::row_values(rows.len(), width));
    let mut query = sqlx::query(&sql);
    for value in rows.into_iter().flatten() {
        query = match value {
            Value::Integer(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
        };
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support;
    use super::*;

    #[tokio::test]
    async fn the_table_list_covers_the_whole_schema() {
        let storage = test_support::sqlite().await;
        // Ordinary tables only: the FTS5 index and its shadow tables are rebuilt by triggers
        // from `event_search` rows, so they are not copied.
        let rows = sqlx::query(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
        )
        .fetch_all(&storage.read)
        .await
        .unwrap();
        let mut schema: Vec<String> = rows.iter().map(|r| r.get::<String, _>("name")).collect();
        let mut listed: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
        schema.sort();
        listed.sort();
        assert_eq!(listed, schema, "storage::copy::TABLES must list every table");
    }

    #[tokio::test]
    async fn a_copy_into_sqlite_rebuilds_the_search_index() {
        let mut sources = test_support::engines().await;
        for source in sources.drain(..) {
            sqlx::query(
                "INSERT INTO event_search (stream_ordering, event_id, room_id, sender, search_key, origin_server_ts, value) \
                 VALUES (7, '$e', '!r:x', '@a:x', 'content.body', 1, 'copied lychee')",
            )
            .execute(&source.write)
            .await
            .unwrap();
            let target = test_support::sqlite().await;
            source.copy_into(&target).await.unwrap();
            let rooms = vec!["!r:x".to_owned()];
            let terms = vec!["lychee".to_owned()];
            let query = crate::storage::SearchQuery {
                terms: &terms,
                keys: &["content.body"],
                rooms: &rooms,
                senders: None,
                not_senders: &[],
                up_to: 100,
            };
            let hits = target.search_events(&query, crate::storage::SearchOrder::Rank, 0, 10).await.unwrap();
            assert_eq!(hits.iter().map(|h| h.event_id.as_str()).collect::<Vec<_>>(), vec!["$e"]);
        }
    }
}
