//! Typing notifications through `/sync`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(typing_reaches_other_members_and_expires);

fn typing_users(sync: &Value, room: &str) -> Option<Vec<String>> {
    let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array()?;
    let typing = events.iter().find(|e| e["type"] == "m.typing")?;
    Some(typing["content"]["user_ids"].as_array()?.iter().map(|u| u.as_str().unwrap().to_owned()).collect())
}

async fn typing_reaches_other_members_and_expires(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let outsider = server.register("outsider", "correct-horse").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let typing = |who: &str| format!("/_matrix/client/v3/rooms/{room}/typing/{who}");
    let next = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();

    // Bob's waiting sync wakes when alice starts typing.
    let url = format!("{}/_matrix/client/v3/sync?since={next}&timeout=60000", server.base_url);
    let token = bob.access_token.clone();
    let waiting = tokio::spawn(async move {
        reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) =
        server.put(&typing(&alice.user_id), alice.token(), json!({"typing": true, "timeout": 30000})).await;
    assert_eq!(status, StatusCode::OK);
    let woken = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("sync returned").unwrap();
    assert_eq!(typing_users(&woken, &room), Some(vec![alice.user_id.clone()]));

    // Stopping is reported too; an unchanged room is not repeated.
    let next = woken["next_batch"].as_str().unwrap().to_owned();
    let idle = server.sync(&bob, &format!("since={next}&timeout=0")).await;
    assert_eq!(typing_users(&idle, &room), None);
    server.put(&typing(&alice.user_id), alice.token(), json!({"typing": false})).await;
    let stopped = server.sync(&bob, &format!("since={next}")).await;
    assert_eq!(typing_users(&stopped, &room), Some(vec![]));

    // A short timeout expires on its own and wakes waiting syncs.
    let next = stopped["next_batch"].as_str().unwrap().to_owned();
    server.put(&typing(&alice.user_id), alice.token(), json!({"typing": true, "timeout": 200})).await;
    let started = server.sync(&bob, &format!("since={next}")).await;
    assert_eq!(typing_users(&started, &room), Some(vec![alice.user_id.clone()]));
    let next = started["next_batch"].as_str().unwrap().to_owned();
    let expired = server.sync(&bob, &format!("since={next}&timeout=10000")).await;
    assert_eq!(typing_users(&expired, &room), Some(vec![]), "{expired}");

    // Only for oneself, only in rooms one is in.
    assert_error(
        server.put(&typing(&bob.user_id), alice.token(), json!({"typing": true, "timeout": 1000})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.put(&typing(&outsider.user_id), outsider.token(), json!({"typing": true, "timeout": 1000})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}
