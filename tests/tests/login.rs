//! `/login`, `/refresh`, `/logout`, `/logout/all`.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests, password_login};

engine_tests!(
    password_login_by_localpart_or_user_id,
    refresh_tokens_rotate_and_expiry_is_a_soft_logout,
    logout_revokes_one_device_and_logout_all_every_device,
);

const LOGIN: &str = "/_matrix/client/v3/login";

async fn password_login_by_localpart_or_user_id(engine: Engine) {
    let server = TestServer::start(engine).await;
    let registered = server.register("alice", "correct-horse").await;

    let (status, flows) = server.get(LOGIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flows["flows"], json!([{"type": "m.login.password"}]));

    let by_localpart = server.login("alice", "correct-horse").await;
    let by_user_id = server.login(&server.user_id("alice"), "correct-horse").await;
    let by_upper = server.login("ALICE", "correct-horse").await;
    for session in [&by_localpart, &by_user_id, &by_upper] {
        assert_eq!(session.user_id, registered.user_id);
        assert_ne!(session.device_id, registered.device_id, "each login is a new device");
    }

    // The deprecated top-level `user` field still works.
    let legacy = json!({"type": "m.login.password", "user": "alice", "password": "correct-horse"});
    let (status, _) = server.post(LOGIN, None, legacy).await;
    assert_eq!(status, StatusCode::OK);

    assert_error(
        server.post(LOGIN, None, password_login("alice", "wrong")).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(server.post(LOGIN, None, password_login("nobody", "x")).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(
        server.post(LOGIN, None, password_login("@alice:elsewhere.example", "correct-horse")).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let token_login = json!({"type": "m.login.token", "token": "abc"});
    assert_error(server.post(LOGIN, None, token_login).await, StatusCode::BAD_REQUEST, "M_UNRECOGNIZED");

    // Logging in with an existing device ID reuses the device and revokes its old token.
    let mut body = password_login("alice", "correct-horse");
    body["device_id"] = json!(by_localpart.device_id);
    let (status, relogin) = server.post(LOGIN, None, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(relogin["device_id"], by_localpart.device_id.as_str());
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", by_localpart.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", relogin["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
}

async fn refresh_tokens_rotate_and_expiry_is_a_soft_logout(engine: Engine) {
    let server = TestServer::start(engine).await;
    server.register("bob", "correct-horse").await;
    let mut body = password_login("bob", "correct-horse");
    body["refresh_token"] = json!(true);
    let (status, login) = server.post(LOGIN, None, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(login["expires_in_ms"], 300_000);
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();

    // Past its lifetime the access token is refused with soft_logout.
    server.clock.advance_secs(301);
    let (status, error) = server.get("/_matrix/client/v3/account/whoami", Some(&access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["errcode"], "M_UNKNOWN_TOKEN");
    assert_eq!(error["soft_logout"], true);

    let (status, refreshed) = server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let new_access = refreshed["access_token"].as_str().unwrap();
    assert_ne!(new_access, access);
    assert_ne!(refreshed["refresh_token"].as_str().unwrap(), refresh);
    assert_eq!(refreshed["expires_in_ms"], 300_000);
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(new_access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["device_id"], login["device_id"]);

    // A refresh token works once.
    assert_error(
        server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": refresh})).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        server.post("/_matrix/client/v3/refresh", None, json!({"refresh_token": "myrt_forged"})).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );

    // Tokens from a login without refresh_token do not expire.
    let plain = server.login("bob", "correct-horse").await;
    server.clock.advance_secs(365 * 24 * 3600);
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", plain.token()).await;
    assert_eq!(status, StatusCode::OK);
}

async fn logout_revokes_one_device_and_logout_all_every_device(engine: Engine) {
    let server = TestServer::start(engine).await;
    let first = server.register("carol", "correct-horse").await;
    let second = server.login("carol", "correct-horse").await;
    let third = server.login("carol", "correct-horse").await;

    let (status, _) = server.post("/_matrix/client/v3/logout", first.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", first.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (_, devices) = server.get("/_matrix/client/v3/devices", second.token()).await;
    let ids: Vec<&str> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&first.device_id.as_str()), "logout deletes the device");

    let (status, _) = server.post("/_matrix/client/v3/logout/all", second.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    for session in [&second, &third] {
        assert_error(
            server.get("/_matrix/client/v3/account/whoami", session.token()).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    // Logging in still works afterwards.
    server.login("carol", "correct-horse").await;
}
