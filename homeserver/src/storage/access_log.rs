//! The access log: one row per authenticated request, written in batches by
//! `crate::access_log`'s writer task.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Storage, Stream, advance_stream_by, row_values, statement_chunks};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessLogRow {
    /// Assigned when written; 0 before.
    pub id: i64,
    pub ts: i64,
    pub user_id: String,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub method: String,
    /// The route template (e.g. `/_matrix/client/v3/rooms/{room_id}/send/…`), never a raw path.
    pub route: String,
    pub room_id: Option<String>,
    pub status: i64,
    pub latency_us: i64,
}

impl AccessLogRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            ts: row.try_get("ts")?,
            user_id: row.try_get("user_id")?,
            device_id: row.try_get("device_id")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            method: row.try_get("method")?,
            route: row.try_get("route")?,
            room_id: row.try_get("room_id")?,
            status: row.try_get("status")?,
            latency_us: row.try_get("latency_us")?,
        })
    }
}

/// One (device, IP, user agent) a user connected with, and when last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub last_seen: i64,
}

/// Filters and paging of the access log reader; rows come oldest first after `after_id`.
#[derive(Debug, Clone, Default)]
pub struct AccessLogQuery {
    pub user_id: Option<String>,
    pub room_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub after_id: i64,
    pub limit: i64,
}

const COLUMNS: &str = "id, ts, user_id, device_id, ip, user_agent, method, route, room_id, status, latency_us";
const WIDTH: usize = 11;

impl Storage {
    /// Writes a batch in one transaction, assigning consecutive IDs.
    pub async fn insert_access_log(&self, rows: &[AccessLogRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write.begin().await?;
        let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let last = advance_stream_by(&mut tx, Stream::AccessLog, count).await?;
        let mut next_id = last - count + 1;
        for chunk in statement_chunks(rows, WIDTH) {
            let sql = format!("INSERT INTO access_log ({COLUMNS}) VALUES {}", row_values(chunk.len(), WIDTH));
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(next_id)
                    .bind(row.ts)
                    .bind(&row.user_id)
                    .bind(row.device_id.as_deref())
                    .bind(row.ip.as_deref())
                    .bind(row.user_agent.as_deref())
                    .bind(&row.method)
                    .bind(&row.route)
                    .bind(row.room_id.as_deref())
                    .bind(row.status)
                    .bind(row.latency_us);
                next_id += 1;
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn access_log(&self, query: &AccessLogQuery) -> Result<Vec<AccessLogRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_log WHERE id > $1 AND ($2 IS NULL OR user_id = $2) \
             AND ($3 IS NULL OR room_id = $3) AND ($4 IS NULL OR ts >= $4) AND ($5 IS NULL OR ts <= $5) \
             ORDER BY id LIMIT $6"
        ))
        .bind(query.after_id)
        .bind(query.user_id.as_deref())
        .bind(query.room_id.as_deref())
        .bind(query.since)
        .bind(query.until)
        .bind(query.limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(AccessLogRow::from_row).collect()
    }

    /// The user's most recent connection per (device, IP, user agent), newest first.
    pub async fn access_log_connections(&self, user_id: &str, limit: i64) -> Result<Vec<Connection>> {
        let rows = sqlx::query(
            "SELECT device_id, ip, user_agent, MAX(ts) AS last_seen FROM access_log WHERE user_id = $1 \
             GROUP BY device_id, ip, user_agent ORDER BY last_seen DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Connection {
                    device_id: row.try_get("device_id")?,
                    ip: row.try_get("ip")?,
                    user_agent: row.try_get("user_agent")?,
                    last_seen: row.try_get("last_seen")?,
                })
            })
            .collect()
    }

    /// Each device's latest request (device ID → connection), for "last seen" in device lists.
    pub async fn last_connection_per_device(&self, user_id: &str) -> Result<HashMap<String, Connection>> {
        let rows = sqlx::query(
            "SELECT device_id, ip, user_agent, ts FROM (SELECT device_id, ip, user_agent, ts, \
             ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY id DESC) AS rn \
             FROM access_log WHERE user_id = $1 AND device_id IS NOT NULL) latest WHERE rn = 1",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let device_id: String = row.try_get("device_id")?;
                let connection = Connection {
                    device_id: Some(device_id.clone()),
                    ip: row.try_get("ip")?,
                    user_agent: row.try_get("user_agent")?,
                    last_seen: row.try_get("ts")?,
                };
                Ok((device_id, connection))
            })
            .collect()
    }

    /// Deletes rows older than `before_ts`; returns how many. Deletes in batches so the single
    /// SQLite writer is never held for long by a big day of traffic.
    pub async fn prune_access_log(&self, before_ts: i64) -> Result<u64> {
        const BATCH: i64 = 5_000;
        let mut deleted = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM access_log WHERE id IN (SELECT id FROM access_log WHERE ts < $1 ORDER BY id LIMIT $2)",
            )
            .bind(before_ts)
            .bind(BATCH)
            .execute(&self.write)
            .await?
            .rows_affected();
            deleted += done;
            if done < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::engines;
    use super::*;

    fn row(ts: i64) -> AccessLogRow {
        AccessLogRow {
            id: 0,
            ts,
            user_id: "@a:x".into(),
            device_id: Some("D".into()),
            ip: None,
            user_agent: None,
            method: "GET".into(),
            route: "/r".into(),
            room_id: None,
            status: 200,
            latency_us: 1,
        }
    }

    #[tokio::test]
    async fn big_batches_get_consecutive_ids_and_prune_in_parts() {
        for storage in engines().await {
            let old: Vec<AccessLogRow> = (0..12_000).map(|_| row(1)).collect();
            storage.insert_access_log(&old).await.unwrap();
            storage.insert_access_log(&[row(10)]).await.unwrap();
            let query = AccessLogQuery { limit: 20_000, ..AccessLogQuery::default() };
            let ids: Vec<i64> = storage.access_log(&query).await.unwrap().iter().map(|r| r.id).collect();
            assert_eq!(ids, (1..=12_001).collect::<Vec<_>>());
            assert_eq!(storage.prune_access_log(5).await.unwrap(), 12_000);
            let left = storage.access_log(&query).await.unwrap();
            assert_eq!((left.len(), left[0].id, left[0].ts), (1, 12_001, 10));
        }
    }
}
