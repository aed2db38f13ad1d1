//! Redacted events' original content, held while their room's `min_lifetime` (retention) says it
//! must be kept: written together with the redacted form, never served to anyone, deleted once
//! its release time has passed.

use sqlx::Row;

use super::{Result, Storage};

/// The sealed record's identity: distinct from the event's own, so a held original can never be
/// copied over the event's row and decrypt there.
pub(super) fn record_id(event_id: &str) -> String {
    format!("redaction_hold/{event_id}")
}

/// The original of an event being redacted, and until when it must be kept (ms).
pub struct Hold<'a> {
    pub original: &'a serde_json::Value,
    pub release_ts: i64,
}

impl Storage {
    /// Replaces an event with its redacted form and, with a `hold`, keeps the original in the same
    /// transaction. An event redacted twice keeps the first original (the second is redacted).
    pub async fn store_redacted_event(
        &self,
        room_id: &str,
        event_id: &str,
        redacted: &serde_json::Value,
        hold: Option<Hold<'_>>,
    ) -> Result<()> {
        let update = sqlx::query("UPDATE events SET json = $2 WHERE event_id = $1")
            .bind(event_id)
            .bind(self.codec.encode(event_id, redacted));
        let Some(hold) = hold else {
            update.execute(&self.write).await?;
            self.events_changed([event_id]);
            return Ok(());
        };
        let mut tx = self.write.begin().await?;
        update.execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO redaction_holds (event_id, room_id, release_ts, json) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(room_id)
        .bind(hold.release_ts)
        .bind(self.codec.encode(&record_id(event_id), hold.original))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.events_changed([event_id]);
        Ok(())
    }

    /// Deletes the held originals whose release time is at or before `now` (ms); `i64::MAX`
    /// releases all. Returns how many went.
    pub async fn erase_released_holds(&self, now: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM redaction_holds WHERE release_ts <= $1").bind(now).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    /// How many redacted events of the room still have their original held.
    pub async fn held_redactions(&self, room_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS held FROM redaction_holds WHERE room_id = $1")
            .bind(room_id)
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("held")?)
    }
}
