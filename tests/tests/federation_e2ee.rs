//! End-to-end encryption across two servers: key queries and claims answered by the user's
//! server, to-device messages as EDUs, and device-list changes announced to room-mates' servers.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, engine_tests};

engine_tests!(remote_keys_to_device_and_device_lists);

fn device_keys(session: &Session, curve: &str) -> Value {
    json!({
        "user_id": session.user_id,
        "device_id": session.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", session.device_id): curve,
            format!("ed25519:{}", session.device_id): "ed25519_public_key",
        },
        "signatures": {&session.user_id: {format!("ed25519:{}", session.device_id): "signature"}},
    })
}

async fn upload(server: &TestServer, session: &Session, body: Value) {
    let (status, response) = server.post("/_matrix/client/v3/keys/upload", session.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
}

async fn remote_keys_to_device_and_device_lists(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    upload(
        &a,
        &alice,
        json!({
            "device_keys": device_keys(&alice, "curve_one"),
            "one_time_keys": {"signed_curve25519:AAAA": {"key": "otk1"}, "signed_curve25519:AAAB": {"key": "otk2"}},
        }),
    )
    .await;

    // Bob's server asks Alice's for her keys; a server that cannot be reached is a failure.
    let unreachable = "@carol:127.0.0.1:1";
    let body = json!({"device_keys": {&alice.user_id: [], unreachable: []}, "timeout": 5000});
    let (status, keys) = b.post("/_matrix/client/v3/keys/query", bob.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let device = &keys["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(device["keys"][format!("curve25519:{}", alice.device_id)], "curve_one", "{keys}");
    assert!(keys["failures"]["127.0.0.1:1"].is_object(), "{keys}");

    // Claims hand out each one-time key once.
    let claim = json!({"one_time_keys": {&alice.user_id: {&alice.device_id: "signed_curve25519"}}});
    let mut claimed = Vec::new();
    for _ in 0..2 {
        let (status, response) = b.post("/_matrix/client/v3/keys/claim", bob.token(), claim.clone()).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        let keys = response["one_time_keys"][&alice.user_id][&alice.device_id].as_object().unwrap().clone();
        claimed.extend(keys.values().map(|k| k["key"].as_str().unwrap().to_owned()));
    }
    claimed.sort();
    assert_eq!(claimed, ["otk1", "otk2"]);

    // A to-device message to Alice's device, sent from Bob's server.
    let path = "/_matrix/client/v3/sendToDevice/m.room_key_request/txn-1";
    let messages = json!({"messages": {&alice.user_id: {&alice.device_id: {"secret": "for alice"}}}});
    let (status, _) = b.put(path, bob.token(), messages.clone()).await;
    assert_eq!(status, StatusCode::OK);
    // A retry of the same transaction is not delivered again.
    let (status, _) = b.put(path, bob.token(), messages).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let sync = a.sync(&alice, "timeout=500").await;
        let events = sync["to_device"]["events"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() {
            break events;
        }
        assert!(Instant::now() < deadline, "the to-device message never reached A");
    };
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["sender"], bob.user_id.as_str());
    assert_eq!(delivered[0]["type"], "m.room_key_request");
    assert_eq!(delivered[0]["content"]["secret"], "for alice");

    // Once they share a room, Alice's new device shows up in Bob's device-list changes.
    let room_id = a.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{room_id}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let since = b.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let second = a.login("alice", "password-alice").await;
    upload(&a, &second, json!({"device_keys": device_keys(&second, "curve_two")})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sync = b.sync(&bob, &format!("since={since}&timeout=500")).await;
        let changed = sync["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
        if changed.iter().any(|u| u == alice.user_id.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "Alice's new device was never announced to B");
    }
    let (_, keys) =
        b.post("/_matrix/client/v3/keys/query", bob.token(), json!({"device_keys": {&alice.user_id: []}})).await;
    assert_eq!(
        keys["device_keys"][&alice.user_id][&second.device_id]["keys"][format!("curve25519:{}", second.device_id)],
        "curve_two"
    );
}
