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

impl Storage {
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
