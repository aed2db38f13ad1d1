//! Erasure (deactivation with `erase: true`, by the user or an admin), proven on what others see
//! and on the raw bytes: the user's messages are redacted for everyone, they leave their rooms,
//! no marker they wrote is left in the database files (SQLite main file and WAL; every
//! PostgreSQL row) or the media store, the access log forgets them, and the account stays dead.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::at_rest::{all_postgres_rows, contains, download, files_under, png, upload_named};
use crate::common::{
    Engine, Session, TestServer, assert_error, engine_tests, password_auth, password_login, random_suffix,
};

engine_tests!(
    erasing_deactivation_leaves_nothing_behind,
    admin_erasure_leaves_nothing_behind,
    an_interrupted_erasure_resumes_at_start,
    a_local_moderator_redacts_where_the_user_may_not,
);

pub(crate) const PASSWORD: &str = "correct-horse";

/// What the user leaves behind before the erasure, each with a unique marker.
struct Traces {
    markers: Vec<String>,
    rooms: Vec<String>,
    messages: Vec<String>,
    media_ids: Vec<String>,
    /// Bob's sync position before the erasure.
    since: String,
}

/// Alice writes in two rooms shared with bob, sends bob a to-device message, stores account data
/// and a key backup, and uploads media (with a thumbnail).
async fn leave_traces(server: &TestServer, alice: &Session, bob: &Session) -> Traces {
    // Lower case, ending in a digit: the search index keeps tokens as they are here.
    let marker = |what: &str| format!("{what}marker{}7", random_suffix());
    let markers: Vec<String> = ["first", "second", "todevice", "settings", "backup", "media", "filename", "reason"]
        .into_iter()
        .map(marker)
        .collect();
    let public = server.create_room(bob, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(alice, &public).await.0, StatusCode::OK);
    let direct = server.create_room(alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    assert_eq!(server.join(bob, &direct).await.0, StatusCode::OK);
    let messages = vec![
        server.send_text(alice, &public, &format!("hello {}", markers[0])).await,
        server.send_text(alice, &direct, &format!("hi {}", markers[1])).await,
    ];

    // A redaction of her own with a reason: the reason is hers too.
    let typo = server.send_text(alice, &public, "typo").await;
    let path = format!("/_matrix/client/v3/rooms/{public}/redact/{typo}/{}", random_suffix());
    let (status, body) = server.put(&path, alice.token(), json!({"reason": markers[7]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let path = format!("/_matrix/client/v3/sendToDevice/m.test/{}", random_suffix());
    let body = json!({"messages": {bob.user_id.clone(): {"*": {"secret": markers[2]}}}});
    assert_eq!(server.put(&path, alice.token(), body).await.0, StatusCode::OK);
    let account_data = format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", alice.user_id);
    assert_eq!(server.put(&account_data, alice.token(), json!({"note": markers[3]})).await.0, StatusCode::OK);
    let backup =
        json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": markers[4]}});
    let (status, created) = server.post("/_matrix/client/v3/room_keys/version", alice.token(), backup).await;
    assert_eq!(status, StatusCode::OK, "{created}");

    let file: Vec<u8> = markers[5].as_bytes().iter().copied().cycle().take(100_000).collect();
    let query = format!("?filename={}", markers[6]);
    let file_id = upload_named(server, alice, "application/octet-stream", &query, file).await;
    let image_id = upload_named(server, alice, "image/png", "", png()).await;
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{}/{image_id}?width=32&height=32", server.server_name);
    assert_eq!(download(server, alice, &thumbnail).await.0, StatusCode::OK);

    // What the erasure has to remove is really there.
    let files = files_under(&server.state.config.effective_media_path());
    assert!(files.iter().any(|f| f.display().to_string().contains(".thumbnails")), "{files:?}");
    let theirs = format!("sender = '{}'", alice.user_id);
    assert!(server.count_rows(&format!("SELECT COUNT(*) FROM event_search WHERE {theirs}")).await > 0);
    let pushed = format!(
        "SELECT COUNT(*) FROM (SELECT event_id FROM event_push_actions UNION ALL SELECT event_id FROM recent_push_actions) p \
         WHERE event_id IN (SELECT event_id FROM events WHERE {theirs})"
    );
    assert!(server.count_rows(&pushed).await > 0, "bob was notified of alice's messages");
    server.state.access_log.flush().await;
    assert!(server.count_rows(&access_log_rows(&alice.user_id)).await > 0);
    let since = server.sync(bob, "").await["next_batch"].as_str().expect("next_batch").to_owned();
    Traces { markers, rooms: vec![public, direct], messages, media_ids: vec![file_id, image_id], since }
}

fn access_log_rows(user_id: &str) -> String {
    format!("SELECT COUNT(*) FROM access_log WHERE user_id = '{user_id}'")
}

/// Waits until the background erasure is done (its queue row is gone).
pub(crate) async fn wait_for_erasure(server: &TestServer) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.count_rows("SELECT COUNT(*) FROM user_erasures").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the erasure did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The event as bob sees it in a list of client events.
pub(crate) fn find<'a>(events: &'a Value, event_id: &str) -> &'a Value {
    let found = events.as_array().and_then(|events| events.iter().find(|e| e["event_id"] == event_id));
    found.unwrap_or_else(|| panic!("{event_id} missing from {events}"))
}

#[track_caller]
pub(crate) fn assert_redacted(event: &Value) {
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(event["unsigned"]["redacted_because"]["type"], "m.room.redaction", "{event}");
}

/// Everything others and the disk show after alice's erasure.
async fn assert_erased(server: &TestServer, engine: Engine, bob: &Session, alice_id: &str, traces: &Traces) {
    let initial = server.sync(bob, "").await;
    let incremental = server.sync(bob, &format!("since={}", traces.since)).await;
    for (room, event_id) in traces.rooms.iter().zip(&traces.messages) {
        // Bob's next sync brings the redaction itself.
        let timeline = incremental["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        let redacts = |e: &&Value| e["type"] == "m.room.redaction" && e["sender"] == alice_id;
        let redaction = timeline.iter().find(redacts).unwrap_or_else(|| panic!("no redaction in {timeline:?}"));
        let target = redaction.get("redacts").unwrap_or(&redaction["content"]["redacts"]);
        assert_eq!(target, event_id.as_str(), "{redaction}");
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
        let (status, page) = server.get(&path, bob.token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_redacted(find(&page["chunk"], event_id));
        let timeline = &initial["rooms"]["join"][room]["timeline"]["events"];
        assert_redacted(find(timeline, event_id));
        let member = server.state_content(bob, room, "m.room.member", alice_id).await;
        assert_eq!(member["membership"], "leave", "alice left {room}");
        assert!(member.get("displayname").is_none(), "{member}");
    }
    let (status, profile) = server.get(&format!("/_matrix/client/v3/profile/{alice_id}"), bob.token()).await;
    assert!(status == StatusCode::NOT_FOUND || profile.get("displayname").is_none(), "{profile}");

    let theirs = format!("sender = '{alice_id}'");
    assert_eq!(server.count_rows(&format!("SELECT COUNT(*) FROM event_search WHERE {theirs}")).await, 0);
    let pushed = format!(
        "SELECT COUNT(*) FROM (SELECT event_id FROM event_push_actions UNION ALL SELECT event_id FROM recent_push_actions) p \
         WHERE event_id IN (SELECT event_id FROM events WHERE {theirs})"
    );
    assert_eq!(server.count_rows(&pushed).await, 0);
    assert_eq!(server.count_rows(&format!("SELECT COUNT(*) FROM to_device_messages WHERE {theirs}")).await, 0);
    let media = format!("SELECT COUNT(*) FROM media WHERE uploader = '{alice_id}'");
    assert_eq!(server.count_rows(&media).await, 0);
    server.state.access_log.flush().await;
    assert_eq!(server.count_rows(&access_log_rows(alice_id)).await, 0, "the access log forgot alice");

    // Nothing of the media is left in the store: no file, no thumbnail.
    let files = files_under(&server.state.config.effective_media_path());
    for media_id in &traces.media_ids {
        assert!(!files.iter().any(|f| f.display().to_string().contains(media_id.as_str())), "{media_id}: {files:?}");
    }
    assert_no_marker_on_disk(server, engine, &traces.markers).await;

    assert_error(
        server.post("/_matrix/client/v3/login", None, password_login(alice_id, PASSWORD)).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let localpart = alice_id.trim_start_matches('@').split(':').next().unwrap_or_default();
    let body = json!({"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}});
    assert_error(
        server.post("/_matrix/client/v3/register", None, body).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
}

/// Scans every file of the data directory (database after a checkpoint, WAL, media) and, on
/// PostgreSQL, every row of every table as text (bytes show as hex).
pub(crate) async fn assert_no_marker_on_disk(server: &TestServer, engine: Engine, markers: &[String]) {
    if engine == Engine::Sqlite {
        server.checkpoint_sqlite().await;
    }
    for file in files_under(&server.state.config.data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        for marker in markers {
            assert!(!contains(&bytes, marker.as_bytes()), "{marker} readable in {}", file.display());
        }
    }
    if engine == Engine::Postgres {
        let rows = all_postgres_rows(server).await;
        for marker in markers {
            let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
            assert!(!rows.contains(marker.as_str()) && !rows.contains(&hex), "{marker} readable in a PostgreSQL row");
        }
    }
}

async fn erasing_deactivation_leaves_nothing_behind(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let traces = leave_traces(&server, &alice, &bob).await;

    let path = "/_matrix/client/v3/account/deactivate";
    let (status, challenge) = server.post(path, alice.token(), json!({"erase": true})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let session = challenge["session"].as_str().unwrap();
    let body = json!({"erase": true, "auth": password_auth(&alice.user_id, PASSWORD, session)});
    let (status, response) = server.post(path, alice.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    wait_for_erasure(&server).await;

    assert_erased(&server, engine, &bob, &alice.user_id, &traces).await;
}

async fn admin_erasure_leaves_nothing_behind(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("admin", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let traces = leave_traces(&server, &alice, &bob).await;

    let path = format!("/_synapse/admin/v1/deactivate/{}", alice.user_id);
    let (status, response) = server.post(&path, admin.token(), json!({"erase": true})).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    wait_for_erasure(&server).await;

    assert_erased(&server, engine, &bob, &alice.user_id, &traces).await;
    let entries = server.audit_entries_for(&admin, "deactivate_user").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], alice.user_id.as_str(), "{entries:?}");
    assert_eq!(entries[0]["params"]["erase"], true, "{entries:?}");
}

/// An erasure still queued when the server stopped is finished by the next start.
async fn an_interrupted_erasure_resumes_at_start(engine: Engine) {
    let mut server = TestServer::start(engine).await;
    let admin = server.admin("admin", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&bob, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&alice, &room).await.0, StatusCode::OK);
    let message = server.send_text(&alice, &room, "to be erased").await;
    // Deactivated, still joined, its erasure queued but not run (as if the server stopped).
    let path = format!("/_synapse/admin/v1/deactivate/{}", alice.user_id);
    assert_eq!(server.post(&path, admin.token(), json!({})).await.0, StatusCode::OK);
    server.stop().await;
    let queued = format!("INSERT INTO user_erasures (user_id, requested_ts) VALUES ('{}', 0)", alice.user_id);
    assert_eq!(server.raw_sql(&queued).await, 1);

    let server = server.restart().await;
    wait_for_erasure(&server).await;
    let (status, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_redacted(find(&page["chunk"], &message));
    let member = server.state_content(&bob, &room, "m.room.member", &alice.user_id).await;
    assert_eq!(member["membership"], "leave");
}

/// In a room where the user may not send redactions, a local member with the power to redact
/// others' events redacts for them.
async fn a_local_moderator_redacts_where_the_user_may_not(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("admin", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let levels = json!({"events": {"m.room.redaction": 50}});
    let room = server.create_room(&bob, json!({"preset": "public_chat", "power_level_content_override": levels})).await;
    assert_eq!(server.join(&alice, &room).await.0, StatusCode::OK);
    let message = server.send_text(&alice, &room, "only a moderator can redact this").await;
    let path = format!("/_matrix/client/v3/rooms/{room}/redact/{message}/{}", random_suffix());
    assert_eq!(server.put(&path, alice.token(), json!({})).await.0, StatusCode::FORBIDDEN, "alice may not redact");

    let path = format!("/_synapse/admin/v1/deactivate/{}", alice.user_id);
    assert_eq!(server.post(&path, admin.token(), json!({"erase": true})).await.0, StatusCode::OK);
    wait_for_erasure(&server).await;
    let (status, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let event = find(&page["chunk"], &message);
    assert_redacted(event);
    assert_eq!(event["unsigned"]["redacted_because"]["sender"], bob.user_id.as_str(), "{event}");
}
