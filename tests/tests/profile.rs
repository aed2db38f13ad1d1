//! Profiles and their propagation into rooms.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(profile_fields_round_trip_and_propagate);

async fn profile_fields_round_trip_and_propagate(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let rooms: Vec<String> = [
        server.create_room(&alice, json!({"preset": "public_chat"})).await,
        server.create_room(&alice, json!({"preset": "public_chat"})).await,
        server.create_room(&alice, json!({"preset": "public_chat"})).await,
    ]
    .into();
    let left = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{left}/leave"), alice.token(), json!({})).await;
    let profile = format!("/_matrix/client/v3/profile/{}", alice.user_id);

    // Registration set the localpart as the display name.
    let (status, body) = server.get(&profile, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["displayname"], "alice");
    assert!(body.get("avatar_url").is_none());

    let (status, _) =
        server.put(&format!("{profile}/displayname"), alice.token(), json!({"displayname": "Alice A."})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(&format!("{profile}/avatar_url"), alice.token(), json!({"avatar_url": "mxc://example.org/abc"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&profile, bob.token()).await;
    assert_eq!(body["displayname"], "Alice A.");
    assert_eq!(body["avatar_url"], "mxc://example.org/abc");
    let (_, field) = server.get(&format!("{profile}/displayname"), None).await;
    assert_eq!(field["displayname"], "Alice A.");

    // Every joined room got a new member event; the left room did not.
    for room in &rooms {
        let member = server.state_content(&alice, room, "m.room.member", &alice.user_id).await;
        assert_eq!(member["displayname"], "Alice A.");
        assert_eq!(member["avatar_url"], "mxc://example.org/abc");
        assert_eq!(member["membership"], "join");
    }
    let (_, member) = server
        .get(&format!("/_matrix/client/v3/rooms/{left}/state/m.room.member/{}", alice.user_id), alice.token())
        .await;
    assert_eq!(member["membership"], "leave");
    // New joins carry the profile.
    server.join(&bob, &rooms[0]).await;
    server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id),
            bob.token(),
            json!({"displayname": "Bob"}),
        )
        .await;
    let member = server.state_content(&alice, &rooms[0], "m.room.member", &bob.user_id).await;
    assert_eq!(member["displayname"], "Bob");

    // Deleting a field clears it everywhere.
    let (status, _) = server.delete(&format!("{profile}/avatar_url"), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(server.get(&format!("{profile}/avatar_url"), None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let member = server.state_content(&alice, &rooms[1], "m.room.member", &alice.user_id).await;
    assert!(member.get("avatar_url").is_none());

    // Only one's own profile; sane values; unknown users.
    assert_error(
        server.put(&format!("{profile}/displayname"), bob.token(), json!({"displayname": "Evil"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.put(&format!("{profile}/avatar_url"), alice.token(), json!({"avatar_url": "https://x"})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.put(&format!("{profile}/displayname"), alice.token(), json!({"displayname": "x".repeat(300)})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        server.get(&format!("/_matrix/client/v3/profile/@ghost:{}", server.server_name), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}
