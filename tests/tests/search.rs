//! `POST /search`: full-text search of room events on both engines' full-text indexes.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests};

engine_tests!(
    ranks_and_orders_matches_in_joined_rooms_only,
    pages_through_every_result_once,
    filters_context_and_groupings,
    redacted_encrypted_and_invisible_events_never_match,
    bad_requests_are_refused,
    events_from_before_the_index_are_backfilled
);

async fn search(server: &TestServer, session: &Session, criteria: Value, next_batch: Option<&str>) -> Value {
    let path = match next_batch {
        Some(token) => format!("/_matrix/client/v3/search?next_batch={token}"),
        None => "/_matrix/client/v3/search".to_owned(),
    };
    let (status, body) =
        server.post(&path, session.token(), json!({"search_categories": {"room_events": criteria}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["search_categories"]["room_events"].clone()
}

fn result_bodies(room_events: &Value) -> Vec<String> {
    room_events["results"]
        .as_array()
        .map(|results| {
            results.iter().map(|r| r["result"]["content"]["body"].as_str().unwrap_or_default().to_owned()).collect()
        })
        .unwrap_or_default()
}

fn result_ids(room_events: &Value) -> Vec<String> {
    room_events["results"]
        .as_array()
        .map(|results| results.iter().map(|r| r["result"]["event_id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn ranks_and_orders_matches_in_joined_rooms_only(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let carol = server.register("carol", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Durian lounge"})).await;
    server.join(&bob, &room).await;
    let carols = server.create_room(&carol, json!({"preset": "public_chat"})).await;

    server.send_text(&alice, &room, "a banana smoothie recipe").await;
    server.send_text(&bob, &room, "banana bread with banana chips").await;
    server.send_text(&alice, &room, "apple pie only").await;
    server.send_text(&alice, &room, "the last banana").await;
    server.send_text(&carol, &carols, "banana split for carol").await;

    // Rank: the message with the word twice comes first; carol's room is not searched.
    let ranked = search(&server, &alice, json!({"search_term": "Banana"}), None).await;
    let bodies = result_bodies(&ranked);
    assert_eq!(bodies.len(), 3, "{ranked}");
    assert_eq!(bodies[0], "banana bread with banana chips", "{ranked}");
    assert_eq!(ranked["count"], 3);
    assert_eq!(ranked["highlights"], json!(["banana"]));
    let ranks: Vec<f64> = ranked["results"].as_array().unwrap().iter().map(|r| r["rank"].as_f64().unwrap()).collect();
    assert!(ranks[0] > ranks[1], "{ranks:?}");
    assert!(ranked.get("next_batch").is_none(), "{ranked}");
    assert_eq!(ranked["results"][0]["result"]["room_id"], room.as_str());
    assert_eq!(ranked["results"][0]["result"]["sender"], bob.user_id.as_str());

    // Recent: newest first.
    let recent = search(&server, &alice, json!({"search_term": "banana", "order_by": "recent"}), None).await;
    assert_eq!(
        result_bodies(&recent),
        vec!["the last banana", "banana bread with banana chips", "a banana smoothie recipe"]
    );

    // All words must occur; stems match ("recipes" finds "recipe").
    let both = search(&server, &alice, json!({"search_term": "banana recipes"}), None).await;
    assert_eq!(result_bodies(&both), vec!["a banana smoothie recipe"]);

    // Room names are searchable under content.name, and only when that key is asked for.
    let names = search(&server, &alice, json!({"search_term": "durian", "keys": ["content.name"]}), None).await;
    let results = names["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{names}");
    assert_eq!(results[0]["result"]["type"], "m.room.name");
    let bodies_only = search(&server, &alice, json!({"search_term": "durian", "keys": ["content.body"]}), None).await;
    assert_eq!(bodies_only["count"], 0);
    assert!(result_ids(&bodies_only).is_empty());

    // Carol finds only her own room's message.
    let carols_view = search(&server, &carol, json!({"search_term": "banana"}), None).await;
    assert_eq!(result_bodies(&carols_view), vec!["banana split for carol"]);
}

async fn pages_through_every_result_once(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({})).await;
    let mut sent = Vec::new();
    for n in 0..7 {
        sent.push(server.send_text(&alice, &room, &format!("kiwi number {n}")).await);
    }
    server.send_text(&alice, &room, "no fruit here").await;

    for (order, expected_pages) in [("rank", 3), ("recent", 3)] {
        let criteria = json!({"search_term": "kiwi", "order_by": order, "filter": {"limit": 3}});
        let total = sent.len();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = search(&server, &alice, criteria.clone(), token.as_deref()).await;
            assert_eq!(page["count"], total, "{page}");
            let ids = result_ids(&page);
            assert!(ids.len() <= 3, "{page}");
            seen.extend(ids);
            pages += 1;
            // A message sent mid-pagination neither shifts nor joins the pages already begun.
            if pages == 1 && order == "rank" {
                server.send_text(&alice, &room, "kiwi sent later").await;
            }
            match page["next_batch"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
            assert!(pages < 10, "pagination does not end");
        }
        assert_eq!(pages, expected_pages, "{order}");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{order}: duplicates in {seen:?}");
        assert_eq!(unique, sent.iter().collect::<HashSet<_>>(), "{order}: every message once");
        if order == "recent" {
            let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
            assert_eq!(seen, newest_first);
        } else {
            // The message sent during the first pagination is found by the next search.
            let later = search(&server, &alice, json!({"search_term": "later"}), None).await;
            let later = result_ids(&later);
            assert_eq!(later.len(), 1);
            sent.extend(later);
        }
    }
}

async fn filters_context_and_groupings(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let first = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let second = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &first).await;
    server.join(&bob, &second).await;
    server.send_text(&alice, &first, "before the mango").await;
    let mango = server.send_text(&bob, &first, "mango time").await;
    server.send_text(&alice, &first, "after the mango").await;
    server.send_text(&alice, &second, "mango in the second room").await;

    let by_sender =
        search(&server, &alice, json!({"search_term": "mango", "filter": {"senders": [&bob.user_id]}}), None).await;
    assert_eq!(result_bodies(&by_sender), vec!["mango time"]);
    assert_eq!(by_sender["count"], 1);
    let not_bob =
        search(&server, &alice, json!({"search_term": "mango", "filter": {"not_senders": [&bob.user_id]}}), None).await;
    assert_eq!(result_bodies(&not_bob).len(), 3);
    let by_room = search(&server, &alice, json!({"search_term": "mango", "filter": {"rooms": [&second]}}), None).await;
    assert_eq!(result_bodies(&by_room), vec!["mango in the second room"]);
    let not_room =
        search(&server, &alice, json!({"search_term": "mango", "filter": {"not_rooms": [&first]}}), None).await;
    assert_eq!(result_bodies(&not_room), vec!["mango in the second room"]);
    let by_type =
        search(&server, &alice, json!({"search_term": "mango", "filter": {"types": ["m.room.name"]}}), None).await;
    assert!(result_bodies(&by_type).is_empty(), "{by_type}");
    assert_eq!(by_type["count"], 0);
    let messages = search(
        &server,
        &alice,
        json!({"search_term": "mango", "filter": {"types": ["m.room.*"], "not_types": ["m.room.name"]}}),
        None,
    )
    .await;
    assert_eq!(messages["count"], 4);

    // Context around a result, with the senders' profiles.
    let criteria = json!({
        "search_term": "time",
        "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": true},
    });
    let with_context = search(&server, &alice, criteria, None).await;
    let result = &with_context["results"][0];
    assert_eq!(result["result"]["event_id"], mango.as_str(), "{with_context}");
    let context = &result["context"];
    assert_eq!(context["events_before"].as_array().unwrap().len(), 1, "{context}");
    assert_eq!(context["events_before"][0]["content"]["body"], "before the mango");
    assert_eq!(context["events_after"].as_array().unwrap().len(), 1, "{context}");
    assert_eq!(context["events_after"][0]["content"]["body"], "after the mango");
    assert!(context["start"].is_string() && context["end"].is_string(), "{context}");
    assert_eq!(context["profile_info"][&bob.user_id]["displayname"], "bob", "{context}");
    assert!(context["profile_info"][&alice.user_id].is_object(), "{context}");

    // Groupings by room and by sender, and the rooms' state on request.
    let criteria = json!({
        "search_term": "mango",
        "order_by": "recent",
        "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        "include_state": true,
    });
    let grouped = search(&server, &alice, criteria, None).await;
    let rooms = &grouped["groups"]["room_id"];
    assert_eq!(rooms[&first]["results"].as_array().unwrap().len(), 3, "{grouped}");
    assert_eq!(rooms[&second]["results"].as_array().unwrap().len(), 1, "{grouped}");
    // The newest result is in the second room, so its group comes first.
    assert_eq!(rooms[&second]["order"], 0);
    assert_eq!(rooms[&first]["order"], 1);
    let senders = &grouped["groups"]["sender"];
    assert_eq!(senders[&bob.user_id]["results"], json!([mango]));
    assert_eq!(senders[&alice.user_id]["results"].as_array().unwrap().len(), 3);
    let state = grouped["state"][&second].as_array().expect("state of the second room");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{grouped}");
}

async fn redacted_encrypted_and_invisible_events_never_match(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let doomed = server.send_text(&alice, &room, "papaya secret").await;
    server.send_text(&alice, &room, "papaya public").await;
    assert_eq!(search(&server, &alice, json!({"search_term": "papaya"}), None).await["count"], 2);

    let path = format!("/_matrix/client/v3/rooms/{room}/redact/{doomed}/r1");
    let (status, body) = server.put(&path, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = search(&server, &alice, json!({"search_term": "papaya"}), None).await;
    assert_eq!(result_bodies(&after), vec!["papaya public"]);
    assert_eq!(after["count"], 1);
    assert!(result_bodies(&search(&server, &alice, json!({"search_term": "secret"}), None).await).is_empty());

    // Encrypted events carry no searchable body, whatever their content claims.
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/e1");
    let content = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "papaya", "body": "papaya cipher"});
    assert_eq!(server.put(&path, alice.token(), content).await.0, StatusCode::OK);
    assert_eq!(search(&server, &alice, json!({"search_term": "cipher"}), None).await["count"], 0);

    // History visibility "joined": bob does not find what was said before he joined.
    let private = server
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}
            ]}),
        )
        .await;
    server.send_text(&alice, &private, "guava early").await;
    server.join(&bob, &private).await;
    server.send_text(&alice, &private, "guava late").await;
    let bobs = search(&server, &bob, json!({"search_term": "guava", "filter": {"rooms": [&private]}}), None).await;
    assert_eq!(result_bodies(&bobs), vec!["guava late"]);
    let alices = search(&server, &alice, json!({"search_term": "guava"}), None).await;
    assert_eq!(result_bodies(&alices).len(), 2);

    // After leaving, the room is no longer searched.
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{private}/leave"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(search(&server, &bob, json!({"search_term": "guava"}), None).await["count"], 0);
}

async fn bad_requests_are_refused(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let room = server.create_room(&alice, json!({})).await;
    server.send_text(&alice, &room, "quince").await;
    let post = |body: Value, query: &'static str| {
        let path = format!("/_matrix/client/v3/search{query}");
        let token = alice.access_token.clone();
        let server = &server;
        async move { server.post(&path, Some(&token), body).await }
    };
    let room_events = |criteria: Value| json!({"search_categories": {"room_events": criteria}});
    assert_error(
        post(room_events(json!({"search_term": "quince", "order_by": "sideways"})), "").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        post(room_events(json!({"search_term": "quince", "keys": ["content.secret"]})), "").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        post(room_events(json!({"search_term": "quince", "groupings": {"group_by": [{"key": "colour"}]}})), "").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        post(room_events(json!({"search_term": "quince"})), "?next_batch=garbage").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(post(room_events(json!({"keys": ["content.body"]})), "").await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    assert_error(
        server.post("/_matrix/client/v3/search", None, room_events(json!({"search_term": "quince"}))).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    // Search syntax and punctuation are just text; a term without words finds nothing.
    for term in ["\"quince", "quince*", "-quince:", "(quince)", "quince^"] {
        let found = search(&server, &alice, json!({"search_term": term}), None).await;
        assert_eq!(result_bodies(&found), vec!["quince"], "{term}");
    }
    let nothing = search(&server, &alice, json!({"search_term": "***"}), None).await;
    assert_eq!(nothing["count"], 0);
    // No categories asked for: an empty answer.
    let (status, body) =
        server.post("/_matrix/client/v3/search", alice.token(), json!({"search_categories": {}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn events_from_before_the_index_are_backfilled(engine: Engine) {
    let old = TestServer::start(engine).await;
    let alice = old.register("alice", "correct-horse").await;
    let room = old.create_room(&alice, json!({"name": "Old room"})).await;
    for n in 0..12 {
        old.send_text(&alice, &room, &format!("ancient plum {n}")).await;
    }
    let redacted = old.send_text(&alice, &room, "ancient plum redacted").await;
    let path = format!("/_matrix/client/v3/rooms/{room}/redact/{redacted}/r1");
    assert_eq!(old.put(&path, alice.token(), json!({})).await.0, StatusCode::OK);
    let (url, data_dir) = (old.state.config.effective_database_url(), old.state.config.data_dir.clone());
    drop(old);

    // Make the database look like one from before the search index existed.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM event_search").execute(&pool).await.unwrap();
    sqlx::query("UPDATE stream_positions SET position = 0 WHERE stream = 'search_backfill'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let new = TestServer::start_with(engine, |config| {
        config.database_url = url.clone();
        config.data_dir = data_dir.clone();
    })
    .await;
    let mut found = Value::Null;
    for _ in 0..100 {
        found = search(&new, &alice, json!({"search_term": "ancient plum", "filter": {"limit": 50}}), None).await;
        if found["count"] == 12 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(found["count"], 12, "{found}");
    assert!(!result_ids(&found).contains(&redacted), "the redacted event stays out");
    let names = search(&new, &alice, json!({"search_term": "old", "keys": ["content.name"]}), None).await;
    assert_eq!(names["count"], 1, "{names}");
}
