//! The single path for local events: choose DAG position and auth events, build and sign the
//! PDU, authorize it against the room state, persist it, and wake waiting syncs.

use federation::pdu::{DagPosition, EventTemplate, MAX_PDU_BYTES, build_pdu, rules_for};
use federation::{Pdu, PduError};
use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UInt, UserId};

use ruma::events::StateEventType;

use super::head::RoomHead;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{NewEvent, Persisted};

/// Prev events a new event cites at most (the spec's limit is 20).
const MAX_PREV_EVENTS: usize = 20;

/// The client transaction an event was sent with.
#[derive(Debug, Clone)]
pub struct ClientTxn {
    pub device_id: String,
    pub txn_id: String,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub event_id: OwnedEventId,
    pub stream_ordering: i64,
}

/// Sends an event into an existing room as `sender`.
///
/// The event is only queued for writing under the room lock: the head moves on at once, so the
/// room's next event is built while this one is committed, and a room's events share commits.
/// A state event's group is numbered before its write for that (the next event is built on it);
/// should the write fail, the events queued on top of it fail with it and the head is reloaded.
pub async fn send_event(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    template: EventTemplate,
    txn: Option<ClientTxn>,
) -> Result<Sent> {
    if template.event_type == ruma::events::TimelineEventType::RoomMember && template.content["membership"] == "join" {
        // A new member is a recipient of the room's next event, whose push rules are evaluated
        // under the room lock: read theirs now, outside it (a join storm serialised on the reads).
        crate::notifications::warm_rules(state, sender).await?;
    }
    let slot = state.rooms.room_lock(room_id);
    let mut guard = slot.lock().await;
    if let Some(txn) = &txn {
        // Checked under the room lock so two retries of one transaction cannot both send: first
        // among the messages still being written, then among those committed.
        if let Some(queued) = guard.as_ref().and_then(|head| head.queued_txn(sender, txn)).cloned() {
            drop(guard);
            let event_id = queued.event_id.clone();
            // Answer the retry as the original will be answered: once the event is committed.
            if !queued.outcome().await {
                return Err(Error::internal(format!("the first send of {event_id} failed; send it again")));
            }
            return Ok(Sent { event_id, stream_ordering: 0 });
        }
        let committed = state.storage.txn_event_id(sender.as_str(), &txn.device_id, &txn.txn_id).await?;
        if let Some(event_id) = committed {
            let event_id = OwnedEventId::try_from(event_id).map_err(|e| Error::internal(e.to_string()))?;
            return Ok(Sent { event_id, stream_ordering: 0 });
        }
    }
    let head = state.rooms.head_for_send(state, room_id, &mut guard).await?;
    let position = dag_position(head, sender, &template)?;
    let pdu = build_local_pdu(state, &head.version, room_id, sender, &template, &position)?;
    let (mut event, awaiting) = authorize_and_prepare(state, head, pdu, txn.clone(), Relay::AllServers).await?.split();
    let state_after = shared_state_after(head, &awaiting.pdu);
    let state_group_after = match event.state_key {
        Some(_) => *event.state_group_after.insert(state.storage.reserve_state_group()),
        None => head.state_group,
    };
    let is_state = event.state_key.is_some();
    let queued = state.storage.queue_event_sharing_state(event, state_after).await?;
    // Counted once queued (no await until the task that ends it is spawned, so a dropped request
    // cannot leave it counted); the waits that must not miss it hold the room lock, as we do.
    let writes = state.rooms.room_writes(room_id);
    if is_state {
        writes.begin();
    }
    head.advance(&awaiting.pdu, Persisted { stream_ordering: 0, state_group_after });
    let held = head.hold_uncommitted(&awaiting.pdu);
    let (outcome, committed) = tokio::sync::watch::channel(None);
    if let Some(txn) = &txn {
        let event_id = awaiting.pdu.event_id.clone();
        head.remember_txn(sender, txn, super::head::QueuedTxn { event_id, committed });
    }
    drop(guard);

    // Seen through even if the request goes away: a failed write must reset the head, and
    // retries of the transaction wait for this outcome.
    let state = state.clone();
    let finish = tokio::spawn(async move {
        let committed = queued.committed().await;
        if is_state {
            writes.end(committed.is_ok());
        }
        match committed {
            Ok(persisted) => {
                outcome.send_replace(Some(true));
                if held && let Some(head) = slot.lock().await.as_mut() {
                    head.release_committed(&awaiting.pdu.event_id);
                }
                Ok(awaiting.committed(&state, persisted))
            }
            Err(e) => {
                // The head already cites the lost event: the next send reloads it from the database.
                *slot.lock().await = None;
                outcome.send_replace(Some(false));
                Err(e.into())
            }
        }
    });
    finish.await.map_err(|e| Error::internal(format!("sending stopped: {e}")))?
}

/// Builds and sends an event while the caller holds the room lock and its head.
pub(super) async fn send_locked(
    state: &AppState,
    head: &mut RoomHead,
    room_id: &RoomId,
    sender: &UserId,
    template: EventTemplate,
    txn: Option<ClientTxn>,
) -> Result<Sent> {
    let position = dag_position(head, sender, &template)?;
    let pdu = build_local_pdu(state, &head.version, room_id, sender, &template, &position)?;
    accept_pdu(state, head, pdu, txn, Relay::AllServers).await
}

/// Where a new event by `sender` goes: after the room's forward extremities, citing the
/// current state entries the auth rules need.
pub(crate) fn dag_position(head: &RoomHead, sender: &UserId, template: &EventTemplate) -> Result<DagPosition> {
    let rules = rules_for(&head.version).map_err(unsupported_version)?;
    let content_raw = serde_json::value::to_raw_value(&template.content).map_err(|e| Error::bad_json(e.to_string()))?;
    let auth_types = federation::auth::auth_types(
        &rules.authorization,
        &template.event_type,
        sender,
        template.state_key.as_deref(),
        &content_raw,
    )
    .map_err(|reason| Error::bad_json(format!("Invalid content: {reason}")))?;
    let mut auth_events: Vec<OwnedEventId> =
        auth_types.iter().filter_map(|(t, k)| head.state.get(&(t.to_string(), k.clone())).cloned()).collect();
    auth_events.sort();
    let prev_events: Vec<OwnedEventId> =
        head.extremities.iter().take(MAX_PREV_EVENTS).map(|(id, _)| id.clone()).collect();
    let depth = head.extremities.iter().map(|(_, depth)| *depth).max().map_or(1, |d| d + 1);
    Ok(DagPosition { prev_events, auth_events, depth })
}

/// Builds, hashes and signs a local event.
pub(super) fn build_local_pdu(
    state: &AppState,
    version: &ruma::RoomVersionId,
    room_id: &RoomId,
    sender: &UserId,
    template: &EventTemplate,
    position: &DagPosition,
) -> Result<Pdu> {
    let now = UInt::try_from(state.now_ms().max(0)).unwrap_or_default();
    let pdu = build_pdu(
        state.server_name.as_str(),
        &state.signing_key,
        version,
        room_id,
        sender,
        template,
        position,
        MilliSecondsSinceUnixEpoch(now),
    )
    .map_err(pdu_error)?;
    let encoded_len = serde_json::to_vec(&pdu.json).map(|v| v.len()).unwrap_or(usize::MAX);
    if encoded_len > MAX_PDU_BYTES {
        return Err(Error::too_large(format!("Event is larger than {MAX_PDU_BYTES} bytes")));
    }
    Ok(pdu)
}

/// Which other servers an accepted event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay<'a> {
    /// A local event: every server in the room.
    AllServers,
    /// Received from `origin`, which sends it on itself (`/send`): nobody.
    Nobody,
    /// A join accepted for `origin` (`send_join`): everyone else in the room.
    AllExcept(&'a str),
}

/// Authorizes an event against the room's current state and persists it: the step every
/// event takes, whoever built it.
pub(crate) async fn accept_pdu(
    state: &AppState,
    head: &mut RoomHead,
    pdu: Pdu,
    txn: Option<ClientTxn>,
    relay: Relay<'_>,
) -> Result<Sent> {
    let (event, awaiting) = authorize_and_prepare(state, head, pdu, txn, relay).await?.split();
    let state_after = shared_state_after(head, &awaiting.pdu);
    let persisted = state.storage.persist_event_sharing_state(&event, state_after).await?;
    head.advance(&awaiting.pdu, persisted);
    Ok(awaiting.committed(state, persisted))
}

/// Rooms with fewer current state entries than this hand the state after each of their state
/// events to the state cache (a copy per state event; larger rooms leave it to the readers).
const SHARED_STATE_ENTRIES: usize = 1_000;

/// The room's full state after the state event `pdu`, as the head knows it: syncs look up entries
/// of the room's newest state group, which no full read may have loaded, and each such lookup
/// walked the group's delta chain in the database.
fn shared_state_after(head: &RoomHead, pdu: &Pdu) -> Option<crate::storage::StateMap> {
    let state_key = pdu.state_key.as_ref()?;
    if head.state.len() >= SHARED_STATE_ENTRIES {
        return None;
    }
    let mut state: crate::storage::StateMap =
        head.state.iter().map(|((kind, key), id)| ((kind.clone(), key.clone()), id.to_string())).collect();
    state.insert((pdu.event_type.to_string(), state_key.clone()), pdu.event_id.to_string());
    Some(state)
}

/// An authorized event, ready to be written, with what must happen once it is committed.
pub(crate) struct Accepted {
    pdu: Pdu,
    event: NewEvent,
}

/// Authorizes `pdu` at the head and prepares its row: destinations, and whom it notifies (the
/// members' push rules evaluated on the room as it is before the event).
async fn authorize_and_prepare(
    state: &AppState,
    head: &mut RoomHead,
    pdu: Pdu,
    txn: Option<ClientTxn>,
    relay: Relay<'_>,
) -> Result<Accepted> {
    let rules = rules_for(&head.version).map_err(unsupported_version)?;
    let replaced = authorize_at_head(state, head, &pdu).await?;

    let mut event = new_event(&pdu, &pdu.sender, head.state_group, txn)?;
    if state.config.federation.enabled {
        let us = state.server_name.as_str();
        event.destinations = match relay {
            Relay::AllServers => head.destinations(&pdu, us),
            Relay::Nobody => Vec::new(),
            Relay::AllExcept(origin) => head.destinations(&pdu, us).into_iter().filter(|s| s != origin).collect(),
        };
    }
    event.push_actions = crate::notifications::push_actions(state, head, &pdu, &rules).await?;
    if let Some(unsigned) = replaced {
        // `unsigned` is outside the hashes and signatures, so it can carry this for clients.
        event.json["unsigned"] = unsigned;
    }
    Ok(Accepted { pdu, event })
}

impl Accepted {
    /// The row to write, and what waits for its commit.
    fn split(self) -> (NewEvent, AwaitingCommit) {
        let destinations = self.event.destinations.clone();
        (self.event, AwaitingCommit { pdu: self.pdu, destinations })
    }
}

/// An event being written: what happens once it is committed.
struct AwaitingCommit {
    pdu: Pdu,
    destinations: Vec<String>,
}

impl AwaitingCommit {
    /// The outbox is told, syncs are woken.
    fn committed(self, state: &AppState, persisted: Persisted) -> Sent {
        state.outbox.wake(state, &self.destinations);
        state.metrics.event_persisted();
        state.rooms.notify_change();
        Sent { event_id: self.pdu.event_id, stream_ordering: persisted.stream_ordering }
    }
}

/// Checks `pdu` against its auth events and the room's current state. Returns what a state
/// event's `unsigned` carries about the entry it replaces.
pub(crate) async fn authorize_at_head(
    state: &AppState,
    head: &mut RoomHead,
    pdu: &Pdu,
) -> Result<Option<serde_json::Value>> {
    let rules = rules_for(&head.version).map_err(unsupported_version)?;
    let auth_types = federation::auth::auth_types(
        &rules.authorization,
        &pdu.event_type,
        &pdu.sender,
        pdu.state_key.as_deref(),
        &pdu.content,
    )
    .map_err(|reason| Error::bad_json(format!("Invalid content: {reason}")))?;
    // The auth rules always read the create event, even in room versions that leave it out of
    // `auth_events`.
    let mut keys: Vec<(StateEventType, String)> = auth_types;
    keys.push((StateEventType::RoomCreate, String::new()));
    let auth_keys: Vec<((StateEventType, String), OwnedEventId)> = keys
        .into_iter()
        .filter_map(|key| head.state.get(&(key.0.to_string(), key.1.clone())).map(|id| (key, id.clone())))
        .collect();
    // A state event also needs the entry it replaces, for `unsigned.prev_content`.
    let replaced_id =
        pdu.state_key.as_ref().and_then(|key| head.state.get(&(pdu.event_type.to_string(), key.clone()))).cloned();
    let mut needed: Vec<OwnedEventId> = auth_keys.iter().map(|(_, id)| id.clone()).collect();
    needed.extend(replaced_id.iter().cloned());
    // A received event may cite auth events that are no longer current.
    needed.extend(pdu.auth_events.iter().cloned());
    head.ensure_pdus(state, &needed).await?;
    let replaced = replaced_id.as_ref().and_then(|id| head.pdus.get(id)).map(|old| {
        serde_json::json!({"replaces_state": old.event_id, "prev_content": old.content_value(), "prev_sender": old.sender})
    });

    let state_before: federation::auth::StateEvents<'_> =
        auth_keys.iter().filter_map(|(key, id)| head.pdus.get(id).map(|pdu| (key.clone(), pdu))).collect();
    federation::auth::authorize(&rules.authorization, pdu, &head.pdus, &state_before)
        .map_err(|reason| Error::forbidden(format!("Event not allowed: {reason}")))?;
    Ok(replaced)
}

pub(super) fn new_event(
    pdu: &Pdu,
    sender: &UserId,
    state_group_before: i64,
    txn: Option<ClientTxn>,
) -> Result<NewEvent> {
    Ok(NewEvent {
        event_id: pdu.event_id.to_string(),
        room_id: pdu.room_id.to_string(),
        event_type: pdu.event_type.to_string(),
        state_key: pdu.state_key.clone(),
        sender: sender.to_string(),
        depth: i64::try_from(pdu.depth).unwrap_or(i64::MAX),
        origin_server_ts: i64::from(pdu.origin_server_ts.0),
        json: serde_json::to_value(&pdu.json).map_err(|e| Error::internal(e.to_string()))?,
        prev_events: pdu.prev_events.iter().map(ToString::to_string).collect(),
        rejected_reason: None,
        state_group_before,
        state_group_after: None,
        txn: txn.map(|txn| (sender.to_string(), txn.device_id, txn.txn_id)),
        outlier: false,
        destinations: Vec::new(),
        resolved_current: None,
        push_actions: Vec::new(),
    })
}

pub(crate) fn unsupported_version(e: PduError) -> Error {
    Error::matrix(StatusCode::BAD_REQUEST, ErrorKind::UnsupportedRoomVersion, e.to_string())
}

pub(crate) fn pdu_error(e: PduError) -> Error {
    match e {
        PduError::TooLarge => Error::too_large(format!("Event is larger than {MAX_PDU_BYTES} bytes")),
        PduError::UnsupportedRoomVersion(_) => unsupported_version(e),
        PduError::Malformed(reason) => Error::bad_json(reason),
    }
}

/// A template for a state event.
pub fn state_template(event_type: &str, state_key: &str, content: serde_json::Value) -> EventTemplate {
    EventTemplate { event_type: event_type.into(), state_key: Some(state_key.to_owned()), content, redacts: None }
}
