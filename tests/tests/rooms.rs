//! Rooms over HTTP: creation presets, membership rules, sending, state and idempotency.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests, message_bodies};

engine_tests!(
    create_room_builds_the_preset_state,
    create_room_rejects_bad_input,
    membership_follows_join_rules_and_power,
    sending_is_idempotent_per_device_and_transaction,
    state_events_need_power_and_exist,
    member_lists,
);

async fn create_room_builds_the_preset_state(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;

    let public = server
        .create_room(
            &alice,
            json!({"preset": "public_chat", "name": "Lobby", "topic": "Hi", "room_alias_name": "lobby"}),
        )
        .await;
    let create = server.state_content(&alice, &public, "m.room.create", "").await;
    assert_eq!(create["room_version"], "10");
    assert_eq!(create["creator"], alice.user_id);
    let power = server.state_content(&alice, &public, "m.room.power_levels", "").await;
    assert_eq!(power["users"][&alice.user_id], 100);
    assert_eq!(power["invite"], 50);
    assert_eq!(server.state_content(&alice, &public, "m.room.join_rules", "").await["join_rule"], "public");
    assert_eq!(
        server.state_content(&alice, &public, "m.room.history_visibility", "").await["history_visibility"],
        "shared"
    );
    assert_eq!(server.state_content(&alice, &public, "m.room.guest_access", "").await["guest_access"], "forbidden");
    assert_eq!(server.state_content(&alice, &public, "m.room.name", "").await["name"], "Lobby");
    assert_eq!(server.state_content(&alice, &public, "m.room.topic", "").await["topic"], "Hi");
    let alias = format!("#lobby:{}", server.server_name);
    assert_eq!(server.state_content(&alice, &public, "m.room.canonical_alias", "").await["alias"], alias);
    // The alias resolves for joining.
    let (status, joined) = server.join(&bob, &alias).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["room_id"], public.as_str());

    // The events come in the spec's order.
    let (_, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{public}/messages?dir=f&limit=20"), alice.token()).await;
    let types: Vec<&str> = state["chunk"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..9],
        [
            "m.room.create",
            "m.room.member",
            "m.room.power_levels",
            "m.room.canonical_alias",
            "m.room.join_rules",
            "m.room.history_visibility",
            "m.room.guest_access",
            "m.room.name",
            "m.room.topic",
        ]
    );

    // A trusted private chat in v11: invitees become admins, the creator field is gone.
    let trusted = server
        .create_room(
            &alice,
            json!({"preset": "trusted_private_chat", "room_version": "11", "invite": [bob.user_id], "is_direct": true,
                   "initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
                   "power_level_content_override": {"events_default": 10}}),
        )
        .await;
    let create = server.state_content(&alice, &trusted, "m.room.create", "").await;
    assert_eq!(create["room_version"], "11");
    assert!(create.get("creator").is_none());
    let power = server.state_content(&alice, &trusted, "m.room.power_levels", "").await;
    assert_eq!(power["users"][&bob.user_id], 100);
    assert_eq!(power["events_default"], 10);
    assert_eq!(power["invite"], 0);
    assert_eq!(server.state_content(&alice, &trusted, "m.room.join_rules", "").await["join_rule"], "invite");
    assert_eq!(
        server.state_content(&alice, &trusted, "m.room.encryption", "").await["algorithm"],
        "m.megolm.v1.aes-sha2"
    );
    let member = server.state_content(&alice, &trusted, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "invite");
    assert_eq!(member["is_direct"], true);
}

async fn create_room_rejects_bad_input(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    server.create_room(&alice, json!({"room_alias_name": "taken"})).await;
    let create = |body| server.post("/_matrix/client/v3/createRoom", alice.token(), body);
    assert_error(create(json!({"room_alias_name": "taken"})).await, StatusCode::CONFLICT, "M_ROOM_IN_USE");
    assert_error(create(json!({"room_version": "999"})).await, StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
    assert_error(create(json!({"room_version": "2"})).await, StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
    assert_error(create(json!({"invite": ["not-a-user-id"]})).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    assert_error(
        create(json!({"invite": [format!("@ghost:{}", server.server_name)]})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        server.post("/_matrix/client/v3/createRoom", None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

async fn membership_follows_join_rules_and_power(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let carol = server.register("carol", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let path = |action: &str| format!("/_matrix/client/v3/rooms/{room}/{action}");

    // Invite-only: bob cannot join until invited.
    assert_error(server.join(&bob, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, _) = server.post(&path("invite"), alice.token(), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&path("join"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", bob.token()).await;
    assert_eq!(rooms["joined_rooms"], json!([room]));

    // Bob (power 0) cannot kick or ban; alice can.
    server.post(&path("invite"), alice.token(), json!({"user_id": carol.user_id})).await;
    server.join(&carol, &room).await;
    let (status, error) = server.post(&path("kick"), bob.token(), json!({"user_id": carol.user_id})).await;
    assert_eq!((status, error["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")));
    assert_error(
        server.post(&path("ban"), bob.token(), json!({"user_id": carol.user_id})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, _) =
        server.post(&path("kick"), alice.token(), json!({"user_id": carol.user_id, "reason": "spam"})).await;
    assert_eq!(status, StatusCode::OK);
    let member = server.state_content(&alice, &room, "m.room.member", &carol.user_id).await;
    assert_eq!(member["membership"], "leave");
    assert_eq!(member["reason"], "spam");
    // A kicked user of an invite-only room cannot rejoin on their own.
    assert_error(server.join(&carol, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // Ban: even an invite cannot bring bob back until unbanned.
    let (status, _) = server.post(&path("ban"), alice.token(), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(server.join(&bob, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(
        server.post(&path("invite"), alice.token(), json!({"user_id": bob.user_id})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.post(&path("send/m.room.message/x1"), bob.token(), json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
    );
    let (status, _) = server.post(&path("unban"), alice.token(), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    server.post(&path("invite"), alice.token(), json!({"user_id": bob.user_id})).await;
    let (status, _) = server.join(&bob, &room).await;
    assert_eq!(status, StatusCode::OK);

    // Leave, then forget; forgetting while joined is refused.
    assert_error(server.post(&path("forget"), bob.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let (status, _) = server.post(&path("leave"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&path("forget"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", bob.token()).await;
    assert_eq!(rooms["joined_rooms"], json!([]));
    // Leaving again is harmless; leaving a room one was never in is refused.
    let (status, _) = server.post(&path("leave"), carol.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let dave = server.register("dave", "correct-horse").await;
    assert_error(server.post(&path("leave"), dave.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // Unknown and malformed rooms.
    let unknown = format!("!nope:{}", server.server_name);
    assert_error(server.join(&bob, &unknown).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        server.post("/_matrix/client/v3/rooms/not-a-room-id/join", bob.token(), json!({})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

async fn sending_is_idempotent_per_device_and_transaction(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let alice_phone = server.login("alice", "correct-horse").await;
    let mallory = server.register("mallory", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let send = |txn: &str| format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let body = json!({"msgtype": "m.text", "body": "once"});

    let (_, first) = server.put(&send("txn1"), alice.token(), body.clone()).await;
    let (_, again) = server.put(&send("txn1"), alice.token(), body.clone()).await;
    assert_eq!(first["event_id"], again["event_id"]);
    // The same transaction ID from another device is another event.
    let (_, other) = server.put(&send("txn1"), alice_phone.token(), body.clone()).await;
    assert_ne!(first["event_id"], other["event_id"]);
    let (_, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), alice.token()).await;
    assert_eq!(message_bodies(&page["chunk"]), vec!["once", "once"]);

    // Concurrent retries of one transaction still make one event, and each answer comes once
    // it is committed (a retry can arrive while the first send is still being written).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = format!("{}{}", server.base_url, send("txn2"));
        let (token, body) = (alice.access_token.clone(), body.clone());
        let storage = server.state.storage.clone();
        tasks.spawn(async move {
            let response = reqwest::Client::new().put(url).bearer_auth(token).json(&body).send().await.unwrap();
            let id = response.json::<serde_json::Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned();
            assert!(storage.event(&id).await.unwrap().is_some(), "{id} is stored when answered");
            id
        });
    }
    let ids: std::collections::HashSet<String> = tasks.join_all().await.into_iter().collect();
    assert_eq!(ids.len(), 1);

    // Outsiders, unknown rooms, oversized events.
    assert_error(server.put(&send("m1"), mallory.token(), body.clone()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let unknown = format!("/_matrix/client/v3/rooms/!nope:{}/send/m.room.message/t", server.server_name);
    assert_error(server.put(&unknown, alice.token(), body.clone()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let huge = json!({"msgtype": "m.text", "body": "x".repeat(70_000)});
    assert_error(server.put(&send("big"), alice.token(), huge).await, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    assert_error(server.put(&send("arr"), alice.token(), json!([1])).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
}

async fn state_events_need_power_and_exist(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");

    assert_error(server.get(&topic, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        server.put(&topic, bob.token(), json!({"topic": "bob's"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, response) = server.put(&topic, alice.token(), json!({"topic": "alice's"})).await;
    assert_eq!(status, StatusCode::OK);
    let event_id = response["event_id"].as_str().unwrap().to_owned();
    // Empty state keys work with and without the trailing slash.
    assert_eq!(server.get(&topic, bob.token()).await.1["topic"], "alice's");
    assert_eq!(server.get(&format!("{topic}/"), bob.token()).await.1["topic"], "alice's");
    let (_, full) = server.get(&format!("{topic}/?format=event"), bob.token()).await;
    assert_eq!(full["event_id"], event_id.as_str());
    assert_eq!(full["room_id"], room.as_str());

    let (status, all) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().unwrap();
    assert!(all.iter().any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "alice's"));
    assert_eq!(all.iter().filter(|e| e["type"] == "m.room.member").count(), 2);

    // Custom state with a state key; /event returns it.
    let custom = format!("/_matrix/client/v3/rooms/{room}/state/org.example.widget/w1");
    let (_, sent) = server.put(&custom, alice.token(), json!({"url": "https://example.org"})).await;
    let (status, event) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", sent["event_id"].as_str().unwrap()), bob.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event["state_key"], "w1");
    assert_error(
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/$doesnotexist"), bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let outsider = server.register("outsider", "correct-horse").await;
    assert_error(server.get(&topic, outsider.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

async fn member_lists(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let carol = server.register("carol", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "invite": [carol.user_id]})).await;
    server.join(&bob, &room).await;

    let (status, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/members"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(members["chunk"].as_array().unwrap().len(), 3);
    let (_, joined) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/members?membership=join"), alice.token()).await;
    let mut ids: Vec<&str> =
        joined["chunk"].as_array().unwrap().iter().map(|e| e["state_key"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![alice.user_id.as_str(), bob.user_id.as_str()]);
    let (_, not_joined) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/members?not_membership=join"), alice.token()).await;
    assert_eq!(not_joined["chunk"][0]["state_key"], carol.user_id.as_str());

    let (status, joined) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(joined["joined"][&alice.user_id]["display_name"], "alice");
    assert!(joined["joined"].get(&carol.user_id).is_none());
    assert_error(
        server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), carol.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}
