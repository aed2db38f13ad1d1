//! Whose device lists a user must re-fetch (`changed`) or may forget (`left`) between two
//! positions: for `device_lists` in /sync and for `/keys/changes`.
//!
//! A user is `changed` when their devices or keys changed while sharing a room with us, or when
//! they start sharing a room with us (they or we joined); `left` when we no longer share any room.

use std::collections::BTreeSet;

use ruma::OwnedUserId;

use crate::error::Result;
use crate::state::AppState;

/// Two positions of the event stream and of the device-list stream.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub events_after: i64,
    pub events_up_to: i64,
    pub lists_after: i64,
    pub lists_up_to: i64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceListChanges {
    pub changed: BTreeSet<String>,
    pub left: BTreeSet<String>,
}

pub async fn changes(state: &AppState, user_id: &str, window: Window) -> Result<DeviceListChanges> {
    let storage = &state.storage;
    // Devices that changed, and membership changes in rooms we are in or were in until this
    // window: independent reads, concurrent.
    let (device_changes, membership_changes) = tokio::try_join!(
        storage.device_list_changes(window.lists_after, window.lists_up_to),
        storage.membership_changes_around(user_id, window.events_after, window.events_up_to),
    )?;
    let mut candidates_changed: BTreeSet<String> = device_changes.into_iter().collect();
    let mut candidates_left = BTreeSet::new();
    for change in membership_changes {
        let joined = change.membership == "join";
        if change.user_id == user_id {
            // We joined or left: everyone in the room may be new to us, or gone.
            for member in storage.room_memberships(&change.room_id).await? {
                if member.membership == "join" && member.user_id != user_id {
                    if joined { &mut candidates_changed } else { &mut candidates_left }.insert(member.user_id);
                }
            }
        } else if joined {
            candidates_changed.insert(change.user_id);
        } else {
            candidates_left.insert(change.user_id);
        }
    }

    let all: Vec<String> = candidates_changed.union(&candidates_left).cloned().collect();
    let sharing = storage.users_sharing_a_room(user_id, &all).await?;
    let mut result = DeviceListChanges::default();
    for candidate in candidates_changed {
        if candidate == user_id || sharing.contains(&candidate) {
            result.changed.insert(candidate);
        }
    }
    for candidate in candidates_left {
        if candidate != user_id && !sharing.contains(&candidate) {
            result.left.insert(candidate);
        }
    }
    Ok(result)
}

/// Stored user IDs as typed IDs (stored IDs are always valid).
pub fn user_ids(users: BTreeSet<String>) -> Vec<OwnedUserId> {
    users.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect()
}
