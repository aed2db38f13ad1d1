//! Current room memberships (derived from room state on every accepted member event).

use sqlx::Row;

use super::{Result, Storage, empty_window};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRow {
    pub room_id: String,
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
    pub stream_ordering: i64,
    /// Stream position of the user's latest join, if they ever joined.
    pub last_join_ordering: Option<i64>,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<MembershipRow> {
    Ok(MembershipRow {
        room_id: row.try_get("room_id")?,
        user_id: row.try_get("user_id")?,
        membership: row.try_get("membership")?,
        event_id: row.try_get("event_id")?,
        stream_ordering: row.try_get("stream_ordering")?,
        last_join_ordering: row.try_get("last_join_ordering")?,
    })
}

const COLUMNS: &str = "room_id, user_id, membership, event_id, stream_ordering, last_join_ordering";

/// A query of the non-forgotten memberships of user `$1`, folded into one JSON value (read by
/// every sync; see [`super::Engine::json_rows`]).
pub(super) fn user_memberships_json(engine: super::Engine) -> String {
    let columns: Vec<&str> = COLUMNS.split(", ").collect();
    format!("SELECT {} FROM memberships WHERE user_id = $1 AND forgotten = 0", engine.json_rows(&columns, "room_id"))
}

/// The memberships of a [`user_memberships_json`] column.
pub(super) fn memberships_in_json(row: &sqlx::any::AnyRow, column: &str) -> Result<Vec<MembershipRow>> {
    type Columns = (String, String, String, String, i64, Option<i64>);
    Ok(super::json_rows_in::<Columns>(row, column)?
        .into_iter()
        .map(|(room_id, user_id, membership, event_id, stream_ordering, last_join_ordering)| MembershipRow {
            room_id,
            user_id,
            membership,
            event_id,
            stream_ordering,
            last_join_ordering,
        })
        .collect())
}

impl Storage {
    pub async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<MembershipRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM memberships WHERE room_id = $1 AND user_id = $2"))
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The user's memberships in these rooms (forgotten ones too), in one query.
    pub async fn memberships_of_user_in(&self, user_id: &str, room_ids: &[String]) -> Result<Vec<MembershipRow>> {
        if room_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM memberships WHERE user_id = $1 AND room_id {}",
            self.engine.in_list(2, room_ids.len())
        );
        let query = self.engine.bind_list(sqlx::query(&sql).bind(user_id), room_ids);
        query.fetch_all(&self.read).await?.iter().map(from_row).collect()
    }

    /// Every room the user has a non-forgotten membership in.
    pub async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<MembershipRow>> {
        let sql = format!("SELECT ({}) AS memberships", user_memberships_json(self.engine));
        let row = sqlx::query(&sql).bind(user_id).fetch_one(&self.read).await?;
        memberships_in_json(&row, "memberships")
    }

    /// Current memberships in these rooms that changed in `after < stream_ordering <= up_to`.
    pub async fn membership_changes(&self, room_ids: &[String], after: i64, up_to: i64) -> Result<Vec<MembershipRow>> {
        if room_ids.is_empty() || empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM memberships WHERE stream_ordering > $1 AND stream_ordering <= $2 \
             AND room_id {} ORDER BY stream_ordering",
            self.engine.in_list(3, room_ids.len())
        );
        let query = self.engine.bind_list(sqlx::query(&sql).bind(after).bind(up_to), room_ids);
        let rows = query.fetch_all(&self.read).await?;
        rows.iter().map(from_row).collect()
    }

    /// Memberships that changed in `after < stream_ordering <= up_to` in the rooms `user_id` is
    /// joined to or whose membership of theirs changed in that window (one query for what
    /// [`Self::memberships_of_user`] and [`Self::membership_changes`] give).
    pub async fn membership_changes_around(&self, user_id: &str, after: i64, up_to: i64) -> Result<Vec<MembershipRow>> {
        if empty_window(after, up_to) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM memberships WHERE stream_ordering > $2 AND stream_ordering <= $3 \
             AND room_id IN (SELECT room_id FROM memberships WHERE user_id = $1 AND forgotten = 0 \
                 AND (membership = 'join' OR stream_ordering > $2)) \
             ORDER BY stream_ordering"
        ))
        .bind(user_id)
        .bind(after)
        .bind(up_to)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn room_memberships(&self, room_id: &str) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM memberships WHERE room_id = $1 ORDER BY user_id"))
            .bind(room_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Hides a room the user has left from their room lists.
    pub async fn forget_room(&self, room_id: &str, user_id: &str) -> Result<()> {
        // Only while still left or banned: a rejoin since the caller looked must stay visible.
        sqlx::query(
            "UPDATE memberships SET forgotten = 1 WHERE room_id = $1 AND user_id = $2 \
             AND membership IN ('leave', 'ban')",
        )
        .bind(room_id)
        .bind(user_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

/// A room's member counts and its first few other members (for room summaries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSummary {
    pub joined: i64,
    pub invited: i64,
    pub heroes: Vec<String>,
}

impl Storage {
    /// Summaries of several rooms in two concurrent queries; heroes are up to `heroes` joined or invited
    /// members other than `user_id`, in the order they arrived.
    pub async fn member_summaries(
        &self,
        room_ids: &[String],
        user_id: &str,
        heroes: i64,
    ) -> Result<std::collections::HashMap<String, MemberSummary>> {
        let mut summaries: std::collections::HashMap<String, MemberSummary> = std::collections::HashMap::new();
        if room_ids.is_empty() {
            return Ok(summaries);
        }
        let counts = format!(
            "SELECT room_id, membership, COUNT(*) AS n FROM memberships WHERE membership IN ('join', 'invite') \
             AND room_id {} GROUP BY room_id, membership",
            self.engine.in_list(1, room_ids.len())
        );
        let count_query = self.engine.bind_list(sqlx::query(&counts), room_ids);
        let firsts = format!(
            "SELECT {} AS heroes FROM (SELECT room_id, user_id, ROW_NUMBER() OVER \
             (PARTITION BY room_id ORDER BY stream_ordering) AS rn FROM memberships \
             WHERE membership IN ('join', 'invite') AND user_id <> $1 AND room_id {}) m \
             WHERE m.rn <= $2",
            self.engine.json_rows(&["room_id", "user_id"], "room_id, rn"),
            self.engine.in_list(3, room_ids.len())
        );
        let hero_query = self.engine.bind_list(sqlx::query(&firsts).bind(user_id).bind(heroes), room_ids);
        // Independent: on PostgreSQL each is a round trip.
        let (counted, firsts) = tokio::try_join!(count_query.fetch_all(&self.read), hero_query.fetch_one(&self.read))?;
        for row in counted {
            let entry = summaries.entry(row.try_get("room_id")?).or_default();
            let n: i64 = row.try_get("n")?;
            if row.try_get::<String, _>("membership")? == "join" { entry.joined = n } else { entry.invited = n }
        }
        for (room_id, user_id) in super::json_rows_in::<(String, String)>(&firsts, "heroes")? {
            summaries.entry(room_id).or_default().heroes.push(user_id);
        }
        Ok(summaries)
    }
}
