//! Erasure of what the user cannot redact themselves: messages in rooms they had left (redacted
//! by a local moderator, or pruned locally where none may), their old member events with the
//! display names they carried, and the room names and topics they set. Proven on what others
//! see, on the raw bytes, and on the room still working afterwards.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, engine_tests, random_suffix};
use crate::erasure::{PASSWORD, assert_no_marker_on_disk, assert_redacted, find, wait_for_erasure};

engine_tests!(
    messages_in_left_rooms_are_redacted_or_pruned,
    state_the_user_set_is_erased_and_the_room_still_works,
    a_topic_nobody_may_redact_is_pruned_and_settings_stay,
);

/// Lower case, ending in a digit: the search index keeps tokens as they are here.
fn marker(what: &str) -> String {
    format!("{what}marker{}7", random_suffix())
}

async fn erase(server: &TestServer, admin: &Session, user_id: &str) {
    let path = format!("/_synapse/admin/v1/deactivate/{user_id}");
    let (status, response) = server.post(&path, admin.token(), json!({"erase": true})).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    wait_for_erasure(server).await;
}

async fn leave(server: &TestServer, session: &Session, room: &str) {
    let path = format!("/_matrix/client/v3/rooms/{room}/leave");
    let (status, body) = server.post(&path, session.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn set_state(server: &TestServer, session: &Session, room: &str, event_type: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/{event_type}/");
    let (status, body) = server.put(&path, session.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn set_displayname(server: &TestServer, session: &Session, name: &str) {
    let path = format!("/_matrix/client/v3/profile/{}/displayname", session.user_id);
    let (status, body) = server.put(&path, session.token(), json!({"displayname": name})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn get_ok(server: &TestServer, session: &Session, path: &str) -> Value {
    let (status, body) = server.get(path, session.token()).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// Pruned locally: the redacted form, with no redaction event behind it.
#[track_caller]
fn assert_pruned(event: &Value) {
    assert_eq!(event["content"], json!({}), "{event}");
    assert!(event["unsigned"].get("redacted_because").is_none(), "{event}");
}

/// The stored pruned event still verifies as this server's, as other servers check it: the
/// signature holds, the event ID (a hash of the redacted form) is unchanged, and only the content
/// hash differs, as for any redacted event.
async fn assert_still_verifies(server: &TestServer, event_id: &str) {
    let row = server.state.storage.event(event_id).await.unwrap().expect("stored event");
    let room = server.state.storage.room(&row.room_id).await.unwrap().expect("stored room");
    let rules = federation::pdu::rules_for(&ruma::RoomVersionId::try_from(room.room_version).unwrap()).unwrap();
    let mut object = federation::signing::to_canonical_object(serde_json::Value::clone(&row.json)).unwrap();
    object.remove("unsigned");
    let key = &server.state.signing_key;
    let public_key = ruma::serde::Base64::parse(key.public_key_base64()).unwrap();
    let keys = BTreeMap::from([(server.server_name.clone(), BTreeMap::from([(key.key_id(), public_key)]))]);
    let verified = ruma::signatures::verify_event(&keys, &object, &rules).unwrap();
    assert_eq!(verified, ruma::signatures::Verified::Signatures, "{event_id}");
    assert_eq!(federation::pdu::event_id_for(&object, &rules).unwrap().as_str(), event_id);
}

#[track_caller]
fn assert_no_marker_in(what: &str, value: &Value, markers: &[String]) {
    let text = value.to_string();
    for marker in markers {
        assert!(!text.contains(marker.as_str()), "{marker} still in {what}: {text}");
    }
}

async fn messages_in_left_rooms_are_redacted_or_pruned(engine: Engine) {
    let mut server = TestServer::start(engine).await;
    let admin = server.admin("admin", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let markers: Vec<String> = ["unredactable", "moderated", "abandoned"].into_iter().map(marker).collect();

    // Nobody may redact others' events here, and bob stays: alice's message is pruned locally.
    let levels = json!({"redact": 101});
    let unredactable =
        server.create_room(&bob, json!({"preset": "public_chat", "power_level_content_override": levels})).await;
    // Bob (creator, level 100) may redact here: he redacts for real.
    let moderated = server.create_room(&bob, json!({"preset": "public_chat"})).await;
    // Everybody leaves (and she forgets it): nobody here is told, the stored copy is pruned.
    let abandoned = server.create_room(&bob, json!({"preset": "public_chat"})).await;
    let mut messages = Vec::new();
    for (room, marker) in [&unredactable, &moderated, &abandoned].into_iter().zip(&markers) {
        assert_eq!(server.join(&alice, room).await.0, StatusCode::OK);
        messages.push(server.send_text(&alice, room, &format!("said {marker}")).await);
        leave(&server, &alice, room).await;
    }
    leave(&server, &bob, &abandoned).await;
    // Forgotten by her too: still erased.
    let path = format!("/_matrix/client/v3/rooms/{abandoned}/forget");
    assert_eq!(server.post(&path, alice.token(), json!({})).await.0, StatusCode::OK);

    erase(&server, &admin, &alice.user_id).await;

    // Every view of the pruned message shows its redacted form.
    let (room, message) = (&unredactable, &messages[0]);
    let page = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50")).await;
    assert_pruned(find(&page["chunk"], message));
    let event = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/event/{message}")).await;
    assert_pruned(&event);
    let context = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/context/{message}")).await;
    assert_pruned(&context["event"]);
    assert_still_verifies(&server, message).await;
    let initial = server.sync(&bob, "").await;
    assert_pruned(find(&initial["rooms"]["join"][room.as_str()]["timeline"]["events"], message));
    assert_no_marker_in("bob's sync", &initial, &markers);

    let page = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{moderated}/messages?dir=b&limit=50")).await;
    let event = find(&page["chunk"], &messages[1]);
    assert_redacted(event);
    assert_eq!(event["unsigned"]["redacted_because"]["sender"], bob.user_id.as_str(), "{event}");

    // The room still works for those in it.
    let after = server.send_text(&bob, &unredactable, "still here").await;
    let initial = server.sync(&bob, "").await;
    find(&initial["rooms"]["join"][unredactable.as_str()]["timeline"]["events"], &after);
    assert_no_marker_on_disk(&server, engine, &markers).await;

    // A resumed erasure finds nothing left to do: no new event, nothing changed.
    let count_events = "SELECT COUNT(*) FROM events";
    let events = server.count_rows(count_events).await;
    server.stop().await;
    let queued = format!("INSERT INTO user_erasures (user_id, requested_ts) VALUES ('{}', 0)", alice.user_id);
    assert_eq!(server.raw_sql(&queued).await, 1);
    let server = server.restart().await;
    wait_for_erasure(&server).await;
    assert_eq!(server.count_rows(count_events).await, events);
    let event = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{unredactable}/event/{}", messages[0])).await;
    assert_pruned(&event);
}

async fn state_the_user_set_is_erased_and_the_room_still_works(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("admin", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let markers: Vec<String> =
        ["firstname", "secondname", "oldroomname", "roomname", "oldtopic", "message"].into_iter().map(marker).collect();

    set_displayname(&server, &alice, &markers[0]).await;
    let levels = json!({"users": {bob.user_id.clone(): 100, alice.user_id.clone(): 50}});
    let room = server.create_room(&bob, json!({"preset": "public_chat", "power_level_content_override": levels})).await;
    assert_eq!(server.join(&alice, &room).await.0, StatusCode::OK);
    // A new member event in the room; the join keeps the first name.
    set_displayname(&server, &alice, &markers[1]).await;
    let old_name = set_state(&server, &alice, &room, "m.room.name", json!({"name": markers[2]})).await;
    let name = set_state(&server, &alice, &room, "m.room.name", json!({"name": markers[3]})).await;
    set_state(&server, &alice, &room, "m.room.topic", json!({"topic": markers[4]})).await;
    // Bob's topic replaces hers: its `prev_content` holds her words.
    set_state(&server, &bob, &room, "m.room.topic", json!({"topic": "bob's topic"})).await;
    server.send_text(&alice, &room, &format!("and {}", markers[5])).await;
    let members = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/members")).await;
    assert!(members.to_string().contains(markers[1].as_str()), "{members}");

    erase(&server, &admin, &alice.user_id).await;

    // The name she set (current) is redacted for everyone; bob's topic stays.
    let page = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100")).await;
    assert_redacted(find(&page["chunk"], &name));
    assert_no_marker_in("the timeline", &page, &markers);
    let (status, current_name) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), bob.token()).await;
    assert!(status == StatusCode::NOT_FOUND || current_name.get("name").is_none(), "{current_name}");
    assert_eq!(server.state_content(&bob, &room, "m.room.topic", "").await["topic"], "bob's topic");
    let state = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/state")).await;
    assert_no_marker_in("the room state", &state, &markers);
    assert_pruned(find(&page["chunk"], &old_name));
    assert_still_verifies(&server, &old_name).await;

    // The member list is right: alice left, with no name left anywhere.
    let members = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/members")).await;
    assert_no_marker_in("the member list", &members, &markers);
    let membership = |user: &str| {
        let chunk = members["chunk"].as_array().cloned().unwrap_or_default();
        let event = chunk.into_iter().find(|e| e["state_key"] == user).unwrap_or_default();
        event["content"]["membership"].clone()
    };
    assert_eq!(membership(&alice.user_id), "leave", "{members}");
    assert_eq!(membership(&bob.user_id), "join", "{members}");

    // Someone new joins and talks; bob sees it and the joined members are right.
    let carol = server.register("carol", PASSWORD).await;
    assert_eq!(server.join(&carol, &room).await.0, StatusCode::OK);
    let hello = server.send_text(&carol, &room, "hello").await;
    let initial = server.sync(&bob, "").await;
    find(&initial["rooms"]["join"][room.as_str()]["timeline"]["events"], &hello);
    assert_no_marker_in("bob's sync", &initial, &markers);
    let joined = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/joined_members")).await;
    let mut ids: Vec<&String> = joined["joined"].as_object().expect("joined").keys().collect();
    ids.sort();
    let mut expected = vec![&bob.user_id, &carol.user_id];
    expected.sort();
    assert_eq!(ids, expected, "{joined}");

    assert_no_marker_on_disk(&server, engine, &markers).await;
}

/// In a room she left where nobody may redact others' events, the topic she set (still current)
/// is pruned locally; a room setting she chose (history visibility) stays as it is.
async fn a_topic_nobody_may_redact_is_pruned_and_settings_stay(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("admin", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let markers = vec![marker("topic")];
    let levels = json!({"redact": 101, "users": {bob.user_id.clone(): 100, alice.user_id.clone(): 100}});
    let room = server.create_room(&bob, json!({"preset": "public_chat", "power_level_content_override": levels})).await;
    assert_eq!(server.join(&alice, &room).await.0, StatusCode::OK);
    let topic = set_state(&server, &alice, &room, "m.room.topic", json!({"topic": markers[0]})).await;
    set_state(&server, &alice, &room, "m.room.history_visibility", json!({"history_visibility": "joined"})).await;
    leave(&server, &alice, &room).await;

    erase(&server, &admin, &alice.user_id).await;

    let event = get_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room}/event/{topic}")).await;
    assert_pruned(&event);
    let (status, current) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), bob.token()).await;
    assert!(status == StatusCode::NOT_FOUND || current.get("topic").is_none(), "{current}");
    let visibility = server.state_content(&bob, &room, "m.room.history_visibility", "").await;
    assert_eq!(visibility["history_visibility"], "joined", "a setting she chose stays");
    let after = server.send_text(&bob, &room, "still works").await;
    let initial = server.sync(&bob, "").await;
    find(&initial["rooms"]["join"][room.as_str()]["timeline"]["events"], &after);
    assert_no_marker_in("bob's sync", &initial, &markers);
    assert_no_marker_on_disk(&server, engine, &markers).await;
}
