//! The user directory, and the refusal of third-party identifiers.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests};

engine_tests!(directory_finds_room_mates_and_public_room_members, third_party_identifiers_are_refused);

const PASSWORD: &str = "correct-horse";

async fn search(server: &TestServer, session: &Session, body: Value) -> Value {
    let (status, response) = server.post("/_matrix/client/v3/user_directory/search", session.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response
}

fn found(response: &Value) -> Vec<String> {
    response["results"].as_array().unwrap().iter().map(|u| u["user_id"].as_str().unwrap().to_owned()).collect()
}

async fn set_name(server: &TestServer, session: &Session, name: &str) {
    let path = format!("/_matrix/client/v3/profile/{}/displayname", session.user_id);
    assert_eq!(server.put(&path, session.token(), json!({"displayname": name})).await.0, StatusCode::OK);
}

async fn directory_finds_room_mates_and_public_room_members(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let _dave = server.register("dave", PASSWORD).await;
    set_name(&server, &bob, "Bobby Tables").await;
    set_name(&server, &carol, "Carol 100%_sure").await;

    // Bob shares a private room with alice; carol is in a room listed in the directory; dave is
    // in neither and stays hidden.
    let private = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    server.join(&bob, &private).await;
    let public = server.create_room(&carol, json!({"preset": "public_chat", "visibility": "public"})).await;
    let _ = public;

    assert_eq!(found(&search(&server, &alice, json!({"search_term": "tables"})).await), [bob.user_id.as_str()]);
    assert_eq!(found(&search(&server, &alice, json!({"search_term": "BOB"})).await), [bob.user_id.as_str()]);
    assert_eq!(found(&search(&server, &alice, json!({"search_term": "carol"})).await), [carol.user_id.as_str()]);
    assert!(found(&search(&server, &alice, json!({"search_term": "dave"})).await).is_empty());
    let result = search(&server, &alice, json!({"search_term": "tables"})).await;
    assert_eq!(result["results"][0]["display_name"], "Bobby Tables");
    assert_eq!(result["limited"], false);
    // LIKE wildcards in the term are literal.
    assert_eq!(found(&search(&server, &alice, json!({"search_term": "100%_"})).await), [carol.user_id.as_str()]);
    assert!(found(&search(&server, &alice, json!({"search_term": "1_0"})).await).is_empty());

    // `limit` and `limited`.
    let everyone = search(&server, &alice, json!({"search_term": "", "limit": 2})).await;
    assert_eq!(found(&everyone).len(), 2);
    assert_eq!(everyone["limited"], true);

    // Deactivated users disappear.
    let (_, challenge) = server.post("/_matrix/client/v3/account/deactivate", bob.token(), json!({})).await;
    let auth = crate::common::password_auth(&bob.user_id, PASSWORD, challenge["session"].as_str().unwrap());
    assert_eq!(
        server.post("/_matrix/client/v3/account/deactivate", bob.token(), json!({"auth": auth})).await.0,
        StatusCode::OK
    );
    assert!(found(&search(&server, &alice, json!({"search_term": "tables"})).await).is_empty());

    // With search_all_users, strangers are found too.
    let server = TestServer::start_with(engine, |c| c.user_directory.search_all_users = true).await;
    let erin = server.register("erin", PASSWORD).await;
    let frank = server.register("frank", PASSWORD).await;
    assert_eq!(found(&search(&server, &erin, json!({"search_term": "frank"})).await), [frank.user_id.as_str()]);
    let (status, _) = server.post("/_matrix/client/v3/user_directory/search", None, json!({"search_term": "x"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn third_party_identifiers_are_refused(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let (status, listed) = server.get("/_matrix/client/v3/account/3pid", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["threepids"], json!([]));
    for path in [
        "/_matrix/client/v3/account/3pid/add",
        "/_matrix/client/v3/account/3pid/email/requestToken",
        "/_matrix/client/v3/register/email/requestToken",
        "/_matrix/client/v3/account/password/email/requestToken",
    ] {
        let body = json!({"client_secret": "s", "email": "a@example.org", "send_attempt": 1});
        assert_error(server.post(path, alice.token(), body).await, StatusCode::FORBIDDEN, "M_THREEPID_DENIED");
    }
}
