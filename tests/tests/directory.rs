//! Room aliases and the public room directory.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(aliases_can_be_created_resolved_and_deleted, public_room_directory);

async fn aliases_can_be_created_resolved_and_deleted(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let alias = format!("#team:{}", server.server_name);
    let path = format!("/_matrix/client/v3/directory/room/{}", alias.replace('#', "%23"));

    assert_error(server.get(&path, None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // Only members may point an alias at a room.
    assert_error(server.put(&path, bob.token(), json!({"room_id": room})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, _) = server.put(&path, alice.token(), json!({"room_id": room})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        server.put(&path, alice.token(), json!({"room_id": room})).await,
        StatusCode::CONFLICT,
        "M_ROOM_IN_USE",
    );
    let (status, resolved) = server.get(&path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resolved["room_id"], room.as_str());
    assert_eq!(resolved["servers"], json!([server.server_name]));
    let (_, aliases) = server.get(&format!("/_matrix/client/v3/rooms/{room}/aliases"), alice.token()).await;
    assert_eq!(aliases["aliases"], json!([alias]));

    let foreign = "/_matrix/client/v3/directory/room/%23x:elsewhere.example";
    assert_error(
        server.put(foreign, alice.token(), json!({"room_id": room})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Bob joins but has no power over the alias; alice (its creator) deletes it.
    server.join(&bob, &room).await;
    assert_error(server.delete(&path, bob.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, _) = server.delete(&path, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(server.get(&path, None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

async fn public_room_directory(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let big = server
        .create_room(&alice, json!({"visibility": "public", "preset": "public_chat", "name": "Big room", "topic": "Rust", "room_alias_name": "big"}))
        .await;
    server.join(&bob, &big).await;
    let small = server
        .create_room(&alice, json!({"visibility": "public", "preset": "public_chat", "name": "Small room"}))
        .await;
    let hidden = server.create_room(&alice, json!({"preset": "public_chat", "name": "Unlisted"})).await;

    let (status, page) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK);
    let chunk = page["chunk"].as_array().unwrap();
    let ids: Vec<&str> = chunk.iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![big.as_str(), small.as_str()], "largest first, unlisted rooms absent");
    assert_eq!(chunk[0]["num_joined_members"], 2);
    assert_eq!(chunk[0]["name"], "Big room");
    assert_eq!(chunk[0]["topic"], "Rust");
    assert_eq!(chunk[0]["canonical_alias"], format!("#big:{}", server.server_name));
    // "public" is the default join rule and may be omitted.
    assert!(chunk[0]["join_rule"].is_null() || chunk[0]["join_rule"] == "public");
    assert_eq!(page["total_room_count_estimate"], 2);

    // Paging and search.
    let (_, first) = server.get("/_matrix/client/v3/publicRooms?limit=1", None).await;
    assert_eq!(first["chunk"].as_array().unwrap().len(), 1);
    let next = first["next_batch"].as_str().unwrap();
    let (_, second) = server.get(&format!("/_matrix/client/v3/publicRooms?limit=1&since={next}"), None).await;
    assert_eq!(second["chunk"][0]["room_id"], small.as_str());
    assert!(second.get("next_batch").is_none_or(|n| n.is_null()));
    let (status, found) = server
        .post("/_matrix/client/v3/publicRooms", alice.token(), json!({"filter": {"generic_search_term": "small"}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(found["chunk"][0]["room_id"], small.as_str());

    // Publishing needs power in the room.
    let list = |room: &str| format!("/_matrix/client/v3/directory/list/room/{room}");
    let (_, visibility) = server.get(&list(&hidden), None).await;
    assert_eq!(visibility["visibility"], "private");
    server.join(&bob, &hidden).await;
    assert_error(
        server.put(&list(&hidden), bob.token(), json!({"visibility": "public"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, _) = server.put(&list(&hidden), alice.token(), json!({"visibility": "public"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, visibility) = server.get(&list(&hidden), None).await;
    assert_eq!(visibility["visibility"], "public");
    let (_, page) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(page["chunk"].as_array().unwrap().len(), 3);
}
