//! Event authorization: the spec's auth rules for a room version, via ruma's state-res checks.

use std::collections::HashMap;

use ruma::events::StateEventType;
use ruma::room_version_rules::AuthorizationRules;
use ruma::{OwnedEventId, UserId};

use crate::pdu::Pdu;

/// A room state: `(type, state_key)` → event.
pub type StateEvents<'a> = HashMap<(StateEventType, String), &'a Pdu>;

/// Which current-state entries a new event must cite as `auth_events`.
pub fn auth_types(
    rules: &AuthorizationRules,
    event_type: &ruma::events::TimelineEventType,
    sender: &UserId,
    state_key: Option<&str>,
    content: &serde_json::value::RawValue,
) -> Result<Vec<(StateEventType, String)>, String> {
    ruma::state_res::auth_types_for_event(event_type, sender, state_key, content, rules)
}

/// Checks `event` against its own `auth_events` (looked up in `auth_events`) and against the room
/// state before it. Returns the reason on rejection.
pub fn authorize(
    rules: &AuthorizationRules,
    event: &Pdu,
    auth_events: &HashMap<OwnedEventId, Pdu>,
    state_before: &StateEvents<'_>,
) -> Result<(), String> {
    ruma::state_res::check_state_independent_auth_rules(rules, event, |id| auth_events.get(id))?;
    ruma::state_res::check_state_dependent_auth_rules(rules, event, |event_type, state_key| {
        state_before.get(&(event_type.clone(), state_key.to_owned())).copied()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ruma::events::{StateEventType, TimelineEventType};
    use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedUserId, RoomId, RoomVersionId, UInt};
    use serde_json::json;

    use super::*;
    use crate::keys::ServerSigningKey;
    use crate::pdu::{DagPosition, EventTemplate, build_pdu, rules_for};

    /// A linear room on one server, for exercising the auth rules.
    struct Room {
        key: ServerSigningKey,
        version: RoomVersionId,
        events: HashMap<OwnedEventId, Pdu>,
        state: HashMap<(StateEventType, String), OwnedEventId>,
        last: Option<OwnedEventId>,
        depth: u64,
    }

    impl Room {
        fn new(version: RoomVersionId) -> Self {
            let key = ServerSigningKey::generate();
            Self { key, version, events: HashMap::new(), state: HashMap::new(), last: None, depth: 0 }
        }

        fn user(name: &str) -> OwnedUserId {
            OwnedUserId::try_from(format!("@{name}:example.org")).unwrap()
        }

        /// Builds the event, authorizes it, and on success appends it to the room.
        fn send(
            &mut self,
            sender: &str,
            event_type: &str,
            state_key: Option<&str>,
            content: serde_json::Value,
        ) -> Result<OwnedEventId, String> {
            let rules = rules_for(&self.version).unwrap();
            let sender = Self::user(sender);
            let event_type = TimelineEventType::from(event_type);
            let raw = serde_json::value::to_raw_value(&content).unwrap();
            let types = auth_types(&rules.authorization, &event_type, &sender, state_key, &raw)?;
            let auth_events: Vec<OwnedEventId> = types.iter().filter_map(|t| self.state.get(t).cloned()).collect();
            let template =
                EventTemplate { event_type, state_key: state_key.map(str::to_owned), content, redacts: None };
            let position =
                DagPosition { prev_events: self.last.iter().cloned().collect(), auth_events, depth: self.depth + 1 };
            let room_id = <&RoomId>::try_from("!room:example.org").unwrap();
            let ts = MilliSecondsSinceUnixEpoch(UInt::from(self.depth as u32 + 1));
            let pdu =
                build_pdu("example.org", &self.key, &self.version, room_id, &sender, &template, &position, ts).unwrap();
            let state_before: StateEvents<'_> =
                self.state.iter().map(|(k, id)| (k.clone(), &self.events[id])).collect();
            authorize(&rules.authorization, &pdu, &self.events, &state_before)?;
            let id = pdu.event_id.clone();
            if let Some(state_key) = &pdu.state_key {
                self.state.insert((pdu.event_type.to_string().into(), state_key.clone()), id.clone());
            }
            self.events.insert(id.clone(), pdu);
            self.last = Some(id.clone());
            self.depth += 1;
            Ok(id)
        }

        fn public_room(version: RoomVersionId) -> Self {
            let mut room = Self::new(version);
            let creator = Self::user("alice");
            room.send("alice", "m.room.create", Some(""), json!({"creator": creator, "room_version": room.version}))
                .unwrap();
            room.send("alice", "m.room.member", Some(creator.as_str()), json!({"membership": "join"})).unwrap();
            room.send("alice", "m.room.power_levels", Some(""), json!({"users": {creator.as_str(): 100}})).unwrap();
            room.send("alice", "m.room.join_rules", Some(""), json!({"join_rule": "public"})).unwrap();
            room
        }
    }

    #[test]
    fn members_can_talk_and_outsiders_cannot() {
        for version in [RoomVersionId::V10, RoomVersionId::V11] {
            let mut room = Room::public_room(version);
            let bob = Room::user("bob");
            room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).unwrap();
            room.send("bob", "m.room.message", None, json!({"msgtype": "m.text", "body": "hi"})).unwrap();
            let err =
                room.send("carol", "m.room.message", None, json!({"msgtype": "m.text", "body": "hi"})).unwrap_err();
            assert!(!err.is_empty());
            // Bob cannot join on Carol's behalf.
            let carol = Room::user("carol");
            assert!(room.send("bob", "m.room.member", Some(carol.as_str()), json!({"membership": "join"})).is_err());
        }
    }

    #[test]
    fn power_levels_gate_state_changes_and_kicks() {
        let mut room = Room::public_room(RoomVersionId::V10);
        let bob = Room::user("bob");
        room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).unwrap();
        // Default state_default is 50: bob (0) cannot set the topic or power levels.
        assert!(room.send("bob", "m.room.topic", Some(""), json!({"topic": "mine"})).is_err());
        let grab = json!({"users": {bob.as_str(): 100}});
        assert!(room.send("bob", "m.room.power_levels", Some(""), grab).is_err());
        // Bob cannot kick alice; alice can kick bob, and a kicked bob cannot talk.
        let alice = Room::user("alice");
        assert!(room.send("bob", "m.room.member", Some(alice.as_str()), json!({"membership": "leave"})).is_err());
        room.send("alice", "m.room.member", Some(bob.as_str()), json!({"membership": "leave"})).unwrap();
        assert!(room.send("bob", "m.room.message", None, json!({"body": "x"})).is_err());
    }

    #[test]
    fn bans_and_invite_only_rooms() {
        let mut room = Room::public_room(RoomVersionId::V11);
        let bob = Room::user("bob");
        room.send("alice", "m.room.member", Some(bob.as_str()), json!({"membership": "ban"})).unwrap();
        assert!(room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).is_err());
        room.send("alice", "m.room.member", Some(bob.as_str()), json!({"membership": "leave"})).unwrap();
        room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).unwrap();

        room.send("alice", "m.room.join_rules", Some(""), json!({"join_rule": "invite"})).unwrap();
        let carol = Room::user("carol");
        assert!(room.send("carol", "m.room.member", Some(carol.as_str()), json!({"membership": "join"})).is_err());
        room.send("alice", "m.room.member", Some(carol.as_str()), json!({"membership": "invite"})).unwrap();
        room.send("carol", "m.room.member", Some(carol.as_str()), json!({"membership": "join"})).unwrap();
    }

    #[test]
    fn event_ids_are_reference_hashes_and_signatures_verify() {
        let mut room = Room::public_room(RoomVersionId::V10);
        let id = room.send("alice", "m.room.message", None, json!({"body": "hello"})).unwrap();
        let pdu = &room.events[&id];
        let rules = rules_for(&RoomVersionId::V10).unwrap();
        assert_eq!(crate::pdu::event_id_for(&pdu.json, &rules).unwrap(), id);
        assert!(!pdu.json.contains_key("event_id"), "v3+ events carry no event_id");
        let public_key = room.key.public_key_base64();
        let mut keys = std::collections::BTreeMap::new();
        keys.insert(
            "example.org".to_owned(),
            std::collections::BTreeMap::from([(room.key.key_id(), ruma::serde::Base64::parse(&public_key).unwrap())]),
        );
        let verified = ruma::signatures::verify_event(&keys, &pdu.json, &rules).unwrap();
        assert_eq!(verified, ruma::signatures::Verified::All);
    }
}
