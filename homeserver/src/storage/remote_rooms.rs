//! Rooms joined over federation: the state the resident server handed us, stored in one
//! transaction before our join event is persisted on top of it.

use super::rooms::{NewEvent, StateMap, insert_event, upsert_membership};
use super::state_groups::write_snapshot;
use super::{Result, Storage};

/// A remote room's identity and the state before our join.
#[derive(Debug)]
pub struct AdoptedRoom<'a> {
    pub room_id: &'a str,
    pub room_version: &'a str,
    pub creator: &'a str,
    pub now: i64,
    /// The state and auth chain events, persisted as outliers.
    pub events: &'a [NewEvent],
    /// The room state before our join.
    pub state: &'a StateMap,
}

/// An invite of a local user into a room this server is not in (or their knock on one).
#[derive(Debug)]
pub struct RemoteInvite<'a> {
    pub room_id: &'a str,
    pub room_version: &'a str,
    pub creator: &'a str,
    pub now: i64,
    /// The invite event (countersigned by us), kept as an outlier.
    pub event: &'a NewEvent,
    pub user_id: &'a str,
    /// `invite`, or `knock` for our user's knock on a remote room.
    pub membership: &'a str,
    /// Stripped state events (type, state_key, sender, content) as a JSON array.
    pub stripped_state: &'a serde_json::Value,
}

/// The identity of a remote invite's stripped state (its associated data when sealed).
pub(super) fn invite_record_id(room_id: &str, user_id: &str) -> String {
    format!("remote_invite/{room_id}/{user_id}")
}

impl Storage {
    /// Records an invite into a room we are not in: a placeholder room row, the invite event as
    /// an outlier, the user's `invite` membership and the stripped state to show with it.
    pub async fn store_remote_invite(&self, invite: &RemoteInvite<'_>) -> Result<()> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        insert_room_row(&mut tx, invite.room_id, invite.room_version, invite.creator, invite.now).await?;
        // A direct chat as its inviter says, while we are not in the room yet (retention's
        // [retention.direct]); once in, no later event changes it.
        if invite.event.json["content"]["is_direct"] == true {
            sqlx::query("UPDATE rooms SET is_direct = 1 WHERE room_id = $1 AND current_state_group IS NULL")
                .bind(invite.room_id)
                .execute(&mut *tx)
                .await?;
        }
        let known = known_event_ids(&mut tx, std::slice::from_ref(&invite.event.event_id)).await?;
        if known.is_empty() {
            let mut outlier = invite.event.clone();
            outlier.outlier = true;
            let persisted =
                insert_event(&self.codec, &mut tx, &outlier, &self.next_ordering, &self.state_group_numbers).await?;
            let (room_id, user_id, event_id) = (invite.room_id, invite.user_id, &invite.event.event_id);
            upsert_membership(&mut tx, room_id, user_id, invite.membership, event_id, persisted.stream_ordering)
                .await?;
        }
        sqlx::query(
            "INSERT INTO remote_invites (room_id, user_id, event_id, stripped_state) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id, user_id) DO UPDATE SET event_id = excluded.event_id, \
             stripped_state = excluded.stripped_state",
        )
        .bind(invite.room_id)
        .bind(invite.user_id)
        .bind(&invite.event.event_id)
        .bind(self.codec.encode_text(&invite_record_id(invite.room_id, invite.user_id), invite.stripped_state))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores history fetched from another server, `events` newest first, before everything in
    /// the room's timeline: each gets the next lower (negative) stream position. Events known
    /// only as outliers join the timeline there; events already in it are skipped. The room's
    /// current state, extremities and memberships are untouched: this is the past.
    pub async fn persist_backfilled(&self, events: &[NewEvent]) -> Result<usize> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        let mut added = 0;
        for event in events {
            let known = sqlx::query("SELECT outlier FROM events WHERE event_id = $1")
                .bind(&event.event_id)
                .fetch_optional(&mut *tx)
                .await?;
            let is_outlier = match known {
                Some(row) => sqlx::Row::try_get::<i64, _>(&row, "outlier")? != 0,
                None => {
                    let mut row = event.clone();
                    row.outlier = true;
                    insert_event(&self.codec, &mut tx, &row, &self.next_ordering, &self.state_group_numbers).await?;
                    true
                }
            };
            if !is_outlier {
                continue;
            }
            let lowest: i64 = sqlx::Row::try_get(
                &sqlx::query("SELECT COALESCE(MIN(stream_ordering), 1) AS lowest FROM events")
                    .fetch_one(&mut *tx)
                    .await?,
                "lowest",
            )?;
            sqlx::query("UPDATE events SET outlier = 0, stream_ordering = $2 WHERE event_id = $1")
                .bind(&event.event_id)
                .bind(lowest.min(1) - 1)
                .execute(&mut *tx)
                .await?;
            added += 1;
        }
        tx.commit().await?;
        // Outliers that joined the timeline have a new position.
        self.events_changed(events.iter().map(|event| event.event_id.as_str()));
        Ok(added)
    }

    /// The oldest event of a room's timeline.
    pub async fn oldest_timeline_event(&self, room_id: &str) -> Result<Option<(String, String, i64)>> {
        let row = sqlx::query(
            "SELECT event_id, event_type, state_group_before FROM events WHERE room_id = $1 AND outlier = 0 \
             ORDER BY stream_ordering LIMIT 1",
        )
        .bind(room_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            sqlx::Row::try_get(&row, "event_id")?,
            sqlx::Row::try_get(&row, "event_type")?,
            sqlx::Row::try_get(&row, "state_group_before")?,
        )))
    }

    /// Writes a full state snapshot (a room state that no single event produced: the
    /// resolution of forks) and returns its state group.
    pub async fn create_state_group(&self, room_id: &str, state: &StateMap) -> Result<i64> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        let group = write_snapshot(&mut tx, room_id, self.state_group_numbers.next(), state).await?;
        tx.commit().await?;
        Ok(group)
    }

    /// Records a local user's leave (a rejected invite) from a room we are not in: the leave
    /// event as an outlier and the `leave` membership; the invite's stripped state goes.
    pub async fn record_remote_leave(&self, room_id: &str, user_id: &str, event: &NewEvent) -> Result<()> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        let mut outlier = event.clone();
        outlier.outlier = true;
        let persisted =
            insert_event(&self.codec, &mut tx, &outlier, &self.next_ordering, &self.state_group_numbers).await?;
        sqlx::query(
            "UPDATE memberships SET membership = 'leave', event_id = $3, stream_ordering = $4 \
             WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(&event.event_id)
        .bind(persisted.stream_ordering)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM remote_invites WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stripped state sent with a remote invite, if the invite came from another server.
    pub async fn remote_invite_state(
        &self,
        room_id: &str,
        user_id: &str,
        event_id: &str,
    ) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query(
            "SELECT stripped_state FROM remote_invites WHERE room_id = $1 AND user_id = $2 AND event_id = $3",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(event_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = sqlx::Row::try_get(&row, "stripped_state")?;
        Ok(Some(self.codec.decode_text(&invite_record_id(room_id, user_id), &text)?))
    }

    /// Stores a remote room's state (rooms row, outlier events, a snapshot state group and the
    /// memberships it holds) and returns the state group, which becomes the room's current
    /// state. Events already known are skipped.
    pub async fn adopt_remote_room(&self, room: &AdoptedRoom<'_>) -> Result<i64> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        insert_room_row(&mut tx, room.room_id, room.room_version, room.creator, room.now).await?;
        let group = write_snapshot(&mut tx, room.room_id, self.state_group_numbers.next(), room.state).await?;
        let ids: Vec<String> = room.events.iter().map(|e| e.event_id.clone()).collect();
        let known = known_event_ids(&mut tx, &ids).await?;
        for event in room.events {
            if known.contains(&event.event_id) {
                continue;
            }
            let mut outlier = event.clone();
            outlier.outlier = true;
            outlier.state_group_before = group;
            let persisted =
                insert_event(&self.codec, &mut tx, &outlier, &self.next_ordering, &self.state_group_numbers).await?;
            let in_state = event
                .state_key
                .as_ref()
                .is_some_and(|key| room.state.get(&(event.event_type.clone(), key.clone())) == Some(&event.event_id));
            if let (true, "m.room.member", Some(user_id)) = (in_state, event.event_type.as_str(), &event.state_key) {
                let membership = event.json["content"]["membership"].as_str().unwrap_or("leave");
                upsert_membership(
                    &mut tx,
                    room.room_id,
                    user_id,
                    membership,
                    &event.event_id,
                    persisted.stream_ordering,
                )
                .await?;
            }
        }
        sqlx::query("UPDATE rooms SET current_state_group = $2 WHERE room_id = $1")
            .bind(room.room_id)
            .bind(group)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(group)
    }
}

/// The row of a room first seen through federation. A placeholder made from an invite's or
/// knock's claims (no state yet) takes the version and creator of a later, verified join; a room
/// with state keeps its row.
async fn insert_room_row(
    tx: &mut sqlx::AnyConnection,
    room_id: &str,
    room_version: &str,
    creator: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public) VALUES ($1, $2, $3, $4, 0) \
         ON CONFLICT (room_id) DO UPDATE SET room_version = excluded.room_version, creator = excluded.creator \
         WHERE rooms.current_state_group IS NULL",
    )
    .bind(room_id)
    .bind(room_version)
    .bind(creator)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Which of `ids` are stored already, a few hundred per query.
async fn known_event_ids(tx: &mut sqlx::AnyConnection, ids: &[String]) -> Result<std::collections::HashSet<String>> {
    let mut known = std::collections::HashSet::new();
    for chunk in ids.chunks(300) {
        let sql = format!("SELECT event_id FROM events WHERE event_id IN ({})", super::placeholders(1, chunk.len()));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *tx).await? {
            known.insert(sqlx::Row::try_get(&row, "event_id")?);
        }
    }
    Ok(known)
}
