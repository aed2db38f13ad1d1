//! `/devices`, `/devices/{id}`, `/delete_devices` (deletion behind a password stage).

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests, password_auth};

engine_tests!(list_get_and_rename_devices, deleting_devices_needs_the_password);

async fn list_get_and_rename_devices(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let other = server.login("alice", "correct-horse").await;
    let mallory = server.register("mallory", "correct-horse").await;

    let (status, devices) = server.get("/_matrix/client/v3/devices", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    let devices = devices["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d["last_seen_ts"].as_u64().is_some()));

    let path = format!("/_matrix/client/v3/devices/{}", other.device_id);
    let (status, device) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(device["device_id"], other.device_id.as_str());

    let (status, _) = server.put(&path, alice.token(), json!({"display_name": "Work laptop"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, device) = server.get(&path, alice.token()).await;
    assert_eq!(device["display_name"], "Work laptop");

    // Another user's device is not visible or writable.
    assert_error(server.get(&path, mallory.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        server.put(&path, mallory.token(), json!({"display_name": "x"})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        server.get("/_matrix/client/v3/devices/NOSUCHDEVICE", alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(server.get("/_matrix/client/v3/devices", None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

async fn deleting_devices_needs_the_password(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let second = server.login("alice", "correct-horse").await;
    let third = server.login("alice", "correct-horse").await;
    let fourth = server.login("alice", "correct-horse").await;
    let path = format!("/_matrix/client/v3/devices/{}", second.device_id);

    let (status, challenge) = server.delete(&path, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = challenge["session"].as_str().unwrap().to_owned();

    // A wrong password fails the stage with M_FORBIDDEN and keeps the session.
    let wrong = json!({"auth": password_auth(&alice.user_id, "wrong", &session)});
    let (status, failed) = server.delete(&path, alice.token(), wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(failed["errcode"], "M_FORBIDDEN");
    assert_eq!(failed["session"], session.as_str());
    assert_eq!(failed["flows"], json!([{"stages": ["m.login.password"]}]));

    // Someone else's password does not authenticate alice.
    server.register("bob", "bobs-password").await;
    let bob_auth = json!({"auth": password_auth(&server.user_id("bob"), "bobs-password", &session)});
    let (status, failed) = server.delete(&path, alice.token(), bob_auth).await;
    assert_eq!((status, failed["errcode"].clone()), (StatusCode::UNAUTHORIZED, json!("M_FORBIDDEN")));

    let right = json!({"auth": password_auth(&alice.user_id, "correct-horse", &session)});
    let (status, _) = server.delete(&path, alice.token(), right).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(server.get(&path, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", second.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    // The completed session cannot be replayed.
    let replay = json!({"auth": password_auth(&alice.user_id, "correct-horse", &session)});
    let third_path = format!("/_matrix/client/v3/devices/{}", third.device_id);
    assert_error(server.delete(&third_path, alice.token(), replay).await, StatusCode::BAD_REQUEST, "M_UNKNOWN");

    // Bulk deletion, authenticated in the first request without a session.
    let body = json!({"devices": [third.device_id, fourth.device_id, "UNKNOWNDEV"],
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "correct-horse"}});
    let (status, response) = server.post("/_matrix/client/v3/delete_devices", alice.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let (_, devices) = server.get("/_matrix/client/v3/devices", alice.token()).await;
    let ids: Vec<&str> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![alice.device_id.as_str()]);

    assert_error(
        server.delete("/_matrix/client/v3/devices/NOSUCHDEVICE", alice.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}
