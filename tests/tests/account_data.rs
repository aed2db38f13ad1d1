//! Account data, tags, and their delivery through `/sync`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(global_and_room_account_data, tags, account_data_through_sync);

async fn global_and_room_account_data(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let global = format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", alice.user_id);

    assert_error(server.get(&global, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (status, _) = server.put(&global, alice.token(), json!({"theme": "dark"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&global, alice.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"theme": "dark"})));
    server.put(&global, alice.token(), json!({"theme": "light"})).await;
    assert_eq!(server.get(&global, alice.token()).await.1, json!({"theme": "light"}));

    // Nobody else reads or writes it; server-managed types are refused.
    assert_error(server.get(&global, bob.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(server.put(&global, bob.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let fully_read = format!("/_matrix/client/v3/user/{}/account_data/m.fully_read", alice.user_id);
    assert_error(
        server.put(&fully_read, alice.token(), json!({"event_id": "$x"})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_BAD_JSON",
    );
    assert_error(server.put(&global, alice.token(), json!([1])).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");

    let room = server.create_room(&alice, json!({})).await;
    let per_room = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/org.example.draft", alice.user_id);
    server.put(&per_room, alice.token(), json!({"text": "half a thought"})).await;
    assert_eq!(server.get(&per_room, alice.token()).await.1, json!({"text": "half a thought"}));
    // Room data is separate from global data of the same type.
    let same_type_global = format!("/_matrix/client/v3/user/{}/account_data/org.example.draft", alice.user_id);
    assert_error(server.get(&same_type_global, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

async fn tags(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({})).await;
    let tags = format!("/_matrix/client/v3/user/{}/rooms/{room}/tags", alice.user_id);
    assert_eq!(server.get(&tags, alice.token()).await.1, json!({"tags": {}}));
    let (status, _) = server.put(&format!("{tags}/m.favourite"), alice.token(), json!({"order": 0.25})).await;
    assert_eq!(status, StatusCode::OK);
    server.put(&format!("{tags}/u.work"), alice.token(), json!({})).await;
    let (_, body) = server.get(&tags, alice.token()).await;
    assert_eq!(body["tags"]["m.favourite"]["order"], 0.25);
    assert!(body["tags"]["u.work"].is_object());
    let (status, _) = server.delete(&format!("{tags}/u.work"), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&tags, alice.token()).await;
    assert!(body["tags"].get("u.work").is_none());
    // Tags are the room's m.tag account data.
    let (_, raw) = server
        .get(&format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.tag", alice.user_id), alice.token())
        .await;
    assert_eq!(raw["tags"]["m.favourite"]["order"], 0.25);
}

async fn account_data_through_sync(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({})).await;
    let direct = format!("/_matrix/client/v3/user/{}/account_data/m.direct", alice.user_id);
    server.put(&direct, alice.token(), json!({"@bob:example.org": [room]})).await;

    let initial = server.sync(&alice, "").await;
    let global = initial["account_data"]["events"].as_array().unwrap();
    assert!(global.iter().any(|e| e["type"] == "m.direct" && e["content"]["@bob:example.org"][0] == room.as_str()));
    let next = initial["next_batch"].as_str().unwrap().to_owned();

    // Nothing changed: nothing repeated.
    let idle = server.sync(&alice, &format!("since={next}&timeout=0")).await;
    assert!(idle["account_data"]["events"].as_array().is_none_or(|e| e.is_empty()), "{idle}");

    // A waiting sync wakes for a room tag, and the room appears with just its account data.
    let url = format!("{}/_matrix/client/v3/sync?since={next}&timeout=60000", server.base_url);
    let token = alice.access_token.clone();
    let waiting = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tag = format!("/_matrix/client/v3/user/{}/rooms/{room}/tags/m.lowpriority", alice.user_id);
    server.put(&tag, alice.token(), json!({})).await;
    let woken = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("sync returned").unwrap();
    let room_data = woken["rooms"]["join"][&room]["account_data"]["events"].as_array().unwrap().clone();
    assert_eq!(room_data.len(), 1);
    assert_eq!(room_data[0]["type"], "m.tag");
    assert!(room_data[0]["content"]["tags"]["m.lowpriority"].is_object());
    assert!(woken["rooms"]["join"][&room]["timeline"]["events"].as_array().is_none_or(|e| e.is_empty()));
}
