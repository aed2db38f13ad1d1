//! The room DAG across servers, driven by events built in the test and signed with the remote
//! server's key: forks whose states are resolved, soft-failed events, and gaps filled with
//! `/get_missing_events`.

use std::time::{Duration, Instant};

use federation::Pdu;
use federation::pdu::{DagPosition, EventTemplate, build_pdu};
use reqwest::StatusCode;
use ruma::api::federation::transactions::send_transaction_message;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, engine_tests, message_bodies};

engine_tests!(
    forks_are_resolved_and_stale_permissions_soft_fail,
    gaps_are_filled_from_the_sender,
    events_citing_no_prev_events_are_refused
);

/// Two servers with Alice on A (the room's creator, a v10 room) and Bob on B joined.
async fn two_servers(engine: Engine) -> (TestServer, TestServer, Session, Session, String) {
    crate::federation::bob_joins_alices_room(engine, json!({"preset": "public_chat", "room_version": "10"})).await
}

/// Event IDs of A's current state entries, by `(type, state_key)`.
async fn state_id(server: &TestServer, session: &Session, room_id: &str, event_type: &str, state_key: &str) -> String {
    let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room_id}/state"), session.token()).await;
    state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == event_type && e["state_key"] == state_key)
        .and_then(|e| e["event_id"].as_str())
        .unwrap_or_else(|| panic!("no {event_type} {state_key} in {state}"))
        .to_owned()
}

async fn depth_of(server: &TestServer, event_id: &str) -> u64 {
    server.state.storage.event(event_id).await.unwrap().unwrap().depth as u64
}

/// An event by Bob, built and signed as B would, placed after `prev`.
async fn bobs_event(
    a: &TestServer,
    b: &TestServer,
    alice: &Session,
    room_id: &str,
    prev: &str,
    template: EventTemplate,
) -> Pdu {
    let bob = UserId::parse(b.user_id("bob")).unwrap();
    let mut auth_events = [
        state_id(a, alice, room_id, "m.room.create", "").await,
        state_id(a, alice, room_id, "m.room.power_levels", "").await,
        state_id(a, alice, room_id, "m.room.member", bob.as_str()).await,
    ];
    auth_events.sort();
    let position = DagPosition {
        prev_events: vec![OwnedEventId::try_from(prev).unwrap()],
        auth_events: auth_events.iter().map(|id| OwnedEventId::try_from(id.as_str()).unwrap()).collect(),
        depth: depth_of(a, prev).await + 1,
    };
    // Real time: later than both test servers' clocks, so state resolution's timestamp order
    // puts Bob's event after the events the servers made.
    build_pdu(
        &b.server_name,
        &b.state.signing_key,
        &RoomVersionId::V10,
        <&RoomId>::try_from(room_id).unwrap(),
        &bob,
        &template,
        &position,
        MilliSecondsSinceUnixEpoch::now(),
    )
    .unwrap()
}

fn message(body: &str) -> EventTemplate {
    EventTemplate {
        event_type: "m.room.message".into(),
        state_key: None,
        content: json!({"msgtype": "m.text", "body": body}),
        redacts: None,
    }
}

/// Sends PDUs to A as B, in one transaction; returns A's per-PDU answers.
async fn push_to_a(a: &TestServer, b: &TestServer, pdus: &[&Pdu], txn: &str) -> Value {
    let mut request = send_transaction_message::v1::Request::new(
        txn.into(),
        b.server_name.as_str().try_into().unwrap(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = pdus.iter().map(|pdu| serde_json::value::to_raw_value(&pdu.json).unwrap()).collect();
    let answer = b.state.federation.send(a.server_name.as_str().try_into().unwrap(), &b.state.signing_key, request);
    let answer = answer.await.expect("A answers the transaction");
    serde_json::to_value(
        answer
            .pdus
            .iter()
            .map(|(id, r)| (id.to_string(), r.clone().err()))
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap()
}

/// A server's current state of the room, as `(type, state_key)` → event ID.
async fn current_state(server: &TestServer, room_id: &str) -> homeserver::storage::StateMap {
    let room = server.state.storage.room(room_id).await.unwrap().unwrap();
    server.state.storage.state_at_group(room.current_state_group.unwrap()).await.unwrap()
}

async fn extremities(server: &TestServer, room_id: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        server.state.storage.forward_extremities(room_id).await.unwrap().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    ids
}

async fn forks_are_resolved_and_stale_permissions_soft_fail(engine: Engine) {
    let (a, b, alice, _bob, room_id) = two_servers(engine).await;
    let fork_point = extremities(&a, &room_id).await.remove(0);

    // A moves on (a topic), while Bob, not having seen it, changes his display name.
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/"),
            alice.token(),
            json!({"topic": "from A"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let topic_id = state_id(&a, &alice, &room_id, "m.room.topic", "").await;
    let rename = EventTemplate {
        event_type: "m.room.member".into(),
        state_key: Some(b.user_id("bob")),
        content: json!({"membership": "join", "displayname": "Bob on a fork"}),
        redacts: None,
    };
    let renamed = bobs_event(&a, &b, &alice, &room_id, &fork_point, rename).await;
    let answer = push_to_a(&a, &b, &[&renamed], "fork-1").await;
    assert_eq!(answer[renamed.event_id.as_str()], Value::Null, "accepted: {answer}");

    // Both sides of the fork are in A's current state, and both events are extremities.
    assert_eq!(a.state_content(&alice, &room_id, "m.room.topic", "").await["topic"], "from A");
    let member = a.state_content(&alice, &room_id, "m.room.member", &b.user_id("bob")).await;
    assert_eq!(member["displayname"], "Bob on a fork");
    let mut expected = vec![topic_id.clone(), renamed.event_id.to_string()];
    expected.sort();
    assert_eq!(extremities(&a, &room_id).await, expected);

    // B sees the same fork from the other side (it got A's topic first): both servers end up
    // with the same room state.
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.state.storage.event(&topic_id).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "B never got A's topic");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    homeserver::rooms::incoming::accept_received(&b.state, renamed.clone(), homeserver::rooms::send::Relay::Nobody)
        .await
        .expect("B accepts Bob's forked rename");
    assert_eq!(current_state(&a, &room_id).await, current_state(&b, &room_id).await, "the servers disagree");
    // A's next event joins the fork.
    let merged = a.send_text(&alice, &room_id, "after the fork").await;
    let stored = a.state.storage.event(&merged).await.unwrap().unwrap();
    assert_eq!(stored.json["prev_events"].as_array().unwrap().len(), 2, "{}", stored.json);

    // Alice bans Bob; a message Bob "sent" from before the ban is valid where it was sent, but
    // not in the room as it is: soft-failed, stored, never shown.
    let before_ban = merged.clone();
    let (status, _) = a
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/ban"), alice.token(), json!({"user_id": b.user_id("bob")}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let sneaky = bobs_event(&a, &b, &alice, &room_id, &before_ban, message("sneaky message")).await;
    let answer = push_to_a(&a, &b, &[&sneaky], "fork-2").await;
    assert_eq!(answer[sneaky.event_id.as_str()], Value::Null, "{answer}");
    let stored = a.state.storage.event(sneaky.event_id.as_str()).await.unwrap().expect("kept");
    assert!(stored.rejected_reason.as_deref().is_some_and(|r| r.starts_with("soft-failed")), "{stored:?}");
    let (_, page) = a.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"), alice.token()).await;
    assert!(!message_bodies(&page["chunk"]).contains(&"sneaky message".to_owned()));
    assert!(!extremities(&a, &room_id).await.contains(&sneaky.event_id.to_string()));
}

async fn gaps_are_filled_from_the_sender(engine: Engine) {
    let (a, b, alice, bob, room_id) = two_servers(engine).await;
    // B has everything A has.
    let latest = a.send_text(&alice, &room_id, "both servers have this").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.state.storage.event(&latest).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "B never got A's message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two messages by Bob, placed on B directly; A is only sent the second and must fetch the
    // first from B.
    let first = bobs_event(&a, &b, &alice, &room_id, &latest, message("first of two")).await;
    let mut second = bobs_event(&a, &b, &alice, &room_id, &latest, message("second of two")).await;
    let position = DagPosition {
        prev_events: vec![first.event_id.clone()],
        auth_events: second.auth_events.clone(),
        depth: first.depth + 1,
    };
    second = build_pdu(
        &b.server_name,
        &b.state.signing_key,
        &RoomVersionId::V10,
        <&RoomId>::try_from(room_id.as_str()).unwrap(),
        &UserId::parse(b.user_id("bob")).unwrap(),
        &message("second of two"),
        &position,
        second.origin_server_ts,
    )
    .unwrap();
    for pdu in [&first, &second] {
        homeserver::rooms::incoming::accept_received(&b.state, pdu.clone(), homeserver::rooms::send::Relay::Nobody)
            .await
            .expect("B accepts Bob's messages");
    }

    let answer = push_to_a(&a, &b, &[&second], "gap-1").await;
    assert_eq!(answer[second.event_id.as_str()], Value::Null, "{answer}");
    let (_, page) = a.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5"), alice.token()).await;
    let bodies = message_bodies(&page["chunk"]);
    assert_eq!(bodies[..2], ["second of two".to_owned(), "first of two".to_owned()], "{bodies:?}");
    let _ = bob;
}

async fn events_citing_no_prev_events_are_refused(engine: Engine) {
    let (a, b, alice, _bob, room_id) = two_servers(engine).await;
    let latest = extremities(&a, &room_id).await.remove(0);
    let mut orphan = bobs_event(&a, &b, &alice, &room_id, &latest, message("from nowhere")).await;
    // The same message rebuilt with no prev events: it would otherwise pass as extending the
    // room's current state.
    let position = DagPosition { prev_events: vec![], auth_events: orphan.auth_events.clone(), depth: orphan.depth };
    orphan = build_pdu(
        &b.server_name,
        &b.state.signing_key,
        &RoomVersionId::V10,
        <&RoomId>::try_from(room_id.as_str()).unwrap(),
        &UserId::parse(b.user_id("bob")).unwrap(),
        &message("from nowhere"),
        &position,
        orphan.origin_server_ts,
    )
    .unwrap();
    let answer = push_to_a(&a, &b, &[&orphan], "orphan-1").await;
    assert!(answer[orphan.event_id.as_str()].as_str().is_some_and(|e| e.contains("prev_events")), "{answer}");
    assert!(a.state.storage.event(orphan.event_id.as_str()).await.unwrap().is_none());
    assert_eq!(extremities(&a, &room_id).await, [latest]);
}
