//! Shared-secret registration (`/_synapse/admin/v1/register`), as `register_new_matrix_user` uses it.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha1::Sha1;

use crate::common::{Engine, TestServer, assert_error, encode, engine_tests};

engine_tests!(accounts_are_registered_with_the_shared_secret, shared_secret_registration_is_off_by_default);

const SECRET: &str = "a-very-shared-secret";
const PATH: &str = "/_synapse/admin/v1/register";

fn mac(secret: &str, nonce: &str, username: &str, password: &str, admin: bool) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    for part in [nonce, "\0", username, "\0", password, "\0", if admin { "admin" } else { "notadmin" }] {
        mac.update(part.as_bytes());
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn nonce(server: &TestServer) -> String {
    let (status, body) = server.get(PATH, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["nonce"].as_str().unwrap().to_owned()
}

fn body(nonce: &str, username: &str, password: &str, admin: bool, mac: &str) -> Value {
    json!({"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac, "displayname": "Ops"})
}

async fn accounts_are_registered_with_the_shared_secret(engine: Engine) {
    let server = TestServer::start_with(engine, |config| {
        config.registration = homeserver::config::RegistrationMode::Disabled;
        config.registration_shared_secret = SECRET.into();
    })
    .await;
    let first = nonce(&server).await;
    assert_ne!(first, nonce(&server).await, "every nonce is new");

    let signed = mac(SECRET, &first, "ops", "ops-password-1", true);
    let (status, registered) = server.post(PATH, None, body(&first, "ops", "ops-password-1", true, &signed)).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    assert_eq!(registered["user_id"], server.user_id("ops"));
    assert_eq!(registered["home_server"], server.server_name.as_str());
    assert!(registered["device_id"].is_string());
    let token = registered["access_token"].as_str().unwrap();
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
    assert_eq!((status, whoami["user_id"].clone()), (StatusCode::OK, json!(server.user_id("ops"))));
    let (status, user) =
        server.get(&format!("/_synapse/admin/v2/users/{}", encode(&server.user_id("ops"))), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "the new account is an admin: {user}");
    assert_eq!((user["admin"].clone(), user["displayname"].clone()), (json!(true), json!("Ops")));

    // A nonce works once.
    assert_error(
        server
            .post(
                PATH,
                None,
                body(&first, "ops2", "ops-password-1", false, &mac(SECRET, &first, "ops2", "ops-password-1", false)),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    // A MAC made with another secret, or over other fields (admin flipped), is refused.
    let n = nonce(&server).await;
    assert_error(
        server
            .post(PATH, None, body(&n, "eve", "eve-password-1", true, &mac("guess", &n, "eve", "eve-password-1", true)))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let n = nonce(&server).await;
    assert_error(
        server
            .post(PATH, None, body(&n, "eve", "eve-password-1", true, &mac(SECRET, &n, "eve", "eve-password-1", false)))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let n = nonce(&server).await;
    assert_error(
        server.post(PATH, None, json!({"nonce": n, "username": "eve", "password": "x"})).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
    // A taken user ID is reported as such.
    let n = nonce(&server).await;
    assert_error(
        server
            .post(
                PATH,
                None,
                body(&n, "ops", "ops-password-1", false, &mac(SECRET, &n, "ops", "ops-password-1", false)),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    let (status, _) =
        server.get(&format!("/_synapse/admin/v2/users/{}", encode(&server.user_id("eve"))), Some(token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no refused attempt created an account");

    // Audited under the secret's name, without the password.
    let (_, log) = server.get("/_myelin/admin/v1/audit_log", Some(token)).await;
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        2,
        "the registration and the one refused for its taken ID, no attempt without the secret: {log}"
    );
    assert_eq!(entries[1]["result"], "error: M_USER_IN_USE");
    assert_eq!(entries[0]["actor"], "shared_secret");
    assert_eq!(
        (entries[0]["action"].clone(), entries[0]["target"].clone()),
        (json!("create_user"), json!(server.user_id("ops")))
    );
    assert_eq!(entries[0]["params"]["admin"], true);
    assert!(!log.to_string().contains("ops-password-1"));
}

async fn shared_secret_registration_is_off_by_default(engine: Engine) {
    let server = TestServer::start(engine).await;
    assert_error(server.get(PATH, None).await, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    assert_error(
        server.post(PATH, None, body("n", "x", "y", false, &mac("", "n", "x", "y", false))).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
}
