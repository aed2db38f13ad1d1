//! The admin audit log: an append-only hash chain (see `crate::audit`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Storage, StorageError};

/// An entry before it is chained.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// Parameters with secrets already removed.
    pub params: serde_json::Value,
    pub result: String,
}

/// A stored entry: its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub seq: i64,
    pub entry: AuditEntry,
    pub hash: String,
}

impl AuditRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        let params: String = row.try_get("params")?;
        let seq: i64 = row.try_get("seq")?;
        let params = serde_json::from_str(&params)
            .map_err(|e| StorageError::Corrupt(format!("audit entry {seq}: parameters are not JSON: {e}")))?;
        Ok(Self {
            seq,
            entry: AuditEntry {
                ts: row.try_get("ts")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                params,
                result: row.try_get("result")?,
            },
            hash: row.try_get("hash")?,
        })
    }
}

/// The chain's newest entry and its base (the last entry removed by retention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    pub base_seq: i64,
    pub base_hash: String,
}

/// Filters and paging of the audit log reader; entries come oldest first after `after_seq`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub after_seq: i64,
    pub limit: i64,
}

const COLUMNS: &str = "seq, ts, actor, action, target, params, result, hash";

impl Storage {
    /// Appends an entry. `hash(seq, previous_hash)` computes its hash; reading the chain's head
    /// and inserting is one transaction, and updating the head row first makes concurrent
    /// appends wait for each other, so the chain never forks.
    pub async fn append_audit_entry(
        &self,
        entry: &AuditEntry,
        hash: impl FnOnce(i64, &str) -> std::result::Result<String, String>,
    ) -> Result<AuditRow> {
        let mut tx = self.write.begin().await?;
        let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
        let seq: i64 = head.try_get("seq")?;
        let previous: String = head.try_get("hash")?;
        let hash = hash(seq, &previous).map_err(StorageError::Corrupt)?;
        sqlx::query(
            "INSERT INTO audit_log (seq, ts, actor, action, target, params, result, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(entry.ts)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(entry.target.as_deref())
        .bind(entry.params.to_string())
        .bind(&entry.result)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&hash).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(AuditRow { seq, entry: entry.clone(), hash })
    }

    /// The chain's ends as the head row records them.
    pub async fn audit_head(&self) -> Result<AuditHead> {
        let row = sqlx::query("SELECT seq, hash, base_seq, base_hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.read)
            .await?;
        Ok(AuditHead {
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
            base_seq: row.try_get("base_seq")?,
            base_hash: row.try_get("base_hash")?,
        })
    }

    /// Removes the entries older than `before_ts` from the start of the chain, recording the
    /// last one removed as the chain's new base. Returns how many went.
    pub async fn prune_audit_log(&self, before_ts: i64) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        // Taking the head row first keeps appends out while the base moves.
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1").execute(&mut *tx).await?;
        // Only a prefix of the chain goes: everything up to the newest old entry whose
        // successors are all newer, i.e. up to just before the first entry at or after the cut.
        let first_kept = sqlx::query("SELECT MIN(seq) AS seq FROM audit_log WHERE ts >= $1")
            .bind(before_ts)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<Option<i64>, _>("seq")?;
        let last_removed =
            sqlx::query("SELECT seq, hash FROM audit_log WHERE ($1 IS NULL OR seq < $1) ORDER BY seq DESC LIMIT 1")
                .bind(first_kept)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(last_removed) = last_removed else { return Ok(0) };
        let (seq, hash): (i64, String) = (last_removed.try_get("seq")?, last_removed.try_get("hash")?);
        let removed =
            sqlx::query("DELETE FROM audit_log WHERE seq <= $1").bind(seq).execute(&mut *tx).await?.rows_affected();
        sqlx::query("UPDATE audit_head SET base_seq = $1, base_hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Up to `limit` entries after `after_seq`, in chain order (for verification).
    pub async fn audit_chain_after(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(AuditRow::from_row).collect()
    }

    /// Entries matching the filters, oldest first.
    pub async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 AND ($2 IS NULL OR actor = $2) \
             AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR ts >= $4) AND ($5 IS NULL OR ts <= $5) \
             ORDER BY seq LIMIT $6"
        ))
        .bind(query.after_seq)
        .bind(query.actor.as_deref())
        .bind(query.action.as_deref())
        .bind(query.since)
        .bind(query.until)
        .bind(query.limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(AuditRow::from_row).collect()
    }
}
