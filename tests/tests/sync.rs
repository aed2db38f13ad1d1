//! `/sync`: initial and incremental, long-polling, sections, limits, filters.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, engine_tests, message_bodies};

engine_tests!(
    initial_then_incremental_sync,
    long_poll_wakes_when_another_user_sends,
    invites_and_leaves_have_their_sections,
    limited_timelines_and_filters,
);

async fn initial_then_incremental_sync(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Sync room"})).await;
    server.send_text(&alice, &room, "first").await;

    let initial = server.sync(&alice, "").await;
    let next = initial["next_batch"].as_str().unwrap().to_owned();
    let joined = &initial["rooms"]["join"][&room];
    assert_eq!(message_bodies(&joined["timeline"]["events"]), vec!["first"]);
    // Everything in the room's state is either in the state section or the timeline.
    // An empty state section may be omitted.
    let state = joined["state"]["events"].as_array().cloned().unwrap_or_default();
    let mut types: Vec<String> = state
        .iter()
        .chain(joined["timeline"]["events"].as_array().unwrap())
        .filter(|e| e.get("state_key").is_some())
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    types.dedup();
    for expected in ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.name"] {
        assert!(types.iter().any(|t| t == expected), "{expected} missing from {types:?}");
    }

    // Nothing new: an immediate incremental sync has no rooms and the same position.
    let idle = server.sync(&alice, &format!("since={next}&timeout=0")).await;
    assert!(idle["rooms"]["join"].as_object().is_none_or(|m| m.is_empty()), "{idle}");
    assert_eq!(idle["next_batch"], next.as_str());

    // A send appears once, with the transaction ID for the sending device only.
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/my-txn");
    server.put(&path, alice.token(), json!({"msgtype": "m.text", "body": "second"})).await;
    let incremental = server.sync(&alice, &format!("since={next}")).await;
    let events = &incremental["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(message_bodies(events), vec!["second"]);
    assert_eq!(events[0]["unsigned"]["transaction_id"], "my-txn");
    assert!(events[0]["unsigned"]["age"].as_i64().is_some());
    assert_ne!(incremental["rooms"]["join"][&room]["timeline"]["limited"], true);
    let other_device = server.login("alice", "correct-horse").await;
    let seen_elsewhere = server.sync(&other_device, &format!("since={next}")).await;
    assert!(
        seen_elsewhere["rooms"]["join"][&room]["timeline"]["events"][0]["unsigned"].get("transaction_id").is_none()
    );

    let bad = server.get("/_matrix/client/v3/sync?since=nonsense", alice.token()).await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);
}

async fn long_poll_wakes_when_another_user_sends(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let next = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();

    // Bob waits up to 60 s; alice sends a moment later. If the wake-up did not work, the sync
    // would end at its timeout with no rooms.
    let url = format!("{}/_matrix/client/v3/sync?since={next}&timeout=60000", server.base_url);
    let token = bob.access_token.clone();
    let waiting = tokio::spawn(async move {
        let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the sync returned before anything happened");
    server.send_text(&alice, &room, "wake up").await;
    let woken = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("sync returned").unwrap();
    assert_eq!(message_bodies(&woken["rooms"]["join"][&room]["timeline"]["events"]), vec!["wake up"]);
}

async fn invites_and_leaves_have_their_sections(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let next = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let room =
        server.create_room(&alice, json!({"preset": "private_chat", "name": "Secret", "invite": [bob.user_id]})).await;

    let sync = server.sync(&bob, &format!("since={next}")).await;
    let invite_state = sync["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap().clone();
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"));
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.user_id.as_str()
        && e["content"]["membership"] == "invite"));
    assert!(sync["rooms"]["join"].get(&room).is_none());

    let next = sync["next_batch"].as_str().unwrap().to_owned();
    server.join(&bob, &room).await;
    let sync = server.sync(&bob, &format!("since={next}")).await;
    assert!(sync["rooms"]["invite"].get(&room).is_none());
    let joined = &sync["rooms"]["join"][&room];
    // Newly joined: the full state comes along.
    assert!(joined["state"]["events"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));

    let next = sync["next_batch"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/rooms/{room}/kick"), alice.token(), json!({"user_id": bob.user_id})).await;
    server.send_text(&alice, &room, "bob cannot see this").await;
    let sync = server.sync(&bob, &format!("since={next}")).await;
    let left = &sync["rooms"]["leave"][&room]["timeline"]["events"];
    assert!(
        left.as_array().unwrap().iter().any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "leave")
    );
    assert!(message_bodies(left).is_empty());
    assert!(sync["rooms"]["join"].get(&room).is_none());
}

async fn limited_timelines_and_filters(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let next = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    for i in 0..15 {
        server.send_text(&alice, &room, &format!("n{i}")).await;
    }

    // The default limit is 10: the newest ten, marked limited, with a usable prev_batch.
    let sync = server.sync(&alice, &format!("since={next}")).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true);
    let expected: Vec<String> = (5..15).map(|i| format!("n{i}")).collect();
    assert_eq!(message_bodies(&timeline["events"]), expected);
    let prev = timeline["prev_batch"].as_str().unwrap();
    let (_, older) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5&from={prev}"), alice.token()).await;
    assert_eq!(message_bodies(&older["chunk"]), vec!["n4", "n3", "n2", "n1", "n0"]);

    // An inline filter sets the limit; a stored filter works by ID.
    let inline = r#"{"room":{"timeline":{"limit":3}}}"#;
    let sync = server
        .sync(
            &alice,
            &format!("since={next}&filter={}", inline.replace('{', "%7B").replace('}', "%7D").replace('"', "%22")),
        )
        .await;
    assert_eq!(message_bodies(&sync["rooms"]["join"][&room]["timeline"]["events"]), vec!["n12", "n13", "n14"]);

    let filter = json!({"room": {"timeline": {"limit": 2}, "state": {"lazy_load_members": true}}});
    let (status, created) =
        server.post(&format!("/_matrix/client/v3/user/{}/filter", alice.user_id), alice.token(), filter.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let filter_id = created["filter_id"].as_str().unwrap();
    let (_, stored) =
        server.get(&format!("/_matrix/client/v3/user/{}/filter/{filter_id}", alice.user_id), alice.token()).await;
    assert_eq!(stored["room"]["timeline"]["limit"], 2);
    let (status, _) =
        server.get(&format!("/_matrix/client/v3/user/{}/filter/{filter_id}", alice.user_id), bob.token()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Lazy loading: an initial sync lists only the members the timeline needs.
    let sync = server.sync(&alice, &format!("filter={filter_id}")).await;
    let joined = &sync["rooms"]["join"][&room];
    assert_eq!(message_bodies(&joined["timeline"]["events"]), vec!["n13", "n14"]);
    let members: Vec<&str> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec![alice.user_id.as_str()], "bob sent nothing in the timeline");
}

#[tokio::test]
async fn room_summaries_name_direct_chats() {
    for engine in crate::common::engines() {
        let server = TestServer::start(engine).await;
        let alice = server.register("alice", "correct-horse").await;
        let bob = server.register("bob", "correct-horse").await;
        let carol = server.register("carol", "correct-horse").await;
        let dm = server
            .create_room(
                &alice,
                json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id, carol.user_id]}),
            )
            .await;
        server.join(&bob, &dm).await;

        let sync = server.sync(&alice, "").await;
        let summary = &sync["rooms"]["join"][&dm]["summary"];
        assert_eq!(summary["m.joined_member_count"], 2);
        assert_eq!(summary["m.invited_member_count"], 1);
        let mut heroes: Vec<&str> =
            summary["m.heroes"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        heroes.sort();
        assert_eq!(heroes, vec![bob.user_id.as_str(), carol.user_id.as_str()], "everyone but the syncing user");

        // Incremental: a membership change brings the updated summary.
        let next = sync["next_batch"].as_str().unwrap().to_owned();
        server.join(&carol, &dm).await;
        let sync = server.sync(&alice, &format!("since={next}")).await;
        let summary = &sync["rooms"]["join"][&dm]["summary"];
        assert_eq!(summary["m.joined_member_count"], 3);
        assert_eq!(summary["m.invited_member_count"], 0);
    }
}
