//! Admin API, room deletion and blocking: members removed, aliases dropped, the room blocked
//! and its data gone from every table, a notice room for the removed members, status polling.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, encode, engine_tests, message_bodies};

engine_tests!(
    deleted_room_is_emptied_blocked_and_purged,
    deletion_without_purge_moves_members_to_a_notice_room,
    blocked_rooms_refuse_joins_and_invites,
);

const PASSWORD: &str = "correct-horse";

/// Tables with a room ID whose rows a purge removes.
const ROOM_TABLES: &[&str] = &[
    "events",
    "state_groups",
    "memberships",
    "receipts",
    "forward_extremities",
    "room_aliases",
    "event_relations",
    "event_search",
    "event_push_actions",
    "recent_push_actions",
    "account_data",
];

async fn rows_of_room(server: &TestServer, table: &str, room_id: &str) -> i64 {
    server.count_rows(&format!("SELECT COUNT(*) FROM {table} WHERE room_id = '{room_id}'")).await
}

fn sorted(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    items.sort();
    items
}

async fn deleted_room_is_emptied_blocked_and_purged(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let charlie = server.register("charlie", PASSWORD).await;
    let survivor = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&bob, &survivor).await.0, StatusCode::OK);
    let room_id = server
        .create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "doomed", "name": "Doomed"}))
        .await;
    let room = encode(&room_id);
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    let (status, _) = server.post(&invite, alice.token(), json!({"user_id": charlie.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    let message = server.send_text(&alice, &room, "contraband").await;
    let reaction = format!("/_matrix/client/v3/rooms/{room}/send/m.reaction/r1");
    let content = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": message, "key": "👍"}});
    assert_eq!(server.put(&reaction, bob.token(), content).await.0, StatusCode::OK);
    let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{}", encode(&message));
    assert_eq!(server.post(&receipt, bob.token(), json!({})).await.0, StatusCode::OK);
    let tag = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/x.note", encode(bob.user_id.as_str()));
    assert_eq!(server.put(&tag, bob.token(), json!({"a": 1})).await.0, StatusCode::OK);
    let since = server.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    for table in ["events", "state_groups", "memberships", "receipts", "event_relations", "event_search"] {
        assert!(rows_of_room(&server, table, &room_id).await > 0, "{table} has rows before the purge");
    }

    let path = format!("/_synapse/admin/v2/rooms/{room}");
    let body = json!({"block": true, "purge": true, "message": "bye"});
    assert_error(server.delete(&path, alice.token(), body.clone()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(server.delete(&path, None, body.clone()).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    assert_eq!(rows_of_room(&server, "memberships", &room_id).await, 3, "a refused deletion changes nothing");
    let (status, answer) = server.delete(&path, admin.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let delete_id = answer["delete_id"].as_str().expect("delete_id").to_owned();

    let done = server.wait_for_task(&admin, &format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}")).await;
    assert_eq!(done["status"], "complete", "{done}");
    let report = &done["shutdown_room"];
    let mut expected = vec![alice.user_id.to_string(), bob.user_id.to_string(), charlie.user_id.to_string()];
    expected.sort();
    assert_eq!(sorted(&report["kicked_users"]), expected, "joined and invited members are removed");
    assert_eq!(report["failed_to_kick_users"], json!([]));
    assert_eq!(report["local_aliases"], json!([format!("#doomed:{}", server.server_name)]));
    assert_eq!(report["new_room_id"], Value::Null);

    let (status, by_room) = server.get(&format!("/_synapse/admin/v2/rooms/{room}/delete_status"), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{by_room}");
    assert_eq!(by_room["results"].as_array().unwrap().len(), 1);
    assert_eq!(by_room["results"][0]["delete_id"], delete_id.as_str());
    assert_eq!(by_room["results"][0]["status"], "complete");
    assert_eq!(by_room["results"][0]["shutdown_room"], *report);

    // Nothing of the room is left but the row that says it existed (it is blocked).
    for table in ROOM_TABLES {
        assert_eq!(rows_of_room(&server, table, &room_id).await, 0, "{table} still has rows of the room");
    }
    let entries = "SELECT COUNT(*) FROM state_group_entries WHERE event_type = 'm.room.name'";
    assert_eq!(server.count_rows(entries).await, 0, "the only room's state entries are gone");
    let txns = server.count_rows(&format!("SELECT COUNT(*) FROM event_txns WHERE event_id = '{message}'")).await;
    assert_eq!(txns, 0);
    assert_eq!(rows_of_room(&server, "rooms", &room_id).await, 1);

    let (status, block) = server.get(&format!("/_synapse/admin/v1/rooms/{room}/block"), admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(block, json!({"block": true, "user_id": admin.user_id.as_str()}));
    assert_error(server.join(&bob, &room_id).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, _) =
        server.get(&format!("/_matrix/client/v3/directory/room/%23doomed:{}", server.server_name), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the alias is gone");
    let (_, rooms) = server.get("/_synapse/admin/v1/rooms", admin.token()).await;
    assert_eq!(rooms["total_rooms"], 1, "only the survivor is listed: {rooms}");
    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", alice.token()).await;
    assert_eq!(joined["joined_rooms"], json!([survivor]));
    // The purged events were the newest: positions bob's token covers are not handed out again.
    server.send_text(&alice, &encode(&survivor), "still here").await;
    let sync = server.sync(&bob, &format!("timeout=0&since={since}")).await;
    assert!(sync["rooms"]["join"].get(&room_id).is_none(), "{sync}");
    let timeline = &sync["rooms"]["join"][&survivor]["timeline"]["events"];
    assert_eq!(message_bodies(timeline), vec!["still here".to_owned()], "{sync}");

    let started = server.audit_entries_for(&admin, "delete_room").await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["target"], room_id.as_str());
    assert_eq!(started[0]["params"]["block"], true);
    let finished = server.audit_entries_for(&admin, "delete_room_finished").await;
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["result"], "ok");
    assert_eq!(finished[0]["params"]["status"], "complete");
}

async fn deletion_without_purge_moves_members_to_a_notice_room(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let room = encode(&room_id);
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    server.send_text(&alice, &room, "kept").await;
    let since = server.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();

    let path = format!("/_synapse/admin/v2/rooms/{room}");
    let body = json!({"purge": false, "new_room_user_id": admin.user_id, "room_name": "Notice", "message": "Moved"});
    let (status, answer) = server.delete(&path, admin.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let delete_id = answer["delete_id"].as_str().unwrap();
    let done = server.wait_for_task(&admin, &format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}")).await;
    assert_eq!(done["status"], "complete", "{done}");
    let report = &done["shutdown_room"];
    let mut expected = vec![alice.user_id.to_string(), bob.user_id.to_string()];
    expected.sort();
    assert_eq!(sorted(&report["kicked_users"]), expected);
    let new_room = report["new_room_id"].as_str().expect("a notice room").to_owned();

    // The members left the old room and are in the notice room, where the message is.
    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", bob.token()).await;
    assert_eq!(joined["joined_rooms"], json!([new_room]));
    let messages = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", encode(&new_room));
    let (_, page) = server.get(&messages, bob.token()).await;
    assert_eq!(message_bodies(&page["chunk"]), vec!["Moved".to_owned()]);
    let name = server.state_content(&bob, &encode(&new_room), "m.room.name", "").await;
    assert_eq!(name["name"], "Notice");
    let members = format!("SELECT COUNT(*) FROM memberships WHERE room_id = '{room_id}' AND membership = 'leave'");
    assert_eq!(server.count_rows(&members).await, 2);
    assert!(rows_of_room(&server, "events", &room_id).await > 0, "no purge: the events stay");
    // Bob's client learns both: it left the old room and joined the new one.
    let sync = server.sync(&bob, &format!("timeout=0&since={since}")).await;
    assert!(sync["rooms"]["leave"].get(&room_id).is_some(), "{sync}");
    assert!(sync["rooms"]["join"].get(&new_room).is_some(), "{sync}");
    // Not blocked: the room can be joined again.
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);

    // Unknown rooms: only blocking them in advance is possible.
    let unknown = format!("!nowhere:{}", server.server_name);
    let path = format!("/_synapse/admin/v2/rooms/{}", encode(&unknown));
    assert_error(server.delete(&path, admin.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let (status, answer) = server.delete(&path, admin.token(), json!({"block": true})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let status_path = format!("/_synapse/admin/v2/rooms/delete_status/{}", answer["delete_id"].as_str().unwrap());
    assert_eq!(server.wait_for_task(&admin, &status_path).await["status"], "complete");
    let (_, block) = server.get(&format!("/_synapse/admin/v1/rooms/{}/block", encode(&unknown)), admin.token()).await;
    assert_eq!(block["block"], true);

    let bad = "/_synapse/admin/v2/rooms/not-a-room";
    assert_error(server.delete(bad, admin.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let bad_body = json!({"block": "yes"});
    assert_error(server.delete(&path, admin.token(), bad_body).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let remote_creator = json!({"new_room_user_id": "@someone:elsewhere.example"});
    let path = format!("/_synapse/admin/v2/rooms/{room}");
    assert_error(server.delete(&path, admin.token(), remote_creator).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let missing = "/_synapse/admin/v2/rooms/delete_status/nosuchid";
    assert_error(server.get(missing, admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let never = format!("/_synapse/admin/v2/rooms/{}/delete_status", encode(&format!("!never:{}", server.server_name)));
    assert_error(server.get(&never, admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(server.get(&status_path, alice.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // v1 deletes at once and answers with the report.
    for (method, suffix) in [(reqwest::Method::DELETE, ""), (reqwest::Method::POST, "/delete")] {
        let room_id = server.create_room(&alice, json!({})).await;
        server.send_text(&alice, &encode(&room_id), "gone soon").await;
        let path = format!("/_synapse/admin/v1/rooms/{}{suffix}", encode(&room_id));
        let refused = server.request(method.clone(), &path, bob.token(), Some(json!({}))).await;
        assert_error(refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
        let (status, report) = server.request(method, &path, admin.token(), Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["kicked_users"], json!([alice.user_id]));
        assert_eq!(report["failed_to_kick_users"], json!([]));
        assert_eq!(report["new_room_id"], Value::Null);
        assert_eq!(rows_of_room(&server, "events", &room_id).await, 0, "purged by default");
        assert_eq!(rows_of_room(&server, "rooms", &room_id).await, 0, "not blocked: no row kept");
    }
}

async fn blocked_rooms_refuse_joins_and_invites(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "lobby"})).await;
    let block = format!("/_synapse/admin/v1/rooms/{}/block", encode(&room_id));

    let (status, body) = server.get(&block, admin.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"block": false})));
    assert_error(server.put(&block, alice.token(), json!({"block": true})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(server.put(&block, admin.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let (status, body) = server.put(&block, admin.token(), json!({"block": true})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"block": true})));

    assert_error(server.join(&bob, &room_id).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let alias = format!("#lobby:{}", server.server_name);
    assert_error(server.join(&bob, &alias).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", encode(&room_id));
    assert_error(
        server.post(&invite, alice.token(), json!({"user_id": bob.user_id})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(server.count_rows(&format!("SELECT COUNT(*) FROM memberships WHERE room_id = '{room_id}'")).await, 1);
    // Members already in may still leave.
    let leave = format!("/_matrix/client/v3/rooms/{}/leave", encode(&room_id));
    assert_eq!(server.post(&leave, alice.token(), json!({})).await.0, StatusCode::OK);

    let (status, body) = server.put(&block, admin.token(), json!({"block": false})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"block": false})));
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    assert_eq!(server.audit_entries_for(&admin, "block_room").await.len(), 1);
    assert_eq!(server.audit_entries_for(&admin, "unblock_room").await.len(), 1);
}
