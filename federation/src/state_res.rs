//! State resolution (v2) where forks of the room DAG meet, via ruma's implementation.

use std::collections::{HashMap, HashSet};

use ruma::OwnedEventId;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::StateMap;
use ruma::state_res::utils::event_id_set::EventIdSet;

use crate::pdu::Pdu;

/// The full recursive `auth_events` closure of `roots` (the roots included).
pub fn auth_chain(
    roots: impl IntoIterator<Item = OwnedEventId>,
    events: &HashMap<OwnedEventId, Pdu>,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut todo: Vec<OwnedEventId> = roots.into_iter().collect();
    while let Some(id) = todo.pop() {
        if !chain.insert(id.clone()) {
            continue;
        }
        if let Some(pdu) = events.get(&id) {
            todo.extend(pdu.auth_events.iter().cloned());
        }
    }
    chain
}

/// Resolves the states of several forks into one. `events` must hold every event the states and
/// their auth chains reference.
pub fn resolve(
    rules: &RoomVersionRules,
    forks: &[StateMap<OwnedEventId>],
    events: &HashMap<OwnedEventId, Pdu>,
) -> Result<StateMap<OwnedEventId>, String> {
    let Some(v2) = rules.state_res.v2_rules() else {
        return Err("state resolution v1 (room versions 1) is not supported".into());
    };
    let auth_chains: Vec<EventIdSet<OwnedEventId>> =
        forks.iter().map(|fork| auth_chain(fork.values().cloned(), events).into_iter().collect()).collect();
    ruma::state_res::resolve(
        &rules.authorization,
        v2,
        forks.iter(),
        auth_chains,
        |id| events.get(id).cloned(),
        // Room version 12's conflicted subgraph is not computed yet; v12 rooms are not supported.
        |_| None,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use ruma::RoomVersionId;
    use ruma::events::StateEventType;
    use serde_json::json;

    use super::*;
    use crate::pdu::rules_for;
    use crate::test_dag::{Dag, user};

    #[test]
    fn ban_beats_a_concurrent_join() {
        let (mut dag, base) = Dag::public_room(RoomVersionId::V10, json!({}));
        let bob = user("bob");
        // Fork: alice bans bob on one branch while bob joins on the other.
        let ban =
            dag.add(&[&base], "alice", "m.room.member", Some(bob.as_str()), json!({"membership": "ban"})).unwrap();
        let join =
            dag.add(&[&base], "bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).unwrap();
        let merge = dag.add(&[&ban, &join], "alice", "m.room.message", None, json!({"body": "merge"})).unwrap();
        assert_eq!(dag.membership(&merge, "bob").as_deref(), Some("ban"));
        // Resolution does not depend on the order of the forks.
        let rules = rules_for(&RoomVersionId::V10).unwrap();
        let a = resolve(&rules, &[dag.state_after[&ban].clone(), dag.state_after[&join].clone()], &dag.events).unwrap();
        let b = resolve(&rules, &[dag.state_after[&join].clone(), dag.state_after[&ban].clone()], &dag.events).unwrap();
        assert_eq!(a, b);
        // After the merge bob cannot speak.
        assert!(dag.add(&[&merge], "bob", "m.room.message", None, json!({"body": "hi"})).is_err());
    }

    #[test]
    fn a_demoted_moderator_loses_a_concurrent_power_change() {
        // Carol (50) and alice (100). Alice demotes carol while carol, concurrently, sets the
        // topic (allowed at 50). The demotion is resolved first (power events before others),
        // and carol's topic is then no longer authorized, so alice's topic state wins.
        let (mut dag, base) = Dag::public_room(RoomVersionId::V10, json!({"@carol:example.org": 50}));
        let carol = user("carol");
        let carol_join =
            dag.add(&[&base], "carol", "m.room.member", Some(carol.as_str()), json!({"membership": "join"})).unwrap();
        let demote = dag
            .add(
                &[&carol_join],
                "alice",
                "m.room.power_levels",
                Some(""),
                json!({"users": {"@alice:example.org": 100}}),
            )
            .unwrap();
        let topic = dag.add(&[&carol_join], "carol", "m.room.topic", Some(""), json!({"topic": "carol's"})).unwrap();
        let merge = dag.add(&[&demote, &topic], "alice", "m.room.message", None, json!({"body": "merge"})).unwrap();
        let state = &dag.state_after[&merge];
        assert_eq!(state[&(StateEventType::RoomPowerLevels, String::new())], demote);
        assert!(
            !state.contains_key(&(StateEventType::RoomTopic, String::new())),
            "carol's topic is rejected by resolution"
        );
    }

    #[test]
    fn unconflicted_state_from_both_forks_is_kept() {
        let (mut dag, base) = Dag::public_room(RoomVersionId::V10, json!({}));
        let name = dag.add(&[&base], "alice", "m.room.name", Some(""), json!({"name": "N"})).unwrap();
        let topic = dag.add(&[&base], "alice", "m.room.topic", Some(""), json!({"topic": "T"})).unwrap();
        let merge = dag.add(&[&name, &topic], "alice", "m.room.message", None, json!({"body": "merge"})).unwrap();
        let state = &dag.state_after[&merge];
        assert_eq!(state[&(StateEventType::RoomName, String::new())], name);
        assert_eq!(state[&(StateEventType::RoomTopic, String::new())], topic);
    }

    #[test]
    fn auth_chain_is_the_recursive_closure() {
        let (mut dag, base) = Dag::public_room(RoomVersionId::V10, json!({}));
        let message = dag.add(&[&base], "alice", "m.room.message", None, json!({"body": "x"})).unwrap();
        let chain = auth_chain([message.clone()], &dag.events);
        // message → power levels, alice's join, create (and transitively nothing else).
        let types: HashSet<String> = chain.iter().map(|id| dag.events[id].event_type.to_string()).collect();
        assert_eq!(
            types,
            ["m.room.message", "m.room.power_levels", "m.room.member", "m.room.create"].map(String::from).into()
        );
    }
}
