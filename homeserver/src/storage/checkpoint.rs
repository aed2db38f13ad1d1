//! SQLite WAL checkpoints in the background. Left to the writer, a checkpoint runs inside
//! whichever commit crosses the threshold (stalling every event queued behind it) and copies hot
//! pages back to the database file again and again. Run from a reader connection instead, it
//! copies each page changed meanwhile once, concurrently with writes.
//!
//! The log only starts again from its beginning when a write transaction begins on a fully
//! copied log, which under a steady stream of commits never happens by chance: the log grew
//! until the writer's own backstop checkpoint ran inside a commit. So once the log is long, the
//! last frames are copied while the event writer is held off, and its next commit restarts the
//! log (the held-off pass has little left to copy: the pass before it did the work).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyPool, Row as _};
use tokio::sync::Mutex;

const INTERVAL: Duration = Duration::from_millis(500);

/// Log frames (pages) past which the log is made to restart: 16 MiB of 4 KiB pages.
const RESTART_AT_FRAMES: i64 = 4096;

/// Checkpoints on `readers` until the pool is closed; `event_order` is the lock the event
/// writer holds while it writes.
pub(super) fn spawn(readers: AnyPool, event_order: Arc<Mutex<()>>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if readers.is_closed() {
                return;
            }
            match checkpoint(&readers).await {
                Ok(frames) if frames > RESTART_AT_FRAMES => {
                    let _writes_held = event_order.lock().await;
                    if let Err(e) = checkpoint(&readers).await {
                        warn(&readers, &e);
                    }
                }
                Ok(_) => {}
                Err(e) => warn(&readers, &e),
            }
        }
    });
}

/// Copies what the log holds that no reader still needs; returns the log's length in frames.
async fn checkpoint(readers: &AnyPool) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(readers).await?;
    // (busy, frames in the log, frames copied); -1 when the database is not in WAL mode.
    row.try_get::<i64, _>(1)
}

fn warn(readers: &AnyPool, error: &sqlx::Error) {
    if !readers.is_closed() {
        tracing::warn!(error = %error, "WAL checkpoint failed");
    }
}
