//! Content reports: users report events (and rooms); admins read them in Synapse's shape.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, encode, engine_tests};

engine_tests!(events_and_rooms_are_reported_only_when_visible, admins_read_reports_paged_and_filtered);

const PASSWORD: &str = "correct-horse";

fn report_path(room_id: &str, event_id: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/report/{}", encode(room_id), encode(event_id))
}

async fn events_and_rooms_are_reported_only_when_visible(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let mallory = server.register("mallory", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    let event_id = server.send_text(&alice, &room_id, "offensive").await;

    let (status, body) =
        server.post(&report_path(&room_id, &event_id), bob.token(), json!({"reason": "rude", "score": -100})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    // Someone outside the room cannot see the event, so cannot report it; nor a missing event.
    assert_error(
        server.post(&report_path(&room_id, &event_id), mallory.token(), json!({"reason": "x"})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        server.post(&report_path(&room_id, "$missing"), bob.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let other_room = server.create_room(&alice, json!({})).await;
    assert_error(
        server.post(&report_path(&other_room, &event_id), alice.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        server.post(&report_path(&room_id, &event_id), None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );

    // Rooms can be reported as a whole (kept apart from event reports).
    let room_report = format!("/_matrix/client/v3/rooms/{}/report", encode(&room_id));
    let (status, _) = server.post(&room_report, mallory.token(), json!({"reason": "spam room"})).await;
    assert_eq!(status, StatusCode::OK);
    let unknown = format!("/_matrix/client/v3/rooms/{}/report", encode(&format!("!nope:{}", server.server_name)));
    assert_error(
        server.post(&unknown, mallory.token(), json!({"reason": ""})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let (status, list) = server.get("/_synapse/admin/v1/event_reports", admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1, "only the visible event's report, not the room report: {list}");
    let report = &list["event_reports"][0];
    assert_eq!(report["event_id"], event_id.as_str());
    assert_eq!(report["room_id"], room_id.as_str());
    assert_eq!(report["user_id"], bob.user_id.as_str());
    assert_eq!(report["sender"], alice.user_id.as_str());
    assert_eq!(report["reason"], "rude");
    assert_eq!(report["score"], -100);
    assert!(report["received_ts"].as_i64().unwrap() > 0 && report["id"].is_i64());
    for field in ["name", "canonical_alias", "score"] {
        assert!(report.get(field).is_some(), "{field}: {report}");
    }

    let (status, details) =
        server.get(&format!("/_synapse/admin/v1/event_reports/{}", report["id"]), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    // The event as stored (federation format: in room versions 3+ it carries no event_id).
    assert_eq!(details["event_json"]["sender"], alice.user_id.as_str());
    assert_eq!(details["event_json"]["room_id"], room_id.as_str());
    assert_eq!(details["event_json"]["content"]["body"], "offensive");
    assert_eq!(details["id"], report["id"]);
    assert_error(
        server.get("/_synapse/admin/v1/event_reports/999", admin.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        server.get("/_synapse/admin/v1/event_reports/abc", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.get("/_synapse/admin/v1/event_reports", bob.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

async fn admins_read_reports_paged_and_filtered(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let first_room = server.create_room(&alice, json!({"name": "First", "preset": "public_chat"})).await;
    let second_room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    for room in [&first_room, &second_room] {
        assert_eq!(server.join(&bob, room).await.0, StatusCode::OK);
    }
    let mut reported = Vec::new();
    for (i, room) in [&first_room, &first_room, &second_room, &first_room, &second_room].into_iter().enumerate() {
        let event_id = server.send_text(&alice, room, &format!("message {i}")).await;
        let reporter = if i % 2 == 0 { &bob } else { &alice };
        let (status, _) =
            server.post(&report_path(room, &event_id), reporter.token(), json!({"reason": format!("r{i}")})).await;
        assert_eq!(status, StatusCode::OK);
        reported.push(event_id);
        server.clock.advance_secs(1);
    }

    let events = |page: &Value| -> Vec<String> {
        page["event_reports"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect()
    };
    // Newest first by default; pages of two continue each other.
    let mut seen = Vec::new();
    let mut from = 0;
    loop {
        let (status, page) =
            server.get(&format!("/_synapse/admin/v1/event_reports?limit=2&from={from}"), admin.token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 5);
        seen.extend(events(&page));
        match page["next_token"].as_i64() {
            Some(next) => from = next,
            None => break,
        }
    }
    let newest_first: Vec<String> = reported.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let (_, page) = server.get("/_synapse/admin/v1/event_reports?dir=f", admin.token()).await;
    assert_eq!(events(&page), reported);

    let (_, page) =
        server.get(&format!("/_synapse/admin/v1/event_reports?room_id={}", encode(&second_room)), admin.token()).await;
    assert_eq!((events(&page), page["total"].clone()), (vec![reported[4].clone(), reported[2].clone()], json!(2)));
    let (_, page) = server
        .get(&format!("/_synapse/admin/v1/event_reports?user_id={}", encode(&alice.user_id)), admin.token())
        .await;
    assert_eq!(events(&page), vec![reported[3].clone(), reported[1].clone()]);
    let (_, page) = server
        .get(&format!("/_synapse/admin/v1/event_reports?room_id={}&dir=f&limit=1", encode(&first_room)), admin.token())
        .await;
    assert_eq!(page["event_reports"][0]["name"], "First");
    assert_eq!(page["next_token"], 1);
    assert_error(
        server.get("/_synapse/admin/v1/event_reports?dir=up", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}
