//! History from before this server joined a room: fetched with `/backfill` from a server in
//! the room when a client pages back past the start of what we have, checked (signatures,
//! hashes, auth rules against each event's auth events) and stored before our timeline.

use std::collections::HashMap;

use federation::Pdu;
use federation::pdu::rules_for;
use ruma::api::federation::backfill::get_backfill;
use ruma::events::StateEventType;
use ruma::{CanonicalJsonObject, OwnedEventId, OwnedServerName, RoomId, UInt};

use super::incoming::verify_received;
use super::state::to_pdu;
use crate::error::Result;
use crate::state::AppState;

/// Events asked for per `/backfill`.
const BATCH: u32 = 50;

/// Fetches events older than the room's oldest known one; returns how many were added.
pub async fn fetch_older(state: &AppState, room_id: &RoomId) -> Result<usize> {
    if !state.config.federation.enabled {
        return Ok(0);
    }
    let Some((oldest, event_type, state_group)) = state.storage.oldest_timeline_event(room_id.as_str()).await? else {
        return Ok(0);
    };
    if event_type == "m.room.create" {
        return Ok(0);
    }
    let Ok(oldest) = OwnedEventId::try_from(oldest) else { return Ok(0) };
    // In a turning order: no one server (the first by name, say) gets to write all our history.
    let mut servers = super::edus::remote_servers_in_room(state, room_id).await?;
    let start = usize::try_from(state.now_ms().unsigned_abs() % 1_000_003).unwrap_or(0) % servers.len().max(1);
    servers.rotate_left(start);
    for server in servers {
        let Ok(server) = OwnedServerName::try_from(server) else { continue };
        let request = get_backfill::v1::Request::new(room_id.to_owned(), vec![oldest.clone()], UInt::from(BATCH));
        match state.federation.send(&server, &state.signing_key, request).await {
            Ok(answer) => return store(state, room_id, &answer.pdus, state_group).await,
            Err(e) => tracing::info!(%server, %room_id, error = %e, "backfill failed; trying another server"),
        }
    }
    Ok(0)
}

async fn store(
    state: &AppState,
    room_id: &RoomId,
    pdus: &[Box<serde_json::value::RawValue>],
    state_group: i64,
) -> Result<usize> {
    let room = super::state::room(state, room_id.as_str()).await?;
    let rules = rules_for(&room.version).map_err(super::send::unsupported_version)?;
    let mut received: Vec<Pdu> = Vec::new();
    for raw in pdus {
        let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else { continue };
        match verify_received(state, room_id, object).await {
            Ok(pdu) if pdu.room_id == room_id => received.push(pdu),
            Ok(_) => {}
            Err(e) => tracing::info!(%room_id, error = %e, "dropped a backfilled event that failed its checks"),
        }
    }
    // Auth events come from the batch itself or from what we stored at join.
    let mut known: HashMap<OwnedEventId, Pdu> = HashMap::new();
    let wanted: Vec<String> = received.iter().flat_map(|p| p.auth_events.iter().map(ToString::to_string)).collect();
    for row in state.storage.events_by_id(&wanted).await? {
        let pdu = to_pdu(&row)?;
        known.insert(pdu.event_id.clone(), pdu);
    }
    received.sort_by_key(|pdu| pdu.depth);
    let mut accepted = Vec::new();
    for pdu in received {
        let auth_state: federation::auth::StateEvents<'_> = pdu
            .auth_events
            .iter()
            .filter_map(|id| known.get(id))
            .filter_map(|auth| {
                Some(((StateEventType::from(auth.event_type.to_string()), auth.state_key.clone()?), auth))
            })
            .collect();
        match federation::auth::authorize(&rules.authorization, &pdu, &known, &auth_state) {
            Ok(()) => {
                known.insert(pdu.event_id.clone(), pdu.clone());
                accepted.push(pdu);
            }
            Err(reason) => tracing::info!(event_id = %pdu.event_id, reason, "dropped an unauthorized backfilled event"),
        }
    }
    // Newest first, so each takes the next lower position.
    accepted.reverse();
    let events: Vec<_> = accepted
        .iter()
        .map(|pdu| super::send::new_event(pdu, &pdu.sender, state_group, None))
        .collect::<Result<_>>()?;
    Ok(state.storage.persist_backfilled(&events).await?)
}
