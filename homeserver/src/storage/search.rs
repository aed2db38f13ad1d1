//! Full-text search over room events. The index (`event_search`) is written with the events in
//! the event writer's transaction; the matching SQL is the one place where the engines differ in
//! queries: SQLite's FTS5 (`MATCH`, `bm25`) and PostgreSQL's text search (`@@`, `ts_rank_cd`).
//! Both receive the same pre-tokenized terms, so user input never reaches a query parser.

use sqlx::Row;

use super::JsonColumn::{Int, Text};
use super::json_statements::JsonStatements;
use super::rooms::NewEvent;
use super::{Engine, Result, Storage, Stream, placeholders};

/// The searchable text of an event: `(key, value)`, for the event types search covers.
pub fn searchable_text(event_type: &str, content: &serde_json::Value) -> Option<(&'static str, String)> {
    let (key, field) = match event_type {
        "m.room.message" => ("content.body", "body"),
        "m.room.name" => ("content.name", "name"),
        "m.room.topic" => ("content.topic", "topic"),
        _ => return None,
    };
    let value = content.get(field)?.as_str()?.trim();
    (!value.is_empty()).then(|| (key, value.to_owned()))
}

/// One row of the index.
struct IndexRow<'a> {
    stream_ordering: i64,
    event_id: &'a str,
    room_id: &'a str,
    sender: &'a str,
    origin_server_ts: i64,
    key: &'static str,
    value: String,
}

/// Adds the index rows of a batch's accepted, searchable events, `(event, stream ordering)`, to
/// the event writer's statements.
pub(super) fn queue_events(statements: &mut JsonStatements, events: &[(&NewEvent, i64)]) {
    let rows: Vec<IndexRow<'_>> = events
        .iter()
        .filter(|(event, _)| event.rejected_reason.is_none() && !event.outlier)
        .filter_map(|(event, ordering)| {
            let (key, value) = searchable_text(&event.event_type, &event.json["content"])?;
            Some(IndexRow {
                stream_ordering: *ordering,
                event_id: &event.event_id,
                room_id: &event.room_id,
                sender: &event.sender,
                origin_server_ts: event.origin_server_ts,
                key,
                value,
            })
        })
        .collect();
    queue_rows(statements, &rows);
}

fn queue_rows(statements: &mut JsonStatements, rows: &[IndexRow<'_>]) {
    let rows: Vec<_> = rows
        .iter()
        .map(|row| {
            (
                row.stream_ordering,
                row.event_id,
                row.room_id,
                row.sender,
                row.key,
                row.origin_server_ts,
                row.value.as_str(),
            )
        })
        .collect();
    let engine = statements.engine();
    statements.push(&rows, |param| {
        format!(
            "INSERT INTO event_search (stream_ordering, event_id, room_id, sender, search_key, origin_server_ts, value) \
             {} ON CONFLICT (stream_ordering) DO NOTHING",
            engine.json_table(param, &[Int, Text, Text, Text, Text, Int, Text])
        )
    });
}

impl Storage {
    /// Indexes events persisted before the index existed, `batch` at a time from where the last
    /// call stopped, up to `up_to`. Returns how many events were looked at (0 when done).
    pub async fn backfill_search_index(&self, up_to: i64, batch: i64) -> Result<usize> {
        if self.codec.encrypts() {
            // No plaintext index with encryption at rest.
            return Ok(0);
        }
        let after = self.stream_position(Stream::SearchBackfill).await?;
        let events = self.searchable_events(after, up_to, batch).await?;
        let Some(last) = events.last().map(|e| e.stream_ordering) else {
            // Done: later events are indexed as they are persisted, so there is nothing to resume.
            if after != i64::MAX {
                self.set_search_backfill_position(i64::MAX).await?;
            }
            return Ok(0);
        };
        let rows: Vec<IndexRow<'_>> = events
            .iter()
            .filter_map(|event| {
                let (key, value) = searchable_text(&event.event_type, &event.json["content"])?;
                Some(IndexRow {
                    stream_ordering: event.stream_ordering,
                    event_id: &event.event_id,
                    room_id: &event.room_id,
                    sender: &event.sender,
                    origin_server_ts: event.origin_server_ts,
                    key,
                    value,
                })
            })
            .collect();
        let mut tx = self.write.begin().await?;
        let mut statements = JsonStatements::new(self.engine);
        queue_rows(&mut statements, &rows);
        statements.execute(&mut tx).await?;
        tx.commit().await?;
        self.set_search_backfill_position(last).await?;
        // A redaction may have replaced an event after it was read above and deleted its (not yet
        // written) row: read them again and drop what is no longer searchable.
        let ids: Vec<String> = rows.iter().map(|r| r.event_id.to_owned()).collect();
        for event in self.events_by_id(&ids).await? {
            if searchable_text(&event.event_type, &event.json["content"]).is_none() {
                self.delete_search_entry(&event.event_id).await?;
            }
        }
        Ok(events.len())
    }

    async fn set_search_backfill_position(&self, position: i64) -> Result<()> {
        sqlx::query("UPDATE stream_positions SET position = $2 WHERE stream = $1")
            .bind(Stream::SearchBackfill.name())
            .bind(position)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Accepted events of the searchable types with `after < stream_ordering <= up_to`.
    async fn searchable_events(&self, after: i64, up_to: i64, limit: i64) -> Result<Vec<super::EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM events e WHERE e.stream_ordering > $1 AND e.stream_ordering <= $2 \
             AND e.rejected_reason IS NULL AND e.outlier = 0 \
             AND e.event_type IN ('m.room.message', 'm.room.name', 'm.room.topic') \
             ORDER BY e.stream_ordering LIMIT $3",
            super::rooms::EVENT_COLUMNS
        ))
        .bind(after)
        .bind(up_to)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| super::EventRow::from_row(&self.codec, row)).collect()
    }
}

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first (ties: newest first).
    Rank,
    /// Newest first.
    Recent,
}

/// One search: the terms (already split into words) and where to look.
#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    pub terms: &'a [String],
    pub keys: &'a [&'a str],
    pub rooms: &'a [String],
    pub senders: Option<&'a [String]>,
    pub not_senders: &'a [String],
    /// Only events at or before this stream position.
    pub up_to: i64,
}

/// A matching event.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub stream_ordering: i64,
    pub event_id: String,
    /// Higher is better.
    pub rank: f64,
}

impl SearchQuery<'_> {
    /// The engine's match clause source and the terms as its query text.
    fn matcher(&self, engine: Engine) -> (&'static str, &'static str, String) {
        match engine {
            // Each word quoted (words are alphanumeric, so they hold no quotes): all must occur.
            Engine::Sqlite => (
                "event_search_fts JOIN event_search s ON s.stream_ordering = event_search_fts.rowid",
                "event_search_fts MATCH $1",
                self.terms.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" "),
            ),
            Engine::Postgres => (
                "event_search s",
                "to_tsvector('english', s.value) @@ plainto_tsquery('english', $1)",
                self.terms.join(" "),
            ),
        }
    }

    /// `WHERE` conditions after the match, with their parameters from `$3` on.
    fn conditions(&self) -> (String, Vec<&str>) {
        let mut sql = String::new();
        let mut params: Vec<&str> = Vec::new();
        let rooms: Vec<&str> = self.rooms.iter().map(String::as_str).collect();
        in_list(&mut sql, &mut params, "s.room_id IN", &rooms);
        in_list(&mut sql, &mut params, "s.search_key IN", self.keys);
        if let Some(senders) = self.senders {
            let senders: Vec<&str> = senders.iter().map(String::as_str).collect();
            in_list(&mut sql, &mut params, "s.sender IN", &senders);
        }
        if !self.not_senders.is_empty() {
            let not_senders: Vec<&str> = self.not_senders.iter().map(String::as_str).collect();
            in_list(&mut sql, &mut params, "s.sender NOT IN", &not_senders);
        }
        (sql, params)
    }

    fn nothing_to_search(&self) -> bool {
        self.terms.is_empty()
            || self.rooms.is_empty()
            || self.keys.is_empty()
            || self.senders.is_some_and(<[_]>::is_empty)
    }
}

/// Deletes the search rows of the events `events_condition` picks: by stream ordering, since
/// the rows have no index by event ID or by room (on SQLite), and a row's ordering is its event's.
pub(super) fn delete_search_rows_of(events_condition: &str) -> String {
    format!(
        "DELETE FROM event_search WHERE stream_ordering IN (SELECT stream_ordering FROM events WHERE {events_condition})"
    )
}

/// Appends ` AND <test> ($n, …)` for `values`, numbering parameters after the two fixed ones.
fn in_list<'a>(sql: &mut String, params: &mut Vec<&'a str>, test: &str, values: &[&'a str]) {
    sql.push_str(&format!(" AND {test} ({})", placeholders(3 + params.len(), values.len())));
    params.extend_from_slice(values);
}

impl Storage {
    /// Matching events, ordered, skipping `offset` and returning at most `limit`.
    pub async fn search_events(
        &self,
        query: &SearchQuery<'_>,
        order: SearchOrder,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<SearchHit>> {
        if query.nothing_to_search() {
            return Ok(Vec::new());
        }
        let (from, matches, text) = query.matcher(self.engine);
        let (conditions, params) = query.conditions();
        let score = match self.engine {
            // bm25 is lower for better matches.
            Engine::Sqlite => "-bm25(event_search_fts)",
            Engine::Postgres => {
                "CAST(ts_rank_cd(to_tsvector('english', s.value), plainto_tsquery('english', $1)) AS DOUBLE PRECISION)"
            }
        };
        let order_by = match order {
            SearchOrder::Rank => "score DESC, s.stream_ordering DESC",
            SearchOrder::Recent => "s.stream_ordering DESC",
        };
        let next = 3 + params.len();
        let sql = format!(
            "SELECT s.stream_ordering, s.event_id, {score} AS score FROM {from} \
             WHERE {matches} AND s.stream_ordering <= $2{conditions} ORDER BY {order_by} LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let mut statement = sqlx::query(&sql).bind(text).bind(query.up_to);
        for param in params {
            statement = statement.bind(param);
        }
        let rows = statement.bind(limit).bind(offset).fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                Ok(SearchHit {
                    stream_ordering: row.try_get("stream_ordering")?,
                    event_id: row.try_get("event_id")?,
                    rank: row.try_get("score")?,
                })
            })
            .collect()
    }

    /// How many events match (before visibility filtering: an estimate for clients).
    pub async fn count_search_events(&self, query: &SearchQuery<'_>) -> Result<i64> {
        if query.nothing_to_search() {
            return Ok(0);
        }
        let (from, matches, text) = query.matcher(self.engine);
        let (conditions, params) = query.conditions();
        let sql = format!("SELECT COUNT(*) AS n FROM {from} WHERE {matches} AND s.stream_ordering <= $2{conditions}");
        let mut statement = sqlx::query(&sql).bind(text).bind(query.up_to);
        for param in params {
            statement = statement.bind(param);
        }
        Ok(statement.fetch_one(&self.read).await?.try_get("n")?)
    }

    /// Removes an event from the index (it was redacted).
    pub async fn delete_search_entry(&self, event_id: &str) -> Result<()> {
        sqlx::query(&delete_search_rows_of("event_id = $1")).bind(event_id).execute(&self.write).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodies_names_and_topics_are_searchable() {
        let body = serde_json::json!({"msgtype": "m.text", "body": " hello "});
        assert_eq!(searchable_text("m.room.message", &body), Some(("content.body", "hello".to_owned())));
        assert_eq!(
            searchable_text("m.room.topic", &serde_json::json!({"topic": "t"})),
            Some(("content.topic", "t".into()))
        );
        assert_eq!(searchable_text("m.room.encrypted", &serde_json::json!({"ciphertext": "x", "body": "x"})), None);
        assert_eq!(searchable_text("m.room.message", &serde_json::json!({"body": 5})), None);
        assert_eq!(searchable_text("m.room.message", &serde_json::json!({"body": "  "})), None);
    }
}
