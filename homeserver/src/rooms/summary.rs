//! What an admin sees of a room: its name, aliases, settings and member counts, from current
//! state.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::state::AppState;

/// A room's details in Synapse's admin API vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSummary {
    pub room_id: String,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub avatar: Option<String>,
    pub canonical_alias: Option<String>,
    pub joined_members: i64,
    pub joined_local_members: i64,
    pub version: String,
    pub creator: String,
    pub encryption: Option<String>,
    pub federatable: bool,
    pub public: bool,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub state_events: i64,
    pub room_type: Option<String>,
}

/// The state events that the summary reads, and the content field each supplies.
const FIELDS: &[(&str, &str)] = &[
    ("m.room.name", "name"),
    ("m.room.topic", "topic"),
    ("m.room.avatar", "url"),
    ("m.room.canonical_alias", "alias"),
    ("m.room.encryption", "algorithm"),
    ("m.room.join_rules", "join_rule"),
    ("m.room.guest_access", "guest_access"),
    ("m.room.history_visibility", "history_visibility"),
    ("m.room.create", "type"),
];

pub async fn summary(state: &AppState, room_id: &str) -> Result<RoomSummary> {
    let room = super::state::room(state, room_id).await?;
    // A purged (blocked) room has a row and nothing else.
    let group = room.row.current_state_group.ok_or_else(|| Error::not_found("Room not found"))?;
    let current = state.storage.state_at_group(group).await?;
    let ids: Vec<String> = FIELDS
        .iter()
        .filter_map(|(event_type, _)| current.get(&((*event_type).to_owned(), String::new())).cloned())
        .collect();
    let contents: HashMap<String, Value> = state
        .storage
        .events_by_id(&ids)
        .await?
        .into_iter()
        .map(|row| (row.event_type.clone(), row.json["content"].clone()))
        .collect();
    let field = |event_type: &str| -> Option<String> {
        let (_, key) = FIELDS.iter().find(|(t, _)| *t == event_type)?;
        contents.get(event_type)?.get(*key)?.as_str().map(str::to_owned)
    };
    let create = contents.get("m.room.create").ok_or_else(|| Error::internal("room without a create event"))?;
    let members = state.storage.room_memberships(room_id).await?;
    let joined: Vec<&str> = members.iter().filter(|m| m.membership == "join").map(|m| m.user_id.as_str()).collect();
    let local_suffix = format!(":{}", state.server_name);
    Ok(RoomSummary {
        room_id: room_id.to_owned(),
        name: field("m.room.name"),
        topic: field("m.room.topic"),
        avatar: field("m.room.avatar"),
        canonical_alias: field("m.room.canonical_alias"),
        joined_members: i64::try_from(joined.len()).unwrap_or(i64::MAX),
        joined_local_members: i64::try_from(joined.iter().filter(|u| u.ends_with(&local_suffix)).count())
            .unwrap_or(i64::MAX),
        version: room.row.room_version.clone(),
        creator: room.row.creator.clone(),
        encryption: field("m.room.encryption"),
        federatable: create.get("m.federate").and_then(Value::as_bool).unwrap_or(true),
        public: room.row.is_public,
        join_rules: field("m.room.join_rules"),
        guest_access: field("m.room.guest_access"),
        history_visibility: field("m.room.history_visibility"),
        state_events: i64::try_from(current.len()).unwrap_or(i64::MAX),
        room_type: field("m.room.create"),
    })
}

/// Summaries of every room (the admin room list sorts and searches them in memory).
pub async fn all(state: &AppState) -> Result<Vec<RoomSummary>> {
    let mut summaries = Vec::new();
    for room_id in state.storage.all_room_ids().await? {
        summaries.push(summary(state, &room_id).await?);
    }
    Ok(summaries)
}
