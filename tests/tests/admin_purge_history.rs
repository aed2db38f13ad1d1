//! Admin API, history purges: timeline events before an event or a time leave the database
//! and `/messages`; state events, the newest event and (unless asked) local users' events stay.

use homeserver::state::Clock as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, encode, engine_tests, message_bodies};

engine_tests!(history_before_an_event_is_purged, history_before_a_time_is_purged, interrupted_tasks_fail_at_start);

const PASSWORD: &str = "correct-horse";

async fn stored(server: &TestServer, event_id: &str) -> bool {
    server.count_rows(&format!("SELECT COUNT(*) FROM events WHERE event_id = '{event_id}'")).await == 1
}

async fn visible_bodies(server: &TestServer, session: &Session, room_id: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", encode(room_id));
    let (status, page) = server.get(&path, session.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut bodies = message_bodies(&page["chunk"]);
    bodies.reverse();
    bodies
}

async fn purge(server: &TestServer, admin: &Session, path: &str, body: Value) -> Value {
    let (status, answer) = server.post(path, admin.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let purge_id = answer["purge_id"].as_str().expect("purge_id");
    server.wait_for_task(admin, &format!("/_synapse/admin/v1/purge_history_status/{purge_id}")).await
}

async fn history_before_an_event_is_purged(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({"preset": "public_chat", "name": "History"})).await;
    let room = encode(&room_id);
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    let first = server.send_text(&alice, &room, "first secret").await;
    let second = server.send_text(&bob, &room, "second").await;
    let reply = format!("/_matrix/client/v3/rooms/{room}/send/m.reaction/r1");
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "x"}});
    let (_, sent) = server.put(&reply, bob.token(), reaction).await;
    let reaction = sent["event_id"].as_str().unwrap().to_owned();
    let cut = server.send_text(&alice, &room, "third").await;
    server.send_text(&bob, &room, "fourth").await;
    // A queued federation PDU of a purged event must go too.
    let ordering = server.count_rows(&format!("SELECT stream_ordering FROM events WHERE event_id = '{first}'")).await;
    server
        .raw_sql(&format!(
            "INSERT INTO federation_outbox_pdus (destination, stream_ordering) VALUES ('remote.example', {ordering})"
        ))
        .await;
    let search_rows = format!("SELECT COUNT(*) FROM event_search WHERE event_id = '{first}'");
    assert_eq!(server.count_rows(&search_rows).await, 1);

    let path = format!("/_synapse/admin/v1/purge_history/{room}/{}", encode(&cut));
    assert_error(server.post(&path, alice.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(stored(&server, &first).await);

    // By default local users' events stay: they may be the only copies.
    let done = purge(&server, &admin, &path, json!({})).await;
    assert_eq!(done, json!({"status": "complete"}));
    assert!(stored(&server, &first).await && stored(&server, &second).await);

    // Read by ID first, so the server holds them in its event cache.
    let by_id = |event: &str| format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(event));
    assert_eq!(server.get(&by_id(&first), alice.token()).await.1["content"]["body"], "first secret");
    let done = purge(&server, &admin, &path, json!({"delete_local_events": true})).await;
    assert_eq!(done["status"], "complete");
    for gone in [&first, &second, &reaction] {
        assert!(!stored(&server, gone).await, "{gone} purged");
    }
    assert_error(server.get(&by_id(&first), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert!(stored(&server, &cut).await, "the event purged up to stays");
    assert_eq!(visible_bodies(&server, &bob, &room_id).await, vec!["third", "fourth"]);
    assert_eq!(server.count_rows(&search_rows).await, 0, "search rows go");
    let relations = format!("SELECT COUNT(*) FROM event_relations WHERE event_id = '{reaction}'");
    assert_eq!(server.count_rows(&relations).await, 0, "relations go");
    let outbox = format!("SELECT COUNT(*) FROM federation_outbox_pdus WHERE stream_ordering = {ordering}");
    assert_eq!(server.count_rows(&outbox).await, 0, "queued PDUs go");
    // State stays: the room's name, its members, and events can still be sent.
    let name = server.state_content(&bob, &room, "m.room.name", "").await;
    assert_eq!(name["name"], "History");
    let states = format!("SELECT COUNT(*) FROM events WHERE room_id = '{room_id}' AND state_key IS NULL");
    assert_eq!(server.count_rows(&states).await, 2, "only the two newest messages are non-state");
    server.send_text(&bob, &room, "fifth").await;
    assert_eq!(visible_bodies(&server, &alice, &room_id).await, vec!["third", "fourth", "fifth"]);
    let (_, details) = server.get(&format!("/_synapse/admin/v1/rooms/{room}"), admin.token()).await;
    assert_eq!(details["joined_members"], 2);

    let entries = server.audit_entries_for(&admin, "purge_history").await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["target"], room_id.as_str());
    assert_eq!(entries[1]["params"]["delete_local_events"], true);
    assert_eq!(server.audit_entries_for(&admin, "purge_history_finished").await.len(), 2);

    // Bad requests.
    let other = server.create_room(&alice, json!({})).await;
    let foreign = format!("/_synapse/admin/v1/purge_history/{}/{}", encode(&other), encode(&cut));
    assert_error(server.post(&foreign, admin.token(), json!({})).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let no_point = format!("/_synapse/admin/v1/purge_history/{room}");
    assert_error(server.post(&no_point, admin.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    let unknown = format!("/_synapse/admin/v1/purge_history/{}", encode(&format!("!gone:{}", server.server_name)));
    assert_error(
        server.post(&unknown, admin.token(), json!({"purge_up_to_ts": 1})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let status = "/_synapse/admin/v1/purge_history_status/nosuchid";
    assert_error(server.get(status, admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(server.get(status, alice.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

async fn history_before_a_time_is_purged(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({})).await;
    let room = encode(&room_id);
    let old = server.send_text(&alice, &room, "old").await;
    server.send_text(&alice, &room, "older news").await;
    server.clock.advance_secs(3600);
    let cutoff = server.clock.now_ms();
    server.send_text(&alice, &room, "new").await;
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    assert_eq!(server.put(&topic, alice.token(), json!({"topic": "later"})).await.0, StatusCode::OK);

    let path = format!("/_synapse/admin/v1/purge_history/{room}");
    let huge = json!({"purge_up_to_ts": i64::MAX});
    assert_error(server.post(&path, admin.token(), huge).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let done = purge(&server, &admin, &path, json!({"purge_up_to_ts": cutoff, "delete_local_events": true})).await;
    assert_eq!(done["status"], "complete");
    assert!(!stored(&server, &old).await);
    assert_eq!(visible_bodies(&server, &alice, &room_id).await, vec!["new"]);
    // The newest event is a state event, so even a purge up to now leaves the room whole.
    let done =
        purge(&server, &admin, &path, json!({"purge_up_to_ts": cutoff + 86_400_000, "delete_local_events": true}))
            .await;
    assert_eq!(done["status"], "complete");
    assert!(visible_bodies(&server, &alice, &room_id).await.is_empty());
    assert_eq!(server.state_content(&alice, &room, "m.room.topic", "").await["topic"], "later");
    server.send_text(&alice, &room, "after").await;
    assert_eq!(visible_bodies(&server, &alice, &room_id).await, vec!["after"]);
}

async fn interrupted_tasks_fail_at_start(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    // As a server stopped mid-purge leaves it.
    server
        .raw_sql(
            "INSERT INTO admin_tasks (task_id, kind, room_id, status, created_ts, updated_ts) \
             VALUES ('stuck', 'purge_history', '!r:x', 'active', 1, 1)",
        )
        .await;
    let (_, running) = server.get("/_synapse/admin/v1/purge_history_status/stuck", admin.token()).await;
    assert_eq!(running["status"], "active");
    let server = server.restart().await;
    let (status, failed) = server.get("/_synapse/admin/v1/purge_history_status/stuck", admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("stopped"), "{failed}");
}
