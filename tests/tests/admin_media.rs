//! Admin API, media: a user's uploads, deletion by ID and by age and size (files and
//! thumbnails gone from disk), quarantine of one item and of a room's media.

use std::io::Cursor;
use std::path::PathBuf;

use homeserver::state::Clock as _;
use image::{DynamicImage, ImageFormat};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, encode, engine_tests};

engine_tests!(user_media_is_listed_and_paged, media_is_deleted_with_its_files, quarantined_media_is_not_served);

const PASSWORD: &str = "correct-horse";

async fn upload(server: &TestServer, session: &Session, content_type: &str, name: &str, bytes: Vec<u8>) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload?filename={name}", server.base_url))
        .bearer_auth(&session.access_token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let prefix = format!("mxc://{}/", server.server_name);
    body["content_uri"].as_str().unwrap().strip_prefix(&prefix).unwrap().to_owned()
}

async fn download_status(server: &TestServer, session: &Session, media_id: &str) -> StatusCode {
    let path = format!("/_matrix/client/v1/media/download/{}/{media_id}", server.server_name);
    reqwest::Client::new()
        .get(format!("{}{path}", server.base_url))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap()
        .status()
}

fn png() -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    DynamicImage::new_rgb8(200, 100).write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn content_path(server: &TestServer, media_id: &str) -> PathBuf {
    let key = homeserver::media::store::media_key(&server.server_name, media_id);
    server.state.config.effective_media_path().join("content").join(key)
}

fn thumbnails_path(server: &TestServer, media_id: &str) -> PathBuf {
    let mut path = content_path(server, media_id).into_os_string();
    path.push(".thumbnails");
    PathBuf::from(path)
}

fn ids(page: &Value) -> Vec<String> {
    page["media"].as_array().unwrap().iter().map(|m| m["media_id"].as_str().unwrap().to_owned()).collect()
}

async fn user_media_is_listed_and_paged(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let first = upload(&server, &alice, "text/plain", "a.txt", b"12345".to_vec()).await;
    server.clock.advance_secs(10);
    let second = upload(&server, &alice, "text/plain", "b.txt", b"1".to_vec()).await;
    server.clock.advance_secs(10);
    let third = upload(&server, &alice, "image/png", "c.png", png()).await;
    upload(&server, &admin, "text/plain", "other.txt", b"not alice's".to_vec()).await;

    let path = format!("/_synapse/admin/v1/users/{}/media", encode(alice.user_id.as_str()));
    let (status, page) = server.get(&path, admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 3);
    assert_eq!(ids(&page), vec![first.clone(), second.clone(), third.clone()], "oldest first by default");
    assert!(page.get("next_token").is_none());
    let entry = &page["media"][0];
    assert_eq!(entry["media_type"], "text/plain");
    assert_eq!(entry["media_length"], 5);
    assert_eq!(entry["upload_name"], "a.txt");
    assert_eq!(entry["quarantined_by"], Value::Null);
    assert_eq!(entry["safe_from_quarantine"], false);
    assert!(entry["created_ts"].is_i64() && entry["last_access_ts"].is_i64());

    let (_, page) = server.get(&format!("{path}?limit=2"), admin.token()).await;
    assert_eq!(ids(&page), vec![first.clone(), second.clone()]);
    assert_eq!(page["next_token"], 2);
    let (_, page) = server.get(&format!("{path}?limit=2&from=2"), admin.token()).await;
    assert_eq!(ids(&page), vec![third.clone()]);
    assert!(page.get("next_token").is_none());
    let (_, page) = server.get(&format!("{path}?order_by=media_length&dir=b"), admin.token()).await;
    assert_eq!(ids(&page), vec![third.clone(), first.clone(), second.clone()]);
    assert_error(
        server.get(&format!("{path}?order_by=colour"), admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    assert_error(server.get(&path, alice.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(server.get(&path, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let unknown = format!("/_synapse/admin/v1/users/{}/media", encode(&server.user_id("nobody")));
    assert_error(server.get(&unknown, admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let remote = format!("/_synapse/admin/v1/users/{}/media", encode("@bob:elsewhere.example"));
    assert_error(server.get(&remote, admin.token()).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

async fn media_is_deleted_with_its_files(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;

    // By ID: content and thumbnails leave the disk, the metadata leaves the database.
    let picture = upload(&server, &alice, "image/png", "p.png", png()).await;
    let thumbnail = format!(
        "{}/_matrix/client/v1/media/thumbnail/{}/{picture}?width=32&height=32&method=scale",
        server.base_url, server.server_name
    );
    let response = reqwest::Client::new().get(thumbnail).bearer_auth(&alice.access_token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(content_path(&server, &picture).exists() && thumbnails_path(&server, &picture).exists());
    let path = format!("/_synapse/admin/v1/media/{}/{picture}", server.server_name);
    assert_error(server.delete(&path, alice.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(content_path(&server, &picture).exists(), "a refused deletion deletes nothing");
    let (status, body) = server.delete(&path, admin.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"deleted_media": [picture], "total": 1}));
    assert!(!content_path(&server, &picture).exists(), "content file removed");
    assert!(!thumbnails_path(&server, &picture).exists(), "thumbnails removed");
    let rows = format!("SELECT COUNT(*) FROM media_thumbnails WHERE media_id = '{picture}'");
    assert_eq!(server.count_rows(&rows).await, 0);
    assert_eq!(download_status(&server, &alice, &picture).await, StatusCode::NOT_FOUND);
    assert_error(server.delete(&path, admin.token(), json!({})).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let remote = "/_synapse/admin/v1/media/elsewhere.example/abcdefgh";
    assert_error(server.delete(remote, admin.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let entries = server.audit_entries_for(&admin, "delete_media").await;
    assert_eq!(entries.len(), 2, "the deletion and the failed repeat: {entries:?}");
    assert_eq!(entries[0]["target"], format!("mxc://{}/{picture}", server.server_name));
    assert_eq!(entries[0]["result"], "ok");

    // By age and size; an avatar is kept unless keep_profiles=false.
    let old_small = upload(&server, &alice, "text/plain", "s.txt", b"1".to_vec()).await;
    let old_large = upload(&server, &alice, "text/plain", "l.txt", vec![b'x'; 1000]).await;
    let avatar = upload(&server, &alice, "text/plain", "avatar", vec![b'a'; 1000]).await;
    let avatar_url = format!("mxc://{}/{avatar}", server.server_name);
    let profile = format!("/_matrix/client/v3/profile/{}/avatar_url", encode(alice.user_id.as_str()));
    assert_eq!(server.put(&profile, alice.token(), json!({"avatar_url": avatar_url})).await.0, StatusCode::OK);
    let room_avatar = upload(&server, &alice, "text/plain", "room-avatar", vec![b'a'; 1000]).await;
    let room_id = server.create_room(&alice, json!({})).await;
    let avatar_event = format!("/_matrix/client/v3/rooms/{}/state/m.room.avatar/", encode(&room_id));
    let room_avatar_url = format!("mxc://{}/{room_avatar}", server.server_name);
    assert_eq!(server.put(&avatar_event, alice.token(), json!({"url": room_avatar_url})).await.0, StatusCode::OK);
    server.clock.advance_secs(60);
    let cutoff = server.clock.now_ms();
    let recent = upload(&server, &alice, "text/plain", "r.txt", vec![b'r'; 1000]).await;

    let bulk = "/_synapse/admin/v1/media/delete";
    assert_error(server.post(bulk, admin.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    assert_error(
        server.post(&format!("{bulk}?before_ts={cutoff}"), alice.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, body) = server.post(&format!("{bulk}?before_ts={cutoff}&size_gt=10"), admin.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"deleted_media": [old_large], "total": 1}), "small, recent and avatar media stay");
    assert!(!content_path(&server, &old_large).exists());
    for kept in [&old_small, &avatar, &room_avatar, &recent] {
        assert!(content_path(&server, kept).exists(), "{kept} kept");
        assert_eq!(download_status(&server, &alice, kept).await, StatusCode::OK);
    }
    let path = format!("/_synapse/admin/v1/media/{}/delete?before_ts={cutoff}&keep_profiles=false", server.server_name);
    let (_, body) = server.post(&path, admin.token(), json!({})).await;
    let mut deleted: Vec<String> =
        body["deleted_media"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    deleted.sort();
    let mut expected = vec![old_small.clone(), avatar.clone(), room_avatar.clone()];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(body["total"], 3);
    assert!(!content_path(&server, &avatar).exists());
    assert!(content_path(&server, &recent).exists());
    assert_eq!(server.audit_entries_for(&admin, "delete_old_media").await.len(), 2);

    // A user's media at once.
    let path = format!("/_synapse/admin/v1/users/{}/media", encode(alice.user_id.as_str()));
    let (status, body) = server.delete(&path, admin.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"deleted_media": [recent], "total": 1}));
    assert!(!content_path(&server, &recent).exists());
    let (_, page) = server.get(&path, admin.token()).await;
    assert_eq!(page["total"], 0);
}

async fn quarantined_media_is_not_served(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let media_id = upload(&server, &alice, "image/png", "p.png", png()).await;
    let quarantine = format!("/_synapse/admin/v1/media/quarantine/{}/{media_id}", server.server_name);
    let unquarantine = format!("/_synapse/admin/v1/media/unquarantine/{}/{media_id}", server.server_name);

    assert_error(server.post(&quarantine, alice.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(download_status(&server, &alice, &media_id).await, StatusCode::OK);
    let (status, body) = server.post(&quarantine, admin.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(download_status(&server, &alice, &media_id).await, StatusCode::NOT_FOUND);
    let thumbnail = format!(
        "{}/_matrix/client/v1/media/thumbnail/{}/{media_id}?width=32&height=32",
        server.base_url, server.server_name
    );
    let response = reqwest::Client::new().get(&thumbnail).bearer_auth(&alice.access_token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "no thumbnails of quarantined media either");
    let path = format!("/_synapse/admin/v1/users/{}/media", encode(alice.user_id.as_str()));
    let (_, page) = server.get(&path, admin.token()).await;
    assert_eq!(page["media"][0]["quarantined_by"], admin.user_id.as_str());
    assert!(content_path(&server, &media_id).exists(), "quarantine keeps the file");

    let (status, _) = server.post(&unquarantine, admin.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(download_status(&server, &alice, &media_id).await, StatusCode::OK);
    let unknown = format!("/_synapse/admin/v1/media/quarantine/{}/nosuchmedia", server.server_name);
    assert_error(server.post(&unknown, admin.token(), json!({})).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.audit_entries_for(&admin, "quarantine_media").await.len(), 2);
    assert_eq!(server.audit_entries_for(&admin, "unquarantine_media").await.len(), 1);

    // A room's media: everything its events point at.
    let room_id = server.create_room(&alice, json!({})).await;
    let posted = upload(&server, &alice, "image/png", "q.png", png()).await;
    let untouched = upload(&server, &alice, "image/png", "u.png", png()).await;
    let url = format!("mxc://{}/{posted}", server.server_name);
    let send = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t1", encode(&room_id));
    let content = json!({"msgtype": "m.image", "body": "q.png", "url": url});
    assert_eq!(server.put(&send, alice.token(), content).await.0, StatusCode::OK);
    let room_quarantine = format!("/_synapse/admin/v1/room/{}/media/quarantine", encode(&room_id));
    assert_error(server.post(&room_quarantine, alice.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, body) = server.post(&room_quarantine, admin.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"num_quarantined": 1})));
    assert_eq!(download_status(&server, &alice, &posted).await, StatusCode::NOT_FOUND);
    assert_eq!(download_status(&server, &alice, &untouched).await, StatusCode::OK);

    // A user's media: all of it.
    let bob = server.register("bob", PASSWORD).await;
    let bobs = upload(&server, &bob, "text/plain", "b.txt", b"bob".to_vec()).await;
    let user_quarantine = format!("/_synapse/admin/v1/user/{}/media/quarantine", encode(alice.user_id.as_str()));
    assert_error(server.post(&user_quarantine, bob.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, body) = server.post(&user_quarantine, admin.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"num_quarantined": 3})));
    assert_eq!(download_status(&server, &alice, &untouched).await, StatusCode::NOT_FOUND);
    assert_eq!(download_status(&server, &alice, &bobs).await, StatusCode::OK, "other users' media is served");
}
