//! Presence: online / unavailable / offline with a status message, shared with users who share a
//! joined room, delivered by `/sync` from its own stream.
//!
//! Activity ("last active") and syncing are tracked in memory; the database is written only when
//! the state changes, so busy users do not cost a write per request. The stored state is cached
//! per user, so a sync that changes nothing reads nothing. As in Synapse, a sweeper marks users
//! who stopped syncing offline and idle users unavailable.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::PresenceRow;

/// A user counts as "currently active" for this long after their last action.
const ACTIVE_WINDOW_MS: i64 = 60_000;
/// Online or away users who neither sync nor act for this long go offline.
const OFFLINE_AFTER_MS: i64 = 30_000;
/// Online users who do nothing for this long become unavailable.
const IDLE_AFTER_MS: i64 = 5 * 60_000;
/// How often the sweeper looks for timed-out users.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Longest accepted status message, in bytes.
const MAX_STATUS_MSG_BYTES: usize = 1024;

/// Who set the stored state, which decides what may override it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Source {
    /// `PUT /presence` (or unknown, after a restart): only another `PUT` or a timeout changes it.
    #[default]
    Explicit,
    /// `/sync`'s `set_presence`.
    Sync,
    /// The sweeper (idle or stopped syncing): activity or syncing online brings the user back.
    Timeout,
}

#[derive(Debug, Default)]
struct Tracked {
    /// Newest action seen by this process (sending, setting presence).
    last_active: i64,
    /// When a sync by the user last started or ended.
    last_sync: i64,
    /// Syncs in progress (long-polls keep a user online).
    syncing: u32,
    /// The stored state and who set it, once read or written.
    stored_state: Option<String>,
    source: Source,
}

/// In-memory activity, syncing and the cached stored state, per user.
#[derive(Debug, Default)]
pub struct PresenceTracker {
    users: Mutex<HashMap<OwnedUserId, Tracked>>,
}

impl PresenceTracker {
    fn with<T>(&self, user_id: &UserId, f: impl FnOnce(&mut Tracked) -> T) -> T {
        let mut users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(users.entry(user_id.to_owned()).or_default())
    }

    fn last_active(&self, user_id: &UserId) -> i64 {
        let users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        users.get(user_id).map_or(0, |t| t.last_active)
    }

    /// Users whose state should change now: `(user, new state)`.
    fn timed_out(&self, now: i64) -> Vec<(OwnedUserId, &'static str)> {
        let users = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        users
            .iter()
            .filter_map(|(user, t)| {
                let state = t.stored_state.as_deref()?;
                if state != "offline" && t.syncing == 0 && now - t.last_sync.max(t.last_active) > OFFLINE_AFTER_MS {
                    Some((user.clone(), "offline"))
                } else if state == "online" && now - t.last_active > IDLE_AFTER_MS {
                    Some((user.clone(), "unavailable"))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Held while a sync that keeps its user online runs.
pub struct Syncing {
    state: AppState,
    user_id: OwnedUserId,
}

impl Drop for Syncing {
    fn drop(&mut self) {
        let now = self.state.now_ms();
        self.state.presence.with(&self.user_id, |t| {
            t.syncing = t.syncing.saturating_sub(1);
            t.last_sync = t.last_sync.max(now);
        });
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

/// Writes a state change, remembers it, and wakes waiting syncs. The stored `last_active_ts`
/// is the newest activity known.
async fn store(state: &AppState, user_id: &UserId, name: &str, status_msg: Option<&str>, source: Source) -> Result<()> {
    let last_active = state.presence.last_active(user_id);
    state.storage.set_presence(user_id.as_str(), name, status_msg, last_active).await?;
    state.presence.with(user_id, |t| {
        t.stored_state = Some(name.to_owned());
        t.source = source;
    });
    state.rooms.notify_change();
    let active_ago = u64::try_from(state.now_ms() - last_active).unwrap_or(0);
    crate::rooms::edus::send_presence(state, user_id, name, status_msg, active_ago).await
}

/// A presence update another server sent for one of its users: stored as it is (it is their
/// server that times them out, not ours), and shown to room-mates like local presence.
pub async fn receive_remote(
    state: &AppState,
    user_id: &UserId,
    presence: &str,
    status_msg: Option<&str>,
    last_active_ago: u64,
) -> Result<()> {
    if !state.config.presence.enabled {
        return Ok(());
    }
    let name = state_name(&PresenceState::from(presence))?;
    let last_active = state.now_ms() - i64::try_from(last_active_ago).unwrap_or(0);
    state.storage.set_presence(user_id.as_str(), name, status_msg, last_active).await?;
    state.rooms.notify_change();
    Ok(())
}

/// The cached stored state and its source, reading the database on first use.
async fn stored_state(state: &AppState, user_id: &UserId) -> Result<(Option<String>, Source)> {
    let (cached, source) = state.presence.with(user_id, |t| (t.stored_state.clone(), t.source));
    if cached.is_some() {
        return Ok((cached, source));
    }
    let current = state.storage.presence(user_id.as_str()).await?.map(|r| r.state);
    state.presence.with(user_id, |t| t.stored_state.clone_from(&current));
    Ok((current, source))
}

/// The stored status message, kept across changes that do not set one.
async fn status_msg(state: &AppState, user_id: &UserId) -> Result<Option<String>> {
    Ok(state.storage.presence(user_id.as_str()).await?.and_then(|r| r.status_msg))
}

/// Records an action by the user (memory only), bringing them back online if a timeout had
/// made them unavailable.
pub async fn active(state: &AppState, user_id: &UserId) -> Result<()> {
    if !state.config.presence.enabled {
        return Ok(());
    }
    let now = state.now_ms();
    let idle = state.presence.with(user_id, |t| {
        t.last_active = t.last_active.max(now);
        t.source == Source::Timeout && t.stored_state.as_deref() == Some("unavailable")
    });
    if idle {
        let status = status_msg(state, user_id).await?;
        store(state, user_id, "online", status.as_deref(), Source::Sync).await?;
    }
    Ok(())
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
    state.presence.with(caller, |t| t.last_active = t.last_active.max(now));
    let current = state.storage.presence(caller.as_str()).await?;
    let unchanged = current.as_ref().is_some_and(|c| c.state == name && c.status_msg.as_deref() == status_msg);
    if unchanged {
        state.presence.with(caller, |t| t.source = Source::Explicit);
    } else {
        store(state, caller, name, status_msg, Source::Explicit).await?;
    }
    Ok(())
}

/// `set_presence` on `/sync`: `online` brings an offline user online (or back from an
/// `unavailable` that a sync set; an explicit or idle one stays), `unavailable` marks them away,
/// `offline` leaves presence alone. Unless offline, the returned guard keeps the user from timing
/// out while the sync runs.
pub async fn on_sync(state: &AppState, user_id: &UserId, set_presence: &PresenceState) -> Result<Option<Syncing>> {
    let wanted = state_name(set_presence)?;
    if !state.config.presence.enabled || wanted == "offline" {
        return Ok(None);
    }
    let now = state.now_ms();
    state.presence.with(user_id, |t| {
        t.syncing += 1;
        t.last_sync = t.last_sync.max(now);
    });
    let guard = Syncing { state: state.clone(), user_id: user_id.to_owned() };
    let (current, source) = stored_state(state, user_id).await?;
    let change = match (wanted, current.as_deref()) {
        ("online", None | Some("offline")) => true,
        ("online", Some("unavailable")) => source == Source::Sync,
        ("unavailable", current) => current != Some("unavailable"),
        _ => false,
    };
    if change {
        if current.as_deref() != Some("unavailable") {
            // Coming online is activity.
            state.presence.with(user_id, |t| t.last_active = t.last_active.max(now));
        }
        let status = status_msg(state, user_id).await?;
        store(state, user_id, wanted, status.as_deref(), Source::Sync).await?;
    }
    Ok(Some(guard))
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

/// What a sync covers, for presence.
pub struct SyncWindow<'a> {
    /// The presence stream positions: changes in `(after, up_to]` are sent.
    pub after: i64,
    pub up_to: i64,
    /// For incremental syncs, the event stream positions: users who started sharing one of
    /// `joined_rooms` with the syncing user in `(after, up_to]` get their current presence sent.
    pub events: Option<(i64, i64)>,
    pub joined_rooms: &'a [String],
}

/// `m.presence` events for `/sync`: changes of the user and their room-mates, and the current
/// presence of new room-mates.
pub async fn for_sync(state: &AppState, user_id: &UserId, window: SyncWindow<'_>) -> Result<Vec<Value>> {
    if !state.config.presence.enabled {
        return Ok(Vec::new());
    }
    let mut rows = state.storage.presence_changes_for(user_id.as_str(), window.after, window.up_to).await?;
    if let Some((after, up_to)) = window.events {
        let mut new_mates = BTreeSet::new();
        for change in state.storage.membership_changes(window.joined_rooms, after, up_to).await? {
            if change.membership != "join" {
                continue;
            }
            if change.user_id == user_id.as_str() {
                // We joined: everyone there may be new to us.
                for member in state.storage.room_memberships(&change.room_id).await? {
                    if member.membership == "join" {
                        new_mates.insert(member.user_id);
                    }
                }
            } else {
                new_mates.insert(change.user_id);
            }
        }
        let already: HashSet<String> = rows.iter().map(|r| r.user_id.clone()).collect();
        new_mates.remove(user_id.as_str());
        let missing: Vec<String> = new_mates.into_iter().filter(|u| !already.contains(u)).collect();
        rows.extend(state.storage.presence_of_users(&missing).await?);
    }
    Ok(rows.iter().map(|row| presence_event(state, row)).collect())
}

fn presence_event(state: &AppState, row: &PresenceRow) -> Value {
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
}

/// Starts the sweeper that times out users who stopped syncing or acting. After a restart it
/// first picks up everyone stored as online or away, so they time out too.
pub fn start_sweeper(state: Weak<crate::state::Inner>) {
    tokio::spawn(async move {
        let mut loaded = false;
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let Some(inner) = state.upgrade() else { return };
            let state = AppState::from_inner(inner);
            if !state.config.presence.enabled || state.rooms.is_stopping() {
                return;
            }
            if !loaded {
                loaded = load_stored(&state).await.is_ok();
            }
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e, "presence sweep failed");
            }
        }
    });
}

async fn load_stored(state: &AppState) -> Result<()> {
    for row in state.storage.presence_not_offline().await? {
        let Ok(user) = OwnedUserId::try_from(row.user_id.as_str()) else { continue };
        if user.server_name() != state.server_name {
            // Other servers time out their own users.
            continue;
        }
        state.presence.with(&user, |t| {
            t.last_active = t.last_active.max(row.last_active_ts);
            t.last_sync = t.last_sync.max(row.last_active_ts);
            if t.stored_state.is_none() {
                t.stored_state = Some(row.state.clone());
            }
        });
    }
    Ok(())
}

async fn sweep(state: &AppState) -> Result<()> {
    for (user, new_state) in state.presence.timed_out(state.now_ms()) {
        let status = status_msg(state, &user).await?;
        store(state, &user, new_state, status.as_deref(), Source::Timeout).await?;
    }
    Ok(())
}
