//! Room upgrades: a new room that continues the old one, and a tombstone in the old room.

use ruma::{OwnedRoomId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

use super::create::{CreateRoom, Preset, create_room};
use super::send::{send_event, state_template};
use super::state::{room, state_events};
use crate::error::{Error, Result};
use crate::state::AppState;

/// State carried over to the new room.
const COPIED_STATE: &[&str] = &[
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
    "m.room.server_acl",
    // The room's retention policy (MSC1763) goes on in its successor.
    "m.room.retention",
    "m.room.power_levels",
];

pub async fn upgrade(
    state: &AppState,
    old_room_id: &RoomId,
    user_id: &UserId,
    new_version: RoomVersionId,
) -> Result<OwnedRoomId> {
    super::membership::require_joined(state, old_room_id, user_id).await?;
    let old = room(state, old_room_id.as_str()).await?;
    let current = state_events(state, old.current_state_group()?).await?;
    let content = |event_type: &str| {
        current
            .iter()
            .find(|r| r.event_type == event_type && r.state_key.as_deref() == Some(""))
            .map(|r| r.json["content"].clone())
    };

    let power_levels = content("m.room.power_levels");
    let levels = super::state::power_levels(state, &old).await?;
    if levels.user_level(user_id.as_str()) < levels.state_event("m.room.tombstone") {
        return Err(Error::forbidden("You do not have permission to upgrade this room"));
    }

    // The new room starts with the upgrader able to restore everything, then takes the old
    // room's power levels at the end of the initial state.
    let last_event = state.storage.room_event_at_or_before(old_room_id.as_str(), i64::MAX).await?;
    let last_event = last_event.ok_or_else(|| Error::internal("room has no events"))?;
    let initial_state: Vec<(String, String, Value)> = COPIED_STATE
        .iter()
        .filter(|t| **t != "m.room.power_levels")
        .filter_map(|t| content(t).map(|c| ((*t).to_owned(), String::new(), c)))
        .collect();
    let mut power_override = power_levels.clone().unwrap_or_else(|| json!({}));
    // Creators are privileged since v12 and may not be listed in `users`; before, the upgrader
    // needs a level of their own to restore the state.
    let new_rules = new_version.rules();
    if new_rules.is_some_and(|r| r.authorization.explicitly_privilege_room_creators) {
        for creator in [old.row.creator.as_str(), user_id.as_str()] {
            if let Some(users) = power_override["users"].as_object_mut() {
                users.remove(creator);
            }
        }
    } else {
        power_override["users"][user_id.as_str()] = json!(100);
    }
    let request = CreateRoom {
        preset: Some(Preset::PrivateChat),
        is_public: old.row.is_public,
        // A direct chat stays one (its retention defaults); no one is invited here.
        is_direct: old.row.is_direct,
        room_version: Some(new_version),
        creation_content: Some(json!({"predecessor": {"room_id": old_room_id, "event_id": last_event.event_id}})),
        initial_state,
        power_level_content_override: Some(power_override),
        ..CreateRoom::default()
    };
    let new_room_id = create_room(state, user_id, request).await?;

    // Aliases move to the new room.
    if let Some(alias) = content("m.room.canonical_alias") {
        for alias_id in state.storage.room_aliases(old_room_id.as_str()).await? {
            state.storage.delete_alias(&alias_id).await?;
            state.storage.create_alias(&alias_id, new_room_id.as_str(), user_id.as_str(), state.now_ms()).await?;
        }
        send_event(state, &new_room_id, user_id, state_template("m.room.canonical_alias", "", alias), None).await?;
    }
    let tombstone = json!({"body": "This room has been replaced", "replacement_room": new_room_id});
    send_event(state, old_room_id, user_id, state_template("m.room.tombstone", "", tombstone), None).await?;
    // Discourage further use of the old room: only moderators may speak or invite.
    if let Some(mut old_levels) = power_levels {
        let restricted = old_levels["users_default"].as_i64().unwrap_or(0).max(50);
        old_levels["events_default"] = json!(restricted);
        old_levels["invite"] = json!(restricted);
        send_event(state, old_room_id, user_id, state_template("m.room.power_levels", "", old_levels), None).await?;
    }
    state.storage.set_room_public(old_room_id.as_str(), false).await?;
    Ok(new_room_id)
}
