//! End-to-end encryption support over HTTP: device and one-time keys, cross-signing and
//! signatures, to-device messages, device-list changes and key backup.

use std::collections::HashSet;

use federation::ServerSigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests, password_auth};

engine_tests!(
    device_and_one_time_keys,
    concurrent_claims_take_each_key_once,
    to_device_delivery_and_acknowledgement,
    device_lists_follow_keys_and_membership,
    cross_signing_and_signatures,
    key_backup_round_trip,
);

const PASSWORD: &str = "correct-horse";

/// An ed25519 key and the key ID it signs under: `ed25519:<device ID>` for device keys,
/// `ed25519:<public key>` for cross-signing keys.
struct TestKey {
    key: ServerSigningKey,
    key_id: String,
}

impl TestKey {
    fn public_key_base64(&self) -> String {
        self.key.public_key_base64()
    }
}

fn key(seed: u8, device_id: Option<&str>) -> TestKey {
    let key = ServerSigningKey::from_seed("x".into(), [seed; 32]).unwrap();
    let key_id = format!("ed25519:{}", device_id.map_or_else(|| key.public_key_base64(), ToOwned::to_owned));
    TestKey { key, key_id }
}

/// Signs `value` as `user_id`. The signature covers the content, not the key ID, so signing
/// under the placeholder ID and renaming it gives the real signature.
fn sign(value: Value, user_id: &str, key: &TestKey) -> Value {
    let mut object = federation::signing::to_canonical_object(value).unwrap();
    federation::signing::sign_object(user_id, &key.key, &mut object);
    let mut value = serde_json::to_value(object).unwrap();
    let signatures = value["signatures"][user_id].as_object_mut().unwrap();
    let signature = signatures.remove(&key.key.key_id()).unwrap();
    signatures.insert(key.key_id.clone(), signature);
    value
}

/// Self-signed device keys for the session's device.
fn device_keys(session: &Session, device_key: &TestKey) -> Value {
    let keys = json!({
        "user_id": session.user_id,
        "device_id": session.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", session.device_id): "curve_public_key",
            format!("ed25519:{}", session.device_id): device_key.public_key_base64(),
        },
    });
    sign(keys, &session.user_id, device_key)
}

fn one_time_keys(prefix: &str, count: usize) -> Value {
    let keys: serde_json::Map<String, Value> = (0..count)
        .map(|i| (format!("signed_curve25519:{prefix}{i:03}"), json!({"key": format!("k{prefix}{i}")})))
        .collect();
    Value::Object(keys)
}

async fn upload(server: &TestServer, session: &Session, body: Value) -> (StatusCode, Value) {
    server.post("/_matrix/client/v3/keys/upload", session.token(), body).await
}

async fn claim(server: &TestServer, claimer: &Session, owner: &Session) -> Value {
    let body = json!({"one_time_keys": {&owner.user_id: {&owner.device_id: "signed_curve25519"}}});
    let (status, response) = server.post("/_matrix/client/v3/keys/claim", claimer.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["one_time_keys"][&owner.user_id][&owner.device_id].clone()
}

async fn query(server: &TestServer, asker: &Session, user_id: &str) -> Value {
    let body = json!({"device_keys": {user_id: []}});
    let (status, response) = server.post("/_matrix/client/v3/keys/query", asker.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response
}

async fn device_and_one_time_keys(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let device_key = key(1, Some(&alice.device_id));

    // Keys for another device are refused.
    let mut wrong = device_keys(&alice, &device_key);
    wrong["device_id"] = json!("SOMEONEELSE");
    assert_error(
        upload(&server, &alice, json!({"device_keys": wrong})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    let body = json!({
        "device_keys": device_keys(&alice, &device_key),
        "one_time_keys": one_time_keys("A", 2),
        "fallback_keys": {"signed_curve25519:FB1": {"key": "fallback", "fallback": true}},
    });
    let (status, response) = upload(&server, &alice, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["one_time_key_counts"]["signed_curve25519"], 2);

    // Re-uploading the same key is fine; the same ID with other content is not.
    let (status, _) = upload(&server, &alice, json!({"one_time_keys": one_time_keys("A", 1)})).await;
    assert_eq!(status, StatusCode::OK);
    let conflicting = json!({"one_time_keys": {"signed_curve25519:A000": {"key": "different"}}});
    assert_error(upload(&server, &alice, conflicting).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    let sync = server.sync(&alice, "").await;
    assert_eq!(sync["device_one_time_keys_count"]["signed_curve25519"], 2);
    assert_eq!(sync["device_unused_fallback_key_types"], json!(["signed_curve25519"]));

    // Anyone can query the device keys, with the device's display name added.
    let response = query(&server, &bob, &alice.user_id).await;
    let keys = &response["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(keys["keys"][format!("ed25519:{}", alice.device_id)], device_key.public_key_base64());
    assert!(keys["signatures"][&alice.user_id].is_object(), "{keys}");
    assert!(keys["unsigned"].as_object().is_some_and(|u| u.contains_key("device_display_name")), "{keys}");

    // Claims hand out each one-time key once, then the fallback key, which stays available.
    let mut claimed = Vec::new();
    for _ in 0..2 {
        let key = claim(&server, &bob, &alice).await;
        claimed.extend(key.as_object().unwrap().keys().cloned());
    }
    claimed.sort();
    assert_eq!(claimed, ["signed_curve25519:A000", "signed_curve25519:A001"]);
    for _ in 0..2 {
        let key = claim(&server, &bob, &alice).await;
        assert_eq!(key["signed_curve25519:FB1"]["key"], "fallback", "{key}");
    }
    let sync = server.sync(&alice, "").await;
    assert_eq!(sync["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(sync["device_unused_fallback_key_types"], json!([]), "a used fallback key is reported as used");

    // A new fallback key starts unused.
    let body = json!({"fallback_keys": {"signed_curve25519:FB2": {"key": "fallback2", "fallback": true}}});
    upload(&server, &alice, body).await;
    let sync = server.sync(&alice, "").await;
    assert_eq!(sync["device_unused_fallback_key_types"], json!(["signed_curve25519"]));

    // Remote users are reported as failures, not errors.
    let body = json!({"device_keys": {"@carol:elsewhere.example": []}});
    let (status, response) = server.post("/_matrix/client/v3/keys/query", bob.token(), body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(response["failures"]["elsewhere.example"].is_object(), "{response}");

    // Deleting the device deletes its keys.
    let path = format!("/_matrix/client/v3/devices/{}", alice.device_id);
    let (_, challenge) = server.delete(&path, alice.token(), json!({})).await;
    let auth = password_auth(&alice.user_id, PASSWORD, challenge["session"].as_str().unwrap());
    let (status, _) = server.delete(&path, alice.token(), json!({"auth": auth})).await;
    assert_eq!(status, StatusCode::OK);
    let response = query(&server, &bob, &alice.user_id).await;
    assert!(response["device_keys"].get(&alice.user_id).is_none(), "{response}");
}

async fn concurrent_claims_take_each_key_once(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let body = json!({
        "one_time_keys": one_time_keys("C", 20),
        "fallback_keys": {"signed_curve25519:FB": {"key": "fallback", "fallback": true}},
    });
    assert_eq!(upload(&server, &alice, body).await.0, StatusCode::OK);

    // Truly concurrent requests, each on its own connection.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let url = format!("{}/_matrix/client/v3/keys/claim", server.base_url);
        let body = json!({"one_time_keys": {&alice.user_id: {&alice.device_id: "signed_curve25519"}}});
        let (token, owner) = (bob.access_token.clone(), alice.clone());
        tasks.spawn(async move {
            let response = reqwest::Client::new().post(url).bearer_auth(token).json(&body).send().await.unwrap();
            let response: Value = response.json().await.unwrap();
            response["one_time_keys"][&owner.user_id][&owner.device_id].clone()
        });
    }
    let mut one_time = HashSet::new();
    let mut fallbacks = 0;
    for result in tasks.join_all().await {
        let (key_id, _) = result.as_object().unwrap().iter().next().expect("a key for every claim");
        if key_id == "signed_curve25519:FB" {
            fallbacks += 1;
        } else {
            assert!(one_time.insert(key_id.clone()), "{key_id} handed out twice");
        }
    }
    assert_eq!(one_time.len(), 20);
    assert_eq!(fallbacks, 10);
}

async fn send_to_device(server: &TestServer, sender: &Session, txn: &str, messages: Value) {
    let path = format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
    let (status, response) = server.put(&path, sender.token(), json!({"messages": messages})).await;
    assert_eq!(status, StatusCode::OK, "{response}");
}

fn to_device_payloads(sync: &Value) -> Vec<i64> {
    sync["to_device"]["events"]
        .as_array()
        .map(|events| events.iter().map(|e| e["content"]["n"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

async fn to_device_delivery_and_acknowledgement(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let alice_laptop = server.login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;

    // `*` reaches every device; a retried transaction is not delivered twice.
    send_to_device(&server, &bob, "t1", json!({&alice.user_id: {"*": {"n": 1}}})).await;
    send_to_device(&server, &bob, "t1", json!({&alice.user_id: {"*": {"n": 1}}})).await;
    send_to_device(&server, &bob, "t2", json!({&alice.user_id: {&alice_laptop.device_id: {"n": 2}}})).await;

    let first = server.sync(&alice, "").await;
    assert_eq!(to_device_payloads(&first), [1]);
    let event = &first["to_device"]["events"][0];
    assert_eq!(event["sender"], bob.user_id.as_str());
    assert_eq!(event["type"], "m.test");
    let laptop = server.sync(&alice_laptop, "").await;
    assert_eq!(to_device_payloads(&laptop), [1, 2]);

    // Until acknowledged, the same message comes again; syncing from the token acknowledges it.
    assert_eq!(to_device_payloads(&server.sync(&alice, "").await), [1]);
    let next = first["next_batch"].as_str().unwrap();
    let incremental = server.sync(&alice, &format!("since={next}&timeout=0")).await;
    assert_eq!(to_device_payloads(&incremental), Vec::<i64>::new());
    assert_eq!(to_device_payloads(&server.sync(&alice, "").await), Vec::<i64>::new(), "deleted once acknowledged");

    // A long queue is delivered in bounded batches, in order.
    for n in 0..120 {
        send_to_device(&server, &bob, &format!("bulk{n}"), json!({&alice.user_id: {&alice.device_id: {"n": n}}})).await;
    }
    let next = incremental["next_batch"].as_str().unwrap();
    let batch = server.sync(&alice, &format!("since={next}&timeout=0")).await;
    assert_eq!(to_device_payloads(&batch), (0..100).collect::<Vec<_>>());
    let next = batch["next_batch"].as_str().unwrap();
    let rest = server.sync(&alice, &format!("since={next}&timeout=0")).await;
    assert_eq!(to_device_payloads(&rest), (100..120).collect::<Vec<_>>());
}

fn device_lists(sync: &Value, field: &str) -> Vec<String> {
    sync["device_lists"][field]
        .as_array()
        .map(|users| users.iter().map(|u| u.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn device_lists_follow_keys_and_membership(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let start = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();

    // Alice's new keys: bob is told (and a waiting sync wakes up for it).
    let waiting = {
        let (server, bob, start) = (&server, &bob, start.clone());
        async move { server.sync(bob, &format!("since={start}&timeout=10000")).await }
    };
    let uploading = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        upload(&server, &alice, json!({"device_keys": device_keys(&alice, &key(1, Some(&alice.device_id)))})).await
    };
    let (sync, (status, _)) = tokio::join!(waiting, uploading);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(device_lists(&sync, "changed"), [alice.user_id.as_str()]);
    let after_keys = sync["next_batch"].as_str().unwrap().to_owned();

    // Carol's keys change while she shares no room with bob: not his business.
    upload(&server, &carol, json!({"device_keys": device_keys(&carol, &key(3, Some(&carol.device_id)))})).await;
    let sync = server.sync(&bob, &format!("since={after_keys}&timeout=0")).await;
    assert!(device_lists(&sync, "changed").is_empty(), "{sync}");

    // Carol joins: bob must now track her devices. She leaves: he may forget them.
    server.join(&carol, &room).await;
    let sync = server.sync(&bob, &format!("since={after_keys}&timeout=0")).await;
    assert_eq!(device_lists(&sync, "changed"), [carol.user_id.as_str()]);
    let after_join = sync["next_batch"].as_str().unwrap().to_owned();
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), carol.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let sync = server.sync(&bob, &format!("since={after_join}&timeout=0")).await;
    assert_eq!(device_lists(&sync, "left"), [carol.user_id.as_str()]);
    let end = sync["next_batch"].as_str().unwrap().to_owned();

    // /keys/changes answers the same over any span.
    let path = format!("/_matrix/client/v3/keys/changes?from={start}&to={end}");
    let (status, changes) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{changes}");
    assert_eq!(changes["changed"], json!([alice.user_id]));
    assert_eq!(changes["left"], json!([carol.user_id]));

    // A new device of Alice's (logging in) and its removal are both changes bob hears about.
    let alice_phone = server.login("alice", PASSWORD).await;
    upload(
        &server,
        &alice_phone,
        json!({"device_keys": device_keys(&alice_phone, &key(4, Some(&alice_phone.device_id)))}),
    )
    .await;
    let sync = server.sync(&bob, &format!("since={end}&timeout=0")).await;
    assert_eq!(device_lists(&sync, "changed"), [alice.user_id.as_str()]);
    let next = sync["next_batch"].as_str().unwrap().to_owned();
    server.post("/_matrix/client/v3/logout", alice_phone.token(), json!({})).await;
    let sync = server.sync(&bob, &format!("since={next}&timeout=0")).await;
    assert_eq!(device_lists(&sync, "changed"), [alice.user_id.as_str()]);
}

/// A cross-signing key object for `user_id`, signed by `signer` when given.
fn cross_signing_key(user_id: &str, usage: &str, key: &TestKey, signer: Option<&TestKey>) -> Value {
    let public = key.public_key_base64();
    let object = json!({"user_id": user_id, "usage": [usage], "keys": {format!("ed25519:{public}"): public}});
    match signer {
        Some(signer) => sign(object, user_id, signer),
        None => object,
    }
}

async fn cross_signing_and_signatures(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let device_key = key(1, Some(&alice.device_id));
    upload(&server, &alice, json!({"device_keys": device_keys(&alice, &device_key)})).await;
    let (master, self_signing, user_signing) = (key(10, None), key(11, None), key(12, None));
    let upload_path = "/_matrix/client/v3/keys/device_signing/upload";

    // A self-signing key not signed by the master key is refused.
    let body = json!({
        "master_key": cross_signing_key(&alice.user_id, "master", &master, None),
        "self_signing_key": cross_signing_key(&alice.user_id, "self_signing", &self_signing, Some(&user_signing)),
    });
    assert_error(server.post(upload_path, alice.token(), body).await, StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE");

    // The first upload needs no password.
    let body = json!({
        "master_key": cross_signing_key(&alice.user_id, "master", &master, None),
        "self_signing_key": cross_signing_key(&alice.user_id, "self_signing", &self_signing, Some(&master)),
        "user_signing_key": cross_signing_key(&alice.user_id, "user_signing", &user_signing, Some(&master)),
    });
    let (status, response) = server.post(upload_path, alice.token(), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    // Repeating it is harmless; replacing the keys asks for the password.
    assert_eq!(server.post(upload_path, alice.token(), body).await.0, StatusCode::OK);
    let replacement = json!({"master_key": cross_signing_key(&alice.user_id, "master", &key(13, None), None)});
    let (status, challenge) = server.post(upload_path, alice.token(), replacement).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert!(challenge["flows"].is_array());

    // Others see the master and self-signing keys; only Alice sees her user-signing key.
    let seen_by_bob = query(&server, &bob, &alice.user_id).await;
    assert!(seen_by_bob["master_keys"][&alice.user_id]["keys"].is_object(), "{seen_by_bob}");
    assert!(seen_by_bob["self_signing_keys"][&alice.user_id]["keys"].is_object());
    assert!(seen_by_bob["user_signing_keys"].get(&alice.user_id).is_none());
    let seen_by_alice = query(&server, &alice, &alice.user_id).await;
    assert!(seen_by_alice["user_signing_keys"][&alice.user_id]["keys"].is_object(), "{seen_by_alice}");

    // Alice signs her device with the self-signing key: everyone sees that signature.
    let signed_device = sign(device_keys(&alice, &device_key), &alice.user_id, &self_signing);
    let body = json!({&alice.user_id: {&alice.device_id: signed_device}});
    let (status, response) = server.post("/_matrix/client/v3/keys/signatures/upload", alice.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert!(response.get("failures").is_none_or(|f| f.as_object().unwrap().is_empty()), "{response}");
    let seen_by_bob = query(&server, &bob, &alice.user_id).await;
    let ssk_id = format!("ed25519:{}", self_signing.public_key_base64());
    assert!(
        seen_by_bob["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id][&ssk_id].is_string()
    );

    // A forged signature is reported per key and not stored.
    let impostor = TestKey { key_id: self_signing.key_id.clone(), ..key(99, None) };
    let forged = sign(device_keys(&alice, &device_key), &alice.user_id, &impostor);
    let body = json!({&alice.user_id: {&alice.device_id: forged}});
    let (status, response) = server.post("/_matrix/client/v3/keys/signatures/upload", alice.token(), body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE", "{response}");

    // Bob cross-signs Alice's master key with his user-signing key; only Bob sees that.
    let (bob_master, bob_usk) = (key(20, None), key(21, None));
    let body = json!({
        "master_key": cross_signing_key(&bob.user_id, "master", &bob_master, None),
        "user_signing_key": cross_signing_key(&bob.user_id, "user_signing", &bob_usk, Some(&bob_master)),
    });
    assert_eq!(server.post(upload_path, bob.token(), body).await.0, StatusCode::OK);
    let alice_master = cross_signing_key(&alice.user_id, "master", &master, None);
    let signed_master = sign(alice_master, &bob.user_id, &bob_usk);
    let body = json!({&alice.user_id: {master.public_key_base64(): signed_master}});
    let (status, response) = server.post("/_matrix/client/v3/keys/signatures/upload", bob.token(), body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(response.get("failures").is_none_or(|f| f.as_object().unwrap().is_empty()), "{response}");
    let usk_id = format!("ed25519:{}", bob_usk.public_key_base64());
    let seen_by_bob = query(&server, &bob, &alice.user_id).await;
    assert!(
        seen_by_bob["master_keys"][&alice.user_id]["signatures"][&bob.user_id][&usk_id].is_string(),
        "{seen_by_bob}"
    );
    let seen_by_alice = query(&server, &alice, &alice.user_id).await;
    assert!(seen_by_alice["master_keys"][&alice.user_id]["signatures"].get(&bob.user_id).is_none(), "{seen_by_alice}");
}

fn backup_key(first_message_index: u64, forwarded_count: u64, verified: bool, marker: &str) -> Value {
    use base64::Engine as _;
    let marker = base64::engine::general_purpose::STANDARD_NO_PAD.encode(marker);
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": verified,
        "session_data": {"ephemeral": marker, "ciphertext": marker, "mac": marker},
    })
}

/// The marker a stored backup key was made with.
fn backup_marker(key: &Value) -> String {
    use base64::Engine as _;
    let ciphertext = key["session_data"]["ciphertext"].as_str().unwrap();
    String::from_utf8(base64::engine::general_purpose::STANDARD_NO_PAD.decode(ciphertext).unwrap()).unwrap()
}

async fn key_backup_round_trip(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.token();
    assert_error(server.get("/_matrix/client/v3/room_keys/version", token).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let algorithm = json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}});
    let (status, created) = server.post("/_matrix/client/v3/room_keys/version", token, algorithm.clone()).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let version = created["version"].as_str().unwrap().to_owned();
    let (_, info) = server.get("/_matrix/client/v3/room_keys/version", token).await;
    assert_eq!(info["version"], version.as_str());
    assert_eq!(info["auth_data"]["public_key"], "abc");
    assert_eq!(info["count"], 0);
    let etag0 = info["etag"].as_str().unwrap().to_owned();

    let room = "!room:localhost";
    let keys_path = format!("/_matrix/client/v3/room_keys/keys?version={version}");
    let body = json!({"rooms": {room: {"sessions": {"s1": backup_key(5, 1, false, "first"), "s2": backup_key(0, 0, true, "two")}}}});
    let (status, response) = server.put(&keys_path, token, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["count"], 2);
    assert_ne!(response["etag"], etag0.as_str());
    let etag1 = response["etag"].clone();

    // A worse key (higher index) is ignored and leaves the etag alone; a better one replaces.
    let session_path = format!("/_matrix/client/v3/room_keys/keys/{room}/s1?version={version}");
    let (_, response) = server.put(&session_path, token, backup_key(9, 0, false, "worse")).await;
    assert_eq!(response["etag"], etag1);
    let (_, stored) = server.get(&session_path, token).await;
    assert_eq!(backup_marker(&stored), "first");
    let (_, response) = server.put(&session_path, token, backup_key(5, 1, true, "verified")).await;
    assert_ne!(response["etag"], etag1);
    let (_, stored) = server.get(&session_path, token).await;
    assert_eq!(backup_marker(&stored), "verified");

    let (_, all) = server.get(&keys_path, token).await;
    assert_eq!(all["rooms"][room]["sessions"].as_object().unwrap().len(), 2, "{all}");
    let room_path = format!("/_matrix/client/v3/room_keys/keys/{room}?version={version}");
    let (status, response) = server.delete(&session_path, token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["count"], 1);
    let (_, in_room) = server.get(&room_path, token).await;
    assert_eq!(in_room["sessions"].as_object().unwrap().keys().collect::<Vec<_>>(), ["s2"]);
    assert_error(server.get(&session_path, token).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // A newer version makes the old one read-only for uploads.
    let (_, newer) = server.post("/_matrix/client/v3/room_keys/version", token, algorithm).await;
    let body = json!({"rooms": {room: {"sessions": {"s3": backup_key(0, 0, false, "late")}}}});
    let response = server.put(&keys_path, token, body).await;
    assert_eq!(response.1["current_version"], newer["version"], "{}", response.1);
    assert_error(response, StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION");

    // Updating auth data keeps the algorithm; deleting a version removes it and its keys.
    let version_path = format!("/_matrix/client/v3/room_keys/version/{version}");
    let other = json!({"algorithm": "org.example.other", "auth_data": {}});
    assert_error(server.put(&version_path, token, other).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let (status, _) = server.delete(&version_path, token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(server.get(&version_path, token).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(server.get(&room_path, token).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}
