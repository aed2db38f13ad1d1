//! SQLite WAL checkpoints in the background. Left to the writer, a checkpoint runs inside
//! whichever commit crosses the threshold (stalling every event queued behind it) and copies hot
//! pages back to the database file again and again. Run from a reader connection every
//! half-second instead, it copies each page changed meanwhile once, concurrently with writes.

use std::time::Duration;

use sqlx::AnyPool;

const INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoints on `readers` until the pool is closed.
pub(super) fn spawn(readers: AnyPool) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if readers.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&readers).await
                && !readers.is_closed()
            {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}
