//! Bad input gets the spec's status and errcode, never a 500.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(unknown_routes_and_methods, tokens_are_checked, malformed_bodies, oversized_bodies, cors_preflight);

async fn unknown_routes_and_methods(engine: Engine) {
    let server = TestServer::start(engine).await;
    assert_error(server.get("/_matrix/client/v3/nonexistent", None).await, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    assert_error(server.get("/", None).await, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    assert_error(
        server.request(Method::DELETE, "/_matrix/client/versions", None, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
    );
    assert_error(
        server.request(Method::PUT, "/_matrix/client/v3/login", None, Some(json!({}))).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
    );
}

async fn tokens_are_checked(engine: Engine) {
    let server = TestServer::start(engine).await;
    let whoami = "/_matrix/client/v3/account/whoami";
    assert_error(server.get(whoami, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let (status, body) = server.get(whoami, Some("myat_not-a-real-token")).await;
    assert_error((status, body.clone()), StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    // soft_logout defaults to false and may be omitted.
    assert_ne!(body["soft_logout"], true);

    // The deprecated query-parameter form is still accepted.
    let alice = server.register("alice", "correct-horse").await;
    let (status, body) = server.get(&format!("{whoami}?access_token={}", alice.access_token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user_id"], alice.user_id);

    // A malformed Authorization header is not a token.
    let response = reqwest::Client::new()
        .get(format!("{}{whoami}", server.base_url))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], "M_MISSING_TOKEN");
}

async fn malformed_bodies(engine: Engine) {
    let server = TestServer::start(engine).await;
    for bad in [&b"{not json"[..], b"\xff\xfe", b"[1, 2", b"{\"a\": }"] {
        let response = server.raw(Method::POST, "/_matrix/client/v3/login", bad.to_vec()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errcode"], "M_NOT_JSON", "{body}");
    }
    // Valid JSON of the wrong shape.
    for wrong in
        [json!({"type": "m.login.password", "password": 5}), json!([1, 2]), json!("string"), json!({"type": 7})]
    {
        assert_error(server.post("/_matrix/client/v3/login", None, wrong).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    let body = json!({"username": ["not", "a", "string"], "auth": {"type": "m.login.dummy"}});
    assert_error(server.post("/_matrix/client/v3/register", None, body).await, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // An empty body where all fields are optional is fine for ruma's request types.
    let alice = server.register("alice", "correct-horse").await;
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/logout", server.base_url))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn oversized_bodies(engine: Engine) {
    let server = TestServer::start_with(engine, |c| c.limits.max_request_bytes = 65_536).await;
    // Only the head is sent: the server must refuse on the declared length alone, without waiting
    // for (or reading) the body. Sending the body too would race the server closing the socket.
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let response = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let head = "POST /_matrix/client/v3/register HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/json\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["errcode"], "M_TOO_LARGE");
    assert!(body["error"].as_str().unwrap().contains("65536"));

    // A body under the limit is accepted as usual.
    let (status, _) = server.post("/_matrix/client/v3/login", None, json!({"padding": "x".repeat(60_000)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn cors_preflight(engine: Engine) {
    let server = TestServer::start(engine).await;
    let response = reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}/_matrix/client/v3/login", server.base_url))
        .header("origin", "https://app.element.io")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST") && methods.contains("PUT") && methods.contains("DELETE"), "{methods}");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");

    let (status, _) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let response = reqwest::Client::new()
        .get(format!("{}/_matrix/client/versions", server.base_url))
        .header("origin", "https://app.element.io")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response.headers().contains_key("x-request-id"));
}
