//! Encryption at rest, proven on the raw bytes: with `storage.encryption` on, no message, to-device
//! message, account data or media content appears in the database files (SQLite main file and
//! WAL; every PostgreSQL row read with raw SQL) or the media store, while clients get everything
//! back intact; a wrong or missing key refuses to start; a damaged record is a 500, not garbage.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests, message_bodies, random_suffix, temp_dir};

engine_tests!(
    nothing_readable_at_rest,
    wrong_key_refuses_to_start_and_damage_is_reported,
    rotation_keeps_everything_readable,
    federated_rooms_and_invites_are_sealed_on_both_servers,
);

const PASSWORD: &str = "correct-horse";

/// A new key file, as `myelin generate-key` writes it.
pub(crate) fn key_file() -> PathBuf {
    let path = temp_dir("key").join("storage.key");
    std::fs::write(&path, format!("{}\n", homeserver::at_rest::generate_key_text())).unwrap();
    path
}

async fn encrypted_server(engine: Engine, key: &Path) -> TestServer {
    let key = key.display().to_string();
    TestServer::start_with(engine, |config| {
        config.storage.encryption = true;
        config.storage.encryption_key_file = key;
    })
    .await
}

pub(crate) fn png() -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::new_rgba8(64, 64).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

async fn upload(server: &TestServer, session: &Session, content_type: &str, bytes: Vec<u8>) -> String {
    upload_named(server, session, content_type, "", bytes).await
}

pub(crate) async fn upload_named(
    server: &TestServer,
    session: &Session,
    content_type: &str,
    query: &str,
    bytes: Vec<u8>,
) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload{query}", server.base_url))
        .bearer_auth(&session.access_token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

pub(crate) async fn download(server: &TestServer, session: &Session, path: &str) -> (StatusCode, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.base_url))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    (response.status(), response.bytes().await.unwrap().to_vec())
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Every row of every table as text, read with raw SQL (PostgreSQL shows bytes as hex).
pub(crate) async fn all_postgres_rows(server: &TestServer) -> String {
    let pool = sqlx::PgPool::connect(&server.state.config.effective_database_url()).await.unwrap();
    let mut text = String::new();
    for table in homeserver::storage::TABLES {
        let rows: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT t::text FROM {table} t")).fetch_all(&pool).await.unwrap();
        for (row,) in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    pool.close().await;
    text
}

/// Fails if any marker appears in the database (raw) or the media store.
async fn assert_no_marker_at_rest(server: &TestServer, engine: Engine, markers: &[&str]) {
    let data_dir = &server.state.config.data_dir;
    let files = files_under(data_dir);
    if engine == Engine::Sqlite {
        assert!(files.iter().any(|f| f.ends_with("myelin.db-wal")), "the WAL is scanned too: {files:?}");
    }
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for marker in markers {
            assert!(!contains(&bytes, marker.as_bytes()), "{marker} readable in {}", file.display());
        }
    }
    if engine == Engine::Postgres {
        let rows = all_postgres_rows(server).await;
        for marker in markers {
            let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
            assert!(!rows.contains(marker) && !rows.contains(&hex), "{marker} readable in a PostgreSQL row");
        }
    }
    // Every stored media file and thumbnail is sealed.
    for file in files_under(&server.state.config.effective_media_path().join("content")) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.starts_with(homeserver::at_rest::media::MAGIC), "{} is not sealed", file.display());
    }
}

async fn nothing_readable_at_rest(engine: Engine) {
    let key = key_file();
    let server = encrypted_server(engine, &key).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let suffix = random_suffix();
    let (message, to_device, settings, media, filename) = (
        format!("MSGMARKER{suffix}"),
        format!("TODEVICEMARKER{suffix}"),
        format!("ACCOUNTDATAMARKER{suffix}"),
        format!("MEDIAMARKER{suffix}"),
        format!("FILENAMEMARKER{suffix}"),
    );

    let room = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    assert_eq!(server.join(&bob, &room).await.0, StatusCode::OK);
    let event_id = server.send_text(&alice, &room, &message).await;
    let path = format!("/_matrix/client/v3/sendToDevice/m.test/{suffix}");
    let body = json!({"messages": {bob.user_id.clone(): {"*": {"secret": to_device}}}});
    assert_eq!(server.put(&path, alice.token(), body).await.0, StatusCode::OK);
    let account_data = format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", alice.user_id);
    assert_eq!(server.put(&account_data, alice.token(), json!({"note": settings})).await.0, StatusCode::OK);
    // Several chunks, the last one partial.
    let file: Vec<u8> = media.as_bytes().iter().copied().cycle().take(200_000).collect();
    let query = format!("?filename={filename}");
    let media_id = upload_named(&server, &alice, "application/octet-stream", &query, file.clone()).await;
    let image = png();
    let image_id = upload(&server, &alice, "image/png", image.clone()).await;
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{}/{image_id}?width=32&height=32", server.server_name);
    let (status, thumbnail_bytes) = download(&server, &alice, &thumbnail).await;
    assert_eq!(status, StatusCode::OK);
    assert!(image::load_from_memory(&thumbnail_bytes).is_ok(), "a thumbnail is served decrypted");

    assert_no_marker_at_rest(&server, engine, &[&message, &to_device, &settings, &media, &filename]).await;

    // Clients get everything back intact.
    let (status, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"]["body"], message);
    let sync = server.sync(&bob, "").await;
    let secrets: Vec<&Value> =
        sync["to_device"]["events"].as_array().unwrap().iter().map(|e| &e["content"]["secret"]).collect();
    assert_eq!(secrets, vec![&json!(to_device)]);
    assert_eq!(server.get(&account_data, alice.token()).await.1, json!({"note": settings}));
    let download_path = format!("/_matrix/client/v1/media/download/{}/{media_id}", server.server_name);
    assert_eq!(download(&server, &bob, &download_path).await, (StatusCode::OK, file));
    let response = reqwest::Client::new()
        .get(format!("{}{download_path}", server.base_url))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.contains(&filename), "{disposition}");
    let image_path = format!("/_matrix/client/v1/media/download/{}/{image_id}", server.server_name);
    assert_eq!(download(&server, &bob, &image_path).await, (StatusCode::OK, image));

    // No plaintext search index, so no search: a clear error.
    let search = json!({"search_categories": {"room_events": {"search_term": message}}});
    let answer = server.post("/_matrix/client/v3/search", alice.token(), search).await;
    assert_error(answer, StatusCode::BAD_REQUEST, "M_UNKNOWN");

    // Still everything after a restart with the same key.
    let server = server.restart().await;
    let (status, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"]["body"], message);
}

async fn wrong_key_refuses_to_start_and_damage_is_reported(engine: Engine) {
    let key = key_file();
    let server = encrypted_server(engine, &key).await;
    let alice = server.register("alice", PASSWORD).await;
    let room = server.create_room(&alice, json!({})).await;
    let first = server.send_text(&alice, &room, "first").await;
    let second = server.send_text(&alice, &room, "second").await;

    // Another key: refused with a clear error, before serving anything.
    let mut wrong = server.state.config.clone();
    wrong.storage.encryption_key_file = key_file().display().to_string();
    let error = homeserver::server::open_storage(&wrong).await.expect_err("a wrong key is refused").to_string();
    assert!(error.contains("does not match"), "{error}");
    // No key at all (encryption off): refused too.
    let mut missing = server.state.config.clone();
    missing.storage.encryption = false;
    missing.storage.encryption_key_file.clear();
    let error = homeserver::server::open_storage(&missing).await.expect_err("no key is refused").to_string();
    assert!(error.contains("encrypted at rest"), "{error}");
    // A malformed key file.
    let mut malformed = server.state.config.clone();
    let bad = temp_dir("key").join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    malformed.storage.encryption_key_file = bad.display().to_string();
    let error = homeserver::server::open_storage(&malformed).await.expect_err("a bad key is refused").to_string();
    assert!(error.contains("32 bytes"), "{error}");

    // A record moved onto another event's row fails authentication: reported, never served.
    let moved = server
        .raw_sql(&format!(
            "UPDATE events SET json = (SELECT json FROM events WHERE event_id = '{second}') WHERE event_id = '{first}'"
        ))
        .await;
    assert_eq!(moved, 1);
    // Damage is found where records are read from disk: a running server may still hold its own
    // copy of the event in memory, a restarted one has only the database.
    let server = server.restart().await;
    let answer = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{first}"), alice.token()).await;
    assert_error(answer, StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN");
    let (status, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{second}"), alice.token()).await;
    assert_eq!((status, event["content"]["body"].as_str()), (StatusCode::OK, Some("second")));
}

async fn rotation_keeps_everything_readable(engine: Engine) {
    let (old_key, new_key) = (key_file(), key_file());
    let server = encrypted_server(engine, &old_key).await;
    let alice = server.register("alice", PASSWORD).await;
    let room = server.create_room(&alice, json!({})).await;
    let mut events = Vec::new();
    for n in 0..5 {
        events.push((server.send_text(&alice, &room, &format!("before {n}")).await, format!("before {n}")));
    }
    let account_data = format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", alice.user_id);
    assert_eq!(server.put(&account_data, alice.token(), json!({"n": 1})).await.0, StatusCode::OK);
    let file: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    let media_id = upload(&server, &alice, "application/octet-stream", file.clone()).await;
    let image_id = upload(&server, &alice, "image/png", png()).await;
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{}/{image_id}?width=32&height=32", server.server_name);
    let (status, thumbnail_bytes) = download(&server, &alice, &thumbnail).await;
    assert_eq!(status, StatusCode::OK);

    // The documented online procedure: the server runs with the new key, the old one for reading…
    let (old, new) = (old_key.display().to_string(), new_key.display().to_string());
    let server = server
        .restart_with(|config| {
            config.storage.encryption_key_file = new.clone();
            config.storage.decryption_key_files = vec![old.clone()];
        })
        .await;
    events.push((server.send_text(&alice, &room, "during").await, "during".to_owned()));
    // …while `rotate-key` reseals everything in small batches.
    let key = homeserver::at_rest::Key::from_file(&new_key).unwrap();
    let rotated = homeserver::key_rotation::rotate(&server.state.config, key, 2).await.unwrap();
    assert!(rotated.records >= 6, "{rotated:?}");
    assert_eq!(rotated.media_files, 3, "two uploads and a thumbnail");
    let key = homeserver::at_rest::Key::from_file(&new_key).unwrap();
    let again = homeserver::key_rotation::rotate(&server.state.config, key, 2).await.unwrap();
    assert_eq!(again, homeserver::key_rotation::Rotated::default(), "nothing left under the old key");

    // The old key is no longer needed, nor accepted.
    let server = server.restart_with(|config| config.storage.decryption_key_files.clear()).await;
    let mut old_only = server.state.config.clone();
    old_only.storage.encryption_key_file = old;
    let error = homeserver::server::open_storage(&old_only).await.expect_err("the old key is refused").to_string();
    assert!(error.contains("does not match"), "{error}");
    for (event_id, body) in &events {
        let (status, event) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{event}");
        assert_eq!(event["content"]["body"], body.as_str());
    }
    assert_eq!(server.get(&account_data, alice.token()).await.1, json!({"n": 1}));
    let download_path = format!("/_matrix/client/v1/media/download/{}/{media_id}", server.server_name);
    assert_eq!(download(&server, &alice, &download_path).await, (StatusCode::OK, file));
    assert_eq!(download(&server, &alice, &thumbnail).await, (StatusCode::OK, thumbnail_bytes));
    let (status, sync) = (StatusCode::OK, server.sync(&alice, "").await);
    assert_eq!(status, StatusCode::OK);
    assert!(sync["rooms"]["join"][&room].is_object(), "{sync}");
}

async fn sync_until(server: &TestServer, session: &Session, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut since: Option<String> = None;
    loop {
        let query = since.as_ref().map_or("timeout=0".to_owned(), |token| format!("timeout=1000&since={token}"));
        let response = server.sync(session, &query).await;
        if done(&response) {
            return response;
        }
        since = response["next_batch"].as_str().map(str::to_owned);
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
    }
}

async fn federated_rooms_and_invites_are_sealed_on_both_servers(engine: Engine) {
    let (key_a, key_b) = (key_file().display().to_string(), key_file().display().to_string());
    let encrypt = |key: String| {
        move |config: &mut homeserver::config::Config| {
            config.storage.encryption = true;
            config.storage.encryption_key_file = key;
        }
    };
    let a = TestServer::start_federating_with(engine, encrypt(key_a)).await;
    let b = TestServer::start_federating_with(engine, encrypt(key_b)).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let suffix = random_suffix();
    let (name, message) = (format!("ROOMNAMEMARKER{suffix}"), format!("FEDMSGMARKER{suffix}"));
    let room = a.create_room(&alice, json!({"preset": "private_chat", "name": name})).await;
    let invite = json!({"user_id": bob.user_id});
    assert_eq!(
        a.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), invite).await.0,
        StatusCode::OK
    );

    // B keeps the invite's stripped state (the room name) sealed, and still shows it.
    let sync = sync_until(&b, &bob, "the invite on B", |s| s["rooms"]["invite"][&room].is_object()).await;
    let state = sync["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap().clone();
    assert!(state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == name.as_str()));
    assert_no_marker_at_rest(&b, engine, &[&name]).await;

    assert_eq!(b.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await.0, StatusCode::OK);
    a.send_text(&alice, &room, &message).await;
    sync_until(&b, &bob, "alice's message on B", |s| {
        message_bodies(&s["rooms"]["join"][&room]["timeline"]["events"]).contains(&message)
    })
    .await;
    assert_no_marker_at_rest(&a, engine, &[&name, &message]).await;
    assert_no_marker_at_rest(&b, engine, &[&name, &message]).await;

    // Media fetched from another server is sealed in our cache like our own.
    let media_marker = format!("FEDMEDIAMARKER{suffix}");
    let insecure = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let uploaded: Value = insecure
        .post(format!("{}/_matrix/media/v3/upload", a.base_url))
        .bearer_auth(&alice.access_token)
        .header("content-type", "text/plain")
        .body(media_marker.clone().into_bytes())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let media_id = uploaded["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let fetched = insecure
        .get(format!("{}/_matrix/client/v1/media/download/{}/{media_id}", b.base_url, a.server_name))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), media_marker.as_bytes());
    assert_no_marker_at_rest(&b, engine, &[&media_marker]).await;
}

/// `migrate-db` copies sealed records as opaque bytes: the moved server reads them with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_installation_moves_to_postgres() {
    if crate::common::postgres_url().is_none() {
        eprintln!("skipped: MYELIN_TEST_POSTGRES is not set");
        return;
    }
    let key = key_file();
    let old = encrypted_server(Engine::Sqlite, &key).await;
    let alice = old.register("alice", PASSWORD).await;
    let room = old.create_room(&alice, json!({})).await;
    let event_id = old.send_text(&alice, &room, "sealed on SQLite").await;
    let file = b"sealed media".repeat(1000);
    let media_id = upload(&old, &alice, "application/octet-stream", file.clone()).await;
    let (sqlite_url, data_dir) = (old.state.config.effective_database_url(), old.state.config.data_dir.clone());
    drop(old);

    let postgres = crate::common::fresh_database_url(Engine::Postgres, &data_dir).await;
    homeserver::storage::copy_database(&sqlite_url, &postgres).await.expect("copy");
    let key_path = key.display().to_string();
    let new = TestServer::start_with(Engine::Postgres, |config| {
        config.database_url = postgres.clone();
        config.data_dir = data_dir.clone();
        config.storage.encryption = true;
        config.storage.encryption_key_file = key_path;
    })
    .await;
    let (status, event) = new.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"]["body"], "sealed on SQLite");
    let path = format!("/_matrix/client/v1/media/download/{}/{media_id}", new.server_name);
    assert_eq!(download(&new, &alice, &path).await, (StatusCode::OK, file));
    let (raw,): (Vec<u8>,) = sqlx::query_as("SELECT json FROM events WHERE event_id = $1")
        .bind(&event_id)
        .fetch_one(&sqlx::PgPool::connect(&postgres).await.unwrap())
        .await
        .unwrap();
    assert!(!contains(&raw, b"sealed on SQLite"), "still sealed after the copy");
}
