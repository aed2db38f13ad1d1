//! Read receipts, with their own stream.

use sqlx::Row;

use super::{Result, Storage, Stream, advance_stream, empty_window};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    /// Empty for unthreaded receipts.
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// A receipt to store.
#[derive(Debug, Clone, Copy)]
pub struct NewReceipt<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
    pub receipt_type: &'a str,
    pub thread_id: &'a str,
    pub event_id: &'a str,
    pub ts: i64,
}

impl Storage {
    /// Stores (replaces) a receipt and returns its stream position.
    pub async fn set_receipt(&self, receipt: NewReceipt<'_>) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let stream_id = advance_stream(&mut tx, Stream::Receipts).await?;
        sqlx::query(
            "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, stream_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_id, user_id, receipt_type, thread_id) \
             DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_id = excluded.stream_id",
        )
        .bind(receipt.room_id)
        .bind(receipt.user_id)
        .bind(receipt.receipt_type)
        .bind(receipt.thread_id)
        .bind(receipt.event_id)
        .bind(receipt.ts)
        .bind(stream_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.unread_changed(receipt.user_id, receipt.room_id);
        Ok(stream_id)
    }

    /// Receipts in the given rooms changed in `after < stream_id <= up_to`, in one query.
    pub async fn receipt_changes(&self, room_ids: &[String], after: i64, up_to: i64) -> Result<Vec<ReceiptRow>> {
        if room_ids.is_empty() || empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts \
             WHERE stream_id > $1 AND stream_id <= $2 AND room_id {} ORDER BY stream_id",
            self.engine.in_list(3, room_ids.len())
        );
        let query = self.engine.bind_list(sqlx::query(&sql).bind(after).bind(up_to), room_ids);
        let rows = query.fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                Ok(ReceiptRow {
                    room_id: row.try_get("room_id")?,
                    user_id: row.try_get("user_id")?,
                    receipt_type: row.try_get("receipt_type")?,
                    thread_id: row.try_get("thread_id")?,
                    event_id: row.try_get("event_id")?,
                    ts: row.try_get("ts")?,
                })
            })
            .collect()
    }
}
