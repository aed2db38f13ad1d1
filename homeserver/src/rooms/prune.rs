//! Pruning stored events to their redacted form without sending a redaction, for content that
//! has to go where no one may redact it (an erased user's events in rooms they left). The stored
//! form is what the room version's redaction algorithm leaves, so hashes and signatures still
//! verify and the auth rules read the same keys; other servers are not told.

use std::collections::{HashMap, HashSet};

use federation::pdu::rules_for;
use ruma::RoomId;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue, redact, redact_content_in_place};
use ruma::room_version_rules::RedactionRules;
use serde_json::Value;

use super::state::Room;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::EventRow;

/// `unsigned` fields a pruned event keeps besides a pruned `prev_content`: pointers to other
/// events, and the redaction that already pruned it (whose own content is pruned with it).
const KEPT_UNSIGNED: &[&str] = &["replaces_state", "prev_sender", "redacted_because"];

/// Prunes events of one room, with the copies of their content other events carry (a state
/// successor's `prev_content`, a redacted event's `redacted_because`), and drops their search and
/// relation rows. Events already in their pruned form are left alone, so pruning again is a no-op.
/// One transaction, under the room's send lock so no event is built from the unpruned state
/// meanwhile. Returns how many events were pruned.
pub async fn prune_events(state: &AppState, room: &Room, rows: &[EventRow]) -> Result<usize> {
    let rules = rules_for(&room.version).map_err(|e| Error::internal(e.to_string()))?.redaction;
    let mut updates = HashMap::new();
    for row in rows.iter().filter(|row| row.room_id == room.row.room_id) {
        if let Some(json) = pruned_form(row, &rules)? {
            updates.insert(row.event_id.clone(), json);
        }
    }
    if updates.is_empty() {
        return Ok(0);
    }
    let room_id = RoomId::parse(&room.row.room_id).map_err(|e| Error::internal(format!("stored room ID: {e}")))?;
    let slot = state.rooms.room_lock(&room_id);
    let mut head = slot.lock().await;
    // A state event still being written could carry a pruned event's content as `prev_content`.
    state.rooms.settle_writes(&room_id).await;
    let pruned: Vec<&EventRow> = rows.iter().filter(|row| updates.contains_key(&row.event_id)).collect();
    forget_in_successors(state, &room.row.room_id, &pruned, &mut updates).await?;
    forget_in_redacted(state, &pruned, &mut updates).await?;
    let pruned: Vec<String> = pruned.iter().map(|row| row.event_id.clone()).collect();
    let updates: Vec<(String, Value)> = updates.into_iter().collect();
    state.storage.replace_pruned_events(&updates, &pruned).await?;
    // The cached head may hold the unpruned state events.
    *head = None;
    Ok(pruned.len())
}

/// The event as the redaction algorithm leaves it, or `None` when it is already in that form.
/// Its `prev_content` is pruned by the same rules (it is content of the same type).
fn pruned_form(row: &EventRow, rules: &RedactionRules) -> Result<Option<Value>> {
    let mut object = canonical(&row.json)?;
    let unsigned = match object.remove("unsigned") {
        Some(CanonicalJsonValue::Object(unsigned)) => unsigned,
        _ => CanonicalJsonObject::new(),
    };
    let redacted =
        redact(object.clone(), rules, None).map_err(|e| Error::internal(format!("redaction failed: {e}")))?;
    let mut kept: CanonicalJsonObject = unsigned
        .iter()
        .filter(|(key, _)| KEPT_UNSIGNED.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(CanonicalJsonValue::Object(prev)) = unsigned.get("prev_content") {
        let mut prev = prev.clone();
        redact_content_in_place(&mut prev, rules, &row.event_type);
        kept.insert("prev_content".into(), CanonicalJsonValue::Object(prev));
    }
    // Anything else in `unsigned` goes, so only an event already pruned with nothing extra
    // counts as done.
    if redacted == object && kept == unsigned {
        return Ok(None);
    }
    let mut redacted = redacted;
    if !kept.is_empty() {
        redacted.insert("unsigned".into(), CanonicalJsonValue::Object(kept));
    }
    Ok(Some(serde_json::to_value(&redacted).map_err(|e| Error::internal(e.to_string()))?))
}

fn canonical(json: &Value) -> Result<CanonicalJsonObject> {
    federation::signing::to_canonical_object(json.clone()).map_err(|e| Error::internal(format!("stored event: {e}")))
}

/// The state event that replaced a pruned one carries its old content in `prev_content`.
async fn forget_in_successors(
    state: &AppState,
    room_id: &str,
    pruned: &[&EventRow],
    updates: &mut HashMap<String, Value>,
) -> Result<()> {
    let keys: HashSet<(&str, &str)> =
        pruned.iter().filter_map(|row| Some((row.event_type.as_str(), row.state_key.as_deref()?))).collect();
    let pruned: HashSet<&str> = pruned.iter().map(|row| row.event_id.as_str()).collect();
    for (event_type, state_key) in keys {
        for next in state.storage.state_events_for_key(room_id, event_type, state_key).await? {
            let Some(replaced) = next.json["unsigned"]["replaces_state"].as_str() else { continue };
            if !pruned.contains(replaced) || pruned.contains(next.event_id.as_str()) {
                // Not a successor of a pruned event, or pruned itself (with its `prev_content`).
                continue;
            }
            if next.json["unsigned"].get("prev_content").is_none() {
                continue;
            }
            let content = updates[replaced]["content"].clone();
            let mut json = std::sync::Arc::unwrap_or_clone(next.json);
            json["unsigned"]["prev_content"] = content;
            updates.insert(next.event_id, json);
        }
    }
    Ok(())
}

/// A redacted event carries its redaction in `unsigned.redacted_because`: when that redaction
/// is pruned (its reason goes), the copy loses its content too.
async fn forget_in_redacted(
    state: &AppState,
    pruned: &[&EventRow],
    updates: &mut HashMap<String, Value>,
) -> Result<()> {
    let redactions: HashMap<String, &str> = pruned
        .iter()
        .filter(|row| row.event_type == "m.room.redaction")
        .filter_map(|row| {
            let redacts = row.json.get("redacts").or_else(|| row.json.pointer("/content/redacts"))?;
            Some((redacts.as_str()?.to_owned(), row.event_id.as_str()))
        })
        .collect();
    let targets: Vec<String> = redactions.keys().cloned().collect();
    for target in state.storage.events_by_id(&targets).await? {
        let Some(redaction_id) = redactions.get(&target.event_id) else { continue };
        let mut json =
            updates.get(&target.event_id).cloned().unwrap_or_else(|| std::sync::Arc::unwrap_or_clone(target.json));
        let Some(because) = json.pointer_mut("/unsigned/redacted_because") else { continue };
        if because["event_id"] != *redaction_id {
            continue;
        }
        because["content"] = updates[*redaction_id]["content"].clone();
        updates.insert(target.event_id, json);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn member_event(unsigned: Value) -> EventRow {
        EventRow {
            stream_ordering: 2,
            event_id: "$join".into(),
            room_id: "!r:example.org".into(),
            event_type: "m.room.member".into(),
            state_key: Some("@alice:example.org".into()),
            sender: "@alice:example.org".into(),
            depth: 2,
            origin_server_ts: 1,
            state_group_before: 1,
            state_group_after: 2,
            rejected_reason: None,
            json: json!({
                "type": "m.room.member", "state_key": "@alice:example.org", "sender": "@alice:example.org",
                "room_id": "!r:example.org", "origin_server_ts": 1, "depth": 2, "prev_events": [], "auth_events": [],
                "hashes": {"sha256": "x"}, "signatures": {},
                "content": {"membership": "join", "displayname": "Alice", "avatar_url": "mxc://example.org/a"},
                "unsigned": unsigned,
            })
            .into(),
        }
    }

    #[test]
    fn pruning_keeps_the_membership_and_pointers_and_is_done_once() {
        let rules = RedactionRules::V9;
        let unsigned = json!({
            "replaces_state": "$invite", "prev_sender": "@bob:example.org", "age_ts": 5,
            "prev_content": {"membership": "invite", "displayname": "Alice"},
        });
        let mut row = member_event(unsigned);
        let pruned = pruned_form(&row, &rules).unwrap().expect("something to prune");
        assert_eq!(pruned["content"], json!({"membership": "join"}));
        assert_eq!(pruned["hashes"], json!({"sha256": "x"}));
        assert_eq!(
            pruned["unsigned"],
            json!({"replaces_state": "$invite", "prev_sender": "@bob:example.org", "prev_content": {"membership": "invite"}})
        );
        row.json = pruned.into();
        assert_eq!(pruned_form(&row, &rules).unwrap(), None, "pruning again changes nothing");
    }
}
