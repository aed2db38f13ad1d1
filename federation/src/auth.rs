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
    use ruma::RoomVersionId;
    use serde_json::json;

    use crate::pdu::rules_for;
    use crate::test_dag::{Dag, user};

    #[test]
    fn members_can_talk_and_outsiders_cannot() {
        for version in [RoomVersionId::V10, RoomVersionId::V11] {
            let mut room = Dag::public_room(version, json!({})).0;
            let bob = user("bob");
            room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).unwrap();
            room.send("bob", "m.room.message", None, json!({"msgtype": "m.text", "body": "hi"})).unwrap();
            let err =
                room.send("carol", "m.room.message", None, json!({"msgtype": "m.text", "body": "hi"})).unwrap_err();
            assert!(!err.is_empty());
            // Bob cannot join on Carol's behalf.
            let carol = user("carol");
            assert!(room.send("bob", "m.room.member", Some(carol.as_str()), json!({"membership": "join"})).is_err());
        }
    }

    #[test]
    fn power_levels_gate_state_changes_and_kicks() {
        let mut room = Dag::public_room(RoomVersionId::V10, json!({})).0;
        let bob = user("bob");
        room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).unwrap();
        // Default state_default is 50: bob (0) cannot set the topic or power levels.
        assert!(room.send("bob", "m.room.topic", Some(""), json!({"topic": "mine"})).is_err());
        let grab = json!({"users": {bob.as_str(): 100}});
        assert!(room.send("bob", "m.room.power_levels", Some(""), grab).is_err());
        // Bob cannot kick alice; alice can kick bob, and a kicked bob cannot talk.
        let alice = user("alice");
        assert!(room.send("bob", "m.room.member", Some(alice.as_str()), json!({"membership": "leave"})).is_err());
        room.send("alice", "m.room.member", Some(bob.as_str()), json!({"membership": "leave"})).unwrap();
        assert!(room.send("bob", "m.room.message", None, json!({"body": "x"})).is_err());
    }

    #[test]
    fn bans_and_invite_only_rooms() {
        let mut room = Dag::public_room(RoomVersionId::V11, json!({})).0;
        let bob = user("bob");
        room.send("alice", "m.room.member", Some(bob.as_str()), json!({"membership": "ban"})).unwrap();
        assert!(room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).is_err());
        room.send("alice", "m.room.member", Some(bob.as_str()), json!({"membership": "leave"})).unwrap();
        room.send("bob", "m.room.member", Some(bob.as_str()), json!({"membership": "join"})).unwrap();

        room.send("alice", "m.room.join_rules", Some(""), json!({"join_rule": "invite"})).unwrap();
        let carol = user("carol");
        assert!(room.send("carol", "m.room.member", Some(carol.as_str()), json!({"membership": "join"})).is_err());
        room.send("alice", "m.room.member", Some(carol.as_str()), json!({"membership": "invite"})).unwrap();
        room.send("carol", "m.room.member", Some(carol.as_str()), json!({"membership": "join"})).unwrap();
    }

    #[test]
    fn event_ids_are_reference_hashes_and_signatures_verify() {
        let mut room = Dag::public_room(RoomVersionId::V10, json!({})).0;
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
