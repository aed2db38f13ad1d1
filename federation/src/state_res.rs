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
    use std::collections::HashMap;

    use ruma::events::{StateEventType, TimelineEventType};
    use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedUserId, RoomId, RoomVersionId, UInt};
    use serde_json::json;

    use super::*;
    use crate::auth::{StateEvents, auth_types, authorize};
    use crate::keys::ServerSigningKey;
    use crate::pdu::{DagPosition, EventTemplate, build_pdu, rules_for};

    /// A room DAG that can fork: every event records the state after it.
    struct Dag {
        key: ServerSigningKey,
        version: RoomVersionId,
        events: HashMap<OwnedEventId, Pdu>,
        state_after: HashMap<OwnedEventId, StateMap<OwnedEventId>>,
        clock: u32,
    }

    fn user(name: &str) -> OwnedUserId {
        OwnedUserId::try_from(format!("@{name}:example.org")).unwrap()
    }

    impl Dag {
        fn new() -> Self {
            Self {
                key: ServerSigningKey::generate(),
                version: RoomVersionId::V10,
                events: HashMap::new(),
                state_after: HashMap::new(),
                clock: 0,
            }
        }

        /// Appends an event after `parents` (resolving their states first when there are
        /// several); fails when the event is not authorized by that state.
        fn add(
            &mut self,
            parents: &[&OwnedEventId],
            sender: &str,
            event_type: &str,
            state_key: Option<&str>,
            content: serde_json::Value,
        ) -> Result<OwnedEventId, String> {
            let rules = rules_for(&self.version).unwrap();
            let state: StateMap<OwnedEventId> = match parents {
                [] => StateMap::new(),
                [one] => self.state_after[*one].clone(),
                many => {
                    let forks: Vec<_> = many.iter().map(|p| self.state_after[*p].clone()).collect();
                    resolve(&rules, &forks, &self.events)?
                }
            };
            let sender = user(sender);
            let event_type = TimelineEventType::from(event_type);
            let raw = serde_json::value::to_raw_value(&content).unwrap();
            let types = auth_types(&rules.authorization, &event_type, &sender, state_key, &raw)?;
            let auth_events: Vec<OwnedEventId> = types.iter().filter_map(|t| state.get(t).cloned()).collect();
            let depth = parents.iter().map(|p| self.events[*p].depth).max().unwrap_or(0) + 1;
            self.clock += 1;
            let template =
                EventTemplate { event_type, state_key: state_key.map(str::to_owned), content, redacts: None };
            let position =
                DagPosition { prev_events: parents.iter().map(|p| (*p).clone()).collect(), auth_events, depth };
            let room_id = <&RoomId>::try_from("!dag:example.org").unwrap();
            let ts = MilliSecondsSinceUnixEpoch(UInt::from(self.clock));
            let pdu =
                build_pdu("example.org", &self.key, &self.version, room_id, &sender, &template, &position, ts).unwrap();
            let state_events: StateEvents<'_> = state.iter().map(|(k, id)| (k.clone(), &self.events[id])).collect();
            authorize(&rules.authorization, &pdu, &self.events, &state_events)?;
            let id = pdu.event_id.clone();
            let mut after = state;
            if let Some(key) = &pdu.state_key {
                after.insert((StateEventType::from(pdu.event_type.to_string()), key.clone()), id.clone());
            }
            self.events.insert(id.clone(), pdu);
            self.state_after.insert(id.clone(), after);
            Ok(id)
        }

        fn membership(&self, at: &OwnedEventId, who: &str) -> Option<String> {
            let key = (StateEventType::RoomMember, user(who).to_string());
            let id = self.state_after[at].get(&key)?;
            self.events[id].content_value()["membership"].as_str().map(str::to_owned)
        }

        /// create, alice joins, power levels (alice 100, `extra` users), public join rules.
        fn public_room(extra: serde_json::Value) -> (Self, OwnedEventId) {
            let mut dag = Self::new();
            let alice = user("alice");
            let create = dag
                .add(&[], "alice", "m.room.create", Some(""), json!({"creator": alice, "room_version": "10"}))
                .unwrap();
            let join = dag
                .add(&[&create], "alice", "m.room.member", Some(alice.as_str()), json!({"membership": "join"}))
                .unwrap();
            let mut users = json!({alice.as_str(): 100});
            if let serde_json::Value::Object(extra) = extra {
                for (k, v) in extra {
                    users[k] = v;
                }
            }
            let power = dag.add(&[&join], "alice", "m.room.power_levels", Some(""), json!({"users": users})).unwrap();
            let rules =
                dag.add(&[&power], "alice", "m.room.join_rules", Some(""), json!({"join_rule": "public"})).unwrap();
            (dag, rules)
        }
    }

    #[test]
    fn ban_beats_a_concurrent_join() {
        let (mut dag, base) = Dag::public_room(json!({}));
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
        let (mut dag, base) = Dag::public_room(json!({"@carol:example.org": 50}));
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
        let (mut dag, base) = Dag::public_room(json!({}));
        let name = dag.add(&[&base], "alice", "m.room.name", Some(""), json!({"name": "N"})).unwrap();
        let topic = dag.add(&[&base], "alice", "m.room.topic", Some(""), json!({"topic": "T"})).unwrap();
        let merge = dag.add(&[&name, &topic], "alice", "m.room.message", None, json!({"body": "merge"})).unwrap();
        let state = &dag.state_after[&merge];
        assert_eq!(state[&(StateEventType::RoomName, String::new())], name);
        assert_eq!(state[&(StateEventType::RoomTopic, String::new())], topic);
    }

    #[test]
    fn auth_chain_is_the_recursive_closure() {
        let (mut dag, base) = Dag::public_room(json!({}));
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
