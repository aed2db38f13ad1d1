//! Retention (MSC1763): once their room's lifetime has passed (on the test clock), messages and the
//! media they name are gone for clients (/messages, /context, /event, /sync, /search, media
//! downloads) and from the raw bytes of the database files (SQLite main file and WAL; every
//! PostgreSQL row read with raw SQL) and the media store. `min_lifetime` and the server's
//! allowed range bound a room's policy; a redaction within `min_lifetime` hides the content at
//! once but keeps it until then. Direct chats get their own defaults; long histories go in
//! batches; all of it holds with encryption at rest on.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::at_rest::{all_postgres_rows, contains, files_under, key_file};
use crate::common::{Engine, Session, TestServer, assert_error, encode, engine_tests, message_bodies, random_suffix};

engine_tests!(
    expired_messages_and_media_are_erased,
    min_lifetime_and_the_allowed_range_bound_a_room,
    the_purge_job_runs_by_itself,
    a_redaction_within_min_lifetime_hides_at_once_and_erases_later,
    direct_chats_and_encrypted_rooms_get_their_defaults,
    a_long_history_is_purged_in_batches,
    retention_works_with_encryption_at_rest,
    other_servers_get_a_held_redaction_redacted,
    a_direct_chat_from_another_server_gets_the_direct_defaults,
);

const PASSWORD: &str = "correct-horse";
const PURGE: &str = "/_myelin/admin/v1/retention/purge";

async fn retention_server(engine: Engine, allowed_min_ms: u64, allowed_max_ms: u64) -> TestServer {
    TestServer::start_with(engine, |config| {
        config.retention.enabled = true;
        config.retention.allowed_min_lifetime_ms = allowed_min_ms;
        config.retention.allowed_max_lifetime_ms = allowed_max_ms;
    })
    .await
}

async fn set_policy(server: &TestServer, session: &Session, room_id: &str, policy: Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.retention/", encode(room_id));
    let (status, body) = server.put(&path, session.token(), policy).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn purge(server: &TestServer, admin: &Session) -> Value {
    let (status, summary) = server.post(PURGE, admin.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    summary
}

async fn visible_bodies(server: &TestServer, session: &Session, room_id: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", encode(room_id));
    let (status, page) = server.get(&path, session.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut bodies = message_bodies(&page["chunk"]);
    bodies.reverse();
    bodies
}

/// Whether any marker is in the raw database files, the media store or (PostgreSQL) any row.
async fn markers_at_rest(server: &TestServer, engine: Engine, markers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files_under(&server.state.config.data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        for marker in markers {
            if contains(&bytes, marker.as_bytes()) {
                found.push(format!("{marker} in {}", file.display()));
            }
        }
    }
    if engine == Engine::Postgres {
        let rows = all_postgres_rows(server).await;
        for marker in markers {
            let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
            if rows.contains(marker) || rows.contains(&hex) {
                found.push(format!("{marker} in a PostgreSQL row"));
            }
        }
    }
    found
}

async fn search_hits(server: &TestServer, session: &Session, term: &str) -> usize {
    let search = json!({"search_categories": {"room_events": {"search_term": term}}});
    let (status, found) = server.post("/_matrix/client/v3/search", session.token(), search).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found["search_categories"]["room_events"]["results"].as_array().map_or(0, Vec::len)
}

async fn upload(server: &TestServer, session: &Session, bytes: Vec<u8>) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", server.base_url))
        .bearer_auth(&session.access_token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["content_uri"].as_str().unwrap().to_owned()
}

async fn expired_messages_and_media_are_erased(engine: Engine) {
    let server = retention_server(engine, 0, 0).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let suffix = random_suffix();
    let (first, second, caption, media) = (
        format!("FIRSTMARKER{suffix}"),
        format!("SECONDMARKER{suffix}"),
        format!("CAPTIONMARKER{suffix}"),
        format!("MEDIAMARKER{suffix}"),
    );
    let markers = [first.as_str(), second.as_str(), caption.as_str(), media.as_str()];

    let room_id = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    let room = encode(&room_id);
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    set_policy(&server, &alice, &room_id, json!({"max_lifetime": 60_000})).await;
    let (status, policy) = server.get(&format!("/_myelin/admin/v1/rooms/{room}/retention"), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    assert_eq!((policy["enabled"].clone(), policy["max_lifetime"].clone()), (json!(true), json!(60_000)));
    assert_error(
        server.get(&format!("/_myelin/admin/v1/rooms/{room}/retention"), alice.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    let first_id = server.send_text(&alice, &room, &first).await;
    server.send_text(&bob, &room, &second).await;
    // An avatar shown in a message outlives the message.
    let avatar = upload(&server, &alice, b"avatar".to_vec()).await;
    let profile = format!("/_matrix/client/v3/profile/{}/avatar_url", encode(&alice.user_id));
    assert_eq!(server.put(&profile, alice.token(), json!({"avatar_url": avatar})).await.0, StatusCode::OK);
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/avatar{suffix}");
    let shown = json!({"msgtype": "m.image", "body": "my new avatar", "url": avatar});
    assert_eq!(server.put(&path, alice.token(), shown).await.0, StatusCode::OK);
    // A file forwarded to a room that keeps it outlives the expired message.
    let forwarded = upload(&server, &alice, b"forwarded".to_vec()).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/file{suffix}");
    let file_message = json!({"msgtype": "m.file", "body": "a file", "url": forwarded});
    assert_eq!(server.put(&path, alice.token(), file_message.clone()).await.0, StatusCode::OK);
    let keeper = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/fwd{suffix}", encode(&keeper));
    assert_eq!(server.put(&path, alice.token(), file_message).await.0, StatusCode::OK);
    let file: Vec<u8> = media.as_bytes().iter().copied().cycle().take(100_000).collect();
    let mxc = upload(&server, &alice, file).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/img{suffix}");
    let image = json!({"msgtype": "m.file", "body": caption, "url": mxc});
    let (status, sent) = server.put(&path, alice.token(), image).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    // The newest event is a forward extremity: it stays for the DAG, without its content.
    let last_id = sent["event_id"].as_str().unwrap().to_owned();
    let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{}", encode(&first_id));
    assert_eq!(server.post(&receipt, bob.token(), json!({})).await.0, StatusCode::OK);
    let download = format!("/_matrix/client/v1/media/download/{}", mxc.trim_start_matches("mxc://"));
    assert_eq!(server.get(&download, alice.token()).await.0, StatusCode::OK);
    assert_eq!(
        visible_bodies(&server, &bob, &room_id).await,
        vec![first.clone(), second.clone(), "my new avatar".to_owned(), "a file".to_owned(), caption.clone()]
    );
    assert_eq!(search_hits(&server, &bob, &first).await, 1);
    // The scan can see them before the purge.
    assert!(!markers_at_rest(&server, engine, &markers).await.is_empty(), "the markers are stored at first");

    // Not yet expired: nothing goes.
    server.clock.advance_secs(30);
    assert_eq!(purge(&server, &admin).await["purged_events"], 0);
    assert_eq!(visible_bodies(&server, &bob, &room_id).await.len(), 5);

    server.clock.advance_secs(60);
    let summary = purge(&server, &admin).await;
    assert_eq!(summary["purged_events"], 4, "{summary}");
    assert_eq!(summary["redacted_events"], 1, "{summary}");
    assert_eq!(summary["deleted_media"], 1, "{summary}");
    assert!(!server.audit_entries_for(&admin, "retention_purge").await.is_empty(), "the purge is audited");

    // Clients see none of it.
    assert!(visible_bodies(&server, &bob, &room_id).await.is_empty());
    let mut seen = String::new();
    for path in [
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"),
        format!("/_matrix/client/v3/rooms/{room}/context/{}", encode(&first_id)),
        format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&first_id)),
        format!("/_matrix/client/v3/rooms/{room}/context/{}", encode(&last_id)),
        format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&last_id)),
    ] {
        seen.push_str(&server.get(&path, bob.token()).await.1.to_string());
    }
    assert_eq!(
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&first_id)), bob.token()).await.0,
        StatusCode::NOT_FOUND
    );
    seen.push_str(&server.sync(&bob, "").await.to_string());
    for marker in [&first, &second, &caption] {
        assert_eq!(search_hits(&server, &bob, marker).await, 0, "{marker} is not found");
    }
    for marker in markers {
        assert!(!seen.contains(marker), "{marker} is served: {seen}");
    }
    assert_eq!(server.get(&download, alice.token()).await.0, StatusCode::NOT_FOUND);
    let avatar_download = format!("/_matrix/client/v1/media/download/{}", avatar.trim_start_matches("mxc://"));
    assert_eq!(server.get(&avatar_download, alice.token()).await.0, StatusCode::OK, "avatars stay");
    let forwarded_download = format!("/_matrix/client/v1/media/download/{}", forwarded.trim_start_matches("mxc://"));
    assert_eq!(server.get(&forwarded_download, alice.token()).await.0, StatusCode::OK, "media still named stays");
    let receipts = format!("SELECT COUNT(*) FROM receipts WHERE event_id = '{first_id}'");
    assert_eq!(server.count_rows(&receipts).await, 0, "receipts pointing at purged events go");

    // Nor are they in the files.
    let found = markers_at_rest(&server, engine, &markers).await;
    assert!(found.is_empty(), "{found:?}");

    // The room goes on: the kept extremity is the next event's parent.
    server.send_text(&alice, &room, "after the purge").await;
    assert_eq!(visible_bodies(&server, &bob, &room_id).await, vec!["after the purge"]);
}

async fn min_lifetime_and_the_allowed_range_bound_a_room(engine: Engine) {
    // Rooms may not keep events less than 30 s nor more than 10 minutes.
    let server = retention_server(engine, 30_000, 600_000).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let policy_of = |room_id: &str| format!("/_myelin/admin/v1/rooms/{}/retention", encode(room_id));

    let short = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    set_policy(&server, &alice, &short, json!({"max_lifetime": 1_000})).await;
    let guarded = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    set_policy(&server, &alice, &guarded, json!({"min_lifetime": 120_000, "max_lifetime": 40_000})).await;
    let long = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    set_policy(&server, &alice, &long, json!({"max_lifetime": 1_000_000_000_000u64})).await;
    let forever = server.create_room(&alice, json!({"preset": "private_chat"})).await;

    // Lifetimes that are not whole milliseconds are refused, from /state and /createRoom alike.
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.retention/", encode(&short));
    for bad in [json!({"max_lifetime": "soon"}), json!({"min_lifetime": -5}), json!({"max_lifetime": 1.5})] {
        assert_error(server.put(&path, alice.token(), bad).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    let initial =
        json!({"initial_state": [{"type": "m.room.retention", "state_key": "", "content": {"max_lifetime": "x"}}]});
    assert_error(
        server.post("/_matrix/client/v3/createRoom", alice.token(), initial).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );

    let (_, policy) = server.get(&policy_of(&short), admin.token()).await;
    assert_eq!(policy["max_lifetime"], 30_000, "raised to the allowed minimum: {policy}");
    assert_eq!(policy["room_policy"], json!({"max_lifetime": 1_000}));
    let (_, policy) = server.get(&policy_of(&guarded), admin.token()).await;
    assert_eq!((policy["min_lifetime"].clone(), policy["max_lifetime"].clone()), (json!(120_000), json!(120_000)));
    let (_, policy) = server.get(&policy_of(&long), admin.token()).await;
    assert_eq!(policy["max_lifetime"], 600_000, "lowered to the allowed maximum: {policy}");
    let (_, policy) = server.get(&policy_of(&forever), admin.token()).await;
    assert_eq!(policy["max_lifetime"], Value::Null, "no policy and no default: kept forever");

    for room in [&short, &guarded, &long, &forever] {
        server.send_text(&alice, &encode(room), "old").await;
        server.send_text(&alice, &encode(room), "newest").await;
    }
    // Past the room's own 1 s, within the clamped 30 s.
    server.clock.advance_secs(10);
    purge(&server, &admin).await;
    assert_eq!(visible_bodies(&server, &alice, &short).await, vec!["old", "newest"]);

    // Past 30 s and past the guarded room's max_lifetime, not its min_lifetime.
    server.clock.advance_secs(50);
    purge(&server, &admin).await;
    assert_eq!(visible_bodies(&server, &alice, &short).await, Vec::<String>::new());
    assert_eq!(visible_bodies(&server, &alice, &guarded).await, vec!["old", "newest"]);

    // Past min_lifetime too; the long room lasts until 10 minutes, the last room forever.
    server.clock.advance_secs(120);
    purge(&server, &admin).await;
    assert_eq!(visible_bodies(&server, &alice, &guarded).await, Vec::<String>::new());
    assert_eq!(visible_bodies(&server, &alice, &long).await, vec!["old", "newest"]);
    server.clock.advance_secs(600);
    purge(&server, &admin).await;
    assert_eq!(visible_bodies(&server, &alice, &long).await, Vec::<String>::new());
    assert_eq!(visible_bodies(&server, &alice, &forever).await, vec!["old", "newest"]);
}

async fn the_purge_job_runs_by_itself(engine: Engine) {
    let server = TestServer::start_with(engine, |config| {
        config.retention.enabled = true;
        config.retention.default_max_lifetime_ms = 60_000;
        config.retention.purge_interval_secs = 1;
    })
    .await;
    let alice = server.register("alice", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    server.send_text(&alice, &encode(&room_id), "old").await;
    server.send_text(&alice, &encode(&room_id), "newest").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(visible_bodies(&server, &alice, &room_id).await, vec!["old", "newest"], "the default applies");

    server.clock.advance_secs(61);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !visible_bodies(&server, &alice, &room_id).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the job purged within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn redact(server: &TestServer, session: &Session, room_id: &str, event_id: &str) {
    let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/{}", encode(room_id), encode(event_id), random_suffix());
    let (status, body) = server.put(&path, session.token(), json!({"reason": "oops"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn room_policy(server: &TestServer, admin: &Session, room_id: &str) -> Value {
    let (status, policy) =
        server.get(&format!("/_myelin/admin/v1/rooms/{}/retention", encode(room_id)), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    policy
}

/// Held originals of the room whose raw stored bytes contain `marker` (plain, without encryption
/// at rest).
async fn held_with(server: &TestServer, engine: Engine, room_id: &str, marker: &str) -> i64 {
    let content = match engine {
        Engine::Sqlite => "CAST(json AS TEXT)",
        Engine::Postgres => "encode(json, 'escape')",
    };
    server
        .count_rows(&format!(
            "SELECT COUNT(*) FROM redaction_holds WHERE room_id = '{room_id}' AND {content} LIKE '%{marker}%'"
        ))
        .await
}

/// Everything clients can read about the room's events and the marker, as one string.
async fn served(server: &TestServer, session: &Session, room_id: &str, event_ids: &[&str], marker: &str) -> String {
    let room = encode(room_id);
    let mut seen = String::new();
    let mut paths = vec![format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100")];
    for id in event_ids {
        let id = encode(id);
        paths.push(format!("/_matrix/client/v3/rooms/{room}/context/{id}"));
        paths.push(format!("/_matrix/client/v3/rooms/{room}/event/{id}"));
        paths.push(format!("/_matrix/client/v1/rooms/{room}/relations/{id}"));
    }
    for path in paths {
        let (status, body) = server.get(&path, session.token()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        seen.push_str(&body.to_string());
    }
    seen.push_str(&server.sync(session, "").await.to_string());
    let search = json!({"search_categories": {"room_events": {"search_term": marker}}});
    seen.push_str(&server.post("/_matrix/client/v3/search", session.token(), search).await.1.to_string());
    seen
}

async fn a_redaction_within_min_lifetime_hides_at_once_and_erases_later(engine: Engine) {
    let server = retention_server(engine, 0, 0).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let suffix = random_suffix();
    let (marker, reply_marker, plain_marker) =
        (format!("HELDMARKER{suffix}"), format!("REPLYMARKER{suffix}"), format!("PLAINMARKER{suffix}"));

    // Events must be kept two minutes; nothing expires (no max_lifetime, no default).
    let room_id = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    let room = encode(&room_id);
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    set_policy(&server, &alice, &room_id, json!({"min_lifetime": 120_000})).await;
    let held_id = server.send_text(&alice, &room, &marker).await;
    let root_id = server.send_text(&bob, &room, "thread root").await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/reply{suffix}");
    let reply = json!({"msgtype": "m.text", "body": reply_marker,
                       "m.relates_to": {"rel_type": "m.thread", "event_id": root_id}});
    let (status, sent) = server.put(&path, alice.token(), reply).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let reply_id = sent["event_id"].as_str().unwrap().to_owned();
    server.send_text(&bob, &room, "kept").await;
    let ids = [held_id.as_str(), root_id.as_str(), reply_id.as_str()];
    let before = served(&server, &bob, &room_id, &ids, &marker).await;
    assert!(before.contains(&marker) && before.contains(&reply_marker), "served before the redaction");

    redact(&server, &alice, &room_id, &held_id).await;
    redact(&server, &alice, &room_id, &reply_id).await;

    // Hidden from every client read at once.
    for session in [&alice, &bob] {
        let seen = served(&server, session, &room_id, &ids, &marker).await;
        assert!(!seen.contains(&marker) && !seen.contains(&reply_marker), "served after the redaction: {seen}");
    }
    assert_eq!(search_hits(&server, &bob, &marker).await, 0);
    assert_eq!(visible_bodies(&server, &bob, &room_id).await, vec!["thread root", "kept"]);
    // But held in the database, and the admin can see it is.
    assert_eq!(held_with(&server, engine, &room_id, &marker).await, 1, "the original is held");
    assert_eq!(held_with(&server, engine, &room_id, &reply_marker).await, 1, "the reply too");
    let policy = room_policy(&server, &admin, &room_id).await;
    assert_eq!((policy["held_redactions"].clone(), policy["applied"].clone()), (json!(2), json!("room")), "{policy}");

    // Without a min_lifetime the original goes at once.
    let plain = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let plain_id = server.send_text(&alice, &encode(&plain), &plain_marker).await;
    redact(&server, &alice, &plain, &plain_id).await;
    let stored = format!("SELECT COUNT(*) FROM redaction_holds WHERE room_id = '{plain}'");
    assert_eq!(server.count_rows(&stored).await, 0, "nothing held without a min_lifetime");
    assert_eq!(room_policy(&server, &admin, &plain).await["held_redactions"], 0);

    // Within min_lifetime the purge keeps it.
    server.clock.advance_secs(60);
    assert_eq!(purge(&server, &admin).await["erased_held_redactions"], 0);
    assert_eq!(held_with(&server, engine, &room_id, &marker).await, 1);

    // Past it, the purge erases it, from the files too.
    server.clock.advance_secs(61);
    let summary = purge(&server, &admin).await;
    assert_eq!(summary["erased_held_redactions"], 2, "{summary}");
    assert_eq!(summary["purged_events"], 0, "no event expires: {summary}");
    assert_eq!(room_policy(&server, &admin, &room_id).await["held_redactions"], 0);
    let found = markers_at_rest(&server, engine, &[&marker, &reply_marker, &plain_marker]).await;
    assert!(found.is_empty(), "{found:?}");
    // The redacted events themselves stay, redacted.
    let (status, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&held_id)), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"], json!({}));
    assert_eq!(event["unsigned"]["redacted_because"]["content"]["reason"], "oops");
}

async fn direct_chats_and_encrypted_rooms_get_their_defaults(engine: Engine) {
    let server = TestServer::start_with(engine, |config| {
        config.retention.enabled = true;
        config.retention.default_max_lifetime_ms = 600_000;
        config.retention.direct.enabled = true;
        config.retention.direct.default_max_lifetime_ms = 60_000;
        config.retention.encrypted.enabled = true;
        config.retention.encrypted.default_max_lifetime_ms = 120_000;
    })
    .await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let encryption =
        json!([{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]);
    // Most direct chats are encrypted too: the direct-chat defaults come first.
    let direct = json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id], "initial_state": encryption});
    let dm = server.create_room(&alice, direct.clone()).await;
    let dm_with_own_policy = server.create_room(&alice, direct).await;
    set_policy(&server, &alice, &dm_with_own_policy, json!({"max_lifetime": 1_200_000})).await;
    let encrypted = server
        .create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id], "initial_state": encryption}))
        .await;
    let group = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    let rooms = [&dm, &dm_with_own_policy, &encrypted, &group];
    for room in rooms {
        assert_eq!(server.join(&bob, room).await.0, StatusCode::OK);
    }
    // A member saying `is_direct` later does not make a room a direct chat.
    let own_member =
        format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(&group), encode(&bob.user_id));
    let (status, body) = server.put(&own_member, bob.token(), json!({"membership": "join", "is_direct": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let expected = [
        (&dm, "direct_default", true, true, 60_000),
        (&dm_with_own_policy, "room", true, true, 1_200_000),
        (&encrypted, "encrypted_default", false, true, 120_000),
        (&group, "server_default", false, false, 600_000),
    ];
    for (room, applied, is_direct, is_encrypted, max_lifetime) in expected {
        let policy = room_policy(&server, &admin, room).await;
        let shown = (&policy["applied"], &policy["is_direct"], &policy["is_encrypted"], &policy["max_lifetime"]);
        assert_eq!(shown, (&json!(applied), &json!(is_direct), &json!(is_encrypted), &json!(max_lifetime)), "{policy}");
    }

    for room in rooms {
        server.send_text(&alice, &encode(room), "old").await;
        server.send_text(&bob, &encode(room), "newest").await;
    }
    let kept = vec!["old".to_owned(), "newest".to_owned()];
    // Past the direct default only.
    server.clock.advance_secs(90);
    purge(&server, &admin).await;
    assert!(visible_bodies(&server, &bob, &dm).await.is_empty(), "the DM's messages expired");
    for room in [&dm_with_own_policy, &encrypted, &group] {
        assert_eq!(visible_bodies(&server, &bob, room).await, kept);
    }
    // Past the encrypted default.
    server.clock.advance_secs(60);
    purge(&server, &admin).await;
    assert!(visible_bodies(&server, &bob, &encrypted).await.is_empty(), "the encrypted room's messages expired");
    assert_eq!(visible_bodies(&server, &bob, &group).await, kept);
    server.clock.advance_secs(600);
    purge(&server, &admin).await;
    assert!(visible_bodies(&server, &bob, &group).await.is_empty(), "the server default applies to the others");
    assert_eq!(visible_bodies(&server, &bob, &dm_with_own_policy).await, kept);

    // An upgraded direct chat is still one, with its own policy.
    let path = format!("/_matrix/client/v3/rooms/{}/upgrade", encode(&dm_with_own_policy));
    let (status, upgraded) = server.post(&path, alice.token(), json!({"new_version": "11"})).await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    let policy = room_policy(&server, &admin, upgraded["replacement_room"].as_str().unwrap()).await;
    let shown = (&policy["applied"], &policy["is_direct"], &policy["max_lifetime"]);
    assert_eq!(shown, (&json!("room"), &json!(true), &json!(1_200_000)), "{policy}");
}

async fn a_long_history_is_purged_in_batches(engine: Engine) {
    let server = TestServer::start_with(engine, |config| {
        config.retention.enabled = true;
        config.retention.default_max_lifetime_ms = 60_000;
        config.retention.purge_batch_size = 10;
    })
    .await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let room = encode(&room_id);
    for n in 0..25 {
        server.send_text(&alice, &room, &format!("message {n}")).await;
    }
    server.clock.advance_secs(30);
    server.send_text(&alice, &room, "fresh").await;
    server.clock.advance_secs(40);

    // The first 25 expired: 10 + 10 + 5, in three transactions; the fresh one (the forward
    // extremity) stays as it is.
    let summary = purge(&server, &admin).await;
    assert_eq!(summary["purged_events"], 25, "{summary}");
    assert_eq!(summary["batches"], 3, "{summary}");
    assert_eq!(summary["redacted_events"], 0, "{summary}");
    assert_eq!(visible_bodies(&server, &alice, &room_id).await, vec!["fresh"]);
    let left = format!("SELECT COUNT(*) FROM events WHERE room_id = '{room_id}' AND state_key IS NULL");
    assert_eq!(server.count_rows(&left).await, 1);
    // Nothing left to do.
    let again = purge(&server, &admin).await;
    assert_eq!((again["purged_events"].clone(), again["batches"].clone()), (json!(0), json!(0)));
}

async fn retention_works_with_encryption_at_rest(engine: Engine) {
    let key = key_file().display().to_string();
    let server = TestServer::start_with(engine, |config| {
        config.retention.enabled = true;
        config.storage.encryption = true;
        config.storage.encryption_key_file = key;
    })
    .await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let suffix = random_suffix();
    let (old, fresh, held) =
        (format!("OLDMARKER{suffix}"), format!("FRESHMARKER{suffix}"), format!("HOLDMARKER{suffix}"));
    let room_id = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let room = encode(&room_id);
    set_policy(&server, &alice, &room_id, json!({"min_lifetime": 40_000, "max_lifetime": 60_000})).await;
    let old_ids = [
        server.send_text(&alice, &room, &format!("{old} one")).await,
        server.send_text(&alice, &room, &format!("{old} two")).await,
    ];
    server.clock.advance_secs(30);
    let fresh_id = server.send_text(&alice, &room, &fresh).await;
    let held_id = server.send_text(&alice, &room, &held).await;
    server.send_text(&alice, &room, "newest").await;
    redact(&server, &alice, &room_id, &held_id).await;
    assert_eq!(room_policy(&server, &admin, &room_id).await["held_redactions"], 1);
    assert_eq!(held_with(&server, engine, &room_id, &held).await, 0, "the held original is sealed");

    // The old ones are past max_lifetime; the fresh ones are not, and the hold has not ended.
    server.clock.advance_secs(35);
    let summary = purge(&server, &admin).await;
    assert_eq!(
        (summary["purged_events"].clone(), summary["erased_held_redactions"].clone()),
        (json!(2), json!(0)),
        "{summary}"
    );
    assert_eq!(visible_bodies(&server, &alice, &room_id).await, vec![fresh.clone(), "newest".to_owned()]);
    for id in &old_ids {
        let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(id));
        assert_eq!(server.get(&path, alice.token()).await.0, StatusCode::NOT_FOUND, "an expired event is gone");
    }
    let (status, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&fresh_id)), alice.token()).await;
    assert_eq!((status, event["content"]["body"].clone()), (StatusCode::OK, json!(fresh)), "{event}");
    let seen = served(&server, &alice, &room_id, &[&fresh_id, &held_id], &old).await;
    assert!(!seen.contains(&old) && !seen.contains(&held), "{seen}");
    assert_eq!(room_policy(&server, &admin, &room_id).await["held_redactions"], 1);
    // Sealed throughout: no marker in the files or rows at any point.
    let found = markers_at_rest(&server, engine, &[&old, &fresh, &held]).await;
    assert!(found.is_empty(), "{found:?}");

    // Past the hold: erased.
    server.clock.advance_secs(10);
    assert_eq!(purge(&server, &admin).await["erased_held_redactions"], 1);
    assert_eq!(room_policy(&server, &admin, &room_id).await["held_redactions"], 0);
    assert_eq!(visible_bodies(&server, &alice, &room_id).await, vec![fresh, "newest".to_owned()]);
}

async fn other_servers_get_a_held_redaction_redacted(engine: Engine) {
    use ruma::api::federation::event::get_event;

    let a = TestServer::start_federating_with(engine, |config| config.retention.enabled = true).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let room_id = a.create_room(&alice, json!({"preset": "public_chat"})).await;
    let join = format!("/_matrix/client/v3/join/{}?via={}", encode(&room_id), a.server_name);
    let (status, body) = b.post(&join, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    set_policy(&a, &alice, &room_id, json!({"min_lifetime": 120_000})).await;
    let marker = format!("FEDMARKER{}", random_suffix());
    let event_id = a.send_text(&alice, &encode(&room_id), &marker).await;
    redact(&a, &alice, &room_id, &event_id).await;
    assert_eq!(room_policy(&a, &a.admin("root", PASSWORD).await, &room_id).await["held_redactions"], 1);

    // A serves the event to B's server in its redacted form.
    let to_a: &ruma::ServerName = a.server_name.as_str().try_into().unwrap();
    let request = get_event::v1::Request::new(event_id.as_str().try_into().unwrap());
    let response = b.state.federation.send(to_a, &b.state.signing_key, request).await.unwrap();
    let pdu = response.pdu.get();
    assert!(!pdu.contains(&marker), "served over federation: {pdu}");
    let pdu: Value = serde_json::from_str(pdu).unwrap();
    assert_eq!(pdu["content"], json!({}), "{pdu}");
}

async fn a_direct_chat_from_another_server_gets_the_direct_defaults(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating_with(engine, |config| {
        config.retention.enabled = true;
        config.retention.direct.enabled = true;
        config.retention.direct.default_max_lifetime_ms = 60_000;
    })
    .await;
    let admin = b.admin("root", PASSWORD).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let dm = a.create_room(&alice, json!({"preset": "trusted_private_chat"})).await;
    let group = a.create_room(&alice, json!({"preset": "private_chat"})).await;
    // Myelin's createRoom invites local users only; other homeservers send a direct chat's invite
    // to a remote user with `is_direct` in its content, as A does here through the federation
    // invite it uses for /invite.
    let (alice_id, bob_id) =
        (ruma::UserId::parse(alice.user_id.as_str()).unwrap(), ruma::UserId::parse(bob.user_id.as_str()).unwrap());
    for (room, content) in
        [(&dm, json!({"membership": "invite", "is_direct": true})), (&group, json!({"membership": "invite"}))]
    {
        let room = ruma::RoomId::parse(room.as_str()).unwrap();
        homeserver::rooms::federated_invite::invite_remote(&a.state, &room, &alice_id, &bob_id, content).await.unwrap();
    }

    // Bob joins both once the invites have reached his server.
    for room in [&dm, &group] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let join = format!("/_matrix/client/v3/join/{}", encode(room));
        while b.post(&join, bob.token(), json!({})).await.0 != StatusCode::OK {
            assert!(std::time::Instant::now() < deadline, "bob could join {room}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let policy = room_policy(&b, &admin, &dm).await;
    let shown = (&policy["applied"], &policy["is_direct"], &policy["max_lifetime"]);
    assert_eq!(shown, (&json!("direct_default"), &json!(true), &json!(60_000)), "{policy}");
    let policy = room_policy(&b, &admin, &group).await;
    assert_eq!((&policy["applied"], &policy["is_direct"]), (&json!("none"), &json!(false)), "{policy}");
}
