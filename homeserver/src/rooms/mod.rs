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

/// A room's local state events queued for writing and not yet committed, counted by the sends
/// that queued them: a room head moves on before they are committed, and whatever reads the room
/// from the database waits for them first. A failed one marks the head as built on a lost group.
#[derive(Debug)]
pub struct RoomWrites {
    in_flight: watch::Sender<usize>,
    lost: AtomicBool,
}

impl Default for RoomWrites {
    fn default() -> Self {
        Self { in_flight: watch::channel(0).0, lost: AtomicBool::new(false) }
    }
}

impl RoomWrites {
    pub fn begin(&self) {
        self.in_flight.send_modify(|n| *n += 1);
    }

    /// Called before the sender takes the room lock again (a waiter in [`Self::settle`] holds it).
    pub fn end(&self, written: bool) {
        if !written {
            self.lost.store(true, Ordering::SeqCst);
        }
        self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }

    async fn settle(&self) {
        let mut in_flight = self.in_flight.subscribe();
        // The sender side lives as long as `self`: the wait ends only at zero.
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::SeqCst)
    }
}

/// A room's send lock, guarding its cached head (loaded on first use).
pub type RoomSlot = Arc<tokio::sync::Mutex<Option<head::RoomHead>>>;

/// In-process room coordination: per-room send locks with the room heads they guard, and the
/// new-event notifier that wakes long-polling `/sync` requests.
pub struct RoomRuntime {
    locks: Mutex<HashMap<OwnedRoomId, RoomSlot>>,
    writes: Mutex<HashMap<OwnedRoomId, Arc<RoomWrites>>>,
    /// A counter bumped on every change a `/sync` may report.
    changes: watch::Sender<u64>,
    /// Set when the server is stopping: long-polls answer at once instead of holding shutdown.
    stopping: AtomicBool,
}

impl Default for RoomRuntime {
    fn default() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
            writes: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            stopping: AtomicBool::new(false),
        }
    }
}

impl RoomRuntime {
    /// The lock that keeps one room's local sends in a line, so each event's `prev_events` is
    /// the previous one.
    pub fn room_lock(&self, room_id: &RoomId) -> RoomSlot {
        let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(room_id.to_owned()).or_default().clone()
    }

    /// The room's local state events queued but not yet committed (see [`RoomWrites`]).
    pub fn room_writes(&self, room_id: &RoomId) -> Arc<RoomWrites> {
        let mut writes = self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writes.entry(room_id.to_owned()).or_default().clone()
    }

    /// The room's head for a local send (under the room lock): the cached one, which may cite
    /// state events still being written; else, once those are written, one loaded from the
    /// database. A head built on a state event whose write failed is loaded again.
    pub async fn head_for_send<'g>(
        &self,
        state: &crate::state::AppState,
        room_id: &RoomId,
        guard: &'g mut Option<head::RoomHead>,
    ) -> crate::error::Result<&'g mut head::RoomHead> {
        if self.room_writes(room_id).take_lost() {
            *guard = None;
        }
        match guard {
            Some(head) => Ok(head),
            empty => self.settled_head(state, room_id, empty).await,
        }
    }

    /// The room's head once every local state event queued in it is written (under the room
    /// lock, so no more are queued meanwhile): for the paths that also read the room from the
    /// database (received events, forks, loading), which must see what the head cites.
    pub async fn settled_head<'g>(
        &self,
        state: &crate::state::AppState,
        room_id: &RoomId,
        guard: &'g mut Option<head::RoomHead>,
    ) -> crate::error::Result<&'g mut head::RoomHead> {
        let writes = self.room_writes(room_id);
        writes.settle().await;
        if writes.take_lost() {
            *guard = None;
        }
        match guard {
            Some(head) => Ok(head),
            empty => Ok(empty.insert(head::RoomHead::load(state, room_id).await?)),
        }
    }

    /// Waits until the room's queued local state events are written, for a change to stored
    /// events that must reach them too (pruning, redaction of a state event's successor).
    pub async fn settle_writes(&self, room_id: &RoomId) {
        self.room_writes(room_id).settle().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settling_waits_for_every_queued_state_event_and_reports_a_lost_one() {
        let writes = Arc::new(RoomWrites::default());
        writes.begin();
        writes.begin();
        let waiter = tokio::spawn({
            let writes = writes.clone();
            async move { writes.settle().await }
        });
        writes.end(true);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one write is still in flight");
        writes.end(false);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(writes.take_lost(), "the failed write is reported");
        assert!(!writes.take_lost(), "once");
        // Nothing in flight: settling returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), writes.settle()).await.unwrap();
    }
}
