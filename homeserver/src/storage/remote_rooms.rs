//! Rooms joined over federation: the state the resident server handed us, stored in one
//! transaction before our join event is persisted on top of it.

use super::rooms::{NewEvent, StateMap, insert_event, next_state_group};
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

/// An invite of a local user into a room this server is not in.
#[derive(Debug)]
pub struct RemoteInvite<'a> {
    pub room_id: &'a str,
    pub room_version: &'a str,
    pub creator: &'a str,
    pub now: i64,
    /// The invite event (countersigned by us), kept as an outlier.
    pub event: &'a NewEvent,
    pub user_id: &'a str,
    /// Stripped state events (type, state_key, sender, content) as a JSON array.
    pub stripped_state: &'a serde_json::Value,
}

impl Storage {
    /// Records an invite into a room we are not in: a placeholder room row, the invite event as
    /// an outlier, the user's `invite` membership and the stripped state to show with it.
    pub async fn store_remote_invite(&self, invite: &RemoteInvite<'_>) -> Result<()> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public) VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(invite.room_id)
        .bind(invite.room_version)
        .bind(invite.creator)
        .bind(invite.now)
        .execute(&mut *tx)
        .await?;
        let known = sqlx::query("SELECT 1 AS known FROM events WHERE event_id = $1")
            .bind(&invite.event.event_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !known {
            let mut outlier = invite.event.clone();
            outlier.outlier = true;
            let persisted = insert_event(&mut tx, &outlier).await?;
            sqlx::query(
                "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten, \
                 last_join_ordering) VALUES ($1, $2, 'invite', $3, $4, 0, NULL) \
                 ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
                 event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0",
            )
            .bind(invite.room_id)
            .bind(invite.user_id)
            .bind(&invite.event.event_id)
            .bind(persisted.stream_ordering)
            .execute(&mut *tx)
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
        .bind(invite.stripped_state.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a local user's leave (a rejected invite) from a room we are not in: the leave
    /// event as an outlier and the `leave` membership; the invite's stripped state goes.
    pub async fn record_remote_leave(&self, room_id: &str, user_id: &str, event: &NewEvent) -> Result<()> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        let mut outlier = event.clone();
        outlier.outlier = true;
        let persisted = insert_event(&mut tx, &outlier).await?;
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
        Ok(serde_json::from_str(&text).ok())
    }

    /// Stores a remote room's state (rooms row, outlier events, a snapshot state group and the
    /// memberships it holds) and returns the state group, which becomes the room's current
    /// state. Events already known are skipped.
    pub async fn adopt_remote_room(&self, room: &AdoptedRoom<'_>) -> Result<i64> {
        let _order = self.event_order.lock().await;
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public) VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(room.room_id)
        .bind(room.room_version)
        .bind(room.creator)
        .bind(room.now)
        .execute(&mut *tx)
        .await?;

        let group = next_state_group(&mut tx).await?;
        sqlx::query("INSERT INTO state_groups (state_group, room_id, prev_group, chain_len) VALUES ($1, $2, NULL, 0)")
            .bind(group)
            .bind(room.room_id)
            .execute(&mut *tx)
            .await?;
        for ((event_type, state_key), event_id) in room.state {
            sqlx::query(
                "INSERT INTO state_group_entries (state_group, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)",
            )
            .bind(group)
            .bind(event_type)
            .bind(state_key)
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        }

        for event in room.events {
            let known = sqlx::query("SELECT 1 AS known FROM events WHERE event_id = $1")
                .bind(&event.event_id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if known {
                continue;
            }
            let mut outlier = event.clone();
            outlier.outlier = true;
            outlier.state_group_before = group;
            let persisted = insert_event(&mut tx, &outlier).await?;
            let in_state = event
                .state_key
                .as_ref()
                .is_some_and(|key| room.state.get(&(event.event_type.clone(), key.clone())) == Some(&event.event_id));
            if let (true, "m.room.member", Some(user_id)) = (in_state, event.event_type.as_str(), &event.state_key) {
                let membership = event.json["content"]["membership"].as_str().unwrap_or("leave");
                sqlx::query(
                    "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten, \
                     last_join_ordering) VALUES ($1, $2, $3, $4, $5, 0, NULL) \
                     ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
                     event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
                )
                .bind(room.room_id)
                .bind(user_id)
                .bind(membership)
                .bind(&event.event_id)
                .bind(persisted.stream_ordering)
                .execute(&mut *tx)
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
