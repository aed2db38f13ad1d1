//! Reading events and room state over federation, for servers in the room.

use std::collections::HashSet;

use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{
    get_event, get_event_by_timestamp, get_missing_events, get_room_state, get_room_state_ids,
};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, UInt};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::federation_sender::federation_form;
use crate::rooms::federated_join::auth_chain;
use crate::rooms::server_visibility::filter_for_server;
use crate::state::AppState;
use crate::storage::EventRow;

/// A server may ask about a room while one of its users is joined; what it is then given of
/// the history follows the room's history visibility (`filter_for_server`).
async fn require_server_in_room(state: &AppState, server: &str, room_id: &str) -> Result<()> {
    if let Ok(room) = <&ruma::RoomId>::try_from(room_id) {
        crate::rooms::acl::check(state, room, server).await?;
    }
    let members = state.storage.room_memberships(room_id).await?;
    let in_room = members.iter().any(|m| m.membership == "join" && crate::rooms::head::server_of(&m.user_id) == server);
    if in_room { Ok(()) } else { Err(Error::forbidden("The server is not in the room")) }
}

async fn visible_event(state: &AppState, origin: &str, event_id: &str) -> Result<EventRow> {
    let row = state.storage.event(event_id).await?.ok_or_else(|| Error::not_found("Unknown event"))?;
    require_server_in_room(state, origin, &row.room_id).await?;
    Ok(row)
}

pub async fn event(state: AppState, request: Ruma<get_event::v1::Request>) -> Result<get_event::v1::Response> {
    let origin = request.origin()?;
    let row = visible_event(&state, origin.as_str(), request.body.event_id.as_str()).await?;
    let json = filter_for_server(&state, origin.as_str(), vec![row]).await?.remove(0);
    let pdu = federation_form(&json).ok_or_else(|| Error::internal("stored event is not JSON"))?;
    let now = UInt::try_from(state.now_ms().max(0)).unwrap_or_default();
    Ok(get_event::v1::Response::new(state.server_name.clone(), MilliSecondsSinceUnixEpoch(now), pdu))
}

/// The room state before an event of the room, as event IDs.
async fn state_before(state: &AppState, origin: &str, room_id: &ruma::RoomId, event_id: &str) -> Result<Vec<String>> {
    let row = visible_event(state, origin, event_id).await?;
    if row.room_id != room_id.as_str() {
        return Err(Error::not_found("The event is not in this room"));
    }
    Ok(state.storage.state_at_group(row.state_group_before).await?.into_values().collect())
}

fn federation_forms(rows: &[EventRow]) -> Vec<Box<serde_json::value::RawValue>> {
    rows.iter().filter_map(|row| federation_form(&row.json)).collect()
}

/// The state before an event, as full events with their auth chain.
pub async fn room_state(
    state: AppState,
    request: Ruma<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let state_ids = state_before(&state, origin.as_str(), &body.room_id, body.event_id.as_str()).await?;
    let pdus = state.storage.events_by_id(&state_ids).await?;
    let chain = auth_chain(&state, state_ids).await?;
    Ok(get_room_state::v1::Response::new(federation_forms(&chain), federation_forms(&pdus)))
}

/// An event's full auth chain.
pub async fn event_auth(
    state: AppState,
    request: Ruma<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let row = visible_event(&state, origin.as_str(), body.event_id.as_str()).await?;
    if row.room_id != body.room_id.as_str() {
        return Err(Error::not_found("The event is not in this room"));
    }
    let chain = auth_chain(&state, vec![row.event_id]).await?;
    Ok(get_event_authorization::v1::Response::new(federation_forms(&chain)))
}

/// The event closest to a time, for a server in the room.
pub async fn timestamp_to_event(
    state: AppState,
    request: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    require_server_in_room(&state, origin.as_str(), body.room_id.as_str()).await?;
    let forward = body.dir == ruma::api::Direction::Forward;
    let ts = i64::from(body.ts.0);
    let row = state.storage.event_near_timestamp(body.room_id.as_str(), ts, forward).await?;
    let row = row.ok_or_else(|| Error::not_found("No event found in that direction"))?;
    let event_id = OwnedEventId::try_from(row.event_id).map_err(|e| Error::internal(e.to_string()))?;
    let ts = UInt::try_from(row.origin_server_ts.max(0)).unwrap_or_default();
    Ok(get_event_by_timestamp::v1::Response::new(event_id, MilliSecondsSinceUnixEpoch(ts)))
}

pub async fn state_ids(
    state: AppState,
    request: Ruma<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let state_ids = state_before(&state, origin.as_str(), &body.room_id, body.event_id.as_str()).await?;
    let chain = auth_chain(&state, state_ids.clone()).await?;
    let parse = |id: &String| OwnedEventId::try_from(id.as_str()).ok();
    Ok(get_room_state_ids::v1::Response::new(
        chain.iter().filter_map(|row| parse(&row.event_id)).collect(),
        state_ids.iter().filter_map(parse).collect(),
    ))
}

/// Events between what the asking server has (`earliest_events`) and what it received
/// (`latest_events`), oldest first.
pub async fn missing_events(
    state: AppState,
    request: Ruma<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    require_server_in_room(&state, origin.as_str(), body.room_id.as_str()).await?;
    let stop: HashSet<String> = body.earliest_events.iter().map(ToString::to_string).collect();
    let start = body.latest_events.iter().map(ToString::to_string).collect();
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let min_depth = i64::try_from(u64::from(body.min_depth)).unwrap_or(i64::MAX);
    let mut rows =
        crate::rooms::dag_walk::preceding(&state, body.room_id.as_str(), start, false, &stop, limit, min_depth).await?;
    rows.reverse();
    let events = filter_for_server(&state, origin.as_str(), rows).await?;
    Ok(get_missing_events::v1::Response::new(events.iter().filter_map(federation_form).collect()))
}

/// History before the given events (included), newest first, for a server filling its timeline.
pub async fn backfill(state: AppState, request: Ruma<get_backfill::v1::Request>) -> Result<get_backfill::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    require_server_in_room(&state, origin.as_str(), body.room_id.as_str()).await?;
    let start = body.v.iter().map(ToString::to_string).collect();
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let rows = crate::rooms::dag_walk::preceding(&state, body.room_id.as_str(), start, true, &HashSet::new(), limit, 0)
        .await?;
    let now = UInt::try_from(state.now_ms().max(0)).unwrap_or_default();
    let events = filter_for_server(&state, origin.as_str(), rows).await?;
    Ok(get_backfill::v1::Response::new(
        state.server_name.clone(),
        MilliSecondsSinceUnixEpoch(now),
        events.iter().filter_map(federation_form).collect(),
    ))
}
