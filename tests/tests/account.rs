//! `/account/password`, `/account/deactivate`, `/capabilities`.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests, password_auth, password_login};

engine_tests!(password_change_logs_out_other_devices, deactivation_is_final, capabilities_describe_the_server);

async fn password_change_logs_out_other_devices(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "old-password").await;
    let other = server.login("alice", "old-password").await;
    let path = "/_matrix/client/v3/account/password";

    let (status, challenge) = server.post(path, alice.token(), json!({"new_password": "new-password"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let session = challenge["session"].as_str().unwrap();

    let weak = json!({"new_password": "short", "auth": password_auth(&alice.user_id, "old-password", session)});
    assert_error(server.post(path, alice.token(), weak).await, StatusCode::BAD_REQUEST, "M_WEAK_PASSWORD");

    let body = json!({"new_password": "new-password", "auth": password_auth(&alice.user_id, "old-password", session)});
    let (status, response) = server.post(path, alice.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");

    // The session that changed the password stays; every other device is logged out.
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", other.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        server.post("/_matrix/client/v3/login", None, password_login("alice", "old-password")).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let kept = server.login("alice", "new-password").await;

    // logout_devices: false keeps the other devices.
    let body = json!({"new_password": "newer-password", "logout_devices": false,
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "new-password"}});
    let (status, _) = server.post(path, alice.token(), body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", kept.token()).await;
    assert_eq!(status, StatusCode::OK);

    assert_error(
        server.post(path, None, json!({"new_password": "whatever-password"})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

async fn deactivation_is_final(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let path = "/_matrix/client/v3/account/deactivate";

    let (status, challenge) = server.post(path, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let session = challenge["session"].as_str().unwrap();
    let body = json!({"auth": password_auth(&alice.user_id, "correct-horse", session)});
    let (status, response) = server.post(path, alice.token(), body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["id_server_unbind_result"], "no-support");

    assert_error(
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        server.post("/_matrix/client/v3/login", None, password_login("alice", "correct-horse")).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // The user ID can never be registered again.
    assert_error(
        server.get("/_matrix/client/v3/register/available?username=alice", None).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    let body = json!({"username": "alice", "password": "correct-horse", "auth": {"type": "m.login.dummy"}});
    assert_error(
        server.post("/_matrix/client/v3/register", None, body).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
}

async fn capabilities_describe_the_server(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let (status, body) = server.get("/_matrix/client/v3/capabilities", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    let caps = &body["capabilities"];
    // Omitted capabilities default to enabled, so "not disabled" is what clients see.
    assert_ne!(caps["m.change_password"]["enabled"], false);
    assert_eq!(caps["m.room_versions"]["default"], "10");
    assert_eq!(caps["m.room_versions"]["available"]["11"], "stable");
    assert_eq!(caps["m.room_versions"]["available"]["1"], "stable");
    assert_error(
        server.get("/_matrix/client/v3/capabilities", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}
