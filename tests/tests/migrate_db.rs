//! Moving an installation from the embedded SQLite default to PostgreSQL (`myelin migrate-db`):
//! the migrated server serves the same history, accounts, keys and media.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, fresh_database_url, postgres_url};

const PASSWORD: &str = "correct-horse";

/// What a client sees of the populated server, compared before and after the move.
async fn snapshot(server: &TestServer, alice: &Session, room: &str, media_id: &str) -> Value {
    let (_, messages) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), alice.token()).await;
    let events: Vec<Value> = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"event_id": e["event_id"], "type": e["type"], "content": e["content"], "sender": e["sender"]}))
        .collect();
    let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), alice.token()).await;
    let mut state_ids: Vec<String> = state.as_array().unwrap().iter().map(|e| e["event_id"].to_string()).collect();
    state_ids.sort();
    let (_, account_data) = server
        .get(&format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", alice.user_id), alice.token())
        .await;
    let (_, keys) =
        server.post("/_matrix/client/v3/keys/query", alice.token(), json!({"device_keys": {&alice.user_id: []}})).await;
    let media = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v1/media/download/{}/{media_id}", server.base_url, server.server_name))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    json!({"events": events, "state": state_ids, "account_data": account_data, "keys": keys["device_keys"], "media": media.to_vec()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_installation_moves_to_postgres() {
    if postgres_url().is_none() {
        eprintln!("skipped: MYELIN_TEST_POSTGRES is not set");
        return;
    }
    let old = TestServer::start(Engine::Sqlite).await;
    let alice = old.register("alice", PASSWORD).await;
    let bob = old.register("bob", PASSWORD).await;
    let room = old.create_room(&alice, json!({"preset": "public_chat", "name": "moving day"})).await;
    old.join(&bob, &room).await;
    for n in 0..30 {
        old.send_text(if n % 2 == 0 { &alice } else { &bob }, &room, &format!("message {n}")).await;
    }
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", alice.user_id);
    old.put(&path, alice.token(), json!({"theme": "dark"})).await;
    let device_keys = json!({
        "user_id": alice.user_id, "device_id": alice.device_id,
        "algorithms": ["m.megolm.v1.aes-sha2"], "keys": {format!("ed25519:{}", alice.device_id): "key"},
        "signatures": {&alice.user_id: {format!("ed25519:{}", alice.device_id): "sig"}},
    });
    old.post("/_matrix/client/v3/keys/upload", alice.token(), json!({"device_keys": device_keys})).await;
    let upload = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload?filename=a.bin", old.base_url))
        .bearer_auth(&alice.access_token)
        .body(vec![1u8, 2, 3, 250])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let media_id = upload["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let before = snapshot(&old, &alice, &room, &media_id).await;
    // The access log writes its entries a moment later: count once they are in.
    old.state.access_log.flush().await;
    let source_counts = old.state.storage.table_counts().await.unwrap();
    let (sqlite_url, data_dir) = (old.state.config.effective_database_url(), old.state.config.data_dir.clone());
    drop(old);

    let postgres = fresh_database_url(Engine::Postgres, &data_dir).await;
    let copied = homeserver::storage::copy_database(&sqlite_url, &postgres).await.expect("copy");
    assert_eq!(copied, source_counts, "every row of every table");
    assert!(copied.iter().any(|(table, rows)| *table == "events" && *rows > 30));
    // Bob's notifications were still staged on SQLite; the copy files them by member.
    assert!(copied.iter().any(|(table, rows)| *table == "recent_push_actions" && *rows > 0), "{copied:?}");
    // A second copy into the same (now populated) database is refused.
    assert!(homeserver::storage::copy_database(&sqlite_url, &postgres).await.is_err());

    let new = TestServer::start_with(Engine::Postgres, |config| {
        config.database_url = postgres.clone();
        config.data_dir = data_dir.clone();
    })
    .await;
    assert_eq!(new.count_rows("SELECT COUNT(*) FROM recent_push_actions").await, 0);
    // Existing sessions and passwords keep working.
    assert_eq!(new.get("/_matrix/client/v3/account/whoami", alice.token()).await.0, StatusCode::OK);
    new.login("bob", PASSWORD).await;
    assert_eq!(snapshot(&new, &alice, &room, &media_id).await, before);
    // The search index came along (PostgreSQL indexes the copied rows).
    let search = json!({"search_categories": {"room_events": {"search_term": "message"}}});
    let (status, found) = new.post("/_matrix/client/v3/search", alice.token(), search).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["search_categories"]["room_events"]["count"], 30, "{found}");
    // And the moved server keeps going: new events continue the same history.
    new.send_text(&bob, &room, "after the move").await;
    let sync = new.sync(&alice, "").await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(timeline.as_array().unwrap().last().unwrap()["content"]["body"], "after the move");
}
