//! OpenID tokens: issued to a user for themselves, resolved by the federation `userinfo` endpoint.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(openid_tokens_identify_their_user_until_they_expire);

async fn openid_tokens_identify_their_user_until_they_expire(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let bob = server.register("bob", "correct-horse").await;
    let request_token = |user: &str| format!("/_matrix/client/v3/user/{user}/openid/request_token");
    let userinfo = |token: &str| format!("/_matrix/federation/v1/openid/userinfo?access_token={token}");

    let (status, issued) = server.post(&request_token(&alice.user_id), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["matrix_server_name"], server.server_name.as_str());
    assert_eq!(issued["expires_in"], 3600);
    let token = issued["access_token"].as_str().expect("access_token").to_owned();
    assert_ne!(token, alice.access_token);

    // The federation endpoint needs no X-Matrix signature, only the token.
    let (status, info) = server.get(&userinfo(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info, json!({"sub": alice.user_id}));

    // The token is not an access token for the client API.
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    // Unknown tokens are refused; so are requests for someone else.
    assert_error(server.get(&userinfo("garbage"), None).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let missing = server.get("/_matrix/federation/v1/openid/userinfo", None).await;
    assert_error(missing, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    assert_error(
        server.post(&request_token(&alice.user_id), bob.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        server.post(&request_token(&alice.user_id), None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );

    // After an hour the token no longer resolves.
    server.clock.advance_secs(3599);
    assert_eq!(server.get(&userinfo(&token), None).await.0, StatusCode::OK);
    server.clock.advance_secs(2);
    assert_error(server.get(&userinfo(&token), None).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}
