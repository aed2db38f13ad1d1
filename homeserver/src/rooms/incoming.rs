//! Events received from other servers: checked (format, signatures, content hash), placed in
//! the DAG, authorized against the state before them and the room's current state, and
//! persisted through the same step as local events ([`super::send::accept_pdu`]).

use federation::Pdu;
use federation::incoming::{check_received_pdu, required_signers};
use federation::pdu::rules_for;
use ruma::{CanonicalJsonObject, OwnedEventId, RoomId};

use super::head::RoomHead;
use super::send::{Relay, accept_pdu};
use crate::error::{Error, Result};
use crate::state::AppState;

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
    let head = match &mut *guard {
        Some(head) => head,
        empty => empty.insert(RoomHead::load(state, &room_id).await?),
    };
    check_prev_events(state, head, &pdu).await?;
    let event_id = pdu.event_id.clone();
    let result = accept_pdu(state, head, pdu, None, relay).await;
    if result.is_err() {
        // Nothing was written; reload the head next time rather than trust a half-updated one.
        *guard = None;
    }
    drop(guard);
    result?;
    state.notifier.settled().await;
    Ok(event_id)
}

/// The event must extend the DAG we have: every `prev_event` known, and the state after them
/// the room's current state (forks whose state differs need state resolution, not done yet).
async fn check_prev_events(state: &AppState, head: &RoomHead, pdu: &Pdu) -> Result<()> {
    let ids: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
    let rows = state.storage.events_by_id(&ids).await?;
    if rows.len() < ids.len() {
        return Err(Error::not_found("Some prev_events are unknown to this server"));
    }
    let same_state = rows.iter().all(|row| row.state_group_after == head.state_group);
    if !same_state {
        return Err(Error::forbidden(
            "The event forks the room's state; state resolution of forks is not supported yet",
        ));
    }
    Ok(())
}
