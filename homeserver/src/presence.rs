//! Presence: online / unavailable / offline with a status message, shared with users who share a
//! joined room, delivered by `/sync` from its own stream.
//!
//! Activity ("last active") is tracked in memory and written only with state changes, so busy
//! users do not cost a database write per request. The stored state is cached per user, so a
//! sync that changes nothing reads nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::PresenceRow;

/// A user counts as "currently active" for this long after their last action.
const ACTIVE_WINDOW_MS: i64 = 60_000;
/// Longest accepted status message, in bytes.
const MAX_STATUS_MSG_BYTES: usize = 1024;

#[derive(Debug, Default)]
struct Tracked {
    /// Newest activity seen by this process.
    last_active: i64,
    /// The stored state, once read or written.
    stored_state: Option<String>,
    /// Whether `/sync`'s `set_presence` (rather than an explicit `PUT`) set the stored state.
    set_by_sync: bool,
}

/// In-memory activity and the cached stored state, per user.
#[derive(Debug, Default)]
pub struct PresenceTracker {
    users: Mutex<HashMap<OwnedUserId, Tracked>>,
}

impl PresenceTracker {
    fn with<T>(&self, user_id: &UserId, f: impl FnOnce(&mut Tracked) -> T) -> T {
        let mut users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(users.entry(user_id.to_owned()).or_default())
    }

    /// Records activity: memory only.
    pub fn touch(&self, user_id: &UserId, now: i64) {
        self.with(user_id, |t| t.last_active = t.last_active.max(now));
    }

    fn last_active(&self, user_id: &UserId) -> i64 {
        let users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        users.get(user_id).map_or(0, |t| t.last_active)
    }
}

/// The three states the spec defines; anything else is refused.
fn state_name(presence: &PresenceState) -> Result<&'static str> {
    match presence {
        PresenceState::Online => Ok("online"),
        PresenceState::Offline => Ok("offline"),
        PresenceState::Unavailable => Ok("unavailable"),
        other => Err(Error::invalid_param(format!("Unknown presence state `{}`", other.as_str()))),
    }
}

/// What a client sees of someone's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceView {
    pub presence: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<u64>,
    pub currently_active: Option<bool>,
}

impl PresenceView {
    fn offline() -> Self {
        Self { presence: PresenceState::Offline, status_msg: None, last_active_ago: None, currently_active: None }
    }
}

fn view(state: &AppState, row: &PresenceRow) -> PresenceView {
    let now = state.now_ms();
    let last_active = OwnedUserId::try_from(row.user_id.as_str())
        .map_or(0, |user| state.presence.last_active(&user))
        .max(row.last_active_ts);
    let ago = (last_active > 0).then(|| u64::try_from(now - last_active).unwrap_or(0));
    let presence = PresenceState::from(row.state.as_str());
    let currently_active = (presence == PresenceState::Online).then(|| now - last_active < ACTIVE_WINDOW_MS);
    PresenceView { presence, status_msg: row.status_msg.clone(), last_active_ago: ago, currently_active }
}

/// `PUT /presence/{userId}/status`: only for oneself; ignored when presence is disabled.
pub async fn set(
    state: &AppState,
    caller: &UserId,
    target: &UserId,
    presence: &PresenceState,
    status_msg: Option<&str>,
) -> Result<()> {
    if caller != target {
        return Err(Error::forbidden("You can only set your own presence"));
    }
    let name = state_name(presence)?;
    if status_msg.is_some_and(|m| m.len() > MAX_STATUS_MSG_BYTES) {
        return Err(Error::invalid_param(format!("status_msg is longer than {MAX_STATUS_MSG_BYTES} bytes")));
    }
    if !state.config.presence.enabled {
        return Ok(());
    }
    let now = state.now_ms();
    state.presence.touch(caller, now);
    let current = state.storage.presence(caller.as_str()).await?;
    let unchanged = current.as_ref().is_some_and(|c| c.state == name && c.status_msg.as_deref() == status_msg);
    if !unchanged {
        store(state, caller, name, status_msg, now, false).await?;
    }
    Ok(())
}

async fn store(
    state: &AppState,
    user_id: &UserId,
    name: &str,
    status_msg: Option<&str>,
    now: i64,
    by_sync: bool,
) -> Result<()> {
    state.storage.set_presence(user_id.as_str(), name, status_msg, now).await?;
    state.presence.with(user_id, |t| {
        t.stored_state = Some(name.to_owned());
        t.set_by_sync = by_sync;
    });
    state.rooms.notify_change();
    Ok(())
}

/// `set_presence` on `/sync`: `online` brings an offline user online (or back from an
/// `unavailable` that a sync set; one set explicitly stays), `unavailable` marks them away,
/// `offline` leaves presence alone (and is not activity).
pub async fn on_sync(state: &AppState, user_id: &UserId, set_presence: &PresenceState) -> Result<()> {
    let wanted = state_name(set_presence)?;
    if !state.config.presence.enabled || wanted == "offline" {
        return Ok(());
    }
    let now = state.now_ms();
    state.presence.touch(user_id, now);
    let (cached, set_by_sync) = state.presence.with(user_id, |t| (t.stored_state.clone(), t.set_by_sync));
    let current = match cached {
        Some(current) => Some(current),
        None => {
            let current = state.storage.presence(user_id.as_str()).await?.map(|r| r.state);
            state.presence.with(user_id, |t| t.stored_state.clone_from(&current));
            current
        }
    };
    let change = match (wanted, current.as_deref()) {
        ("online", None | Some("offline")) => true,
        ("online", Some("unavailable")) => set_by_sync,
        ("unavailable", current) => current != Some("unavailable"),
        _ => false,
    };
    if change {
        // The status message stays across the change.
        let status_msg = state.storage.presence(user_id.as_str()).await?.and_then(|r| r.status_msg);
        store(state, user_id, wanted, status_msg.as_deref(), now, true).await?;
    }
    Ok(())
}

/// `GET /presence/{userId}/status`: for oneself and users sharing a joined room.
pub async fn get(state: &AppState, caller: &UserId, target: &UserId) -> Result<PresenceView> {
    if caller != target && !state.storage.share_a_room(caller.as_str(), target.as_str()).await? {
        return Err(Error::forbidden("You do not share a room with this user"));
    }
    if !state.config.presence.enabled {
        return Ok(PresenceView::offline());
    }
    let row = state.storage.presence(target.as_str()).await?;
    Ok(row.as_ref().map_or_else(PresenceView::offline, |row| view(state, row)))
}

/// `m.presence` events for `/sync`: changes in `(after, up_to]` of the user and their room-mates.
pub async fn for_sync(state: &AppState, user_id: &UserId, after: i64, up_to: i64) -> Result<Vec<Value>> {
    if !state.config.presence.enabled {
        return Ok(Vec::new());
    }
    let rows = state.storage.presence_changes_for(user_id.as_str(), after, up_to).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let view = view(state, row);
            let mut content = json!({"presence": view.presence.as_str()});
            if let Some(ago) = view.last_active_ago {
                content["last_active_ago"] = json!(ago);
            }
            if let Some(active) = view.currently_active {
                content["currently_active"] = json!(active);
            }
            if let Some(msg) = view.status_msg {
                content["status_msg"] = json!(msg);
            }
            json!({"type": "m.presence", "sender": row.user_id, "content": content})
        })
        .collect())
}
