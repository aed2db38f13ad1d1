//! Relations: `/relations` with filters, pagination and recursion, `/threads`, and the
//! aggregations bundled into events (threads, edits, references).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests, random_suffix};

engine_tests!(relations_threads_and_bundled_aggregations);

const PASSWORD: &str = "correct-horse";

async fn send(server: &TestServer, session: &Session, room: &str, event_type: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/{event_type}/t{}", random_suffix());
    let (status, body) = server.put(&path, session.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn reply_in_thread(root: &str, body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
}

fn ids(chunk: &Value) -> Vec<String> {
    chunk.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

async fn relations_threads_and_bundled_aggregations(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let mallory = server.register("mallory", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    server.join(&bob, &room).await;

    // A thread with many replies, an edit, a reference and a reaction on the root.
    let root = send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "root"})).await;
    let mut replies = Vec::new();
    for n in 0..25 {
        let sender = if n % 2 == 0 { &bob } else { &alice };
        replies
            .push(send(&server, sender, &room, "m.room.message", reply_in_thread(&root, &format!("reply {n}"))).await);
    }
    let edit = json!({"msgtype": "m.text", "body": "* root (edited)", "m.new_content": {"msgtype": "m.text", "body": "root (edited)"},
                      "m.relates_to": {"rel_type": "m.replace", "event_id": root}});
    let edit_id = send(&server, &alice, &room, "m.room.message", edit).await;
    // An edit by someone else is not an edit of alice's message.
    let forged = json!({"msgtype": "m.text", "body": "* hacked", "m.new_content": {"msgtype": "m.text", "body": "hacked"},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": root}});
    send(&server, &bob, &room, "m.room.message", forged).await;
    let reference = send(&server, &bob, &room, "m.room.message",
        json!({"msgtype": "m.text", "body": "see above", "m.relates_to": {"rel_type": "m.reference", "event_id": root}})).await;
    let reaction = send(
        &server,
        &bob,
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}),
    )
    .await;

    // Bundled into the root wherever it is served.
    let (status, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{root}"), bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let bundled = &event["unsigned"]["m.relations"];
    assert_eq!(bundled["m.thread"]["count"], 25, "{bundled}");
    assert_eq!(bundled["m.thread"]["latest_event"]["event_id"], replies[24].as_str());
    assert_eq!(bundled["m.thread"]["current_user_participated"], true);
    assert_eq!(bundled["m.replace"]["event_id"], edit_id.as_str(), "the latest edit by the original sender");
    assert_eq!(bundled["m.reference"]["chunk"], json!([{"event_id": reference}]));
    let (_, messages) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), bob.token()).await;
    let in_messages = messages["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == root.as_str()).unwrap();
    assert_eq!(in_messages["unsigned"]["m.relations"]["m.thread"]["count"], 25);
    let sync = server.sync(&bob, r#"filter={"room":{"timeline":{"limit":50}}}"#).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    let in_sync = timeline.iter().find(|e| e["event_id"] == root.as_str()).expect("root in the timeline");
    assert_eq!(in_sync["unsigned"]["m.relations"]["m.replace"]["event_id"], edit_id.as_str());

    // /relations: all children newest first, paginated; filtered by type.
    let base = format!("/_matrix/client/v1/rooms/{room}/relations/{root}");
    let (status, page) = server.get(&format!("{base}?limit=10"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page["chunk"])[0], reaction);
    let mut seen = ids(&page["chunk"]);
    let mut next = page["next_batch"].as_str().map(str::to_owned);
    while let Some(token) = next {
        let (_, page) = server.get(&format!("{base}?limit=10&from={token}"), bob.token()).await;
        seen.extend(ids(&page["chunk"]));
        next = page["next_batch"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 25 + 2 + 1 + 1, "every child exactly once");
    let (_, threads_only) = server.get(&format!("{base}/m.thread?limit=100"), bob.token()).await;
    let mut expected = replies.clone();
    expected.reverse();
    assert_eq!(ids(&threads_only["chunk"]), expected);
    let (_, forwards) = server.get(&format!("{base}/m.thread?dir=f&limit=3"), bob.token()).await;
    assert_eq!(ids(&forwards["chunk"]), replies[..3].to_vec());
    let (_, reactions) = server.get(&format!("{base}/m.annotation/m.reaction"), bob.token()).await;
    assert_eq!(ids(&reactions["chunk"]), [reaction.as_str()]);

    // recurse follows relations of relations.
    let nested = send(
        &server,
        &bob,
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": replies[0], "key": "🎉"}}),
    )
    .await;
    let (_, flat) = server.get(&format!("{base}/m.annotation"), bob.token()).await;
    assert!(!ids(&flat["chunk"]).contains(&nested));
    let (_, deep) = server.get(&format!("{base}/m.annotation?recurse=true"), bob.token()).await;
    assert!(ids(&deep["chunk"]).contains(&nested), "{deep}");
    assert_eq!(deep["recursion_depth"], 2);

    // Outsiders learn nothing.
    assert_error(server.get(&base, mallory.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // /threads: roots by latest activity; "participated" only where the user took part.
    let other_root =
        send(&server, &alice, &room, "m.room.message", json!({"msgtype": "m.text", "body": "quiet thread"})).await;
    send(&server, &alice, &room, "m.room.message", reply_in_thread(&other_root, "talking to myself")).await;
    let threads = format!("/_matrix/client/v1/rooms/{room}/threads");
    let (status, all) = server.get(&threads, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(ids(&all["chunk"]), [other_root.clone(), root.clone()]);
    assert_eq!(all["chunk"][1]["unsigned"]["m.relations"]["m.thread"]["count"], 25);
    let (_, mine) = server.get(&format!("{threads}?include=participated"), bob.token()).await;
    assert_eq!(ids(&mine["chunk"]), [root.as_str()]);
    let (_, first) = server.get(&format!("{threads}?limit=1"), bob.token()).await;
    let token = first["next_batch"].as_str().expect("a second page");
    let (_, second) = server.get(&format!("{threads}?limit=1&from={token}"), bob.token()).await;
    assert_eq!(ids(&second["chunk"]), [root.as_str()]);

    // Redacting an edit removes it from the aggregation.
    let path = format!("/_matrix/client/v3/rooms/{room}/redact/{edit_id}/r{}", random_suffix());
    assert_eq!(server.put(&path, alice.token(), json!({})).await.0, StatusCode::OK);
    let (_, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{root}"), bob.token()).await;
    assert!(event["unsigned"]["m.relations"].get("m.replace").is_none(), "{event}");
}
