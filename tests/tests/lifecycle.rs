//! Knocking, room upgrades, canonical alias validation and `/timestamp_to_event`.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(knock_then_invite, upgrade_replaces_the_room, canonical_alias_must_point_here, timestamp_to_event);

async fn knock_then_invite(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server
        .create_room(
            &alice,
            json!({"room_version": "10", "initial_state": [
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]}),
        )
        .await;
    let private = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    assert_error(
        server.post(&format!("/_matrix/client/v3/knock/{private}"), bob.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    let next = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let (status, knocked) =
        server.post(&format!("/_matrix/client/v3/knock/{room}"), bob.token(), json!({"reason": "let me in"})).await;
    assert_eq!(status, StatusCode::OK, "{knocked}");
    assert_eq!(knocked["room_id"], room.as_str());
    let sync = server.sync(&bob, &format!("since={next}")).await;
    let knock_state = sync["rooms"]["knock"][&room]["knock_state"]["events"].as_array().unwrap().clone();
    assert!(knock_state.iter().any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "knock"));
    // Knocking is not joining.
    assert_error(
        server
            .put(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/k1"), bob.token(), json!({"body": "x"}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // The admin sees the knock and lets bob in.
    let member = server.state_content(&alice, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "knock");
    assert_eq!(member["reason"], "let me in");
    server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    let (status, _) = server.join(&bob, &room).await;
    assert_eq!(status, StatusCode::OK);
}

async fn upgrade_replaces_the_room(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let old = server
        .create_room(&alice, json!({"preset": "public_chat", "name": "Old", "topic": "T", "room_alias_name": "upgrademe", "room_version": "10"}))
        .await;
    server.join(&bob, &old).await;
    let path = format!("/_matrix/client/v3/rooms/{old}/upgrade");
    assert_error(
        server.post(&path, bob.token(), json!({"new_version": "11"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.post(&path, alice.token(), json!({"new_version": "99"})).await,
        StatusCode::BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION",
    );

    let (status, upgraded) = server.post(&path, alice.token(), json!({"new_version": "11"})).await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    let new = upgraded["replacement_room"].as_str().unwrap();
    let tombstone = server.state_content(&alice, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], new);
    let create = server.state_content(&alice, new, "m.room.create", "").await;
    assert_eq!(create["room_version"], "11");
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(server.state_content(&alice, new, "m.room.name", "").await["name"], "Old");
    assert_eq!(server.state_content(&alice, new, "m.room.topic", "").await["topic"], "T");
    assert_eq!(server.state_content(&alice, new, "m.room.join_rules", "").await["join_rule"], "public");
    let alias = format!("#upgrademe:{}", server.server_name);
    let (_, resolved) =
        server.get(&format!("/_matrix/client/v3/directory/room/{}", alias.replace('#', "%23")), None).await;
    assert_eq!(resolved["room_id"], new, "the alias moved");
    // The old room is read-only for ordinary members; bob can follow to the new room.
    assert_error(
        server
            .put(&format!("/_matrix/client/v3/rooms/{old}/send/m.room.message/u1"), bob.token(), json!({"body": "x"}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, _) = server.join(&bob, new).await;
    assert_eq!(status, StatusCode::OK);
}

async fn canonical_alias_must_point_here(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let here = server.create_room(&alice, json!({"room_alias_name": "here"})).await;
    server.create_room(&alice, json!({"room_alias_name": "elsewhere"})).await;
    let path = format!("/_matrix/client/v3/rooms/{here}/state/m.room.canonical_alias");
    let name = &server.server_name;
    assert_error(
        server.put(&path, alice.token(), json!({"alias": format!("#elsewhere:{name}")})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_ALIAS",
    );
    assert_error(
        server
            .put(
                &path,
                alice.token(),
                json!({"alias": format!("#here:{name}"), "alt_aliases": [format!("#missing:{name}")]}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_ALIAS",
    );
    assert_error(
        server.put(&path, alice.token(), json!({"alias": "not an alias"})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (status, _) = server.put(&path, alice.token(), json!({"alias": format!("#here:{name}")})).await;
    assert_eq!(status, StatusCode::OK);
}

async fn timestamp_to_event(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let early = server.send_text(&alice, &room, "early").await;
    server.clock.advance_secs(3600);
    let middle_ts = server.state.now_ms();
    server.clock.advance_secs(3600);
    let late = server.send_text(&alice, &room, "late").await;
    let path = |dir: &str, ts: i64| format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?dir={dir}&ts={ts}");

    let (status, found) = server.get(&path("f", middle_ts), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["event_id"], late.as_str());
    let (_, found) = server.get(&path("b", middle_ts), alice.token()).await;
    assert_eq!(found["event_id"], early.as_str());
    assert_error(
        server.get(&path("f", middle_ts + 10 * 3600 * 1000), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let outsider = server.register("outsider", "correct-horse").await;
    assert_error(server.get(&path("f", 0), outsider.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn room_version_12_derives_the_room_id_and_privileges_creators() {
    for engine in crate::common::engines() {
        let server = TestServer::start(engine).await;
        let alice = server.register("alice", "correct-horse").await;
        let bob = server.register("bob", "correct-horse").await;
        let room =
            server.create_room(&alice, json!({"preset": "public_chat", "room_version": "12", "name": "Twelve"})).await;
        assert!(!room.contains(':'), "v12 room IDs have no server part: {room}");

        let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), alice.token()).await;
        let create = state.as_array().unwrap().iter().find(|e| e["type"] == "m.room.create").unwrap().clone();
        assert_eq!(format!("!{}", &create["event_id"].as_str().unwrap()[1..]), room, "room ID = create event's hash");
        assert!(create["content"].get("creator").is_none());
        let power = server.state_content(&alice, &room, "m.room.power_levels", "").await;
        assert!(power["users"].get(&alice.user_id).is_none(), "creators are not listed in v12 power levels");

        server.join(&bob, &room).await;
        server.send_text(&bob, &room, "hello twelve").await;
        let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");
        assert_error(
            server.put(&topic, bob.token(), json!({"topic": "bob"})).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        let (status, _) = server.put(&topic, alice.token(), json!({"topic": "alice"})).await;
        assert_eq!(status, StatusCode::OK, "the creator outranks everyone");
        // The creator cannot be listed in power levels, even by herself.
        let mut grab = power.clone();
        grab["users"][&alice.user_id] = json!(100);
        assert_error(
            server
                .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels"), alice.token(), grab)
                .await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        let sync = server.sync(&bob, "").await;
        assert!(sync["rooms"]["join"][&room]["timeline"].to_string().contains("hello twelve"));

        let dm = server
            .create_room(
                &alice,
                json!({"preset": "trusted_private_chat", "room_version": "12", "invite": [bob.user_id]}),
            )
            .await;
        let create = server.state_content(&alice, &dm, "m.room.create", "").await;
        assert_eq!(create["additional_creators"], json!([bob.user_id]));
        server.join(&bob, &dm).await;
        let (status, _) = server
            .put(&format!("/_matrix/client/v3/rooms/{dm}/state/m.room.name"), bob.token(), json!({"name": "ours"}))
            .await;
        assert_eq!(status, StatusCode::OK, "additional creators are privileged too");
    }
}
