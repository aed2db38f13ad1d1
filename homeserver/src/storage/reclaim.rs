//! Making deleted rows unreadable in the database files after a retention purge.
//!
//! SQLite: every connection runs with `secure_delete = ON`, so a deleted row's bytes are zeroed
//! in its page and freed pages are zeroed too; what is left is the FTS5 index, whose deletions
//! are tombstones in newer segments until its segments are merged (`optimize`), and the copies
//! of changed pages in the WAL, which a `TRUNCATE` checkpoint writes back and empties. The
//! database keeps SQLite's default `auto_vacuum = NONE` (switching needs a full `VACUUM`):
//! zeroed pages stay in the file as free pages and are reused; `incremental_vacuum` only
//! shrinks the file where an operator turned incremental mode on.
//!
//! PostgreSQL: `VACUUM` (outside a transaction) marks the dead tuples of the purged rows and
//! their index entries as reusable space; it does not overwrite them (see README.md).

use sqlx::{Executor, Row};

use super::{Engine, Result, Storage};

/// Tables a retention purge deletes from.
const PURGED_TABLES: &[&str] = &[
    "events",
    "event_search",
    "event_push_actions",
    "recent_push_actions",
    "event_relations",
    "receipts",
    "event_txns",
    "federation_outbox_pdus",
    "media",
    "redaction_holds",
];

/// What reclaiming achieved on SQLite; PostgreSQL reports nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// The WAL checkpoint could not finish (a reader held an old snapshot); the next purge
    /// tries again.
    pub wal_busy: bool,
}

impl Storage {
    /// Merges the search index, zero-fills and checkpoints (SQLite) or vacuums (PostgreSQL)
    /// after rows were deleted.
    pub async fn reclaim_deleted_space(&self) -> Result<Reclaimed> {
        match self.engine {
            Engine::Sqlite => {
                let mut conn = self.write.acquire().await?;
                // Rewrites the index without the deleted rows' terms.
                conn.execute("INSERT INTO event_search_fts (event_search_fts) VALUES ('optimize')").await?;
                sqlx::query("PRAGMA incremental_vacuum").fetch_all(&mut *conn).await?;
                let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await?;
                let busy: i64 = row.try_get(0)?;
                Ok(Reclaimed { wal_busy: busy != 0 })
            }
            Engine::Postgres => {
                // A plain string runs as a simple query: VACUUM refuses to run in a transaction
                // or as a prepared statement.
                self.write.execute(format!("VACUUM {}", PURGED_TABLES.join(", ")).as_str()).await?;
                Ok(Reclaimed::default())
            }
        }
    }
}
