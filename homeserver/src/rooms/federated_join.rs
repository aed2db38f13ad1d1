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

use super::federated_membership::{accept_membership, sign_membership_template, through_first_server};
use super::incoming::verify_for_version;
use super::send::{Relay, accept_pdu};
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

pub(crate) fn incompatible(version: &RoomVersionId) -> Error {
    let kind = ruma::api::error::ErrorKind::IncompatibleRoomVersion(
        ruma::api::error::IncompatibleRoomVersionErrorData::new(version.clone()),
    );
    Error::matrix(http::StatusCode::BAD_REQUEST, kind, format!("The room is of version {version}"))
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
    let row = accept_membership(state, origin, room_id, event_id, event, "join").await?;
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
    through_first_server(state, &candidates, "join the room", |server| {
        let content = content.clone();
        async move { join_via(state, &server, room_id, user_id, content).await }
    })
    .await
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
    let join = sign_membership_template(state, &version, room_id, user_id, made.event.get(), content, "join")?;

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
    *guard = None;
    let head = state.rooms.settled_head(state, room_id, &mut guard).await?;
    let result = accept_pdu(state, head, join, None, Relay::Nobody).await;
    if result.is_err() {
        *guard = None;
    }
    drop(guard);
    result?;
    Ok(())
}
