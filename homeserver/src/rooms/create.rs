//! `createRoom`: the initial event sequence the spec describes, as one locked batch of sends.

use federation::pdu::EventTemplate;
use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

use super::head::RoomHead;
use federation::pdu::DagPosition;

use super::send::{Relay, accept_pdu, build_local_pdu, send_locked, state_template};
use crate::accounts::tokens;
use crate::error::{Error, Result};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// A room creation request, independent of HTTP.
#[derive(Debug, Default)]
pub struct CreateRoom {
    pub preset: Option<Preset>,
    pub is_public: bool,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub room_version: Option<RoomVersionId>,
    pub creation_content: Option<Value>,
    pub initial_state: Vec<(String, String, Value)>,
    pub power_level_content_override: Option<Value>,
}

/// Room versions this server creates rooms in.
pub fn can_create(version: &RoomVersionId) -> bool {
    matches!(
        version,
        RoomVersionId::V3
            | RoomVersionId::V4
            | RoomVersionId::V5
            | RoomVersionId::V6
            | RoomVersionId::V7
            | RoomVersionId::V8
            | RoomVersionId::V9
            | RoomVersionId::V10
            | RoomVersionId::V11
            | RoomVersionId::V12
    )
}

pub async fn create_room(state: &AppState, creator: &UserId, request: CreateRoom) -> Result<OwnedRoomId> {
    let version = request.room_version.clone().unwrap_or(RoomVersionId::V10);
    if !can_create(&version) {
        return Err(Error::matrix(
            StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedRoomVersion,
            format!("This server cannot create rooms of version {version}"),
        ));
    }
    let alias = match &request.room_alias_name {
        Some(name) => Some(validate_alias_name(state, name).await?),
        None => None,
    };
    for invitee in &request.invite {
        if state.storage.user(invitee.as_str()).await?.is_none() {
            return Err(Error::not_found(format!("Unknown user {invitee}")));
        }
    }

    let mut templates = initial_events(state, creator, &request, &version, alias.as_deref()).await?.into_iter();
    let create_template = templates.next().ok_or_else(|| Error::internal("no create event"))?;
    let derives_room_id = version.rules().is_some_and(|r| r.authorization.room_create_event_id_as_room_id);
    // Since v12 the room ID is the create event's reference hash, so that event comes first.
    let (room_id, create_pdu) = if derives_room_id {
        let placeholder = <&RoomId>::try_from("!placeholder:localhost").map_err(|e| Error::internal(e.to_string()))?;
        let position = DagPosition { prev_events: Vec::new(), auth_events: Vec::new(), depth: 1 };
        let pdu = build_local_pdu(state, &version, placeholder, creator, &create_template, &position)?;
        (pdu.room_id.clone(), Some(pdu))
    } else {
        let room_id = OwnedRoomId::try_from(format!("!{}:{}", tokens::new_opaque_id(18), state.server_name))
            .map_err(|e| Error::internal(e.to_string()))?;
        (room_id, None)
    };
    let now = state.now_ms();
    let (is_public, is_direct) = (request.is_public, request.is_direct);
    state.storage.create_room(room_id.as_str(), version.as_str(), creator.as_str(), is_public, is_direct, now).await?;
    state.storage.create_empty_state_group(room_id.as_str()).await?;
    if let Some(alias) = &alias {
        let created = state.storage.create_alias(alias, room_id.as_str(), creator.as_str(), now).await?;
        if !created {
            return Err(alias_in_use());
        }
    }

    let slot = state.rooms.room_lock(&room_id);
    let mut guard = slot.lock().await;
    let head = guard.insert(RoomHead::load(state, &room_id).await?);
    match create_pdu {
        Some(pdu) => accept_pdu(state, head, pdu, None, Relay::AllServers).await?,
        None => send_locked(state, head, &room_id, creator, create_template, None).await?,
    };
    for template in templates {
        send_locked(state, head, &room_id, creator, template, None).await?;
    }
    drop(guard);
    Ok(room_id)
}

fn alias_in_use() -> Error {
    Error::matrix(StatusCode::CONFLICT, ErrorKind::RoomInUse, "Room alias already taken")
}

async fn validate_alias_name(state: &AppState, name: &str) -> Result<String> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        return Err(Error::invalid_param("room_alias_name must be a non-empty localpart without ':' or spaces"));
    }
    let alias = format!("#{name}:{}", state.server_name);
    if ruma::RoomAliasId::parse(&alias).is_err() {
        return Err(Error::invalid_param("Invalid room alias"));
    }
    if state.storage.alias_room(&alias).await?.is_some() {
        return Err(alias_in_use());
    }
    Ok(alias)
}

/// The spec's order: create, creator's join, power levels, canonical alias, preset state
/// (join rules, history visibility, guest access), initial_state, name, topic, invites.
async fn initial_events(
    state: &AppState,
    creator: &UserId,
    request: &CreateRoom,
    version: &RoomVersionId,
    alias: Option<&str>,
) -> Result<Vec<EventTemplate>> {
    let preset = request.preset.unwrap_or(if request.is_public { Preset::PublicChat } else { Preset::PrivateChat });
    let mut events = Vec::new();

    let mut create_content = match &request.creation_content {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => return Err(Error::bad_json("creation_content must be an object")),
        None => json!({}),
    };
    create_content["room_version"] = json!(version.as_str());
    let rules = version.rules().ok_or_else(|| Error::internal("room version without rules"))?;
    if !rules.authorization.use_room_create_sender {
        create_content["creator"] = json!(creator.as_str());
    }
    // Since v12 creators outrank everyone and are named in the create event, not power levels:
    // a trusted private chat makes its invitees additional creators.
    let creators_privileged = rules.authorization.explicitly_privilege_room_creators;
    if creators_privileged && preset == Preset::TrustedPrivateChat && !request.invite.is_empty() {
        create_content["additional_creators"] = json!(request.invite);
    }
    events.push(state_template("m.room.create", "", create_content));

    let displayname = state.storage.profile_displayname(creator.as_str()).await?;
    let mut join = json!({"membership": "join"});
    if let Some(name) = displayname {
        join["displayname"] = json!(name);
    }
    events.push(state_template("m.room.member", creator.as_str(), join));

    let mut users = serde_json::Map::new();
    if !creators_privileged {
        users.insert(creator.to_string(), json!(100));
    }
    if preset == Preset::TrustedPrivateChat && !creators_privileged {
        for invitee in &request.invite {
            users.insert(invitee.to_string(), json!(100));
        }
    }
    let mut power_levels = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100,
        },
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
        "invite": if preset == Preset::PublicChat { 50 } else { 0 },
        "notifications": {"room": 50},
    });
    if let Some(overrides) = &request.power_level_content_override {
        let Value::Object(overrides) = overrides else {
            return Err(Error::bad_json("power_level_content_override must be an object"));
        };
        for (key, value) in overrides {
            power_levels[key] = value.clone();
        }
    }
    events.push(state_template("m.room.power_levels", "", power_levels));

    if let Some(alias) = alias {
        events.push(state_template("m.room.canonical_alias", "", json!({"alias": alias})));
    }
    let join_rule = if preset == Preset::PublicChat { "public" } else { "invite" };
    events.push(state_template("m.room.join_rules", "", json!({"join_rule": join_rule})));
    events.push(state_template("m.room.history_visibility", "", json!({"history_visibility": "shared"})));
    let guest_access = if preset == Preset::PublicChat { "forbidden" } else { "can_join" };
    events.push(state_template("m.room.guest_access", "", json!({"guest_access": guest_access})));

    for (event_type, state_key, content) in &request.initial_state {
        if event_type == "m.room.create" || event_type == "m.room.member" {
            continue;
        }
        events.push(state_template(event_type, state_key, content.clone()));
    }
    if let Some(name) = &request.name {
        events.push(state_template("m.room.name", "", json!({"name": name})));
    }
    if let Some(topic) = &request.topic {
        events.push(state_template("m.room.topic", "", json!({"topic": topic})));
    }
    for invitee in &request.invite {
        let mut content = json!({"membership": "invite"});
        if request.is_direct {
            content["is_direct"] = json!(true);
        }
        if let Some(name) = state.storage.profile_displayname(invitee.as_str()).await? {
            content["displayname"] = json!(name);
        }
        events.push(state_template("m.room.member", invitee.as_str(), content));
    }
    Ok(events)
}

/// Resolves a room ID or alias to a room ID (local aliases only for now).
pub async fn resolve_room(state: &AppState, room_id_or_alias: &str) -> Result<OwnedRoomId> {
    Ok(resolve_room_with_servers(state, room_id_or_alias).await?.0)
}

/// A room ID or alias as a room ID, with servers known to be in the room (for a remote alias,
/// those its server named).
pub async fn resolve_room_with_servers(
    state: &AppState,
    room_id_or_alias: &str,
) -> Result<(OwnedRoomId, Vec<ruma::OwnedServerName>)> {
    if room_id_or_alias.starts_with('#') {
        let alias =
            ruma::RoomAliasId::parse(room_id_or_alias).map_err(|_| Error::invalid_param("Invalid room alias"))?;
        return super::directory::resolve_alias(state, &alias).await;
    }
    let room_id = <&RoomId>::try_from(room_id_or_alias).map_err(|_| Error::invalid_param("Invalid room ID"))?;
    Ok((room_id.to_owned(), Vec::new()))
}
