//! Room aliases and the public room directory.

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{RoomAliasId, RoomId, UserId};
use serde_json::Value;

use super::state::{power_levels, room};
use crate::accounts::Authed;
use crate::error::{Error, Result};
use crate::state::AppState;

fn ensure_local(state: &AppState, alias: &RoomAliasId) -> Result<()> {
    if alias.server_name() != state.server_name {
        return Err(Error::invalid_param("Aliases of other servers cannot be managed here"));
    }
    Ok(())
}

pub async fn create_alias(state: &AppState, authed: &Authed, alias: &RoomAliasId, room_id: &RoomId) -> Result<()> {
    ensure_local(state, alias)?;
    super::membership::require_joined(state, room_id, &authed.user_id).await?;
    let created =
        state.storage.create_alias(alias.as_str(), room_id.as_str(), authed.user_id.as_str(), state.now_ms()).await?;
    if !created {
        return Err(Error::matrix(StatusCode::CONFLICT, ErrorKind::RoomInUse, "Room alias already exists"));
    }
    Ok(())
}

/// Who may delete an alias: its creator, a server admin, or someone who may change the room's
/// canonical alias.
pub async fn delete_alias(state: &AppState, authed: &Authed, alias: &RoomAliasId) -> Result<()> {
    ensure_local(state, alias)?;
    let (room_id, creator) =
        state.storage.alias_entry(alias.as_str()).await?.ok_or_else(|| Error::not_found("Room alias not found"))?;
    if creator != authed.user_id.as_str()
        && !authed.is_admin
        && !can_set_canonical_alias(state, &room_id, &authed.user_id).await?
    {
        return Err(Error::forbidden("You may not delete this alias"));
    }
    state.storage.delete_alias(alias.as_str()).await?;
    Ok(())
}

async fn can_set_canonical_alias(state: &AppState, room_id: &str, user_id: &UserId) -> Result<bool> {
    let room = room(state, room_id).await?;
    let levels = power_levels(state, &room).await?;
    Ok(levels.user_level(user_id.as_str()) >= levels.state_event("m.room.canonical_alias"))
}

/// A room's summary for the public directory.
pub struct DirectoryEntry {
    pub room_id: String,
    pub joined: i64,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub canonical_alias: Option<String>,
    pub avatar_url: Option<String>,
    pub join_rule: String,
    pub world_readable: bool,
    pub guest_can_join: bool,
}

const SUMMARY_STATE: &[&str] = &[
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
];

/// Published rooms, largest first, optionally matching a search term; `(page, total)`.
pub async fn public_rooms(
    state: &AppState,
    search: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<(Vec<DirectoryEntry>, usize)> {
    let mut rooms = state.storage.public_rooms().await?;
    rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let keys: Vec<(String, String)> = SUMMARY_STATE.iter().map(|t| ((*t).to_owned(), String::new())).collect();
    let needle = search.map(str::to_lowercase).filter(|s| !s.is_empty());
    let mut entries = Vec::new();
    for (room_id, joined) in rooms {
        let room = room(state, &room_id).await?;
        let ids = state.storage.state_entries_at_group(room.current_state_group()?, &keys).await?;
        let ids: Vec<String> = ids.into_values().collect();
        let mut content = std::collections::HashMap::new();
        for row in state.storage.events_by_id(&ids).await? {
            content.insert(row.event_type.clone(), row.json["content"].clone());
        }
        let text = |event_type: &str, field: &str| {
            content.get(event_type).and_then(|c: &Value| c[field].as_str()).map(str::to_owned)
        };
        let entry = DirectoryEntry {
            room_id,
            joined,
            name: text("m.room.name", "name"),
            topic: text("m.room.topic", "topic"),
            canonical_alias: text("m.room.canonical_alias", "alias"),
            avatar_url: text("m.room.avatar", "url"),
            join_rule: text("m.room.join_rules", "join_rule").unwrap_or_else(|| "invite".into()),
            world_readable: text("m.room.history_visibility", "history_visibility").as_deref()
                == Some("world_readable"),
            guest_can_join: text("m.room.guest_access", "guest_access").as_deref() == Some("can_join"),
        };
        let matches = needle.as_ref().is_none_or(|needle| {
            [&entry.name, &entry.topic, &entry.canonical_alias]
                .iter()
                .any(|field| field.as_ref().is_some_and(|f| f.to_lowercase().contains(needle.as_str())))
        });
        if matches {
            entries.push(entry);
        }
    }
    let total = entries.len();
    Ok((entries.into_iter().skip(offset).take(limit).collect(), total))
}

/// Publishes or unpublishes a room; needs the power to send `m.room.canonical_alias`.
pub async fn set_published(state: &AppState, authed: &Authed, room_id: &RoomId, public: bool) -> Result<()> {
    room(state, room_id.as_str()).await?;
    super::membership::require_joined(state, room_id, &authed.user_id).await?;
    if !authed.is_admin && !can_set_canonical_alias(state, room_id.as_str(), &authed.user_id).await? {
        return Err(Error::forbidden("You may not change this room's directory visibility"));
    }
    state.storage.set_room_public(room_id.as_str(), public).await?;
    Ok(())
}

/// `m.room.canonical_alias` may only name aliases that point to the room (local aliases are
/// checked; others cannot be here).
pub async fn validate_canonical_alias(state: &AppState, room_id: &RoomId, content: &Value) -> Result<()> {
    let bad_alias = |message: String| Error::matrix(StatusCode::BAD_REQUEST, ErrorKind::BadAlias, message);
    let mut aliases: Vec<&Value> = content.get("alias").into_iter().filter(|v| !v.is_null()).collect();
    if let Some(alt) = content.get("alt_aliases") {
        let alt = alt.as_array().ok_or_else(|| Error::invalid_param("alt_aliases must be a list"))?;
        aliases.extend(alt);
    }
    for alias in aliases {
        let alias = alias.as_str().ok_or_else(|| Error::invalid_param("Aliases must be strings"))?;
        let alias_id = RoomAliasId::parse(alias).map_err(|_| Error::invalid_param(format!("Invalid alias {alias}")))?;
        if alias_id.server_name() != state.server_name {
            continue;
        }
        match state.storage.alias_room(alias).await? {
            Some(target) if target == room_id.as_str() => {}
            _ => return Err(bad_alias(format!("{alias} does not point to this room"))),
        }
    }
    Ok(())
}

/// An alias's room and servers in it: ours from the database, others' by asking the alias's
/// server (`/query/directory`).
pub async fn resolve_alias(
    state: &AppState,
    alias: &ruma::RoomAliasId,
) -> Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>)> {
    if alias.server_name() == state.server_name {
        let room_id = state.storage.alias_room(alias.as_str()).await?;
        let room_id = room_id.ok_or_else(|| Error::not_found("Room alias not found"))?;
        let room_id = ruma::OwnedRoomId::try_from(room_id).map_err(|e| Error::internal(e.to_string()))?;
        let mut servers = vec![state.server_name.clone()];
        for server in super::edus::remote_servers_in_room(state, &room_id).await? {
            servers.extend(ruma::OwnedServerName::try_from(server).ok());
        }
        return Ok((room_id, servers));
    }
    if !state.config.federation.enabled {
        return Err(Error::not_found("Room alias not found"));
    }
    let request = ruma::api::federation::query::get_room_information::v1::Request::new(alias.to_owned());
    let answer =
        state.federation.send(alias.server_name(), &state.signing_key, request).await.map_err(Error::remote)?;
    Ok((answer.room_id, answer.servers))
}
