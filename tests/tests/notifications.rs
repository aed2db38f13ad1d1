//! Push rules evaluated on every event: unread counts in `/sync` (per thread on request), reset
//! by read receipts, and the `/notifications` list.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, engine_tests, random_suffix};

engine_tests!(unread_counts_follow_receipts_and_mentions, threads_and_the_notifications_list);

const PASSWORD: &str = "correct-horse";

async fn send(server: &TestServer, session: &Session, room: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t{}", random_suffix());
    let (status, body) = server.put(&path, session.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

async fn receipt(server: &TestServer, session: &Session, room: &str, event_id: &str, thread: Option<&str>) {
    let body = thread.map_or_else(|| json!({}), |t| json!({"thread_id": t}));
    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
    assert_eq!(server.post(&path, session.token(), body).await.0, StatusCode::OK);
}

/// (notifications, highlights) for the room in an initial sync with `filter`.
async fn counts(server: &TestServer, session: &Session, room: &str, filter: &str) -> (i64, i64) {
    let sync = server.sync(session, filter).await;
    let unread = &sync["rooms"]["join"][room]["unread_notifications"];
    (unread["notification_count"].as_i64().unwrap(), unread["highlight_count"].as_i64().unwrap())
}

async fn unread_counts_follow_receipts_and_mentions(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    assert_eq!(counts(&server, &alice, &room, "").await, (0, 0));

    let first = send(&server, &bob, &room, text("one")).await;
    send(&server, &bob, &room, text("two")).await;
    let mention = json!({"msgtype": "m.text", "body": "alice: look", "m.mentions": {"user_ids": [alice.user_id]}});
    let third = send(&server, &bob, &room, mention).await;
    assert_eq!(counts(&server, &alice, &room, "").await, (3, 1), "the mention highlights");
    assert_eq!(counts(&server, &bob, &room, "").await, (0, 0), "own messages never count");
    assert_eq!(counts(&server, &carol, &room, "").await, (3, 0), "someone else's mention does not highlight");

    // A receipt counts as reading everything up to it.
    receipt(&server, &alice, &room, &first, None).await;
    assert_eq!(counts(&server, &alice, &room, "").await, (2, 1));
    receipt(&server, &alice, &room, &third, None).await;
    assert_eq!(counts(&server, &alice, &room, "").await, (0, 0));

    // @room highlights only when the sender's power level allows it (50 by default).
    let room_mention = |body: &str| json!({"msgtype": "m.text", "body": body, "m.mentions": {"room": true}});
    send(&server, &bob, &room, room_mention("@room from bob")).await;
    assert_eq!(counts(&server, &carol, &room, "").await.1, 0);
    send(&server, &alice, &room, room_mention("@room from alice")).await;
    assert_eq!(counts(&server, &carol, &room, "").await.1, 1);

    // Disabling a rule takes effect on the next event.
    let (before, _) = counts(&server, &carol, &room, "").await;
    let path = "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled";
    assert_eq!(server.put(path, carol.token(), json!({"enabled": true})).await.0, StatusCode::OK);
    send(&server, &bob, &room, text("muted")).await;
    assert_eq!(counts(&server, &carol, &room, "").await.0, before, "the master rule silences everything");

    // Counts already reported grow by exactly what arrives since.
    let (before, _) = counts(&server, &alice, &room, "").await;
    send(&server, &bob, &room, text("four")).await;
    assert_eq!(counts(&server, &alice, &room, "").await.0, before + 1);
    send(&server, &bob, &room, text("five")).await;
    send(&server, &bob, &room, text("six")).await;
    assert_eq!(counts(&server, &alice, &room, "").await.0, before + 3);

    // An incremental sync carries the counts of rooms with news.
    let next = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    send(&server, &bob, &room, text("new")).await;
    let sync = server.sync(&alice, &format!("since={next}&timeout=5000")).await;
    assert!(sync["rooms"]["join"][&room]["unread_notifications"]["notification_count"].as_i64().unwrap() >= 1);
}

async fn threads_and_the_notifications_list(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;

    let root = send(&server, &bob, &room, text("thread root")).await;
    let in_thread = |n: u32| {
        json!({"msgtype": "m.text", "body": format!("reply {n}"),
               "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": true}})
    };
    send(&server, &bob, &room, in_thread(1)).await;
    let last_reply = send(&server, &bob, &room, in_thread(2)).await;

    // Together, or split by thread when the filter asks.
    assert_eq!(counts(&server, &alice, &room, "").await, (3, 0));
    let filter = r#"filter={"room":{"timeline":{"unread_thread_notifications":true}}}"#;
    let filter = format!("filter={}", urlencode(&filter["filter=".len()..]));
    let sync = server.sync(&alice, &filter).await;
    let joined = &sync["rooms"]["join"][&room];
    assert_eq!(joined["unread_notifications"]["notification_count"], 1, "{joined}");
    assert_eq!(joined["unread_thread_notifications"][&root]["notification_count"], 2);

    // A threaded receipt reads the thread only; a main-timeline one the rest.
    receipt(&server, &alice, &room, &last_reply, Some(&root)).await;
    let sync = server.sync(&alice, &filter).await;
    let joined = &sync["rooms"]["join"][&room];
    assert!(joined["unread_thread_notifications"].get(&root).is_none(), "{joined}");
    assert_eq!(joined["unread_notifications"]["notification_count"], 1);

    // /notifications: newest first, with actions and read flags, paginated.
    let mention = json!({"msgtype": "m.text", "body": "hi alice", "m.mentions": {"user_ids": [alice.user_id]}});
    let mention_id = send(&server, &bob, &room, mention).await;
    let (status, page) = server.get("/_matrix/client/v3/notifications?limit=2", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let notifications = page["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 2);
    assert_eq!(notifications[0]["event"]["event_id"], mention_id.as_str());
    assert_eq!(notifications[0]["read"], false);
    assert_eq!(notifications[0]["room_id"], room.as_str());
    assert!(notifications[0]["actions"].as_array().unwrap().iter().any(|a| a == "notify"));
    assert_eq!(notifications[1]["event"]["event_id"], last_reply.as_str());
    assert_eq!(notifications[1]["read"], true, "read through the threaded receipt");
    let next = page["next_token"].as_str().expect("more pages");
    let (_, rest) = server.get(&format!("/_matrix/client/v3/notifications?limit=10&from={next}"), alice.token()).await;
    let rest: Vec<&str> =
        rest["notifications"].as_array().unwrap().iter().map(|n| n["event"]["event_id"].as_str().unwrap()).collect();
    assert_eq!(rest.len(), 2, "the first reply and the root");
    assert_eq!(rest[1], root);
    let (_, highlights) = server.get("/_matrix/client/v3/notifications?only=highlight", alice.token()).await;
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1);

    // Invites notify the invitee.
    let carol = server.register("carol", PASSWORD).await;
    let other = server.create_room(&alice, json!({"invite": [carol.user_id]})).await;
    let (_, page) = server.get("/_matrix/client/v3/notifications", carol.token()).await;
    let first = &page["notifications"][0];
    assert_eq!(first["room_id"], other.as_str());
    assert_eq!(first["event"]["type"], "m.room.member");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
