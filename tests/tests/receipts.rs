//! Read receipts and read markers through `/sync`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(receipts_and_read_markers);

fn receipt_content(sync: &Value, room: &str) -> Option<Value> {
    let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array()?;
    events.iter().find(|e| e["type"] == "m.receipt").map(|e| e["content"].clone())
}

async fn receipts_and_read_markers(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let first = server.send_text(&alice, &room, "one").await;
    let second = server.send_text(&alice, &room, "two").await;
    let next = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let receipt = |kind: &str, event: &str| format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{event}");

    let (status, _) = server.post(&receipt("m.read", &first), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let sync = server.sync(&alice, &format!("since={next}")).await;
    let content = receipt_content(&sync, &room).expect("a receipt event");
    assert!(content[&first]["m.read"][&bob.user_id]["ts"].as_i64().is_some());

    // Moving the receipt replaces it; threaded receipts carry their thread.
    let next = sync["next_batch"].as_str().unwrap().to_owned();
    server.post(&receipt("m.read", &second), bob.token(), json!({"thread_id": "main"})).await;
    let sync = server.sync(&alice, &format!("since={next}")).await;
    let content = receipt_content(&sync, &room).unwrap();
    assert_eq!(content[&second]["m.read"][&bob.user_id]["thread_id"], "main");
    assert!(content.get(&first).is_none(), "only what changed");

    // Private receipts reach only their owner.
    let next_alice = sync["next_batch"].as_str().unwrap().to_owned();
    let next_bob = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    server.post(&receipt("m.read.private", &second), bob.token(), json!({})).await;
    let alice_sync = server.sync(&alice, &format!("since={next_alice}&timeout=0")).await;
    assert!(receipt_content(&alice_sync, &room).is_none_or(|c| c[&second].get("m.read.private").is_none()));
    let bob_sync = server.sync(&bob, &format!("since={next_bob}")).await;
    let content = receipt_content(&bob_sync, &room).unwrap();
    assert!(content[&second]["m.read.private"][&bob.user_id].is_object());

    // Read markers: m.fully_read lands in room account data.
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/read_markers"),
            bob.token(),
            json!({"m.fully_read": second, "m.read": second}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, marker) = server
        .get(&format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.fully_read", bob.user_id), bob.token())
        .await;
    assert_eq!(marker["event_id"], second.as_str());

    // Bad input.
    assert_error(
        server.post(&receipt("m.read", "$unknown"), bob.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let outsider = server.register("outsider", "correct-horse").await;
    assert_error(
        server.post(&receipt("m.read", &first), outsider.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.post(&format!("/_matrix/client/v3/rooms/{room}/read_markers"), bob.token(), json!({})).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
}
