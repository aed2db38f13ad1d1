//! Redactions received from another server take effect here: the target is replaced by its
//! redacted form, for clients and in the database.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, engine_tests, message_bodies};
use crate::federation::bob_joins_alices_room;

engine_tests!(a_redaction_from_another_server_redacts_the_event_here);

async fn a_redaction_from_another_server_redacts_the_event_here(engine: Engine) {
    let (a, b, alice, bob, room_id) = bob_joins_alices_room(engine, json!({"preset": "public_chat"})).await;
    let kept = a.send_text(&alice, &room_id, "alice keeps these words").await;
    let regretted = b.send_text(&bob, &room_id, "bob regrets marker-7f3a").await;
    let event_path = |id: &str| format!("/_matrix/client/v3/rooms/{room_id}/event/{id}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.get(&event_path(&regretted), alice.token()).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "bob's message never reached A");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let json_text = match engine {
        Engine::Sqlite => "CAST(json AS TEXT)",
        Engine::Postgres => "encode(json, 'escape')",
    };
    let with_marker =
        |id: &str| format!("SELECT COUNT(*) FROM events WHERE event_id = '{id}' AND {json_text} LIKE '%marker-7f3a%'");
    assert_eq!(a.count_rows(&with_marker(&regretted)).await, 1, "A stored bob's message as sent");

    let (status, body) = b
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/redact/{regretted}/r1"),
            bob.token(),
            json!({"reason": "typo"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let redaction_id = body["event_id"].as_str().unwrap().to_owned();

    // On A the target loses its content and carries the redaction, as a local redaction would.
    let deadline = Instant::now() + Duration::from_secs(15);
    let event = loop {
        let (_, event) = a.get(&event_path(&regretted), alice.token()).await;
        if event["content"].as_object().is_some_and(|c| c.is_empty()) {
            break event;
        }
        assert!(Instant::now() < deadline, "the redaction never took effect on A: {event}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event["unsigned"]["redacted_because"]["event_id"], redaction_id.as_str(), "{event}");
    assert_eq!(event["unsigned"]["redacted_because"]["content"]["reason"], "typo");
    let (_, page) = a.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"), alice.token()).await;
    let bodies = message_bodies(&page["chunk"]);
    assert!(!bodies.iter().any(|b| b.contains("marker-7f3a")), "{bodies:?}");
    assert!(bodies.contains(&"alice keeps these words".to_owned()), "{bodies:?}");
    // The stored row itself holds only the redacted form (no retention hold here).
    let json_text = match engine {
        Engine::Sqlite => "CAST(json AS TEXT)",
        Engine::Postgres => "encode(json, 'escape')",
    };
    let with_marker =
        |id: &str| format!("SELECT COUNT(*) FROM events WHERE event_id = '{id}' AND {json_text} LIKE '%marker-7f3a%'");
    assert_eq!(a.count_rows(&with_marker(&regretted)).await, 0, "the original content is gone from A's database");
    assert_eq!(b.count_rows(&with_marker(&regretted)).await, 0, "and from B's");
    let (_, untouched) = a.get(&event_path(&kept), alice.token()).await;
    assert_eq!(untouched["content"]["body"], "alice keeps these words");
}
