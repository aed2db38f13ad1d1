//! The erasure's last pass over a room: whatever of the user's content no redaction reached is
//! pruned locally to its redacted form (see `rooms::prune`). That covers messages in rooms where
//! no local member may redact, the member events about them (which carry their display names and
//! avatars; the redacted form keeps the membership, so the room's state and auth stay as they
//! were), and the state events they sent that are no longer current.

use std::collections::HashSet;

use ruma::{RoomId, UserId};

use super::redactions::{AUTHORED_STATE, is_bare_redaction};
use crate::error::Result;
use crate::rooms::prune::prune_events;
use crate::state::AppState;
use crate::storage::EventRow;

/// Events read per page; each page is pruned in one transaction.
const PAGE: i64 = 200;

/// State read by the auth rules in keys older room versions' redaction drops (`invite` in power
/// levels, `allow` in join rules, a third-party invite's keys): left whole even when superseded,
/// since later events were authorised against them. Their content is settings, not words.
const AUTH_SETTINGS: &[&str] =
    &["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.third_party_invite"];

/// Prunes the user's leftovers in one room; returns how many events were pruned. Pruning an
/// already pruned event changes nothing, so a resumed erasure simply runs this again.
pub(super) async fn prune_leftovers(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<usize> {
    let Some(room) = state.storage.room(room_id.as_str()).await? else { return Ok(0) };
    let current: HashSet<String> = match room.current_state_group {
        Some(group) => state.storage.state_at_group(group).await?.into_values().collect(),
        None => HashSet::new(),
    };
    let room = crate::rooms::state::room(state, room_id.as_str()).await?;
    let mut pruned = 0;
    let mut after = i64::MIN;
    loop {
        let page = state.storage.user_events_page(user_id.as_str(), room_id.as_str(), after, PAGE).await?;
        let Some(last) = page.last() else { return Ok(pruned) };
        after = last.stream_ordering;
        let leftovers: Vec<EventRow> = page.into_iter().filter(|event| is_prunable(event, &current)).collect();
        pruned += prune_events(state, &room, &leftovers).await?;
        tokio::task::yield_now().await;
    }
}

/// Messages (but bare redactions: before room v11 pruning drops their `redacts`) and member
/// events always; other state unless it is an auth setting, or current state other than a name,
/// topic or avatar (current settings stay: pruning them would change how the room works for
/// everyone).
fn is_prunable(event: &EventRow, current: &HashSet<String>) -> bool {
    let event_type = event.event_type.as_str();
    match event.state_key {
        None => !is_bare_redaction(event),
        Some(_) if event_type == "m.room.member" => true,
        Some(_) if AUTH_SETTINGS.contains(&event_type) => false,
        Some(_) => !current.contains(&event.event_id) || AUTHORED_STATE.contains(&event_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, state_key: Option<&str>) -> EventRow {
        EventRow {
            stream_ordering: 1,
            event_id: "$e".into(),
            room_id: "!r:example.org".into(),
            event_type: event_type.into(),
            state_key: state_key.map(Into::into),
            sender: "@alice:example.org".into(),
            depth: 1,
            origin_server_ts: 0,
            state_group_before: 0,
            state_group_after: 0,
            rejected_reason: None,
            json: serde_json::json!({}).into(),
        }
    }

    #[test]
    fn current_settings_and_auth_state_are_kept() {
        let current: HashSet<String> = ["$e".to_owned()].into();
        let none = HashSet::new();
        assert!(is_prunable(&event("m.room.message", None), &current));
        assert!(!is_prunable(&event("m.room.redaction", None), &current), "a bare redaction holds nothing");
        assert!(is_prunable(&event("m.room.member", Some("@alice:example.org")), &current));
        assert!(is_prunable(&event("m.room.topic", Some("")), &current));
        assert!(!is_prunable(&event("m.room.encryption", Some("")), &current));
        assert!(is_prunable(&event("m.room.encryption", Some("")), &none));
        assert!(!is_prunable(&event("m.room.power_levels", Some("")), &none));
        assert!(!is_prunable(&event("m.room.join_rules", Some("")), &none));
    }
}
