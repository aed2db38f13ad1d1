//! Presence: `PUT/GET /presence/{userId}/status`, `set_presence` on `/sync`, and presence of room
//! members delivered in `/sync` (also waking a long-poll).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests};

engine_tests!(
    presence_is_set_and_read_by_room_members_only,
    presence_reaches_room_members_through_sync,
    set_presence_on_sync_changes_presence,
    users_who_stop_syncing_go_offline_and_idle_users_away,
    disabled_presence_is_accepted_and_ignored
);

fn status_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/presence/{user_id}/status")
}

/// The `m.presence` content for `user_id` in a sync response, if any.
fn presence_of(sync: &Value, user_id: &str) -> Option<Value> {
    let events = sync["presence"]["events"].as_array()?;
    let event = events.iter().find(|e| e["sender"] == user_id)?;
    assert_eq!(event["type"], "m.presence");
    Some(event["content"].clone())
}

/// A long-polling sync on a task; it returns when something changes for `session`.
fn long_poll(
    server: &TestServer,
    session: &Session,
    since: &str,
    set_presence: &str,
) -> tokio::task::JoinHandle<Value> {
    let url =
        format!("{}/_matrix/client/v3/sync?since={since}&timeout=20000&set_presence={set_presence}", server.base_url);
    let token = session.access_token.clone();
    tokio::spawn(async move {
        reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap()
    })
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn get_presence(server: &TestServer, session: &Session, user_id: &str) -> Value {
    let (status, body) = server.get(&status_path(user_id), session.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn presence_is_set_and_read_by_room_members_only(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let stranger = server.register("stranger", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;

    // Never set: offline.
    assert_eq!(get_presence(&server, &bob, &alice.user_id).await["presence"], "offline");

    let (status, body) = server
        .put(&status_path(&alice.user_id), alice.token(), json!({"presence": "online", "status_msg": "lunch"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    for reader in [&alice, &bob] {
        let seen = get_presence(&server, reader, &alice.user_id).await;
        assert_eq!(seen["presence"], "online", "{seen}");
        assert_eq!(seen["status_msg"], "lunch");
        assert_eq!(seen["currently_active"], true);
        assert!(seen["last_active_ago"].as_u64().expect("last_active_ago") < 5_000, "{seen}");
    }

    // Time passes without activity while alice's client keeps a sync open: still online, no
    // longer currently active.
    let next = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let polling = long_poll(&server, &alice, &next, "online");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.clock.advance_secs(120);
    let later = get_presence(&server, &bob, &alice.user_id).await;
    assert_eq!(later["presence"], "online", "{later}");
    assert_eq!(later["currently_active"], false, "{later}");
    assert!(later["last_active_ago"].as_u64().unwrap() >= 120_000, "{later}");
    // Sending a message is activity.
    server.send_text(&alice, &room, "back").await;
    polling.await.unwrap();
    let active = get_presence(&server, &bob, &alice.user_id).await;
    assert_eq!(active["currently_active"], true, "{active}");
    assert!(active["last_active_ago"].as_u64().unwrap() < 5_000, "{active}");

    // Strangers may not look; nobody sets someone else's presence; states are the spec's three.
    assert_error(
        server.get(&status_path(&alice.user_id), stranger.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.put(&status_path(&alice.user_id), bob.token(), json!({"presence": "offline"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.put(&status_path(&alice.user_id), alice.token(), json!({"presence": "dancing"})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.put(&status_path(&alice.user_id), alice.token(), json!({"status_msg": "no state"})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let long = "x".repeat(5000);
    assert_error(
        server
            .put(&status_path(&alice.user_id), alice.token(), json!({"presence": "online", "status_msg": long}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_eq!(get_presence(&server, &alice, &alice.user_id).await["status_msg"], "lunch");

    // Going away, and clearing the status message.
    server.put(&status_path(&alice.user_id), alice.token(), json!({"presence": "unavailable"})).await;
    let away = get_presence(&server, &bob, &alice.user_id).await;
    assert_eq!(away["presence"], "unavailable");
    assert!(away.get("status_msg").is_none(), "{away}");
    assert!(away.get("currently_active").is_none(), "{away}");
}

async fn presence_reaches_room_members_through_sync(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let stranger = server.register("stranger", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.put(&status_path(&alice.user_id), alice.token(), json!({"presence": "online", "status_msg": "here"})).await;

    // Initial sync carries the room members' presence (bob syncs without going online himself).
    let initial = server.sync(&bob, "set_presence=offline").await;
    let seen = presence_of(&initial, &alice.user_id).expect("alice's presence");
    assert_eq!(seen["presence"], "online");
    assert_eq!(seen["status_msg"], "here");
    assert_eq!(seen["currently_active"], true);
    assert!(presence_of(&initial, &bob.user_id).is_none(), "bob never set presence: {initial}");
    // The filter's presence section applies (clients switch presence off with not_types ["*"]).
    let filtered = server
        .sync(&bob, "set_presence=offline&filter=%7B%22presence%22%3A%7B%22not_types%22%3A%5B%22*%22%5D%7D%7D")
        .await;
    assert!(presence_of(&filtered, &alice.user_id).is_none(), "{filtered}");
    let by_sender = format!("{{\"presence\":{{\"not_senders\":[\"{}\"]}}}}", alice.user_id);
    let by_sender = server.sync(&bob, &format!("set_presence=offline&filter={}", urlencode(&by_sender))).await;
    assert!(presence_of(&by_sender, &alice.user_id).is_none(), "{by_sender}");
    let stranger_sync = server.sync(&stranger, "set_presence=offline").await;
    assert!(presence_of(&stranger_sync, &alice.user_id).is_none(), "{stranger_sync}");

    // Incremental: unchanged presence is not repeated.
    let next = initial["next_batch"].as_str().unwrap().to_owned();
    let quiet = server.sync(&bob, &format!("since={next}&set_presence=offline&timeout=0")).await;
    assert!(presence_of(&quiet, &alice.user_id).is_none(), "{quiet}");

    // A waiting sync wakes when alice's presence changes.
    let url = format!("{}/_matrix/client/v3/sync?since={next}&timeout=60000&set_presence=offline", server.base_url);
    let token = bob.access_token.clone();
    let waiting = tokio::spawn(async move {
        reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = server.put(&status_path(&alice.user_id), alice.token(), json!({"presence": "unavailable"})).await;
    assert_eq!(status, StatusCode::OK);
    let woken = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("sync returned").unwrap();
    let changed = presence_of(&woken, &alice.user_id).expect("the change");
    assert_eq!(changed["presence"], "unavailable", "{woken}");
    assert!(changed.get("status_msg").is_none(), "{woken}");

    // Tokens from before presence was in the token still work (as "from the beginning").
    let old_style: String = next.split('_').take(6).collect::<Vec<_>>().join("_");
    let from_old = server.sync(&bob, &format!("since={old_style}&set_presence=offline&timeout=0")).await;
    assert_eq!(presence_of(&from_old, &alice.user_id).expect("replayed")["presence"], "unavailable");

    // Someone who starts sharing a room is sent their current presence, both ways.
    let carol = server.register("carol", "correct-horse").await;
    server.put(&status_path(&carol.user_id), carol.token(), json!({"presence": "online", "status_msg": "new"})).await;
    let carols = server.sync(&carol, "set_presence=offline").await["next_batch"].as_str().unwrap().to_owned();
    assert!(
        presence_of(
            &server.sync(&carol, &format!("since={carols}&timeout=0&set_presence=offline")).await,
            &alice.user_id
        )
        .is_none()
    );
    let bobs = server.sync(&bob, "set_presence=offline").await["next_batch"].as_str().unwrap().to_owned();
    assert_eq!(server.join(&carol, &room).await.0, StatusCode::OK);
    let bob_sees = server.sync(&bob, &format!("since={bobs}&set_presence=offline")).await;
    assert_eq!(presence_of(&bob_sees, &carol.user_id).expect("carol's presence")["status_msg"], "new", "{bob_sees}");
    let carol_sees = server.sync(&carol, &format!("since={carols}&set_presence=offline")).await;
    assert_eq!(presence_of(&carol_sees, &alice.user_id).expect("alice's presence")["presence"], "unavailable");

    let (status, body) = server.get("/_matrix/client/v3/sync?since=s1_2_3_4_5_6_x", bob.token()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");
}

async fn set_presence_on_sync_changes_presence(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let alice_sees_bob = async |since: &str| -> (Option<Value>, String) {
        let sync = server.sync(&alice, &format!("since={since}&set_presence=offline&timeout=0")).await;
        (presence_of(&sync, &bob.user_id), sync["next_batch"].as_str().unwrap().to_owned())
    };
    let start = server.sync(&alice, "set_presence=offline").await["next_batch"].as_str().unwrap().to_owned();

    // Syncing (online by default) brings bob online; his own sync reports it too.
    let own = server.sync(&bob, "").await;
    assert_eq!(presence_of(&own, &bob.user_id).expect("own presence")["presence"], "online");
    let (seen, next) = alice_sees_bob(&start).await;
    assert_eq!(seen.expect("bob online")["presence"], "online");
    assert_eq!(get_presence(&server, &alice, &bob.user_id).await["currently_active"], true);

    // Syncing as unavailable marks him away, and syncing online again brings him back.
    server.sync(&bob, "set_presence=unavailable").await;
    let (seen, next) = alice_sees_bob(&next).await;
    assert_eq!(seen.expect("bob away")["presence"], "unavailable");
    server.sync(&bob, "set_presence=online").await;
    let (seen, next) = alice_sees_bob(&next).await;
    assert_eq!(seen.expect("bob back")["presence"], "online");

    // An explicitly set "unavailable" is not overridden by syncing; set_presence=offline changes nothing.
    server.put(&status_path(&bob.user_id), bob.token(), json!({"presence": "unavailable"})).await;
    server.sync(&bob, "").await;
    server.sync(&bob, "set_presence=offline").await;
    assert_eq!(get_presence(&server, &alice, &bob.user_id).await["presence"], "unavailable");
    let (seen, _) = alice_sees_bob(&next).await;
    assert_eq!(seen.expect("the explicit change")["presence"], "unavailable");

    let (status, body) = server.get("/_matrix/client/v3/sync?set_presence=dancing", bob.token()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");
}

async fn users_who_stop_syncing_go_offline_and_idle_users_away(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.sync(&bob, "").await;
    assert_eq!(get_presence(&server, &alice, &bob.user_id).await["presence"], "online");
    let next = server.sync(&alice, "set_presence=offline").await["next_batch"].as_str().unwrap().to_owned();

    // Bob's client stops syncing: a little later he is still online, after 30 s offline.
    server.clock.advance_secs(20);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get_presence(&server, &alice, &bob.user_id).await["presence"], "online");
    let waiting = long_poll(&server, &alice, &next, "offline");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.clock.advance_secs(15);
    let woken = tokio::time::timeout(Duration::from_secs(15), waiting).await.expect("woken").unwrap();
    assert_eq!(presence_of(&woken, &bob.user_id).expect("bob timed out")["presence"], "offline", "{woken}");
    let next = woken["next_batch"].as_str().unwrap().to_owned();

    // Syncing again brings him online; while a sync stays open he does not time out, but doing
    // nothing for five minutes makes him unavailable.
    let bobs = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let bob_polling = long_poll(&server, &bob, &bobs, "online");
    let waiting = long_poll(&server, &alice, &next, "offline");
    let woken = tokio::time::timeout(Duration::from_secs(15), waiting).await.expect("woken").unwrap();
    assert_eq!(presence_of(&woken, &bob.user_id).expect("bob back")["presence"], "online", "{woken}");
    let next = woken["next_batch"].as_str().unwrap().to_owned();
    let waiting = long_poll(&server, &alice, &next, "offline");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.clock.advance_secs(6 * 60);
    let woken = tokio::time::timeout(Duration::from_secs(15), waiting).await.expect("woken").unwrap();
    assert_eq!(presence_of(&woken, &bob.user_id).expect("bob idle")["presence"], "unavailable", "{woken}");
    let next = woken["next_batch"].as_str().unwrap().to_owned();
    bob_polling.await.unwrap();

    // Syncing does not end idleness; acting does.
    server.sync(&bob, "").await;
    assert_eq!(get_presence(&server, &alice, &bob.user_id).await["presence"], "unavailable");
    server.send_text(&bob, &room, "I am back").await;
    let back = server.sync(&alice, &format!("since={next}&set_presence=offline")).await;
    let seen = presence_of(&back, &bob.user_id).expect("bob active");
    assert_eq!(seen["presence"], "online", "{back}");
    assert_eq!(seen["currently_active"], true, "{back}");
}

async fn disabled_presence_is_accepted_and_ignored(engine: Engine) {
    let server = TestServer::start_with(engine, |config| config.presence.enabled = false).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;

    let (status, body) = server
        .put(&status_path(&alice.user_id), alice.token(), json!({"presence": "online", "status_msg": "hi"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = get_presence(&server, &bob, &alice.user_id).await;
    assert_eq!(seen, json!({"presence": "offline"}));
    server.sync(&alice, "set_presence=online").await;
    let sync = server.sync(&bob, "").await;
    assert!(sync["presence"]["events"].as_array().is_none_or(Vec::is_empty), "{sync}");
    // Permission checks still apply.
    assert_error(
        server.put(&status_path(&alice.user_id), bob.token(), json!({"presence": "online"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}
