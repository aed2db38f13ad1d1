//! A small room DAG for tests: builds, signs and authorizes events on any fork, resolving state
//! where forks meet, exactly as the protocol code does.

use std::collections::HashMap;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::state_res::StateMap;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedUserId, RoomId, RoomVersionId, UInt};
use serde_json::json;

use crate::auth::{StateEvents, auth_types, authorize};
use crate::keys::ServerSigningKey;
use crate::pdu::{DagPosition, EventTemplate, Pdu, build_pdu, rules_for};
use crate::state_res::resolve;

/// A room DAG that can fork: every event records the state after it.
pub struct Dag {
    pub version: RoomVersionId,
    pub key: ServerSigningKey,
    pub events: HashMap<OwnedEventId, Pdu>,
    pub state_after: HashMap<OwnedEventId, StateMap<OwnedEventId>>,
    /// The latest event added, which `send` appends after.
    pub last: Option<OwnedEventId>,
    clock: u32,
}

pub fn user(name: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:example.org")).unwrap()
}

impl Dag {
    pub fn new(version: RoomVersionId) -> Self {
        Self {
            version,
            key: ServerSigningKey::generate(),
            events: HashMap::new(),
            state_after: HashMap::new(),
            last: None,
            clock: 0,
        }
    }

    /// Appends an event after the latest one (a linear room).
    pub fn send(
        &mut self,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
    ) -> Result<OwnedEventId, String> {
        let last = self.last.clone();
        let parents: Vec<&OwnedEventId> = last.iter().collect();
        self.add(&parents, sender, event_type, state_key, content)
    }

    /// Appends an event after `parents` (resolving their states first when there are
    /// several); fails when the event is not authorized by that state.
    pub fn add(
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
        let template = EventTemplate { event_type, state_key: state_key.map(str::to_owned), content, redacts: None };
        let position = DagPosition { prev_events: parents.iter().map(|p| (*p).clone()).collect(), auth_events, depth };
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
        self.last = Some(id.clone());
        Ok(id)
    }

    pub fn membership(&self, at: &OwnedEventId, who: &str) -> Option<String> {
        let key = (StateEventType::RoomMember, user(who).to_string());
        let id = self.state_after[at].get(&key)?;
        self.events[id].content_value()["membership"].as_str().map(str::to_owned)
    }

    /// create, alice joins, power levels (alice 100, `extra` users), public join rules.
    pub fn public_room(version: RoomVersionId, extra: serde_json::Value) -> (Self, OwnedEventId) {
        let mut dag = Self::new(version);
        let alice = user("alice");
        let create = dag
            .add(&[], "alice", "m.room.create", Some(""), json!({"creator": alice, "room_version": dag.version}))
            .unwrap();
        let join =
            dag.add(&[&create], "alice", "m.room.member", Some(alice.as_str()), json!({"membership": "join"})).unwrap();
        let mut users = json!({alice.as_str(): 100});
        if let serde_json::Value::Object(extra) = extra {
            for (k, v) in extra {
                users[k] = v;
            }
        }
        let power = dag.add(&[&join], "alice", "m.room.power_levels", Some(""), json!({"users": users})).unwrap();
        let rules = dag.add(&[&power], "alice", "m.room.join_rules", Some(""), json!({"join_rule": "public"})).unwrap();
        (dag, rules)
    }
}
