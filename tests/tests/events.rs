//! Redactions and `/context`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, engine_tests, message_bodies};

engine_tests!(
    redaction_removes_content_for_everyone,
    context_around_an_event,
    state_changes_carry_prev_content,
    concurrent_state_changes_each_carry_the_one_before
);

async fn redaction_removes_content_for_everyone(engine: Engine) {
    for version in ["10", "11"] {
        let server = TestServer::start(engine).await;
        let alice = server.register("alice", "correct-horse").await;
        let bob = server.register("bob", "correct-horse").await;
        let room = server.create_room(&alice, json!({"preset": "public_chat", "room_version": version})).await;
        server.join(&bob, &room).await;
        let secret = server.send_text(&bob, &room, "oops, a password").await;
        let alices = server.send_text(&alice, &room, "alice's words").await;
        let redact = |event: &str, txn: &str| format!("/_matrix/client/v3/rooms/{room}/redact/{event}/{txn}");
        // Read before the redaction, so the server holds it in its event cache.
        let by_id = format!("/_matrix/client/v3/rooms/{room}/event/{secret}");
        assert_eq!(server.get(&by_id, alice.token()).await.1["content"]["body"], "oops, a password");

        // Bob (power 0) cannot redact alice's event; he can redact his own.
        assert_error(
            server.put(&redact(&alices, "r0"), bob.token(), json!({})).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        let (status, response) = server.put(&redact(&secret, "r1"), bob.token(), json!({"reason": "leaked"})).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        let redaction_id = response["event_id"].as_str().unwrap().to_owned();
        // Retrying the transaction returns the same redaction.
        let (_, again) = server.put(&redact(&secret, "r1"), bob.token(), json!({"reason": "leaked"})).await;
        assert_eq!(again["event_id"], redaction_id.as_str());

        let (status, event) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{secret}"), alice.token()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(event["content"], json!({}), "content is gone (v{version})");
        assert_eq!(event["unsigned"]["redacted_because"]["event_id"], redaction_id.as_str());
        assert_eq!(event["unsigned"]["redacted_because"]["content"]["reason"], "leaked");

        let (_, page) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10"), alice.token()).await;
        let chunk = page["chunk"].as_array().unwrap();
        assert_eq!(message_bodies(&page["chunk"]), vec!["alice's words"]);
        let redaction = chunk.iter().find(|e| e["type"] == "m.room.redaction").unwrap();
        assert_eq!(redaction["redacts"], secret.as_str(), "top-level redacts for every room version");
        let sync = server.sync(&alice, "").await;
        assert!(!sync.to_string().contains("oops, a password"));

        // The room admin may redact anyone's events; unknown events are 404.
        let (status, _) = server.put(&redact(&alices, "r2"), alice.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK);
        assert_error(
            server.put(&redact("$nope", "r3"), alice.token(), json!({})).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
        // The original content is gone from the database, not just hidden.
        let stored = server.state.storage.event(&secret).await.unwrap().unwrap();
        assert!(!stored.json.to_string().contains("oops, a password"));
    }
}

async fn context_around_an_event(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Ctx"})).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(server.send_text(&alice, &room, &format!("c{i}")).await);
    }
    let path = format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=4", ids[4]);
    let (status, context) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["event"]["content"]["body"], "c4");
    assert_eq!(message_bodies(&context["events_before"]), vec!["c3", "c2"]);
    assert_eq!(message_bodies(&context["events_after"]), vec!["c5", "c6"]);
    assert!(context["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.name"));
    // The tokens continue the timeline in both directions.
    let start = context["start"].as_str().unwrap();
    let (_, older) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2&from={start}"), alice.token())
        .await;
    assert_eq!(message_bodies(&older["chunk"]), vec!["c1", "c0"]);
    let end = context["end"].as_str().unwrap();
    let (_, newer) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=5&from={end}"), alice.token()).await;
    assert_eq!(message_bodies(&newer["chunk"]), vec!["c7", "c8"]);

    let outsider = server.register("outsider", "correct-horse").await;
    assert_error(server.get(&path, outsider.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

async fn state_changes_carry_prev_content(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");
    let (_, first) = server.put(&topic, alice.token(), json!({"topic": "first topic"})).await;
    let (_, second) = server.put(&topic, alice.token(), json!({"topic": "second"})).await;
    let first_id = first["event_id"].as_str().unwrap();
    let event_path = format!("/_matrix/client/v3/rooms/{room}/event/{}", second["event_id"].as_str().unwrap());
    let (_, event) = server.get(&event_path, alice.token()).await;
    assert_eq!(event["unsigned"]["prev_content"], json!({"topic": "first topic"}));
    assert_eq!(event["unsigned"]["replaces_state"], first_id);
    assert_eq!(event["unsigned"]["prev_sender"], alice.user_id.as_str());

    // Redacting the first topic removes its content from the successor's prev_content too.
    let redact = format!("/_matrix/client/v3/rooms/{room}/redact/{first_id}/rt");
    let (status, _) = server.put(&redact, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, event) = server.get(&event_path, alice.token()).await;
    assert_eq!(event["unsigned"]["prev_content"], json!({}));
    let sync = server.sync(&alice, "").await;
    assert!(!sync.to_string().contains("first topic"));
}

/// State events are built on the room's head while the one before is still being committed:
/// each still carries the content it replaced, and the room ends at the last one.
async fn concurrent_state_changes_each_carry_the_one_before(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..8 {
        let request = reqwest::Client::new()
            .put(format!("{}{topic}", server.base_url))
            .bearer_auth(alice.token().unwrap())
            .json(&json!({"topic": format!("topic {i}")}));
        sends.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let topics: Vec<&Value> =
        page["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.topic").collect();
    assert_eq!(topics.len(), 8, "{page}");
    for pair in topics.windows(2) {
        assert_eq!(pair[1]["unsigned"]["prev_content"], pair[0]["content"], "{}", pair[1]);
        assert_eq!(pair[1]["unsigned"]["replaces_state"], pair[0]["event_id"], "{}", pair[1]);
    }
    let current = server.state_content(&alice, &room, "m.room.topic", "").await;
    assert_eq!(current, topics[7]["content"]);
}
