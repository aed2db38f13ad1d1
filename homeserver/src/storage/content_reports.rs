//! Content reports: users reporting events or rooms to the server's admins.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Storage, Stream, advance_stream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContentReport<'a> {
    pub room_id: &'a str,
    /// `None` for a report of the whole room.
    pub event_id: Option<&'a str>,
    pub user_id: &'a str,
    pub reason: Option<&'a str>,
    pub score: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentReportRow {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub event_id: Option<String>,
    pub user_id: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
}

impl ContentReportRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            received_ts: row.try_get("received_ts")?,
            room_id: row.try_get("room_id")?,
            event_id: row.try_get("event_id")?,
            user_id: row.try_get("user_id")?,
            reason: row.try_get("reason")?,
            score: row.try_get("score")?,
        })
    }
}

/// Filters and offset paging of event reports.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    pub room_id: Option<String>,
    pub user_id: Option<String>,
    pub newest_first: bool,
    pub offset: i64,
    pub limit: i64,
}

const COLUMNS: &str = "id, received_ts, room_id, event_id, user_id, reason, score";
const EVENT_REPORTS: &str =
    "FROM content_reports WHERE event_id IS NOT NULL AND ($1 IS NULL OR room_id = $1) AND ($2 IS NULL OR user_id = $2)";

impl Storage {
    pub async fn add_content_report(&self, report: &NewContentReport<'_>, now: i64) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let id = advance_stream(&mut tx, Stream::ContentReports).await?;
        sqlx::query(&format!("INSERT INTO content_reports ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(id)
            .bind(now)
            .bind(report.room_id)
            .bind(report.event_id)
            .bind(report.user_id)
            .bind(report.reason)
            .bind(report.score)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// One page of event reports and how many match in all.
    pub async fn event_reports(&self, query: &ReportQuery) -> Result<(Vec<ContentReportRow>, i64)> {
        let direction = if query.newest_first { "DESC" } else { "ASC" };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} {EVENT_REPORTS} ORDER BY received_ts {direction}, id {direction} LIMIT $3 OFFSET $4"
        ))
        .bind(query.room_id.as_deref())
        .bind(query.user_id.as_deref())
        .bind(query.limit)
        .bind(query.offset)
        .fetch_all(&self.read)
        .await?;
        let reports = rows.iter().map(ContentReportRow::from_row).collect::<Result<Vec<_>>>()?;
        let total = sqlx::query(&format!("SELECT COUNT(*) AS n {EVENT_REPORTS}"))
            .bind(query.room_id.as_deref())
            .bind(query.user_id.as_deref())
            .fetch_one(&self.read)
            .await?
            .try_get("n")?;
        Ok((reports, total))
    }

    pub async fn content_report(&self, id: i64) -> Result<Option<ContentReportRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM content_reports WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(ContentReportRow::from_row).transpose()
    }
}
