//! Typing notifications: in memory only (they are worthless after a restart), with expiry, and a
//! serial number per change so `/sync` can tell which rooms changed since a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::state::AppState;

/// Longest a client may claim to be typing without renewing.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Rooms {
    /// Bumped on every change; never reset while the process runs.
    serial: u64,
    /// Room → (typing user → until when), and the serial of the room's last change.
    rooms: HashMap<OwnedRoomId, (HashMap<OwnedUserId, Instant>, u64)>,
}

#[derive(Default)]
pub struct TypingTracker {
    inner: Mutex<Rooms>,
}

impl TypingTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current serial (part of sync tokens).
    pub fn serial(&self) -> u64 {
        self.lock().serial
    }

    /// Sets or clears a user's typing; returns whether anything changed.
    fn set(&self, room_id: &RoomId, user_id: &UserId, until: Option<Instant>) -> bool {
        let mut inner = self.lock();
        let serial = inner.serial + 1;
        let (users, room_serial) = inner.rooms.entry(room_id.to_owned()).or_default();
        let changed = match until {
            Some(until) => users.insert(user_id.to_owned(), until).is_none(),
            None => users.remove(user_id).is_some(),
        };
        if changed {
            *room_serial = serial;
            inner.serial = serial;
        }
        changed
    }

    /// Drops expired entries; returns whether anything changed.
    fn expire(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        let serial = inner.serial + 1;
        let mut changed = false;
        for (users, room_serial) in inner.rooms.values_mut() {
            let before = users.len();
            users.retain(|_, until| *until > now);
            if users.len() != before {
                *room_serial = serial;
                changed = true;
            }
        }
        if changed {
            inner.serial = serial;
        }
        changed
    }

    /// Rooms among `rooms` whose typing changed after `since` (all of them when `since` is
    /// `None` or from before a restart), with the users typing now.
    pub fn changed_since(&self, rooms: &[String], since: Option<u64>) -> Vec<(String, Vec<String>)> {
        let inner = self.lock();
        let since = since.filter(|s| *s <= inner.serial);
        rooms
            .iter()
            .filter_map(|room| {
                let room_id = <&RoomId>::try_from(room.as_str()).ok()?;
                let (users, room_serial) = inner.rooms.get(room_id)?;
                if since.is_some_and(|s| *room_serial <= s) {
                    return None;
                }
                if since.is_none() && users.is_empty() {
                    return None;
                }
                let mut ids: Vec<String> = users.keys().map(ToString::to_string).collect();
                ids.sort();
                Some((room.clone(), ids))
            })
            .collect()
    }
}

/// `PUT /rooms/{roomId}/typing/{userId}`: start (with a timeout) or stop typing.
pub async fn set_typing(
    state: &AppState,
    caller: &UserId,
    target: &UserId,
    room_id: &RoomId,
    timeout: Option<Duration>,
) -> Result<()> {
    if caller != target {
        return Err(Error::forbidden("You can only set your own typing state"));
    }
    crate::rooms::membership::require_joined(state, room_id, caller).await?;
    let until = timeout.map(|t| Instant::now() + t.min(MAX_TIMEOUT));
    if state.typing.set(room_id, caller, until) {
        state.rooms.notify_change();
        crate::rooms::edus::send_typing(state, room_id, caller, until.is_some()).await?;
    }
    if let Some(until) = until {
        // Expire on time even if nobody else touches typing, so waiting syncs hear it stop.
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(until + Duration::from_millis(5)).await;
            if state.typing.expire(Instant::now()) {
                state.rooms.notify_change();
            }
        });
    }
    Ok(())
}
