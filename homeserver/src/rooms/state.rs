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
    let object = federation::signing::to_canonical_object(row.json.clone())
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

/// A user's power level and the level an action needs, from `m.room.power_levels` content
/// (spec defaults when absent).
pub struct PowerLevels(serde_json::Value);

impl PowerLevels {
    pub fn from_content(content: Option<serde_json::Value>, creator: &str) -> Self {
        match content {
            Some(content) => Self(content),
            // Without a power levels event the creator has 100 and everyone else 0.
            None => Self(serde_json::json!({"users": {creator: 100}, "users_default": 0})),
        }
    }

    fn int(&self, value: &serde_json::Value, default: i64) -> i64 {
        match value {
            serde_json::Value::Number(n) => n.as_i64().unwrap_or(default),
            serde_json::Value::String(s) => s.parse().unwrap_or(default),
            _ => default,
        }
    }

    pub fn user_level(&self, user_id: &str) -> i64 {
        let default = self.int(&self.0["users_default"], 0);
        self.int(&self.0["users"][user_id], default)
    }

    /// The level needed to redact others' events.
    pub fn redact(&self) -> i64 {
        self.int(&self.0["redact"], 50)
    }
}
