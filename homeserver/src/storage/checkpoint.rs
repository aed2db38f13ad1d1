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

/// How long a pass waits to hold event writes off (a batch takes a few milliseconds).
const HOLD_WAIT: Duration = Duration::from_millis(50);

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
            if let Err(e) = pass(&readers, &event_order, RESTART_AT_FRAMES).await
                && !readers.is_closed()
            {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}

/// One checkpoint, and when the log is longer than `restart_at` frames, a second one that
/// finishes the copy with event writes held off, so the next one restarts the log.
async fn pass(readers: &AnyPool, event_order: &Mutex<()>, restart_at: i64) -> Result<(), sqlx::Error> {
    let mut conn = readers.acquire().await?;
    if checkpoint(&mut conn).await? > restart_at {
        // The connection is in hand before writes are held: they wait only for the copy. A
        // long holder of the lock (a room purge) is not waited for: the next pass tries again,
        // and the reader connection is not kept from readers meanwhile.
        if let Ok(_writes_held) = tokio::time::timeout(HOLD_WAIT, event_order.lock()).await {
            checkpoint(&mut conn).await?;
        }
    }
    Ok(())
}

/// Copies what the log holds that no reader still needs; returns the log's length in frames.
async fn checkpoint(conn: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?;
    // (busy, frames in the log, frames copied); -1 when the database is not in WAL mode.
    row.try_get::<i64, _>(1)
}

#[cfg(test)]
mod tests {
    use super::super::test_support;

    /// Frames in the log now, copied as far as readers allow.
    async fn log_frames(storage: &super::super::Storage) -> i64 {
        super::checkpoint(&mut storage.read.acquire().await.unwrap()).await.unwrap()
    }

    async fn write_messages(storage: &super::super::Storage, from: usize, count: usize) {
        for i in from..from + count {
            let event_id = format!("$m{i}");
            storage.persist_event(&test_support::message("!r:x", &event_id)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn passes_alongside_writes_copy_the_log_and_let_it_start_again() {
        let storage = std::sync::Arc::new(test_support::sqlite().await);
        storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
        write_messages(&storage, 0, 50).await;
        let grown = log_frames(&storage).await;
        assert!(grown > 50, "each commit adds frames: {grown}");

        // Passes that hold writes off while writes queue up: neither waits on the other for good.
        let writer = {
            let storage = storage.clone();
            tokio::spawn(async move { write_messages(&storage, 50, 100).await })
        };
        for _ in 0..5 {
            super::pass(&storage.read, &storage.event_order, 0).await.unwrap();
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        super::pass(&storage.read, &storage.event_order, 0).await.unwrap();

        // The next write starts the log over instead of appending to its 150 commits.
        write_messages(&storage, 150, 1).await;
        let restarted = log_frames(&storage).await;
        assert!(restarted < grown / 4, "{restarted} frames after a restart, {grown} before");
        for id in ["$m0", "$m149", "$m150"] {
            assert_eq!(storage.event(id).await.unwrap().map(|e| e.event_id).as_deref(), Some(id));
        }
    }

    #[tokio::test]
    async fn a_pass_does_not_wait_for_a_long_holder_of_the_write_lock() {
        let storage = test_support::sqlite().await;
        storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
        write_messages(&storage, 0, 5).await;
        let _purge_in_progress = storage.event_order.lock().await;
        // It copies what it can and gives up the held-off part, rather than waiting as long as
        // the holder (here, for ever).
        let passed = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            super::pass(&storage.read, &storage.event_order, 0),
        )
        .await;
        assert!(matches!(passed, Ok(Ok(()))), "{passed:?}");
    }
}
