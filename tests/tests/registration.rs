//! `POST /register` in each mode, with each UIA flow, and the username rules.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests};
use homeserver::config::RegistrationMode;

engine_tests!(
    open_registration_uses_the_dummy_flow,
    token_registration_checks_and_consumes_tokens,
    disabled_registration_is_forbidden,
    usernames_follow_the_spec,
    inhibit_login_and_device_fields,
    weak_passwords_and_guests_are_refused,
);

const REGISTER: &str = "/_matrix/client/v3/register";

async fn open_registration_uses_the_dummy_flow(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (status, challenge) =
        server.post(REGISTER, None, json!({"username": "alice", "password": "hunter2hunter2"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert!(challenge["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(challenge.get("completed").is_none() || challenge["completed"] == json!([]));

    let session = server.register("alice", "hunter2hunter2").await;
    assert_eq!(session.user_id, server.user_id("alice"));
    assert!(session.access_token.starts_with("myat_"));
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", session.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["user_id"], server.user_id("alice"));
    assert_eq!(whoami["device_id"], session.device_id);
    assert_ne!(whoami["is_guest"], true);

    // Clients such as matrix-nio send the dummy stage without asking for a session first.
    let body = json!({"username": "bob", "password": "hunter2hunter2", "auth": {"type": "m.login.dummy"}});
    let (status, response) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["user_id"], server.user_id("bob"));

    // A stage that is not offered fails with an errcode and keeps the session.
    let (_, challenge) = server.post(REGISTER, None, json!({"username": "carol", "password": "hunter2hunter2"})).await;
    let session_id = challenge["session"].as_str().unwrap();
    let body = json!({"username": "carol", "password": "hunter2hunter2",
        "auth": {"type": "m.login.registration_token", "token": "x", "session": session_id}});
    let (status, response) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(response["errcode"], "M_UNRECOGNIZED");
    assert_eq!(response["session"], session_id);

    // An unknown session is refused.
    let body = json!({"username": "carol", "password": "hunter2hunter2", "auth": {"type": "m.login.dummy", "session": "nope"}});
    assert_error(server.post(REGISTER, None, body).await, StatusCode::BAD_REQUEST, "M_UNKNOWN");
}

async fn token_registration_checks_and_consumes_tokens(engine: Engine) {
    let server = TestServer::start_with(engine, |c| c.registration = RegistrationMode::Token).await;
    let now = server.state.now_ms();
    server.state.storage.create_registration_token("one-use", Some(1), None, now).await.unwrap();
    server.state.storage.create_registration_token("expired", None, Some(now - 1), now).await.unwrap();

    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    let (status, body) = server.get(&format!("{validity}?token=one-use"), None).await;
    assert_eq!((status, body["valid"].clone()), (StatusCode::OK, json!(true)));
    let (_, body) = server.get(&format!("{validity}?token=expired"), None).await;
    assert_eq!(body["valid"], false);
    let (_, body) = server.get(&format!("{validity}?token=unknown"), None).await;
    assert_eq!(body["valid"], false);

    let request = json!({"username": "dave", "password": "hunter2hunter2"});
    let (status, challenge) = server.post(REGISTER, None, request.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.registration_token"]}]));
    let session = challenge["session"].as_str().unwrap().to_owned();

    // A wrong token fails the stage; the session survives for another try.
    let mut body = request.clone();
    body["auth"] = json!({"type": "m.login.registration_token", "token": "expired", "session": session});
    let (status, failed) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(failed["errcode"], "M_UNAUTHORIZED");
    assert_eq!(failed["session"], session.as_str());

    let mut body = request.clone();
    body["auth"] = json!({"type": "m.login.registration_token", "token": "one-use", "session": session});
    let (status, ok) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["user_id"], server.user_id("dave"));

    // The token allowed one use.
    let body = json!({"username": "erin", "password": "hunter2hunter2",
        "auth": {"type": "m.login.registration_token", "token": "one-use"}});
    let (status, failed) = server.post(REGISTER, None, body).await;
    assert_eq!((status, failed["errcode"].clone()), (StatusCode::UNAUTHORIZED, json!("M_UNAUTHORIZED")));
    let row = server.state.storage.registration_token("one-use").await.unwrap().unwrap();
    assert_eq!(row.completed, 1);

    // Dummy auth is not enough in token mode.
    let body = json!({"username": "erin", "password": "hunter2hunter2", "auth": {"type": "m.login.dummy"}});
    let (status, failed) = server.post(REGISTER, None, body).await;
    assert_eq!((status, failed["errcode"].clone()), (StatusCode::UNAUTHORIZED, json!("M_UNRECOGNIZED")));
}

async fn disabled_registration_is_forbidden(engine: Engine) {
    let server = TestServer::start_with(engine, |c| c.registration = RegistrationMode::Disabled).await;
    let body = json!({"username": "alice", "password": "hunter2hunter2", "auth": {"type": "m.login.dummy"}});
    assert_error(server.post(REGISTER, None, body).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(
        server.get("/_matrix/client/v3/register/available?username=alice", None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // The token validity endpoint is not for this mode either.
    assert_error(
        server.get("/_matrix/client/v1/register/m.login.registration_token/validity?token=x", None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

async fn usernames_follow_the_spec(engine: Engine) {
    let server = TestServer::start(engine).await;
    server.register("taken", "hunter2hunter2").await;
    let available = |name: &str| format!("/_matrix/client/v3/register/available?username={name}");

    let (status, body) = server.get(&available("free.name"), None).await;
    assert_eq!((status, body["available"].clone()), (StatusCode::OK, json!(true)));
    assert_error(server.get(&available("taken"), None).await, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    for bad in ["Upper", "has%20space", "_reserved", "12345", "%C3%A9mile"] {
        assert_error(server.get(&available(bad), None).await, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
    }

    // The same rules apply at registration, before any auth stage.
    let body = json!({"username": "Upper", "password": "hunter2hunter2"});
    assert_error(server.post(REGISTER, None, body).await, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
    let body = json!({"username": "taken", "password": "hunter2hunter2", "auth": {"type": "m.login.dummy"}});
    assert_error(server.post(REGISTER, None, body).await, StatusCode::BAD_REQUEST, "M_USER_IN_USE");

    // Without a username the server picks one.
    let body = json!({"password": "hunter2hunter2", "auth": {"type": "m.login.dummy"}});
    let (status, response) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert!(response["user_id"].as_str().unwrap().ends_with(&format!(":{}", server.server_name)));
}

async fn inhibit_login_and_device_fields(engine: Engine) {
    let server = TestServer::start(engine).await;
    let body = json!({"username": "quiet", "password": "hunter2hunter2", "inhibit_login": true, "auth": {"type": "m.login.dummy"}});
    let (status, response) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["user_id"], server.user_id("quiet"));
    assert!(response.get("access_token").is_none(), "{response}");
    assert!(response["device_id"].is_null());
    // The account exists and can log in.
    server.login("quiet", "hunter2hunter2").await;

    let body = json!({"username": "named", "password": "hunter2hunter2", "device_id": "MYDEVICE",
        "initial_device_display_name": "Laptop", "refresh_token": true, "auth": {"type": "m.login.dummy"}});
    let (status, response) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["device_id"], "MYDEVICE");
    assert!(response["refresh_token"].as_str().is_some_and(|t| t.starts_with("myrt_")));
    assert_eq!(response["expires_in_ms"], 300_000);
    let token = response["access_token"].as_str().unwrap();
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(token)).await;
    assert_eq!(devices["devices"][0]["device_id"], "MYDEVICE");
    assert_eq!(devices["devices"][0]["display_name"], "Laptop");
}

async fn weak_passwords_and_guests_are_refused(engine: Engine) {
    let server = TestServer::start(engine).await;
    let body = json!({"username": "weak", "password": "short", "auth": {"type": "m.login.dummy"}});
    assert_error(server.post(REGISTER, None, body).await, StatusCode::BAD_REQUEST, "M_WEAK_PASSWORD");
    let body = json!({"username": "nopass", "auth": {"type": "m.login.dummy"}});
    assert_error(server.post(REGISTER, None, body).await, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    let body = json!({"auth": {"type": "m.login.dummy"}});
    assert_error(
        server.post("/_matrix/client/v3/register?kind=guest", None, body).await,
        StatusCode::FORBIDDEN,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
}
