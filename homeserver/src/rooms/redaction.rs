//! Redactions: permission, the `m.room.redaction` event, and replacing the target with its
//! redacted form. The original content is not kept, unless the room's retention policy has a
//! `min_lifetime` the target has not reached: then it is held, unserved, until the retention
//! purge erases it (`retention::redaction_hold_until`).

use federation::pdu::{EventTemplate, rules_for};
use ruma::canonical_json::RedactedBecause;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::json;

use super::client_event::client_event;
use super::send::{ClientTxn, send_event};
use super::state::{power_levels, room, to_pdu};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::Hold;

pub async fn redact(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    target_id: &str,
    reason: Option<&str>,
    txn: Option<ClientTxn>,
) -> Result<OwnedEventId> {
    super::membership::require_joined(state, room_id, sender).await?;
    let target = state.storage.event(target_id).await?;
    let target = target.filter(|t| t.room_id == room_id.as_str() && t.rejected_reason.is_none());
    let target = target.ok_or_else(|| Error::not_found("Event not found"))?;
    let room = room(state, room_id.as_str()).await?;
    if target.sender != sender.as_str() {
        let levels = power_levels(state, &room).await?;
        if levels.user_level(sender.as_str()) < levels.redact() {
            return Err(Error::forbidden("You do not have permission to redact other users' events"));
        }
    }

    // Before sending, so a failure to read the policy leaves nothing half done.
    let hold_until = super::retention::redaction_hold_until(state, &room, &target).await?;

    let mut content = json!({});
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let target_event_id = OwnedEventId::try_from(target_id).map_err(|_| Error::invalid_param("Invalid event ID"))?;
    let template = EventTemplate {
        event_type: "m.room.redaction".into(),
        state_key: None,
        content,
        redacts: Some(target_event_id),
    };
    let sent = send_event(state, room_id, sender, template, txn).await?;
    let redaction =
        state.storage.event(sent.event_id.as_str()).await?.ok_or_else(|| Error::internal("redaction vanished"))?;
    replace_target(state, &room, &target, &redaction, hold_until).await?;
    Ok(sent.event_id)
}

/// A redaction received from another server takes effect here too, once accepted: its target
/// is replaced by its redacted form, as for local redactions. As the spec asks, only when the
/// redaction's sender may redact others' events, or is on the server of the target's sender.
/// A redaction of an event this server does not have (yet) changes nothing.
pub async fn apply_received(state: &AppState, redaction_id: &str) -> Result<()> {
    let Some(redaction) = state.storage.event(redaction_id).await? else { return Ok(()) };
    if redaction.rejected_reason.is_some() || redaction.event_type != "m.room.redaction" {
        return Ok(());
    }
    let redacts = redaction.json.get("redacts").or_else(|| redaction.json.pointer("/content/redacts"));
    let Some(target_id) = redacts.and_then(|r| r.as_str()) else { return Ok(()) };
    let Some(target) = state.storage.event(target_id).await? else { return Ok(()) };
    if target.room_id != redaction.room_id || target.rejected_reason.is_some() {
        return Ok(());
    }
    let room = room(state, &redaction.room_id).await?;
    let same_server = super::head::server_of(&target.sender) == super::head::server_of(&redaction.sender);
    if !same_server {
        let levels = power_levels(state, &room).await?;
        if levels.user_level(&redaction.sender) < levels.redact() {
            return Ok(());
        }
    }
    let hold_until = super::retention::redaction_hold_until(state, &room, &target).await?;
    replace_target(state, &room, &target, &redaction, hold_until).await
}

/// Replaces the target with its redacted form, carrying the redaction for clients (and holding
/// the original until `hold_until` when the retention policy says so).
async fn replace_target(
    state: &AppState,
    room: &super::state::Room,
    target: &crate::storage::EventRow,
    redaction: &crate::storage::EventRow,
    hold_until: Option<i64>,
) -> Result<()> {
    let mut because = client_event(redaction, redaction.origin_server_ts, true, None);
    if let Some(unsigned) = because.as_object_mut() {
        unsigned.remove("unsigned");
    }
    let because = federation::signing::to_canonical_object(because).map_err(|e| Error::internal(e.to_string()))?;
    let rules = rules_for(&room.version).map_err(|e| Error::internal(e.to_string()))?;
    let original = to_pdu(target)?;
    let redacted =
        ruma::canonical_json::redact(original.json, &rules.redaction, Some(RedactedBecause::from_json(because)))
            .map_err(|e| Error::internal(format!("redaction failed: {e}")))?;
    let redacted = serde_json::to_value(&redacted).map_err(|e| Error::internal(e.to_string()))?;
    let hold = hold_until.map(|release_ts| Hold { original: &target.json, release_ts });
    let target_id = target.event_id.as_str();
    state.storage.store_redacted_event(&target.room_id, target_id, &redacted, hold).await?;
    state.storage.delete_relation(target_id).await?;
    state.storage.delete_search_entry(target_id).await?;
    // A successor still being written would be missed, its `prev_content` kept.
    if let Ok(room_id) = ruma::OwnedRoomId::try_from(target.room_id.as_str()) {
        state.rooms.settle_writes(&room_id).await;
    }
    forget_in_successor(state, target, &redacted).await?;
    forget_in_redacted(state, target, &redacted).await?;
    // A cached head may hold the unredacted state event.
    if let Ok(room_id) = ruma::OwnedRoomId::try_from(target.room_id.as_str()) {
        state.rooms.forget_head(&room_id).await;
    }
    Ok(())
}

/// The state event that replaced a redacted one carries its old content in
/// `unsigned.prev_content`: redact that copy too.
async fn forget_in_successor(
    state: &AppState,
    target: &crate::storage::EventRow,
    redacted: &serde_json::Value,
) -> Result<()> {
    let Some(state_key) = &target.state_key else { return Ok(()) };
    let next =
        state.storage.next_state_event(&target.room_id, &target.event_type, state_key, target.stream_ordering).await?;
    let Some(mut next) = next else { return Ok(()) };
    if next.json["unsigned"]["replaces_state"] == target.event_id.as_str() {
        std::sync::Arc::make_mut(&mut next.json)["unsigned"]["prev_content"] = redacted["content"].clone();
        state.storage.replace_event_json(&next.event_id, &next.json).await?;
    }
    Ok(())
}

/// A redaction's target carries the redaction in `unsigned.redacted_because`: when the
/// redaction itself is redacted (its reason is gone), that copy loses its content too.
async fn forget_in_redacted(
    state: &AppState,
    target: &crate::storage::EventRow,
    redacted: &serde_json::Value,
) -> Result<()> {
    if target.event_type != "m.room.redaction" {
        return Ok(());
    }
    let redacts = target.json.get("redacts").or_else(|| target.json.pointer("/content/redacts"));
    let Some(redacts) = redacts.and_then(|r| r.as_str()) else { return Ok(()) };
    let Some(mut original) = state.storage.event(redacts).await? else { return Ok(()) };
    let because = std::sync::Arc::make_mut(&mut original.json).pointer_mut("/unsigned/redacted_because");
    let Some(because) = because.filter(|b| b["event_id"] == target.event_id.as_str()) else { return Ok(()) };
    because["content"] = redacted["content"].clone();
    state.storage.replace_event_json(&original.event_id, &original.json).await?;
    Ok(())
}
