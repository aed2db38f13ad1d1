//! Reading room state: current state entries, full state as events, power levels.

use std::collections::HashMap;

use federation::Pdu;
use ruma::{EventId, OwnedEventId, RoomVersionId};

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{EventRow, RoomRow, StateMap};

/// A room we know, with its parsed version.
pub struct Room {
    pub row: RoomRow,
    pub version: RoomVersionId,
}

impl Room {
    pub fn current_state_group(&self) -> Result<i64> {
        self.row.current_state_group.ok_or_else(|| Error::internal(format!("room {} has no state", self.row.room_id)))
    }
}

pub async fn room(state: &AppState, room_id: &str) -> Result<Room> {
    let row = state.storage.room(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
    let version = RoomVersionId::try_from(row.room_version.as_str())
        .map_err(|e| Error::internal(format!("stored room version: {e}")))?;
    Ok(Room { row, version })
}

/// Parses a stored event back into a PDU.
pub fn to_pdu(row: &EventRow) -> Result<Pdu> {
    let event_id = EventId::parse(&row.event_id).map_err(|e| Error::internal(format!("stored event ID: {e}")))?;
    let object = federation::signing::to_canonical_object(serde_json::Value::clone(&row.json))
        .map_err(|e| Error::internal(format!("stored event {}: {e}", row.event_id)))?;
    Pdu::from_parts(event_id, object, row.rejected_reason.is_some())
        .map_err(|e| Error::internal(format!("stored event {}: {e}", row.event_id)))
}

/// Loads the events of a state map as PDUs keyed by event ID.
pub async fn load_pdus(state: &AppState, ids: impl Iterator<Item = &String>) -> Result<HashMap<OwnedEventId, Pdu>> {
    let ids: Vec<String> = ids.cloned().collect();
    let rows = state.storage.events_by_id(&ids).await?;
    rows.iter().map(|row| to_pdu(row).map(|pdu| (pdu.event_id.clone(), pdu))).collect()
}

/// One current state event's content, if set.
pub async fn current_state_content(
    state: &AppState,
    room: &Room,
    event_type: &str,
    state_key: &str,
) -> Result<Option<serde_json::Value>> {
    let key = (event_type.to_owned(), state_key.to_owned());
    let entries = state.storage.state_entries_at_group(room.current_state_group()?, std::slice::from_ref(&key)).await?;
    let Some(event_id) = entries.get(&key) else { return Ok(None) };
    let row = state.storage.event(event_id).await?.ok_or_else(|| Error::internal("state event missing"))?;
    Ok(Some(row.json["content"].clone()))
}

/// The full state at a state group, as stored event rows.
pub async fn state_events(state: &AppState, state_group: i64) -> Result<Vec<EventRow>> {
    let map: StateMap = state.storage.state_at_group(state_group).await?;
    let ids: Vec<String> = map.into_values().collect();
    Ok(state.storage.events_by_id(&ids).await?)
}

/// A room's power levels (spec defaults when unset) and its creators, who in room versions that
/// privilege creators (v12+) outrank everyone.
pub struct PowerLevels {
    content: Option<serde_json::Value>,
    creators: Vec<String>,
    creators_privileged: bool,
}

/// The current power levels of a room.
pub async fn power_levels(state: &AppState, room: &Room) -> Result<PowerLevels> {
    let content = current_state_content(state, room, "m.room.power_levels", "").await?;
    let creators_privileged = room.version.rules().is_some_and(|r| r.authorization.explicitly_privilege_room_creators);
    let mut creators = vec![room.row.creator.clone()];
    if creators_privileged && let Some(create) = current_state_content(state, room, "m.room.create", "").await? {
        let additional = create["additional_creators"].as_array().cloned().unwrap_or_default();
        creators.extend(additional.iter().filter_map(|c| c.as_str().map(str::to_owned)));
    }
    Ok(PowerLevels { content, creators, creators_privileged })
}

fn int(value: &serde_json::Value, default: i64) -> i64 {
    match value {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(default),
        serde_json::Value::String(s) => s.parse().unwrap_or(default),
        _ => default,
    }
}

impl PowerLevels {
    pub fn user_level(&self, user_id: &str) -> i64 {
        let is_creator = self.creators.iter().any(|c| c == user_id);
        if self.creators_privileged && is_creator {
            return i64::MAX;
        }
        match &self.content {
            Some(content) => int(&content["users"][user_id], int(&content["users_default"], 0)),
            // Without a power levels event the creator has 100 and everyone else 0.
            None if is_creator => 100,
            None => 0,
        }
    }

    fn field(&self, name: &str, default: i64) -> i64 {
        self.content.as_ref().map_or(default, |c| int(&c[name], default))
    }

    /// The level needed to redact others' events.
    pub fn redact(&self) -> i64 {
        self.field("redact", 50)
    }

    /// The level needed to send a state event of `event_type`.
    pub fn state_event(&self, event_type: &str) -> i64 {
        let default = self.field("state_default", 50);
        self.content.as_ref().map_or(default, |c| int(&c["events"][event_type], default))
    }

    /// Whether the creators outrank everyone (and must not be listed in `users`).
    pub fn creators_privileged(&self) -> bool {
        self.creators_privileged
    }
}
