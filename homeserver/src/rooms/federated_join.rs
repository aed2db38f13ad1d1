//! Joining over federation, both ways: answering `make_join`/`send_join` for rooms this server
//! is in, and joining a room on another server (make_join → sign → send_join → verify the
//! state and auth chain it returns → store it → persist our join on top).

use std::collections::{HashMap, HashSet};

use federation::Pdu;
use federation::pdu::{event_id_for, rules_for};
use ruma::api::federation::membership::{create_join_event, prepare_join_event};
use ruma::events::StateEventType;
use ruma::{CanonicalJsonObject, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value;

use super::head::RoomHead;
use super::incoming::{accept_received, verify_for_version, verify_received};
use super::send::{Relay, accept_pdu, authorize_at_head, build_local_pdu, dag_position, state_template};
use crate::error::{Error, Result};
use crate::federation_sender::federation_form;
use crate::state::AppState;
use crate::storage::{AdoptedRoom, EventRow, StateMap};

/// Room versions this server can join over federation (v12's state resolution is not done).
pub const FEDERATED_ROOM_VERSIONS: &[RoomVersionId] = &[
    RoomVersionId::V11,
    RoomVersionId::V10,
    RoomVersionId::V9,
    RoomVersionId::V8,
    RoomVersionId::V7,
    RoomVersionId::V6,
    RoomVersionId::V5,
    RoomVersionId::V4,
    RoomVersionId::V3,
];

fn incompatible(version: &RoomVersionId) -> Error {
    let kind = ruma::api::error::ErrorKind::IncompatibleRoomVersion(
        ruma::api::error::IncompatibleRoomVersionErrorData::new(version.clone()),
    );
    Error::matrix(http::StatusCode::BAD_REQUEST, kind, format!("The room is of version {version}"))
}

/// `make_join`: a join event template for `user_id` of `origin`, if the join would be allowed.
pub async fn make_join(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    supported: &[RoomVersionId],
) -> Result<(RoomVersionId, Value)> {
    if user_id.server_name() != origin {
        return Err(Error::forbidden("A server can only make joins for its own users"));
    }
    let room = super::state::room(state, room_id.as_str()).await?;
    if !supported.contains(&room.version) {
        return Err(incompatible(&room.version));
    }
    let slot = state.rooms.room_lock(room_id);
    let mut guard = slot.lock().await;
    let head = match &mut *guard {
        Some(head) => head,
        empty => empty.insert(RoomHead::load(state, room_id).await?),
    };
    if !head.has_joined_member_of(state.server_name.as_str()) {
        return Err(Error::not_found("This server has no members in the room"));
    }
    let template = state_template("m.room.member", user_id.as_str(), serde_json::json!({"membership": "join"}));
    let position = dag_position(head, user_id, &template)?;
    // Built and signed like a local event only to run the auth rules; the joining server
    // signs the real one.
    let trial = build_local_pdu(state, &head.version, room_id, user_id, &template, &position)?;
    authorize_at_head(state, head, &trial).await?;
    let mut event = serde_json::to_value(&trial.json).map_err(|e| Error::internal(e.to_string()))?;
    if let Some(object) = event.as_object_mut() {
        object.remove("hashes");
        object.remove("signatures");
        object.insert("origin".into(), state.server_name.as_str().into());
    }
    Ok((head.version.clone(), event))
}

/// `send_join`: accepts `origin`'s signed join and answers with the room state before it and
/// the auth chain of that state.
pub async fn send_join(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &str,
    event: &serde_json::value::RawValue,
) -> Result<create_join_event::v2::RoomState> {
    let object: CanonicalJsonObject = serde_json::from_str(event.get()).map_err(|e| Error::bad_json(e.to_string()))?;
    let pdu = verify_received(state, room_id, object).await?;
    if pdu.event_id.as_str() != event_id || pdu.room_id != room_id {
        return Err(Error::bad_json("The event does not match the room and event ID of the request"));
    }
    let is_own_join = pdu.event_type.to_string() == "m.room.member"
        && pdu.state_key.as_deref() == Some(pdu.sender.as_str())
        && pdu.sender.server_name() == origin
        && pdu.content_value()["membership"] == "join";
    if !is_own_join {
        return Err(Error::bad_json("Not a join event of a user of the sending server"));
    }
    accept_received(state, pdu, Relay::AllExcept(origin.as_str())).await?;

    let row = state.storage.event(event_id).await?.ok_or_else(|| Error::internal("accepted join is missing"))?;
    if row.rejected_reason.is_some() {
        return Err(Error::forbidden("The join is not allowed"));
    }
    let state_rows = super::state::state_events(state, row.state_group_before).await?;
    let mut roots: Vec<String> = state_rows.iter().map(|r| r.event_id.clone()).collect();
    roots.extend(auth_event_ids(&row));
    let chain = auth_chain(state, roots).await?;
    let mut answer = create_join_event::v2::RoomState::new();
    answer.state = state_rows.iter().filter_map(|r| federation_form(&r.json)).collect();
    answer.auth_chain = chain.iter().filter_map(|r| federation_form(&r.json)).collect();
    Ok(answer)
}

fn auth_event_ids(row: &EventRow) -> Vec<String> {
    row.json["auth_events"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The auth chain of `roots` (their auth events, recursively; the roots themselves only where
/// they are someone's auth event), read level by level, one query per level.
pub async fn auth_chain(state: &AppState, roots: Vec<String>) -> Result<Vec<EventRow>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut chain = Vec::new();
    let first = state.storage.events_by_id(&roots).await?;
    let mut todo: Vec<String> = first.iter().flat_map(auth_event_ids).collect();
    while !todo.is_empty() {
        let level: Vec<String> = todo.drain(..).filter(|id| seen.insert(id.clone())).collect();
        if level.is_empty() {
            break;
        }
        for row in state.storage.events_by_id(&level).await? {
            todo.extend(auth_event_ids(&row));
            chain.push(row);
        }
    }
    Ok(chain)
}

/// Joins `user_id` to a room this server is not in, through the first of `servers` that
/// lets it.
pub async fn join_remote(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    servers: &[OwnedServerName],
    content: Value,
) -> Result<()> {
    if !state.config.federation.enabled {
        return Err(Error::not_found("Unknown room (federation is disabled)"));
    }
    let mut candidates: Vec<OwnedServerName> = servers.iter().filter(|s| **s != state.server_name).cloned().collect();
    if let Some(server) = room_id.server_name()
        && server != state.server_name
        && !candidates.iter().any(|c| c == server)
    {
        candidates.push(server.to_owned());
    }
    let mut last_error = Error::not_found("No server to join the room through");
    for server in candidates {
        match join_via(state, &server, room_id, user_id, content.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!(%server, %room_id, error = %e, "joining through this server failed");
                last_error = e;
            }
        }
    }
    Err(last_error)
}

async fn join_via(
    state: &AppState,
    server: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    content: Value,
) -> Result<()> {
    let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
    request.ver = FEDERATED_ROOM_VERSIONS.to_vec();
    let made = state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?;
    let version = made.room_version.unwrap_or(RoomVersionId::V1);
    if !FEDERATED_ROOM_VERSIONS.contains(&version) {
        return Err(incompatible(&version));
    }
    let join = sign_join_template(state, &version, room_id, user_id, made.event.get(), content)?;

    let request = create_join_event::v2::Request::new(
        room_id.to_owned(),
        join.event_id.clone(),
        serde_json::value::to_raw_value(&join.json).map_err(|e| Error::internal(e.to_string()))?,
    );
    let answer = state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?.room_state;
    // A restricted room's resident co-signs the join; take its copy when it sent one.
    let join = match &answer.event {
        Some(signed) => {
            let object: CanonicalJsonObject =
                serde_json::from_str(signed.get()).map_err(|_| Error::remote_invalid(server))?;
            let pdu = verify_for_version(state, &version, object).await?;
            if pdu.event_id != join.event_id {
                return Err(Error::remote_invalid(server));
            }
            pdu
        }
        None => join,
    };
    let room = verify_room_state(state, server, &version, room_id, &answer).await?;
    store_and_join(state, room_id, &version, room, join).await
}

/// Fills in a `make_join` template with our content, hashes and signs it.
fn sign_join_template(
    state: &AppState,
    version: &RoomVersionId,
    room_id: &RoomId,
    user_id: &UserId,
    template: &str,
    content: Value,
) -> Result<Pdu> {
    let mut event: Value = serde_json::from_str(template).map_err(|e| Error::bad_json(e.to_string()))?;
    let fits = event["type"] == "m.room.member"
        && event["state_key"] == user_id.as_str()
        && event["sender"] == user_id.as_str()
        && event["room_id"] == room_id.as_str()
        && event["content"]["membership"] == "join";
    if !fits {
        return Err(Error::custom(
            http::StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            "The remote server sent a wrong join template",
        ));
    }
    // Keep fields of the template's content we do not set (e.g. `join_authorised_via_users_server`).
    if let (Some(ours), Some(theirs)) = (content.as_object(), event["content"].as_object_mut()) {
        for (key, value) in ours {
            theirs.insert(key.clone(), value.clone());
        }
    }
    let object = event.as_object_mut().ok_or_else(|| Error::bad_json("template is not an object"))?;
    for field in ["event_id", "hashes", "signatures", "unsigned"] {
        object.remove(field);
    }
    object.insert("origin".into(), state.server_name.as_str().into());
    object.insert("origin_server_ts".into(), state.now_ms().into());
    let rules = rules_for(version).map_err(super::send::unsupported_version)?;
    let mut canonical = federation::signing::to_canonical_object(event).map_err(|e| Error::bad_json(e.to_string()))?;
    ruma::signatures::hash_and_sign_event(
        state.server_name.as_str(),
        state.signing_key.key_pair(),
        &mut canonical,
        &rules.redaction,
    )
    .map_err(|e| Error::bad_json(e.to_string()))?;
    let event_id = event_id_for(&canonical, &rules).map_err(super::send::pdu_error)?;
    Pdu::from_parts(event_id, canonical, false).map_err(super::send::pdu_error)
}

/// A remote room's state and auth chain after every event passed its checks.
struct VerifiedRoom {
    events: HashMap<OwnedEventId, Pdu>,
    state: StateMap,
    creator: String,
}

/// Checks every event of a `send_join` answer: signatures and hashes, then the auth rules
/// against each event's own auth events (oldest first). Events that fail are dropped; the
/// answer is refused if the state then lacks the create event.
async fn verify_room_state(
    state: &AppState,
    server: &ServerName,
    version: &RoomVersionId,
    room_id: &RoomId,
    answer: &create_join_event::v2::RoomState,
) -> Result<VerifiedRoom> {
    let rules = rules_for(version).map_err(super::send::unsupported_version)?;
    let mut received: Vec<Pdu> = Vec::new();
    for raw in answer.auth_chain.iter().chain(&answer.state) {
        let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else { continue };
        match verify_for_version(state, version, object).await {
            Ok(pdu) if pdu.room_id == room_id => received.push(pdu),
            Ok(_) => tracing::warn!(%server, "send_join answer holds an event of another room"),
            Err(e) => tracing::warn!(%server, error = %e, "dropped an event of a send_join answer"),
        }
    }
    let state_ids: HashSet<OwnedEventId> = answer
        .state
        .iter()
        .filter_map(|raw| serde_json::from_str::<CanonicalJsonObject>(raw.get()).ok())
        .filter_map(|object| event_id_for(&object, &rules).ok())
        .collect();
    received.sort_by_key(|pdu| pdu.depth);
    let mut events: HashMap<OwnedEventId, Pdu> = HashMap::new();
    for pdu in received {
        if events.contains_key(&pdu.event_id) {
            continue;
        }
        let auth_state: federation::auth::StateEvents<'_> = pdu
            .auth_events
            .iter()
            .filter_map(|id| events.get(id))
            .filter_map(|auth| {
                Some(((StateEventType::from(auth.event_type.to_string()), auth.state_key.clone()?), auth))
            })
            .collect();
        if let Err(reason) = federation::auth::authorize(&rules.authorization, &pdu, &events, &auth_state) {
            tracing::warn!(%server, event_id = %pdu.event_id, reason, "dropped an unauthorized event of a send_join answer");
            continue;
        }
        events.insert(pdu.event_id.clone(), pdu);
    }
    let mut room_state = StateMap::new();
    for id in &state_ids {
        if let Some(pdu) = events.get(id)
            && let Some(state_key) = &pdu.state_key
        {
            room_state.insert((pdu.event_type.to_string(), state_key.clone()), id.to_string());
        }
    }
    let create_id =
        room_state.get(&("m.room.create".to_owned(), String::new())).ok_or_else(|| Error::remote_invalid(server))?;
    let create = &events[&OwnedEventId::try_from(create_id.as_str()).map_err(|_| Error::remote_invalid(server))?];
    let declared_version = create.content_value()["room_version"].as_str().unwrap_or("1").to_owned();
    if declared_version != version.as_str() {
        return Err(Error::remote_invalid(server));
    }
    Ok(VerifiedRoom { creator: create.sender.to_string(), events, state: room_state })
}

/// Stores the verified state as the room's current state, then accepts our join on top of it.
async fn store_and_join(
    state: &AppState,
    room_id: &RoomId,
    version: &RoomVersionId,
    room: VerifiedRoom,
    join: Pdu,
) -> Result<()> {
    let events: Vec<_> =
        room.events.values().map(|pdu| super::send::new_event(pdu, &pdu.sender, 0, None)).collect::<Result<_>>()?;
    let slot = state.rooms.room_lock(room_id);
    let mut guard = slot.lock().await;
    state
        .storage
        .adopt_remote_room(&AdoptedRoom {
            room_id: room_id.as_str(),
            room_version: version.as_str(),
            creator: &room.creator,
            now: state.now_ms(),
            events: &events,
            state: &room.state,
        })
        .await?;
    let head = guard.insert(RoomHead::load(state, room_id).await?);
    let result = accept_pdu(state, head, join, None, Relay::Nobody).await;
    if result.is_err() {
        *guard = None;
    }
    drop(guard);
    result?;
    state.notifier.settled().await;
    Ok(())
}
