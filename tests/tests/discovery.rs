//! `/versions`, `.well-known`, and the server key endpoint.

use reqwest::StatusCode;

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(versions_and_well_known, server_keys_are_signed_with_the_published_key);

async fn versions_and_well_known(engine: Engine) {
    let server = TestServer::start_with(engine, |c| {
        c.public_baseurl = "https://matrix.example.org/".into();
    })
    .await;
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let list: Vec<&str> = versions["versions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(list.contains(&"v1.12") && list.contains(&"r0.6.1"), "{list:?}");

    let (status, client) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(client["m.homeserver"]["base_url"], "https://matrix.example.org/");

    // No delegation configured: 404.
    assert_error(server.get("/.well-known/matrix/server", None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let delegated = TestServer::start_with(engine, |c| c.well_known.server = "fed.example.org:443".into()).await;
    let (status, body) = delegated.get("/.well-known/matrix/server", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["m.server"], "fed.example.org:443");
}

async fn server_keys_are_signed_with_the_published_key(engine: Engine) {
    let server = TestServer::start_with(engine, |c| {
        c.keys.old_verify_keys.insert(
            "ed25519:retired".into(),
            homeserver::config::OldVerifyKeyConfig {
                key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
                expired_ts: 1_600_000_000_000,
            },
        );
    })
    .await;
    let (status, keys) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["server_name"], server.server_name);
    let now = server.state.now_ms() as u64;
    let valid_until = keys["valid_until_ts"].as_u64().unwrap();
    assert!(valid_until > now + 6 * 24 * 3600 * 1000, "valid for a week by default");
    assert_eq!(keys["old_verify_keys"]["ed25519:retired"]["expired_ts"], 1_600_000_000_000u64);

    let verify_keys = keys["verify_keys"].as_object().unwrap();
    assert_eq!(verify_keys.len(), 1);
    let (key_id, key) = verify_keys.iter().next().unwrap();
    assert_eq!(key_id, &server.state.signing_key.key_id());
    let public_key = key["key"].as_str().unwrap();

    // Verify with only what was published, as a remote server would.
    let object = federation::signing::to_canonical_object(keys.clone()).unwrap();
    federation::signing::verify_object(&server.server_name, key_id, public_key, &object).expect("valid self-signature");
    let mut tampered = keys.clone();
    tampered["server_name"] = "evil.example".into();
    let tampered = federation::signing::to_canonical_object(tampered).unwrap();
    assert!(federation::signing::verify_object(&server.server_name, key_id, public_key, &tampered).is_err());
}
