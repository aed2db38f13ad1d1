//! Received events that do not extend the room's current state: their prev events lead to
//! another state (a fork of the DAG). The state before such an event is the resolution (state
//! resolution v2) of the states after its prev events; it is authorized against that, then
//! soft-failed if the room's current state no longer allows it; and the room's new current
//! state is the resolution of the old current state and the state after the event.

use std::collections::HashMap;

use federation::Pdu;
use federation::pdu::rules_for;
use ruma::OwnedEventId;
use ruma::events::StateEventType;
use ruma::state_res::StateMap;

use super::head::RoomHead;
use super::send::{Relay, new_event, unsupported_version};
use super::state::to_pdu;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{self, EventRow, ResolvedCurrent};

type Forks = Vec<StateMap<OwnedEventId>>;

fn typed(map: &storage::StateMap) -> Result<StateMap<OwnedEventId>> {
    map.iter()
        .map(|((t, k), id)| {
            let id = OwnedEventId::try_from(id.as_str()).map_err(|e| Error::internal(e.to_string()))?;
            Ok(((StateEventType::from(t.as_str()), k.clone()), id))
        })
        .collect()
}

fn untyped(map: &StateMap<OwnedEventId>) -> storage::StateMap {
    map.iter().map(|((t, k), id)| ((t.to_string(), k.clone()), id.to_string())).collect()
}

/// Loads events and their full auth chains, parsed.
async fn load_with_auth_chains(state: &AppState, ids: Vec<String>) -> Result<HashMap<OwnedEventId, Pdu>> {
    let mut rows = state.storage.events_by_id(&ids).await?;
    rows.extend(super::federated_join::auth_chain(state, ids).await?);
    rows.iter().map(|row| to_pdu(row).map(|pdu| (pdu.event_id.clone(), pdu))).collect()
}

fn state_events<'a>(
    map: &StateMap<OwnedEventId>,
    events: &'a HashMap<OwnedEventId, Pdu>,
) -> federation::auth::StateEvents<'a> {
    map.iter().filter_map(|(key, id)| events.get(id).map(|pdu| (key.clone(), pdu))).collect()
}

pub async fn accept_forked(
    state: &AppState,
    head: &RoomHead,
    pdu: Pdu,
    prev_rows: &[EventRow],
    relay: Relay<'_>,
) -> Result<()> {
    let rules = rules_for(&head.version).map_err(unsupported_version)?;
    let mut groups: Vec<i64> = prev_rows.iter().map(|row| row.state_group_after).collect();
    groups.sort_unstable();
    groups.dedup();
    let stored = state.storage.states_at_groups(&groups).await?;
    let forks: Forks =
        groups.iter().map(|g| typed(&stored.get(g).cloned().unwrap_or_default())).collect::<Result<_>>()?;
    let current: StateMap<OwnedEventId> =
        head.state.iter().map(|((t, k), id)| ((StateEventType::from(t.as_str()), k.clone()), id.clone())).collect();

    let mut needed: Vec<String> =
        forks.iter().chain([&current]).flat_map(|m| m.values().map(ToString::to_string)).collect();
    needed.extend(pdu.auth_events.iter().map(ToString::to_string));
    needed.sort();
    needed.dedup();
    let events = load_with_auth_chains(state, needed).await?;

    let before = match forks.as_slice() {
        [single] => single.clone(),
        _ => federation::state_res::resolve(&rules, &forks, &events).map_err(Error::internal)?,
    };
    federation::auth::authorize(&rules.authorization, &pdu, &events, &state_events(&before, &events))
        .map_err(|reason| Error::forbidden(format!("Event not allowed: {reason}")))?;
    let soft_failed =
        federation::auth::authorize(&rules.authorization, &pdu, &events, &state_events(&current, &events)).err();

    let before_group = match groups.as_slice() {
        [single] => *single,
        _ => state.storage.create_state_group(pdu.room_id.as_str(), &untyped(&before)).await?,
    };
    let mut event = new_event(&pdu, &pdu.sender, before_group, None)?;
    if let Some(reason) = soft_failed {
        // Valid where it was sent, not in the room as it is now: kept, never shown or relayed.
        event.rejected_reason = Some(format!("soft-failed: {reason}"));
    } else {
        event.resolved_current = resolved_current(state, &rules, &pdu, &before, &current, events).await?;
        if state.config.federation.enabled
            && let Relay::AllExcept(origin) = relay
        {
            event.destinations =
                head.destinations(&pdu, state.server_name.as_str()).into_iter().filter(|s| s != origin).collect();
        }
    }
    state.storage.persist_event(&event).await?;
    state.outbox.wake(state, &event.destinations);
    state.metrics.event_persisted();
    state.rooms.notify_change();
    Ok(())
}

/// The room's current state once `pdu` is in: the resolution of the old current state and the
/// state after `pdu`. `None` when that is just the state after `pdu`.
async fn resolved_current(
    state: &AppState,
    rules: &ruma::room_version_rules::RoomVersionRules,
    pdu: &Pdu,
    before: &StateMap<OwnedEventId>,
    current: &StateMap<OwnedEventId>,
    mut events: HashMap<OwnedEventId, Pdu>,
) -> Result<Option<ResolvedCurrent>> {
    let mut after = before.clone();
    if let Some(state_key) = &pdu.state_key {
        after.insert((StateEventType::from(pdu.event_type.to_string()), state_key.clone()), pdu.event_id.clone());
        events.insert(pdu.event_id.clone(), pdu.clone());
    }
    let resolved =
        federation::state_res::resolve(rules, &[current.clone(), after.clone()], &events).map_err(Error::internal)?;
    if resolved == after {
        return Ok(None);
    }
    let memberships = resolved
        .iter()
        .filter(|((event_type, _), _)| *event_type == StateEventType::RoomMember)
        .filter(|(key, id)| current.get(key) != Some(*id))
        .filter_map(|((_, user_id), id)| {
            let membership = events.get(id)?.content_value()["membership"].as_str()?.to_owned();
            Some((user_id.clone(), membership, id.to_string()))
        })
        .collect();
    let state_group = state.storage.create_state_group(pdu.room_id.as_str(), &untyped(&resolved)).await?;
    Ok(Some(ResolvedCurrent { state_group, memberships }))
}
