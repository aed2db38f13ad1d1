//! Rooms: the event DAG, membership, state and timelines. Every local event goes through
//! [`send::send_event`], the one path that builds, authorizes and persists events.

pub mod acl;
pub mod backfill;
pub mod blocking;
pub mod client_event;
pub mod create;
pub mod dag_walk;
pub mod directory;
pub mod edus;
pub mod federated_invite;
pub mod federated_join;
pub mod federated_knock;
pub mod federated_leave;
pub mod federated_membership;
pub mod forks;
pub mod head;
pub mod history_purge;
pub mod incoming;
pub mod membership;
pub mod profile;
pub mod prune;
pub mod redaction;
pub mod relations;
pub mod report;
pub mod retention;
pub mod retention_purge;
pub mod send;
pub mod server_visibility;
pub mod shutdown;
pub mod state;
pub mod summary;
pub mod timeline;
pub mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ruma::{OwnedRoomId, RoomId};
use tokio::sync::watch;

/// A room's send lock, guarding its cached head (loaded on first use).
pub type RoomSlot = Arc<tokio::sync::Mutex<Option<head::RoomHead>>>;

/// In-process room coordination: per-room send locks with the room heads they guard, and the
/// new-event notifier that wakes long-polling `/sync` requests.
pub struct RoomRuntime {
    locks: Mutex<HashMap<OwnedRoomId, RoomSlot>>,
    /// A counter bumped on every change a `/sync` may report.
    changes: watch::Sender<u64>,
    /// Set when the server is stopping: long-polls answer at once instead of holding shutdown.
    stopping: AtomicBool,
}

impl Default for RoomRuntime {
    fn default() -> Self {
        Self { locks: Mutex::new(HashMap::new()), changes: watch::channel(0).0, stopping: AtomicBool::new(false) }
    }
}

impl RoomRuntime {
    /// The lock that keeps one room's local sends in a line, so each event's `prev_events` is
    /// the previous one.
    pub fn room_lock(&self, room_id: &RoomId) -> RoomSlot {
        let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(room_id.to_owned()).or_default().clone()
    }

    /// Drops a room's cached head (after its stored events changed outside a send).
    pub async fn forget_head(&self, room_id: &RoomId) {
        *self.room_lock(room_id).lock().await = None;
    }

    /// Wakes waiting syncs: an event was persisted or other sync data (account data) changed.
    pub fn notify_change(&self) {
        self.changes.send_modify(|count| *count = count.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Ends every long-poll now and makes new ones return at once.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify_change();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}
