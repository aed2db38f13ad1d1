//! Event relations: children of an event by relation type, thread roots by latest activity, and
//! the counts and latest events bundled into events as aggregations.

use std::collections::HashMap;

use sqlx::Row;

use super::rooms::NewEvent;
use super::{Order, Result, Storage};

/// A child event of a relation, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRow {
    pub event_id: String,
    pub relates_to_id: String,
    pub rel_type: String,
    pub sender: String,
    pub stream_ordering: i64,
}

/// What is bundled into a parent event's `unsigned.m.relations`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregation {
    /// Replies in the thread rooted at the event, the latest reply, and whether the user replied.
    pub thread: Option<(i64, String, bool)>,
    /// The latest edit by the original sender.
    pub latest_edit: Option<String>,
    pub references: Vec<String>,
}

/// The relation type and parent event of an event that relates to another.
pub(super) fn relation_of(event: &NewEvent) -> Option<(&str, &str)> {
    let relates_to = &event.json["content"]["m.relates_to"];
    Some((relates_to["rel_type"].as_str()?, relates_to["event_id"].as_str()?))
}

const COLUMNS: &str = "event_id, relates_to_id, rel_type, sender, stream_ordering";

fn from_row(row: &sqlx::any::AnyRow) -> Result<RelationRow> {
    Ok(RelationRow {
        event_id: row.try_get("event_id")?,
        relates_to_id: row.try_get("relates_to_id")?,
        rel_type: row.try_get("rel_type")?,
        sender: row.try_get("sender")?,
        stream_ordering: row.try_get("stream_ordering")?,
    })
}

/// Which children `/relations` asks for.
#[derive(Debug, Clone, Copy)]
pub struct RelationQuery<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Stream positions bounding the page: after `after`, before `before`.
    pub after: i64,
    pub before: i64,
    pub limit: i64,
    pub order: Order,
}

impl Storage {
    /// Children of `parents` matching the query.
    pub async fn relations(&self, parents: &[String], query: RelationQuery<'_>) -> Result<Vec<RelationRow>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let direction = match query.order {
            Order::NewestFirst => "DESC",
            Order::OldestFirst => "ASC",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM event_relations WHERE ($1 IS NULL OR rel_type = $1) AND ($2 IS NULL OR event_type = $2) \
             AND stream_ordering > $3 AND stream_ordering < $4 AND relates_to_id {} \
             ORDER BY stream_ordering {direction} LIMIT $5",
            self.engine.in_list(6, parents.len())
        );
        let sql_query = sqlx::query(&sql)
            .bind(query.rel_type)
            .bind(query.event_type)
            .bind(query.after)
            .bind(query.before)
            .bind(query.limit);
        let sql_query = self.engine.bind_list(sql_query, parents);
        let rows = sql_query.fetch_all(&self.read).await?;
        rows.iter().map(from_row).collect()
    }

    /// Thread roots of the room by latest reply, newest first, before stream position `before`;
    /// with `participant`, only threads they started or replied in.
    pub async fn threads(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT r.relates_to_id, MAX(r.stream_ordering) AS latest FROM event_relations r \
             WHERE r.room_id = $1 AND r.rel_type = 'm.thread' GROUP BY r.relates_to_id \
             HAVING MAX(r.stream_ordering) < $2 AND ($3 IS NULL \
               OR SUM(CASE WHEN r.sender = $3 THEN 1 ELSE 0 END) > 0 \
               OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = r.relates_to_id AND e.sender = $3)) \
             ORDER BY latest DESC LIMIT $4",
        )
        .bind(room_id)
        .bind(before)
        .bind(participant)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("relates_to_id")?, row.try_get("latest")?))).collect()
    }

    /// Aggregations of these events for `user_id`: thread summaries, latest edits, references.
    /// One query finds which events have children at all, so the common case costs one query.
    pub async fn aggregations(&self, user_id: &str, event_ids: &[String]) -> Result<HashMap<String, Aggregation>> {
        let mut result: HashMap<String, Aggregation> = HashMap::new();
        if event_ids.is_empty() {
            return Ok(result);
        }
        // Thread summaries: count, latest reply, and whether the user took part.
        let sql = format!(
            "SELECT r.relates_to_id, COUNT(*) AS n, MAX(r.stream_ordering) AS latest, \
             CAST(SUM(CASE WHEN r.sender = $1 THEN 1 ELSE 0 END) AS BIGINT) AS mine \
             FROM event_relations r WHERE r.rel_type = 'm.thread' AND r.relates_to_id {} \
             GROUP BY r.relates_to_id",
            self.engine.in_list(2, event_ids.len())
        );
        let thread_query = self.engine.bind_list(sqlx::query(&sql).bind(user_id), event_ids);
        // Edits by the original sender and references, oldest first (so the last edit wins).
        // The original's sender is looked up per relation found: a join would let the planner
        // walk the events of the list (most have no relations at all) instead.
        let sql = format!(
            "SELECT r.event_id, r.relates_to_id, r.rel_type FROM event_relations r \
             WHERE r.relates_to_id {} AND (r.rel_type = 'm.reference' OR (r.rel_type = 'm.replace' \
             AND r.sender = (SELECT p.sender FROM events p WHERE p.event_id = r.relates_to_id))) \
             ORDER BY r.stream_ordering",
            self.engine.in_list(1, event_ids.len())
        );
        let edit_query = self.engine.bind_list(sqlx::query(&sql), event_ids);
        // Independent reads, concurrent: on PostgreSQL each is a round trip.
        let (threads, edits) = tokio::try_join!(thread_query.fetch_all(&self.read), edit_query.fetch_all(&self.read))?;
        let mut latest_positions = Vec::new();
        for row in &threads {
            latest_positions.push(row.try_get::<i64, _>("latest")?);
        }
        let latest_ids = self.relation_ids_at(&latest_positions).await?;
        for row in &threads {
            let parent: String = row.try_get("relates_to_id")?;
            let latest: i64 = row.try_get("latest")?;
            let Some(latest_id) = latest_ids.get(&latest) else { continue };
            let mine = row.try_get::<i64, _>("mine")? > 0;
            result.entry(parent).or_default().thread = Some((row.try_get("n")?, latest_id.clone(), mine));
        }

        for row in edits {
            let parent: String = row.try_get("relates_to_id")?;
            let event_id: String = row.try_get("event_id")?;
            let entry = result.entry(parent).or_default();
            if row.try_get::<String, _>("rel_type")? == "m.replace" {
                entry.latest_edit = Some(event_id);
            } else {
                entry.references.push(event_id);
            }
        }
        // The thread starter's own participation counts too.
        if !result.is_empty() {
            let roots: Vec<String> =
                result.iter().filter(|(_, a)| a.thread.is_some()).map(|(id, _)| id.clone()).collect();
            for own in self.events_by_id(&roots).await?.into_iter().filter(|e| e.sender == user_id) {
                if let Some((_, _, mine)) = result.get_mut(&own.event_id).and_then(|a| a.thread.as_mut()) {
                    *mine = true;
                }
            }
        }
        Ok(result)
    }

    /// Relation event IDs at these stream positions.
    async fn relation_ids_at(&self, positions: &[i64]) -> Result<HashMap<i64, String>> {
        if positions.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT event_id, stream_ordering FROM event_relations WHERE stream_ordering {}",
            self.engine.in_list(1, positions.len())
        );
        let rows = self.engine.bind_list(sqlx::query(&sql), positions).fetch_all(&self.read).await?;
        rows.iter().map(|row| Ok((row.try_get("stream_ordering")?, row.try_get("event_id")?))).collect()
    }

    /// Forgets a redacted event's relation (its content, and so the relation, is gone).
    pub async fn delete_relation(&self, event_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM event_relations WHERE event_id = $1").bind(event_id).execute(&self.write).await?;
        Ok(())
    }
}
