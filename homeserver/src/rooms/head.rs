//! The head of a room: what the next local event needs (version, current state, forward
//! extremities, auth-relevant state events), kept in memory under the room's send lock.
//!
//! Every local event is sent under that lock and advances the head, so after the first send a
//! room's sends need no database reads besides the transaction-ID check.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use federation::Pdu;
use ruma::{OwnedEventId, OwnedUserId, RoomId, RoomVersionId};

use super::send::ClientTxn;
use super::state::{room, to_pdu};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::Persisted;

/// State event types the auth rules read; their events are kept parsed in the head.
const AUTH_STATE_TYPES: &[&str] =
    &["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.member", "m.room.third_party_invite"];

pub struct RoomHead {
    pub version: RoomVersionId,
    pub state_group: i64,
    /// Forward extremities with their depths, deepest first.
    pub extremities: Vec<(OwnedEventId, u64)>,
    /// The current state: `(type, state_key)` → event ID.
    pub state: HashMap<(String, String), OwnedEventId>,
    /// Parsed auth-relevant state events, loaded on first use.
    pub pdus: HashMap<OwnedEventId, Pdu>,
    /// Joined members by server: where the room's events must be sent.
    pub joined_by_server: HashMap<String, HashSet<String>>,
    /// Joined members with their display names (push rules match on them), built on first use
    /// and kept current by `advance`, so a send does not parse every member event.
    pub joined_names: Option<BTreeMap<OwnedUserId, String>>,
    /// Client transactions of the latest messages sent here, which may not be committed yet
    /// (so not findable in `event_txns`): a retry must get the same event.
    recent_txns: RecentTxns,
}

/// Most client transactions a head remembers while their messages are written; far more than
/// can be waiting for the writer.
const RECENT_TXNS: usize = 8192;

#[derive(Default)]
struct RecentTxns {
    order: VecDeque<TxnKey>,
    events: HashMap<TxnKey, QueuedTxn>,
}

impl RecentTxns {
    fn remember(&mut self, key: TxnKey, queued: QueuedTxn) {
        // A committed message's transaction is in `event_txns`, where a retry finds it: only those
        // still being written need remembering (every room kept thousands otherwise). Messages
        // commit in the order they were queued, so the committed ones are the oldest.
        while let Some(oldest) = self.order.front() {
            let committed = self.events.get(oldest).is_none_or(|queued| *queued.committed.borrow() == Some(true));
            if !committed {
                break;
            }
            self.forget_oldest();
        }
        if self.events.insert(key.clone(), queued).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > RECENT_TXNS {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.order.pop_front() {
            self.events.remove(&oldest);
        }
    }
}

/// A message sent with a client transaction, and whether it has been committed yet: `None`
/// while it is being written, then whether the write succeeded.
#[derive(Clone)]
pub struct QueuedTxn {
    pub event_id: OwnedEventId,
    pub committed: tokio::sync::watch::Receiver<Option<bool>>,
}

impl QueuedTxn {
    /// Waits until the message's write has finished: whether it was committed.
    pub async fn outcome(mut self) -> bool {
        // A dropped sender means the sending request went away before telling: not committed.
        matches!(self.committed.wait_for(Option::is_some).await.map(|outcome| *outcome), Ok(Some(true)))
    }
}

/// (user, device, transaction ID).
type TxnKey = (String, String, String);

fn txn_key(sender: &ruma::UserId, txn: &ClientTxn) -> TxnKey {
    (sender.to_string(), txn.device_id.clone(), txn.txn_id.clone())
}

/// The name push rules match for a member: their display name, else their localpart.
pub fn display_name(user: &ruma::UserId, member_content: &serde_json::Value) -> String {
    member_content["displayname"].as_str().unwrap_or(user.localpart()).to_owned()
}

/// The server part of a user ID.
pub fn server_of(user_id: &str) -> &str {
    user_id.split_once(':').map_or("", |(_, server)| server)
}

fn event_id(id: String) -> Result<OwnedEventId> {
    OwnedEventId::try_from(id).map_err(|e| Error::internal(format!("stored event ID: {e}")))
}

impl RoomHead {
    pub async fn load(state: &AppState, room_id: &RoomId) -> Result<Self> {
        let room = room(state, room_id.as_str()).await?;
        let state_group = room.current_state_group()?;
        let current = state.storage.state_at_group(state_group).await?;
        let extremities = state.storage.forward_extremities(room_id.as_str()).await?;
        let mut joined_by_server: HashMap<String, HashSet<String>> = HashMap::new();
        for member in state.storage.room_memberships(room_id.as_str()).await? {
            if member.membership == "join" {
                joined_by_server.entry(server_of(&member.user_id).to_owned()).or_default().insert(member.user_id);
            }
        }
        Ok(Self {
            version: room.version,
            state_group,
            extremities: extremities
                .into_iter()
                .map(|(id, depth)| Ok((event_id(id)?, u64::try_from(depth).unwrap_or(0))))
                .collect::<Result<_>>()?,
            state: current.into_iter().map(|(key, id)| Ok((key, event_id(id)?))).collect::<Result<_>>()?,
            pdus: HashMap::new(),
            joined_by_server,
            joined_names: None,
            recent_txns: RecentTxns::default(),
        })
    }

    /// The other servers that must receive `pdu`: every server with a member in the room, and for
    /// a membership change of a remote user (a kick, a ban), that user's server too.
    pub fn destinations(&self, pdu: &Pdu, us: &str) -> Vec<String> {
        let mut servers: BTreeSet<&str> = self.joined_by_server.keys().map(String::as_str).collect();
        if let (Some(target), true) = (&pdu.state_key, pdu.event_type.to_string() == "m.room.member") {
            servers.insert(server_of(target));
        }
        servers.remove(us);
        servers.into_iter().map(str::to_owned).collect()
    }

    /// Whether any user of `server` is joined.
    pub fn has_joined_member_of(&self, server: &str) -> bool {
        self.joined_by_server.get(server).is_some_and(|users| !users.is_empty())
    }

    /// Makes sure the given state events are parsed in `pdus`, loading the missing ones in one
    /// query.
    pub async fn ensure_pdus(&mut self, state: &AppState, ids: &[OwnedEventId]) -> Result<()> {
        let missing: Vec<String> =
            ids.iter().filter(|id| !self.pdus.contains_key(*id)).map(ToString::to_string).collect();
        if missing.is_empty() {
            return Ok(());
        }
        for row in state.storage.events_by_id(&missing).await? {
            let pdu = to_pdu(&row)?;
            self.pdus.insert(pdu.event_id.clone(), pdu);
        }
        Ok(())
    }

    /// Keeps a state event the head does not otherwise keep (not an auth type) until it is
    /// committed: the room's next event of its type and key reads it for `prev_content`, and
    /// the database does not have it yet. Returns whether [`Self::release_committed`] is due.
    pub fn hold_uncommitted(&mut self, pdu: &Pdu) -> bool {
        if pdu.state_key.is_none() || AUTH_STATE_TYPES.contains(&pdu.event_type.to_string().as_str()) {
            return false;
        }
        self.pdus.insert(pdu.event_id.clone(), pdu.clone());
        true
    }

    /// Drops a held event once committed (it is read from the database when needed again).
    pub fn release_committed(&mut self, event_id: &ruma::EventId) {
        self.pdus.remove(event_id);
    }

    /// The event a recent message was sent as, for the sender's transaction.
    pub fn queued_txn(&self, sender: &ruma::UserId, txn: &ClientTxn) -> Option<&QueuedTxn> {
        self.recent_txns.events.get(&txn_key(sender, txn))
    }

    pub fn remember_txn(&mut self, sender: &ruma::UserId, txn: &ClientTxn, queued: QueuedTxn) {
        self.recent_txns.remember(txn_key(sender, txn), queued);
    }

    /// The room after an accepted event.
    pub fn advance(&mut self, pdu: &Pdu, persisted: Persisted) {
        // As in storage: the event's prev events stop being extremities, the event becomes one.
        self.extremities.retain(|(id, _)| !pdu.prev_events.contains(id));
        let at = self.extremities.iter().position(|(_, depth)| *depth < pdu.depth).unwrap_or(self.extremities.len());
        self.extremities.insert(at, (pdu.event_id.clone(), pdu.depth));
        self.state_group = persisted.state_group_after;
        if let Some(state_key) = &pdu.state_key {
            let key = (pdu.event_type.to_string(), state_key.clone());
            if let Some(replaced) = self.state.insert(key, pdu.event_id.clone()) {
                self.pdus.remove(&replaced);
            }
            let event_type = pdu.event_type.to_string();
            if event_type == "m.room.member" {
                self.track_membership(state_key, &pdu.content_value());
            }
            if AUTH_STATE_TYPES.contains(&event_type.as_str()) {
                self.pdus.insert(pdu.event_id.clone(), pdu.clone());
            }
        }
    }
}

impl RoomHead {
    fn track_membership(&mut self, user_id: &str, content: &serde_json::Value) {
        if let (Some(names), Ok(user)) = (&mut self.joined_names, OwnedUserId::try_from(user_id)) {
            if content["membership"] == "join" {
                names.insert(user.clone(), display_name(&user, content));
            } else {
                names.remove(&user);
            }
        }
        let server = server_of(user_id).to_owned();
        if content["membership"] == "join" {
            self.joined_by_server.entry(server).or_default().insert(user_id.to_owned());
        } else if let Some(users) = self.joined_by_server.get_mut(&server) {
            users.remove(user_id);
            if users.is_empty() {
                self.joined_by_server.remove(&server);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: &str) -> (tokio::sync::watch::Sender<Option<bool>>, QueuedTxn) {
        let (outcome, committed) = tokio::sync::watch::channel(None);
        (outcome, QueuedTxn { event_id: OwnedEventId::try_from(id).unwrap(), committed })
    }

    fn key(txn_id: &str) -> TxnKey {
        ("@a:x".into(), "DEV".into(), txn_id.into())
    }

    #[test]
    fn transactions_are_remembered_until_their_messages_commit() {
        let mut txns = RecentTxns::default();
        let (first_outcome, first) = queued("$1");
        let (_second_outcome, second) = queued("$2");
        txns.remember(key("t1"), first);
        txns.remember(key("t2"), second);
        // Both still being written: a retry of either finds its event.
        let (_third_outcome, third) = queued("$3");
        txns.remember(key("t3"), third);
        assert_eq!(txns.events.len(), 3);

        // The first commits: the next send forgets it (its retry finds it in the database), and
        // keeps the second, still uncommitted, and everything after it.
        first_outcome.send_replace(Some(true));
        let (_fourth_outcome, fourth) = queued("$4");
        txns.remember(key("t4"), fourth);
        assert!(!txns.events.contains_key(&key("t1")));
        for kept in ["t2", "t3", "t4"] {
            assert!(txns.events.contains_key(&key(kept)), "{kept}");
        }
        assert_eq!(txns.order.len(), 3);
    }
}
