//! Events received from other servers: checked (format, signatures, content hash), placed in
//! the DAG, authorized against the state before them and the room's current state, and
//! persisted through the same step as local events ([`super::send::accept_pdu`]).

use federation::Pdu;
use federation::incoming::{check_received_pdu, required_signers};
use federation::pdu::rules_for;
use ruma::{CanonicalJsonObject, OwnedEventId, RoomId};

use super::send::{Relay, accept_pdu};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::EventRow;

/// Checks a received event's format, signatures and hash for `room_id`'s version. An event
/// whose content hash does not match comes back redacted.
pub async fn verify_received(state: &AppState, room_id: &RoomId, object: CanonicalJsonObject) -> Result<Pdu> {
    let room = super::state::room(state, room_id.as_str()).await?;
    verify_for_version(state, &room.version, object).await
}

pub async fn verify_for_version(
    state: &AppState,
    version: &ruma::RoomVersionId,
    object: CanonicalJsonObject,
) -> Result<Pdu> {
    let rules = rules_for(version).map_err(|e| Error::bad_json(e.to_string()))?;
    let signers = required_signers(&object, &rules).map_err(|e| Error::bad_json(e.to_string()))?;
    let signed_at = match object.get("origin_server_ts") {
        Some(ruma::CanonicalJsonValue::Integer(ts)) => i64::from(*ts),
        _ => return Err(Error::bad_json("origin_server_ts is missing")),
    };
    let keys = state.keyring.key_map(state, &signers, signed_at).await?;
    let checked = check_received_pdu(object, &rules, &keys).map_err(|e| Error::forbidden(e.to_string()))?;
    if checked.redacted {
        tracing::info!(event_id = %checked.pdu.event_id, "received an event whose content hash did not match; kept redacted");
    }
    Ok(checked.pdu)
}

/// Accepts a verified event into its room, under the room's lock. Returns `Ok` for an event
/// that was already known.
pub async fn accept_received(state: &AppState, pdu: Pdu, relay: Relay<'_>) -> Result<OwnedEventId> {
    let room_id = pdu.room_id.clone();
    let slot = state.rooms.room_lock(&room_id);
    let mut guard = slot.lock().await;
    if state.storage.event(pdu.event_id.as_str()).await?.is_some() {
        return Ok(pdu.event_id);
    }
    let head = state.rooms.settled_head(state, &room_id, &mut guard).await?;
    let prev_rows = known_prev_events(state, &pdu).await?;
    let event_id = pdu.event_id.clone();
    let is_redaction = pdu.event_type.to_string() == "m.room.redaction";
    let extends_current = prev_rows.iter().all(|row| row.state_group_after == head.state_group);
    let result = if extends_current {
        accept_pdu(state, head, pdu, None, relay).await.map(|_| ())
    } else {
        // A fork: the head's view of the room changes in ways only the database has.
        let result = super::forks::accept_forked(state, head, pdu, &prev_rows, relay).await;
        *guard = None;
        result
    };
    if result.is_err() {
        // Nothing was written; reload the head next time rather than trust a half-updated one.
        *guard = None;
    }
    drop(guard);
    result?;
    if is_redaction && let Err(e) = super::redaction::apply_received(state, event_id.as_str()).await {
        // The redaction is stored either way; its target keeps its content until it is redacted.
        tracing::warn!(%event_id, error = %e, "applying a received redaction failed");
    }
    Ok(event_id)
}

/// The event's prev events, which must all be known. Only a room's create event has none, and
/// a room we hold already has one: an event citing nothing (a second create event among them)
/// would otherwise pass as extending the current state.
async fn known_prev_events(state: &AppState, pdu: &Pdu) -> Result<Vec<EventRow>> {
    if pdu.prev_events.is_empty() {
        return Err(Error::forbidden("Only a room's create event has no prev_events"));
    }
    let ids: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
    let rows = state.storage.events_by_id(&ids).await?;
    if rows.len() < ids.len() {
        return Err(Error::not_found("Some prev_events are unknown to this server"));
    }
    Ok(rows)
}

/// Fetches, from `origin`, prev events of `pdu` this server does not have (one
/// `/get_missing_events` round of at most 20 events, oldest first) and accepts them, so `pdu`
/// can follow. Events that cannot be placed are left out; `pdu` then fails on its own.
pub async fn fill_gap(state: &AppState, origin: &ruma::ServerName, pdu: &Pdu) -> Result<()> {
    let ids: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
    if state.storage.events_by_id(&ids).await?.len() == ids.len() {
        return Ok(());
    }
    let earliest: Vec<OwnedEventId> = state
        .storage
        .forward_extremities(pdu.room_id.as_str())
        .await?
        .into_iter()
        .filter_map(|(id, _)| OwnedEventId::try_from(id).ok())
        .collect();
    let mut request = ruma::api::federation::event::get_missing_events::v1::Request::new(
        pdu.room_id.clone(),
        earliest,
        vec![pdu.event_id.clone()],
    );
    request.limit = ruma::UInt::from(20u32);
    let answer = state.federation.send(origin, &state.signing_key, request).await.map_err(Error::remote)?;
    let mut received = Vec::new();
    for raw in &answer.events {
        let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else { continue };
        match verify_received(state, &pdu.room_id, object).await {
            Ok(missing) if missing.room_id == pdu.room_id => received.push(missing),
            Ok(_) => {}
            Err(e) => tracing::info!(%origin, error = %e, "dropped a missing event that failed its checks"),
        }
    }
    received.sort_by_key(|missing| missing.depth);
    for missing in received {
        let event_id = missing.event_id.clone();
        if let Err(e) = accept_received(state, missing, Relay::Nobody).await {
            tracing::info!(%origin, %event_id, error = %e, "could not place a missing event");
        }
    }
    Ok(())
}
