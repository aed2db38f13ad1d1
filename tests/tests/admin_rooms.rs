//! Admin API, rooms: list (order, search, paging), details, members and state.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, encode, engine_tests};

engine_tests!(rooms_are_listed_sorted_searched_and_paged, room_details_members_and_state);

const PASSWORD: &str = "correct-horse";

fn room_ids(page: &Value) -> Vec<String> {
    page["rooms"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap().to_owned()).collect()
}

async fn rooms_are_listed_sorted_searched_and_paged(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let charlie = server.create_room(&alice, json!({"name": "Charlie room"})).await;
    let alpha = server.create_room(&alice, json!({"name": "alpha room", "room_alias_name": "alpha"})).await;
    let bravo = server.create_room(&alice, json!({"name": "Bravo", "preset": "public_chat"})).await;
    let unnamed = server.create_room(&alice, json!({})).await;
    assert_eq!(server.join(&bob, &bravo).await.0, StatusCode::OK);

    let (status, page) = server.get("/_synapse/admin/v1/rooms", admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total_rooms"], 4);
    assert_eq!(page["offset"], 0);
    assert!(page.get("next_batch").is_none() && page.get("prev_batch").is_none());
    assert_eq!(
        room_ids(&page),
        vec![alpha.clone(), bravo.clone(), charlie.clone(), unnamed.clone()],
        "by name, unnamed last"
    );
    let bravo_entry = &page["rooms"][1];
    assert_eq!(bravo_entry["name"], "Bravo");
    assert_eq!(bravo_entry["joined_members"], 2);
    assert_eq!(bravo_entry["joined_local_members"], 2);
    assert_eq!(bravo_entry["join_rules"], "public");
    assert_eq!(bravo_entry["creator"], alice.user_id.as_str());
    assert_eq!(bravo_entry["federatable"], true);
    assert!(bravo_entry["version"].is_string() && bravo_entry["state_events"].as_i64().unwrap() >= 5);
    assert_eq!(page["rooms"][0]["canonical_alias"], format!("#alpha:{}", server.server_name));

    let (_, page) = server.get("/_synapse/admin/v1/rooms?order_by=joined_members&limit=1", admin.token()).await;
    assert_eq!(room_ids(&page), vec![bravo.clone()]);
    assert_eq!(page["next_batch"], 1);
    let (_, page) = server.get("/_synapse/admin/v1/rooms?dir=b", admin.token()).await;
    assert_eq!(room_ids(&page), vec![unnamed.clone(), charlie.clone(), bravo.clone(), alpha.clone()]);

    // Pages of one follow each other without gaps.
    let mut seen = Vec::new();
    let mut from = 0;
    loop {
        let (_, page) = server.get(&format!("/_synapse/admin/v1/rooms?limit=1&from={from}"), admin.token()).await;
        assert_eq!(page["total_rooms"], 4);
        seen.extend(room_ids(&page));
        if from > 0 {
            assert_eq!(page["prev_batch"], from - 1);
        }
        match page["next_batch"].as_i64() {
            Some(next) => from = next,
            None => break,
        }
    }
    assert_eq!(seen, vec![alpha.clone(), bravo.clone(), charlie.clone(), unnamed.clone()]);

    let (_, page) = server.get("/_synapse/admin/v1/rooms?search_term=ROOM", admin.token()).await;
    assert_eq!(room_ids(&page), vec![alpha.clone(), charlie.clone()]);
    assert_eq!(page["total_rooms"], 2);
    let (_, page) = server.get("/_synapse/admin/v1/rooms?search_term=%23alpha", admin.token()).await;
    assert_eq!(room_ids(&page), vec![alpha.clone()], "the canonical alias is searched");
    let (_, page) =
        server.get(&format!("/_synapse/admin/v1/rooms?search_term={}", encode(&unnamed)), admin.token()).await;
    assert_eq!(room_ids(&page), vec![unnamed.clone()], "so is the room ID");
    // Every order synapse-admin offers is accepted.
    for order in ["encryption", "federatable", "join_rules", "guest_access", "history_visibility", "version", "creator"]
    {
        let (status, page) = server.get(&format!("/_synapse/admin/v1/rooms?order_by={order}"), admin.token()).await;
        assert_eq!((status, page["total_rooms"].clone()), (StatusCode::OK, json!(4)), "{order}: {page}");
    }
    let (_, page) = server.get("/_synapse/admin/v1/rooms?order_by=join_rules", admin.token()).await;
    assert_eq!(room_ids(&page).last(), Some(&bravo), "\"invite\" sorts before \"public\"");
    assert_error(
        server.get("/_synapse/admin/v1/rooms?order_by=secret", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.get("/_synapse/admin/v1/rooms?dir=x", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

async fn room_details_members_and_state(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({"name": "Ops", "topic": "on call", "preset": "public_chat"})).await;
    assert_eq!(server.join(&bob, &room_id).await.0, StatusCode::OK);
    server.send_text(&alice, &room_id, "not state").await;
    let room = encode(&room_id);

    let (status, details) = server.get(&format!("/_synapse/admin/v1/rooms/{room}"), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert_eq!(details["room_id"], room_id.as_str());
    assert_eq!(details["name"], "Ops");
    assert_eq!(details["topic"], "on call");
    assert_eq!(details["joined_members"], 2);
    assert_eq!(details["public"], false, "not published in the directory");
    assert_eq!(details["history_visibility"], "shared");

    let (status, members) = server.get(&format!("/_synapse/admin/v1/rooms/{room}/members"), admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = vec![alice.user_id.clone(), bob.user_id.clone()];
    expected.sort();
    assert_eq!(members, json!({"members": expected, "total": 2}));

    let (status, state) = server.get(&format!("/_synapse/admin/v1/rooms/{room}/state"), admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    let events = state["state"].as_array().unwrap();
    assert_eq!(events.len() as i64, details["state_events"].as_i64().unwrap());
    assert!(events.iter().all(|e| e["state_key"].is_string() && e["room_id"] == room_id.as_str()));
    assert!(events.iter().any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "on call"));
    assert!(!events.iter().any(|e| e["type"] == "m.room.message"));

    let unknown = encode(&format!("!nope:{}", server.server_name));
    for path in [
        format!("/_synapse/admin/v1/rooms/{unknown}"),
        format!("/_synapse/admin/v1/rooms/{unknown}/members"),
        format!("/_synapse/admin/v1/rooms/{unknown}/state"),
    ] {
        assert_error(server.get(&path, admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
}
