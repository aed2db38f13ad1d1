//! Two Myelin servers federating over loopback (TLS, X-Matrix): joining each other's rooms,
//! messages both ways through the outbox, typing, and refusing unsigned or forged requests.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests, message_bodies};

engine_tests!(
    a_remote_user_joins_and_both_servers_talk,
    unsigned_and_forged_requests_are_refused,
    the_notary_vouches_for_keys_it_fetched,
    a_remote_invite_is_shown_and_accepted,
    remote_invites_can_be_rejected_and_remote_members_leave,
    events_queued_for_a_stopped_server_arrive_after_it_restarts,
    receipts_and_presence_reach_the_other_server,
    a_server_denied_by_the_room_acl_is_refused,
    remote_profiles_and_aliases_are_asked_of_their_server,
    directory_state_and_auth_reads_over_federation,
    a_remote_user_knocks_and_is_let_in,
    history_a_server_may_not_see_arrives_redacted,
    federation_can_be_turned_off
);

/// Two federating servers: Alice on A made a room with `create`, and Bob on B joined it.
pub(crate) async fn bob_joins_alices_room(
    engine: Engine,
    create: Value,
) -> (TestServer, TestServer, Session, Session, String) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id = a.create_room(&alice, create).await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{room_id}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (a, b, alice, bob, room_id)
}

/// Syncs until `done` holds for the response, or fails after a few seconds.
async fn sync_until(server: &TestServer, session: &Session, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut since: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let query = match &since {
            Some(token) => format!("timeout=1000&since={token}"),
            None => "timeout=0".to_owned(),
        };
        let response = server.sync(session, &query).await;
        if done(&response) {
            return response;
        }
        seen.push(response["rooms"].clone());
        since = response["next_batch"].as_str().map(str::to_owned);
        assert!(Instant::now() < deadline, "gave up waiting for {what}; syncs saw {seen:?}");
    }
}

fn timeline_bodies(sync: &Value, room_id: &str) -> Vec<String> {
    message_bodies(&sync["rooms"]["join"][room_id]["timeline"]["events"])
}

async fn a_remote_user_joins_and_both_servers_talk(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id = a.create_room(&alice, json!({"preset": "public_chat", "name": "Across servers"})).await;
    a.send_text(&alice, &room_id, "before bob came").await;

    // Bob joins through Alice's server.
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{room_id}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room_id);

    // Bob's server has the room's state as Alice's server gave it.
    let (status, name) = b.get(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Across servers");
    let (_, members) = b.get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), bob.token()).await;
    let joined: Vec<&String> = members["joined"].as_object().unwrap().keys().collect();
    assert_eq!(joined.len(), 2, "{members}");
    assert!(members["joined"][&alice.user_id].is_object() && members["joined"][&bob.user_id].is_object());
    // Alice's server accepted the join as room state too.
    let (_, members) = a.get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), alice.token()).await;
    assert!(members["joined"][&bob.user_id].is_object(), "{members}");

    // Messages both ways, delivered to the other server's syncing user.
    a.send_text(&alice, &room_id, "hello from A").await;
    sync_until(&b, &bob, "alice's message on B", |s| timeline_bodies(s, &room_id).contains(&"hello from A".into()))
        .await;
    b.send_text(&bob, &room_id, "hello from B").await;
    sync_until(&a, &alice, "bob's message on A", |s| timeline_bodies(s, &room_id).contains(&"hello from B".into()))
        .await;

    // Several messages keep their order on the other side.
    for i in 0..5 {
        a.send_text(&alice, &room_id, &format!("burst {i}")).await;
    }
    let (status, page) =
        b.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"), bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bodies = message_bodies(&page["chunk"]);
    while !bodies.contains(&"burst 4".to_owned()) {
        assert!(Instant::now() < deadline, "burst never arrived: {bodies:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, page) =
            b.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"), bob.token()).await;
        bodies = message_bodies(&page["chunk"]);
    }
    bodies.reverse();
    let burst: Vec<&String> = bodies.iter().filter(|b| b.starts_with("burst")).collect();
    assert_eq!(burst, ["burst 0", "burst 1", "burst 2", "burst 3", "burst 4"]);
    // History from before the join was fetched from A when Bob paged back past his join, and
    // sits before everything B saw happen.
    assert_eq!(bodies.first().map(String::as_str), Some("before bob came"), "{bodies:?}");
    let (_, page) = b.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100"), bob.token()).await;
    let types: Vec<&str> = page["chunk"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.last(), Some(&"m.room.create"), "history reaches the room's creation: {types:?}");
    assert_eq!(types.iter().filter(|t| **t == "m.room.create").count(), 1);

    // Typing travels as an EDU.
    let (status, _) = b
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/typing/{}", bob.user_id),
            bob.token(),
            json!({"typing": true, "timeout": 20000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sync_until(&a, &alice, "bob typing on A", |s| {
        s["rooms"]["join"][&room_id]["ephemeral"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| e["type"] == "m.typing" && e["content"]["user_ids"][0] == bob.user_id.as_str())
        })
    })
    .await;
}

async fn unsigned_and_forged_requests_are_refused(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let path = "/_matrix/federation/v1/send/txn1";
    let body = json!({"origin": b.server_name, "origin_server_ts": 1, "pdus": []});

    // No Authorization header at all.
    let unsigned = a.put(path, None, body.clone()).await;
    assert_error(unsigned, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");

    // Signed with a key that is not B's, claiming to be B: A fetches B's real key and the
    // signature does not verify.
    let impostor = federation::ServerSigningKey::generate();
    let bytes = serde_json::to_vec(&body).unwrap();
    let mut request = http::Request::builder().method("PUT").uri(path).body(bytes.clone()).unwrap();
    let input = ruma::api::federation::authentication::XMatrixSigningInput::new(
        b.server_name.as_str().try_into().unwrap(),
        a.server_name.as_str().try_into().unwrap(),
        impostor.key_pair(),
    );
    <ruma::api::federation::authentication::ServerSignatures as ruma::api::auth_scheme::AuthScheme>::add_authentication(
        &mut request,
        input,
    )
    .unwrap();
    let header = request.headers()[http::header::AUTHORIZATION].to_str().unwrap().to_owned();
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let response = client
        .put(format!("{}{path}", a.base_url))
        .header("Authorization", header)
        .header("Content-Type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["errcode"], "M_UNAUTHORIZED", "{json}");

    // A correctly signed request from B itself goes through (an empty transaction).
    let version = b.state.federation.send(
        a.server_name.as_str().try_into().unwrap(),
        &b.state.signing_key,
        ruma::api::federation::transactions::send_transaction_message::v1::Request::new(
            "txn2".into(),
            b.server_name.as_str().try_into().unwrap(),
            ruma::MilliSecondsSinceUnixEpoch::now(),
        ),
    );
    let answer = version.await.expect("a signed transaction is accepted");
    assert!(answer.pdus.is_empty());
}

async fn the_notary_vouches_for_keys_it_fetched(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let (status, body) = a.get(&format!("/_matrix/key/v2/query/{}", b.server_name), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let objects = body["server_keys"].as_array().expect("server_keys");
    assert_eq!(objects.len(), 1, "{body}");
    let object = federation::signing::to_canonical_object(objects[0].clone()).unwrap();
    // B's own signature still holds, and A countersigned.
    let verified = federation::server_keys::verify_server_keys(object.clone(), &b.server_name).unwrap();
    assert!(verified.keys.iter().any(|k| k.key_id == b.state.signing_key.key_id()));
    let a_key = &a.state.signing_key;
    federation::signing::verify_object(&a.server_name, &a_key.key_id(), &a_key.public_key_base64(), &object).unwrap();

    // The batch form, and a server that cannot be reached gives no entry rather than an error.
    let query = json!({"server_keys": {b.server_name.clone(): {}, "127.0.0.1:1": {}}});
    let (status, body) = a.post("/_matrix/key/v2/query", None, query).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> =
        body["server_keys"].as_array().unwrap().iter().filter_map(|o| o["server_name"].as_str()).collect();
    assert_eq!(names, [b.server_name.as_str()]);
}

async fn a_remote_invite_is_shown_and_accepted(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id = a.create_room(&alice, json!({"preset": "private_chat", "name": "Private across"})).await;

    // A user the other server does not have cannot be invited.
    let nobody = format!("@nobody:{}", b.server_name);
    let missing =
        a.post(&format!("/_matrix/client/v3/rooms/{room_id}/invite"), alice.token(), json!({"user_id": nobody})).await;
    assert_error(missing, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, members) =
        a.get(&format!("/_matrix/client/v3/rooms/{room_id}/members?membership=invite"), alice.token()).await;
    assert_eq!(members["chunk"][0]["state_key"], bob.user_id.as_str(), "{members}");
    // The invite stored on A carries B's countersignature.
    let invite_id = members["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    let stored = a.state.storage.event(&invite_id).await.unwrap().unwrap();
    assert!(stored.json["signatures"][&b.server_name].is_object(), "{}", stored.json);

    // Bob sees the invite with the room's stripped state before joining.
    let sync = sync_until(&b, &bob, "the invite on B", |s| s["rooms"]["invite"][&room_id].is_object()).await;
    let invite_state = &sync["rooms"]["invite"][&room_id]["invite_state"]["events"];
    let name = invite_state.as_array().unwrap().iter().find(|e| e["type"] == "m.room.name").expect("room name");
    assert_eq!(name["content"]["name"], "Private across");
    let own = invite_state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
        .expect("invite");
    assert_eq!(own["content"]["membership"], "invite");
    assert_eq!(own["sender"], alice.user_id.as_str());

    // Joining needs no `via`: the inviting server is used.
    let (status, body) = b.post(&format!("/_matrix/client/v3/join/{room_id}"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, members) = a.get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), alice.token()).await;
    assert!(members["joined"][&bob.user_id].is_object(), "{members}");
    b.send_text(&bob, &room_id, "thanks for the invite").await;
    sync_until(&a, &alice, "bob's message on A", |s| {
        timeline_bodies(s, &room_id).contains(&"thanks for the invite".into())
    })
    .await;
}

async fn membership_on(server: &TestServer, session: &Session, room_id: &str, user_id: &str) -> Value {
    let (status, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{user_id}"), session.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    state["membership"].clone()
}

async fn wait_for_membership(server: &TestServer, session: &Session, room_id: &str, user_id: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while membership_on(server, session, room_id, user_id).await != expected {
        assert!(Instant::now() < deadline, "{user_id} never reached {expected} in {room_id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn remote_invites_can_be_rejected_and_remote_members_leave(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;

    // Bob rejects an invite into a room his server is not in: the leave goes through A.
    let private = a.create_room(&alice, json!({"preset": "private_chat"})).await;
    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{private}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&b, &bob, "the invite", |s| s["rooms"]["invite"][&private].is_object()).await;
    let (status, body) = b.post(&format!("/_matrix/client/v3/rooms/{private}/leave"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(membership_on(&a, &alice, &private, &bob.user_id).await, "leave");
    let sync = b.sync(&bob, "timeout=0").await;
    assert!(sync["rooms"]["invite"][&private].is_null(), "the invite is gone: {}", sync["rooms"]);

    // Bob joins a public room over federation, then leaves it from his own server.
    let public = a.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{public}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = b.post(&format!("/_matrix/client/v3/rooms/{public}/leave"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_membership(&a, &alice, &public, &bob.user_id, "leave").await;

    // Alice kicks a remote member: Bob's server learns it and Bob is out.
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{public}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_membership(&a, &alice, &public, &bob.user_id, "join").await;
    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{public}/kick"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, rooms) = b.get("/_matrix/client/v3/joined_rooms", bob.token()).await;
        if !rooms["joined_rooms"].as_array().unwrap().iter().any(|r| r == public.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "the kick never reached B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_queued_for_a_stopped_server_arrive_after_it_restarts(engine: Engine) {
    // A retries often, so the test does not wait out a long backoff.
    let a = TestServer::start_federating_with(engine, |c| c.federation.max_retry_interval_secs = 1).await;
    let mut b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id = a.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{room_id}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    b.stop().await;
    for i in 0..3 {
        a.send_text(&alice, &room_id, &format!("while B was down {i}")).await;
    }
    // Still queued on A: nothing could be delivered.
    let queued = a.state.storage.outbox_batch(&b.server_name, 50, 100).await.unwrap();
    assert_eq!(queued.pdus.len(), 3, "three events wait for B");

    let b = b.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) =
            b.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=20"), bob.token()).await;
        let mut bodies = message_bodies(&page["chunk"]);
        bodies.reverse();
        if bodies.len() >= 3 {
            assert_eq!(bodies, ["while B was down 0", "while B was down 1", "while B was down 2"]);
            break;
        }
        assert!(Instant::now() < deadline, "the queued events never arrived: {bodies:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Delivered means acknowledged: A's queue for B is empty.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.state.storage.outbox_batch(&b.server_name, 50, 100).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "A kept events B acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receipts_and_presence_reach_the_other_server(engine: Engine) {
    let (a, b, alice, bob, room_id) = bob_joins_alices_room(engine, json!({"preset": "public_chat"})).await;
    let message = a.send_text(&alice, &room_id, "read me").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.state.storage.event(&message).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the message never reached B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bob's public receipt shows on A; his private one does not leave B.
    let (status, _) =
        b.post(&format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{message}"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let sync = sync_until(&a, &alice, "bob's receipt on A", |s| {
        s["rooms"]["join"][&room_id]["ephemeral"]["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .any(|e| e["type"] == "m.receipt" && e["content"][&message]["m.read"][&bob.user_id].is_object())
        })
    })
    .await;
    let receipt = sync["rooms"]["join"][&room_id]["ephemeral"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .unwrap()
        .clone();
    assert!(receipt["content"][&message]["m.read"][&bob.user_id]["ts"].is_i64(), "{receipt}");

    // Alice's presence and status message reach Bob through his server.
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", alice.user_id),
            alice.token(),
            json!({"presence": "online", "status_msg": "on server A"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sync_until(&b, &bob, "alice's presence on B", |s| {
        s["presence"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| e["sender"] == alice.user_id.as_str() && e["content"]["status_msg"] == "on server A")
        })
    })
    .await;
    let (status, seen) = b.get(&format!("/_matrix/client/v3/presence/{}/status", alice.user_id), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["presence"], "online");
    assert_eq!(seen["status_msg"], "on server A");
}

async fn a_server_denied_by_the_room_acl_is_refused(engine: Engine) {
    let (a, b, alice, bob, room_id) = bob_joins_alices_room(engine, json!({"preset": "public_chat"})).await;

    // Both test servers are 127.0.0.1 on different ports; ACLs ignore the port.
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.server_acl/"),
            alice.token(),
            json!({"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // B's events for the room are refused one by one.
    let sent = b.send_text(&bob, &room_id, "after the ACL").await;
    let pdu = b.state.storage.event(&sent).await.unwrap().unwrap();
    let mut request = ruma::api::federation::transactions::send_transaction_message::v1::Request::new(
        "acl-1".into(),
        b.server_name.as_str().try_into().unwrap(),
        ruma::MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = vec![homeserver::federation_sender::federation_form(&pdu.json).unwrap()];
    let answer = b
        .state
        .federation
        .send(a.server_name.as_str().try_into().unwrap(), &b.state.signing_key, request)
        .await
        .unwrap();
    let result = answer.pdus.values().next().expect("a result for the event");
    assert!(result.as_ref().is_err_and(|e| e.contains("server ACL")), "{result:?}");
    assert!(a.state.storage.event(&sent).await.unwrap().is_none());

    // And A makes no more joins for B's users.
    let mut make_join = ruma::api::federation::membership::prepare_join_event::v1::Request::new(
        room_id.as_str().try_into().unwrap(),
        format!("@carol:{}", b.server_name).try_into().unwrap(),
    );
    make_join.ver = vec![ruma::RoomVersionId::V10];
    let refused =
        b.state.federation.send(a.server_name.as_str().try_into().unwrap(), &b.state.signing_key, make_join).await;
    assert!(
        matches!(&refused, Err(federation::client::FederationError::Remote { status: 403, errcode, .. }) if errcode == "M_FORBIDDEN"),
        "{refused:?}"
    );
}

async fn remote_profiles_and_aliases_are_asked_of_their_server(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id),
            alice.token(),
            json!({"displayname": "Alice of A"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, profile) = b.get(&format!("/_matrix/client/v3/profile/{}", alice.user_id), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "Alice of A");
    let missing = b.get(&format!("/_matrix/client/v3/profile/@nobody:{}", a.server_name), bob.token()).await;
    assert_error(missing, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let room_id = a.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "general"})).await;
    let alias = format!("#general:{}", a.server_name);
    let encoded = alias.replace('#', "%23");
    let (status, resolved) = b.get(&format!("/_matrix/client/v3/directory/room/{encoded}"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["room_id"], room_id.as_str());
    assert_eq!(resolved["servers"][0], a.server_name.as_str());
    let unknown = b.get(&format!("/_matrix/client/v3/directory/room/%23nothing:{}", a.server_name), bob.token()).await;
    assert_error(unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Joining by the remote alias needs no `via`: the alias's server names itself.
    let (status, joined) = b.post(&format!("/_matrix/client/v3/join/{encoded}"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["room_id"], room_id.as_str());
}

async fn directory_state_and_auth_reads_over_federation(engine: Engine) {
    use ruma::api::federation::authorization::get_event_authorization;
    use ruma::api::federation::event::{get_event_by_timestamp, get_room_state};

    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id =
        a.create_room(&alice, json!({"preset": "public_chat", "visibility": "public", "name": "Listed"})).await;
    let latest = a.send_text(&alice, &room_id, "latest").await;

    // Bob browses A's directory through his own server.
    let (status, listed) =
        b.get(&format!("/_matrix/client/v3/publicRooms?server={}", a.server_name), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(
        listed["chunk"].as_array().unwrap().iter().any(|r| r["room_id"] == room_id.as_str() && r["name"] == "Listed")
    );

    let to_a: &ruma::ServerName = a.server_name.as_str().try_into().unwrap();
    let room: ruma::OwnedRoomId = room_id.as_str().try_into().unwrap();
    let event: ruma::OwnedEventId = latest.as_str().try_into().unwrap();
    let state_request = get_room_state::v1::Request::new(event.clone(), room.clone());
    // Not in the room yet: A does not share its history.
    let refused = b.state.federation.send(to_a, &b.state.signing_key, state_request.clone()).await;
    assert!(matches!(refused, Err(federation::client::FederationError::Remote { status: 403, .. })), "{refused:?}");

    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{room_id}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let room_state = b.state.federation.send(to_a, &b.state.signing_key, state_request).await.unwrap();
    let types = |pdus: &[Box<serde_json::value::RawValue>]| -> Vec<String> {
        pdus.iter()
            .map(|p| serde_json::from_str::<Value>(p.get()).unwrap()["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let state_types = types(&room_state.pdus);
    assert!(state_types.contains(&"m.room.create".to_owned()) && state_types.contains(&"m.room.name".to_owned()));
    assert!(types(&room_state.auth_chain).contains(&"m.room.create".to_owned()));

    let auth = b
        .state
        .federation
        .send(to_a, &b.state.signing_key, get_event_authorization::v1::Request::new(room.clone(), event))
        .await
        .unwrap();
    let auth_types = types(&auth.auth_chain);
    assert!(auth_types.contains(&"m.room.create".to_owned()) && auth_types.contains(&"m.room.power_levels".to_owned()));

    let first = b
        .state
        .federation
        .send(
            to_a,
            &b.state.signing_key,
            get_event_by_timestamp::v1::Request::new(
                room,
                ruma::MilliSecondsSinceUnixEpoch(0u32.into()),
                ruma::api::Direction::Forward,
            ),
        )
        .await
        .unwrap();
    let create = a.state_content(&alice, &room_id, "m.room.create", "").await;
    assert!(create.is_object());
    let stored = a.state.storage.event(first.event_id.as_str()).await.unwrap().unwrap();
    assert_eq!(stored.event_type, "m.room.create");
}

async fn a_remote_user_knocks_and_is_let_in(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id = a
        .create_room(
            &alice,
            json!({
                "preset": "private_chat",
                "name": "Knock first",
                "room_version": "10",
                "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
            }),
        )
        .await;

    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/knock/{room_id}?via={}", a.server_name),
            bob.token(),
            json!({"reason": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_membership(&a, &alice, &room_id, &bob.user_id, "knock").await;
    let sync = sync_until(&b, &bob, "the knock on B", |s| s["rooms"]["knock"][&room_id].is_object()).await;
    let knock_state = sync["rooms"]["knock"][&room_id]["knock_state"]["events"].as_array().unwrap().clone();
    assert!(knock_state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock first"));

    // Alice lets him in with an invite; he joins through her server.
    let (status, body) = a
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&b, &bob, "the invite on B", |s| s["rooms"]["invite"][&room_id].is_object()).await;
    let (status, body) = b.post(&format!("/_matrix/client/v3/join/{room_id}"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_membership(&a, &alice, &room_id, &bob.user_id, "join").await;
}

async fn history_a_server_may_not_see_arrives_redacted(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id = a
        .create_room(
            &alice,
            json!({
                "preset": "public_chat",
                "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}],
            }),
        )
        .await;
    let secret = a.send_text(&alice, &room_id, "said before any of B's users joined").await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{room_id}?via={}", a.server_name), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Paging back makes B backfill from A; A hands the message over pruned.
    let (status, _) = b.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"), bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let stored = b.state.storage.event(&secret).await.unwrap().expect("backfilled, as a DAG link");
    assert!(stored.json["content"].get("body").is_none(), "{}", stored.json);
    assert_eq!(stored.json["sender"], alice.user_id.as_str());
}

async fn federation_can_be_turned_off(engine: Engine) {
    let a = TestServer::start_federating_with(engine, |c| c.federation.enabled = false).await;
    let b = TestServer::start_federating(engine).await;
    // Signed requests are not even looked at.
    let request = ruma::api::federation::transactions::send_transaction_message::v1::Request::new(
        "off-1".into(),
        b.server_name.as_str().try_into().unwrap(),
        ruma::MilliSecondsSinceUnixEpoch::now(),
    );
    let refused =
        b.state.federation.send(a.server_name.as_str().try_into().unwrap(), &b.state.signing_key, request).await;
    assert!(
        matches!(&refused, Err(federation::client::FederationError::Remote { status: 404, errcode, .. }) if errcode == "M_UNRECOGNIZED"),
        "{refused:?}"
    );
    // And local users cannot reach other servers' rooms.
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let room_id = b.create_room(&bob, json!({"preset": "public_chat"})).await;
    let join =
        a.post(&format!("/_matrix/client/v3/join/{room_id}?via={}", b.server_name), alice.token(), json!({})).await;
    assert_error(join, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}
