//! `/messages` pagination and history visibility on every read path.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests, message_bodies};

engine_tests!(paginates_long_histories_both_ways, history_visibility_is_enforced, message_filters);

async fn page(server: &TestServer, session: &Session, room: &str, query: &str) -> Value {
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?{query}"), session.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn paginates_long_histories_both_ways(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    const COUNT: usize = 1_500;
    for i in 0..COUNT {
        server.send_text(&alice, &room, &format!("m{i}")).await;
    }

    // Backwards from the newest, 100 at a time, until the server says there is no more.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    let mut pages = 0;
    let last_chunk = loop {
        let query = match &from {
            Some(token) => format!("dir=b&limit=100&from={token}"),
            None => "dir=b&limit=100".to_owned(),
        };
        let body = page(&server, &alice, &room, &query).await;
        pages += 1;
        assert!(body["chunk"].as_array().unwrap().len() <= 100);
        seen.extend(message_bodies(&body["chunk"]));
        match body["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break body["chunk"].as_array().unwrap().clone(),
        }
        assert!(pages < 100, "pagination did not terminate");
    };
    let expected: Vec<String> = (0..COUNT).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected, "every message exactly once, newest first");
    // The page that reaches the room's creation has no `end`: no empty page is needed to learn it.
    assert_eq!(last_chunk.last().map(|e| e["type"].clone()), Some(json!("m.room.create")), "{last_chunk:?}");

    // Forwards from the start.
    let mut seen = Vec::new();
    let mut from = "s0".to_owned();
    loop {
        let body = page(&server, &alice, &room, &format!("dir=f&limit=250&from={from}")).await;
        seen.extend(message_bodies(&body["chunk"]));
        match body["end"].as_str() {
            Some(end) if !body["chunk"].as_array().unwrap().is_empty() => from = end.to_owned(),
            _ => break,
        }
    }
    let expected: Vec<String> = (0..COUNT).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected, "every message exactly once, oldest first");

    // `to` bounds a page.
    let first = page(&server, &alice, &room, "dir=b&limit=5").await;
    let end = first["end"].as_str().unwrap();
    let bounded = page(&server, &alice, &room, &format!("dir=f&limit=100&from={end}")).await;
    assert_eq!(message_bodies(&bounded["chunk"]).len(), 5);
    assert_error(
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from=garbage"), alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

async fn history_visibility_is_enforced(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let carol = server.register("carol", "correct-horse").await;

    // "joined": bob sees nothing from before he joined.
    let joined_only = server
        .create_room(&alice, json!({"preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}]}))
        .await;
    let before = server.send_text(&alice, &joined_only, "before bob").await;
    server.join(&bob, &joined_only).await;
    server.send_text(&alice, &joined_only, "after bob").await;
    let body = page(&server, &bob, &joined_only, "dir=b&limit=50").await;
    assert_eq!(message_bodies(&body["chunk"]), vec!["after bob"]);
    let path = format!("/_matrix/client/v3/rooms/{joined_only}/event/{before}");
    assert_error(server.get(&path, bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (status, _) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    let sync = server.sync(&bob, "").await;
    let timeline = &sync["rooms"]["join"][&joined_only]["timeline"]["events"];
    assert_eq!(message_bodies(timeline), vec!["after bob"]);

    // "shared": carol sees history from before she joined...
    let shared = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.send_text(&alice, &shared, "old news").await;
    server.join(&carol, &shared).await;
    let body = page(&server, &carol, &shared, "dir=b&limit=50").await;
    assert_eq!(message_bodies(&body["chunk"]), vec!["old news"]);
    // ...but nothing sent after she left.
    server.post(&format!("/_matrix/client/v3/rooms/{shared}/leave"), carol.token(), json!({})).await;
    let secret = server.send_text(&alice, &shared, "after carol left").await;
    let body = page(&server, &carol, &shared, "dir=b&limit=50").await;
    assert_eq!(message_bodies(&body["chunk"]), vec!["old news"]);
    let path = format!("/_matrix/client/v3/rooms/{shared}/event/{secret}");
    assert_error(server.get(&path, carol.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Never a member: no access at all.
    let dave = server.register("dave", "correct-horse").await;
    assert_error(
        server.get(&format!("/_matrix/client/v3/rooms/{shared}/messages?dir=b"), dave.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

async fn message_filters(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.send_text(&alice, &room, "from alice").await;
    server.send_text(&bob, &room, "from bob").await;

    let filter = |f: Value| format!("dir=b&limit=50&filter={}", urlencode(&f.to_string()));
    let body = page(&server, &alice, &room, &filter(json!({"senders": [bob.user_id]}))).await;
    assert_eq!(message_bodies(&body["chunk"]), vec!["from bob"]);
    assert!(body["chunk"].as_array().unwrap().iter().all(|e| e["sender"] == bob.user_id.as_str()));
    let body = page(&server, &alice, &room, &filter(json!({"types": ["m.room.mess*"]}))).await;
    assert_eq!(body["chunk"].as_array().unwrap().len(), 2);
    let body = page(&server, &alice, &room, &filter(json!({"not_types": ["m.room.message"]}))).await;
    assert!(body["chunk"].as_array().unwrap().iter().all(|e| e["type"] != "m.room.message"));
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
