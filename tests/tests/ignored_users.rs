//! `m.ignored_user_list`: an ignored user's messages (also around `/context`), to-device
//! messages and invites are hidden; state stays.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, engine_tests, message_bodies};

engine_tests!(ignored_users_messages_and_invites_are_hidden);

const PASSWORD: &str = "correct-horse";

fn timeline(sync: &Value, room: &str) -> Value {
    sync["rooms"]["join"][room]["timeline"]["events"].clone()
}

async fn ignored_users_messages_and_invites_are_hidden(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;

    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", alice.user_id);
    let list = json!({"ignored_users": {&bob.user_id: {}}});
    assert_eq!(server.put(&path, alice.token(), list).await.0, StatusCode::OK);
    server.send_text(&bob, &room, "from bob").await;
    server.send_text(&carol, &room, "from carol").await;

    let sync = server.sync(&alice, "").await;
    assert_eq!(message_bodies(&timeline(&sync, &room)), ["from carol"]);
    // Bob's membership (state) is still there: the room stays consistent.
    let events = timeline(&sync, &room).as_array().cloned().unwrap_or_default();
    let state = sync["rooms"]["join"][&room]["state"]["events"].as_array().cloned().unwrap_or_default();
    let all: Vec<&Value> = events.iter().chain(&state).collect();
    assert!(all.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()));

    let (_, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), alice.token()).await;
    assert_eq!(message_bodies(&page["chunk"]), ["from carol"]);
    // Nor around another event with /context.
    let carols = page["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    let (_, context) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{carols}?limit=10"), alice.token()).await;
    let list = |field: &str| context[field].as_array().cloned().unwrap_or_default();
    let around: Vec<Value> = list("events_before").into_iter().chain(list("events_after")).collect();
    assert!(!around.is_empty(), "{context}");
    assert!(around.iter().all(|e| e["sender"] != bob.user_id.as_str() || e["type"] != "m.room.message"), "{context}");
    assert!(around.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()), "{context}");
    // And his to-device messages do not reach her; carol's do.
    for (sender, txn, secret) in [(&bob, "t-bob", "from bob"), (&carol, "t-carol", "from carol")] {
        let body = json!({"messages": {&alice.user_id: {&alice.device_id: {"note": secret}}}});
        let path = format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
        assert_eq!(server.put(&path, sender.token(), body).await.0, StatusCode::OK);
    }
    let sync = server.sync(&alice, "").await;
    let notes: Vec<&str> =
        sync["to_device"]["events"].as_array().unwrap().iter().filter_map(|e| e["content"]["note"].as_str()).collect();
    assert_eq!(notes, ["from carol"]);
    // Others still see bob.
    let (_, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), carol.token()).await;
    assert_eq!(message_bodies(&page["chunk"]), ["from carol", "from bob"]);

    // Invites from an ignored user are hidden; from others they arrive.
    let from_bob = server.create_room(&bob, json!({"invite": [alice.user_id]})).await;
    let from_carol = server.create_room(&carol, json!({"invite": [alice.user_id]})).await;
    let sync = server.sync(&alice, "").await;
    assert!(sync["rooms"]["invite"].get(&from_bob).is_none(), "{}", sync["rooms"]["invite"]);
    assert!(sync["rooms"]["invite"].get(&from_carol).is_some());

    // Unignoring shows bob's messages again.
    assert_eq!(server.put(&path, alice.token(), json!({"ignored_users": {}})).await.0, StatusCode::OK);
    let (_, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), alice.token()).await;
    assert_eq!(message_bodies(&page["chunk"]), ["from carol", "from bob"]);
}
