//! Media across servers: one Myelin fetches another's media over federation (multipart/mixed,
//! X-Matrix), keeps it, serves it and its thumbnails from its cache, and bounds what it takes.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Engine, Session, TestServer, engine_tests};

engine_tests!(
    remote_media_round_trips_and_is_served_from_the_cache,
    federation_media_requires_a_signature,
    remote_media_larger_than_the_limit_is_refused,
    location_parts_are_followed_through_the_address_guard,
);

fn http() -> reqwest::Client {
    // Test servers federate over TLS with self-signed certificates.
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
}

async fn upload(server: &TestServer, session: &Session, content_type: &str, name: &str, bytes: Vec<u8>) -> String {
    let response = http()
        .post(format!("{}/_matrix/media/v3/upload?filename={name}", server.base_url))
        .bearer_auth(&session.access_token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let prefix = format!("mxc://{}/", server.server_name);
    body["content_uri"].as_str().unwrap().strip_prefix(&prefix).unwrap().to_owned()
}

async fn get(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = http().get(format!("{}{path}", server.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn errcode(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["errcode"].as_str().unwrap_or_default().to_owned())
}

fn noise(len: usize) -> Vec<u8> {
    // Every byte value, CRLFs and things that look like boundaries included.
    let mut bytes: Vec<u8> = (0..len).map(|i| ((i * 7919) % 256) as u8).collect();
    bytes.extend_from_slice(b"\r\n--\r\n\r\n--boundary--\r\n");
    bytes
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::new_rgb8(width, height).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).unwrap();
    (image.width(), image.height())
}

async fn remote_media_round_trips_and_is_served_from_the_cache(engine: Engine) {
    let mut a = TestServer::start_federating(engine).await;
    // Legacy unauthenticated downloads are on at b, for everything it has.
    let b = TestServer::start_federating_with(engine, |c| c.media.legacy_unauthenticated_before_ts = i64::MAX).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let bytes = noise(300_000);
    let file_id = upload(&a, &alice, "application/octet-stream", "data.bin", bytes.clone()).await;
    let image_id = upload(&a, &alice, "image/png", "cat.png", png(1000, 500)).await;
    let whole_id = upload(&a, &alice, "image/png", "dog.png", png(1000, 500)).await;
    let origin = a.server_name.clone();

    // An unauthenticated request cannot make b fetch anything.
    let legacy = format!("/_matrix/media/v3/download/{origin}/{file_id}");
    assert_eq!(get(&b, &legacy, None).await.status(), StatusCode::NOT_FOUND);

    // Several requests at once for the same remote media: all get the exact bytes.
    let path = format!("/_matrix/client/v1/media/download/{origin}/{file_id}");
    let token = Some(bob.access_token.as_str());
    let (first, second, third) = tokio::join!(get(&b, &path, token), get(&b, &path, token), get(&b, &path, token));
    for response in [first, second, third] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/octet-stream");
        assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"data.bin\"");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
    }

    // A thumbnail of media b does not have is the origin's; of media it has, made here.
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{origin}/{image_id}?width=96&height=96&method=crop");
    let response = get(&b, &thumbnail, Some(&bob.access_token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(dimensions(&response.bytes().await.unwrap()), (96, 96));
    let whole = format!("/_matrix/client/v1/media/download/{origin}/{whole_id}");
    assert_eq!(get(&b, &whole, Some(&bob.access_token)).await.status(), StatusCode::OK);

    let response = get(&b, &legacy, None).await;
    assert_eq!(response.status(), StatusCode::OK, "once cached, the legacy endpoint serves it");
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);

    // Unknown media on a running origin is a plain 404; authentication is still required.
    let missing = format!("/_matrix/client/v1/media/download/{origin}/NoSuchMediaHere");
    assert_eq!(
        errcode(get(&b, &missing, Some(&bob.access_token)).await).await,
        (StatusCode::NOT_FOUND, "M_NOT_FOUND".into())
    );
    assert_eq!(get(&b, &path, None).await.status(), StatusCode::UNAUTHORIZED);
    // Dots pass as a DNS name but could name directories outside the store: nobody's media (not
    // a failed fetch, which would be a 502). (`..` itself is collapsed by any URL parser.)
    let escape = "/_matrix/client/v1/media/download/.../abcdefgh";
    assert_eq!(errcode(get(&b, escape, Some(&bob.access_token)).await).await.0, StatusCode::NOT_FOUND);

    // With the origin gone, what was fetched is still served: content, the origin's thumbnail,
    // and new thumbnails of what b has whole.
    a.stop().await;
    let response = get(&b, &path, Some(&bob.access_token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
    let response = get(&b, &thumbnail, Some(&bob.access_token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(dimensions(&response.bytes().await.unwrap()), (96, 96));
    let scaled = format!("/_matrix/client/v1/media/thumbnail/{origin}/{whole_id}?width=320&height=240&method=scale");
    let response = get(&b, &scaled, Some(&bob.access_token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(dimensions(&response.bytes().await.unwrap()), (320, 160));
    let other_size = format!("/_matrix/client/v1/media/thumbnail/{origin}/{image_id}?width=320&height=240");
    assert_eq!(get(&b, &other_size, Some(&bob.access_token)).await.status(), StatusCode::BAD_GATEWAY);
    let response = get(&b, &missing, Some(&bob.access_token)).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "an unreachable origin is a gateway error");
}

async fn federation_media_requires_a_signature(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let alice = a.register("alice", "password-alice").await;
    let media_id = upload(&a, &alice, "text/plain", "a.txt", b"hello".to_vec()).await;
    for path in [
        format!("/_matrix/federation/v1/media/download/{media_id}"),
        format!("/_matrix/federation/v1/media/thumbnail/{media_id}?width=32&height=32"),
    ] {
        let (status, code) = errcode(get(&a, &path, None).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED"), "{path}");
        // A user's access token is no server signature.
        let (status, _) = errcode(get(&a, &path, Some(&alice.access_token)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

async fn remote_media_larger_than_the_limit_is_refused(engine: Engine) {
    let a = TestServer::start_federating(engine).await;
    let b = TestServer::start_federating_with(engine, |config| config.media.max_upload_bytes = 10_000).await;
    let alice = a.register("alice", "password-alice").await;
    let bob = b.register("bob", "password-bob").await;
    let big = upload(&a, &alice, "application/octet-stream", "big.bin", noise(50_000)).await;
    let small = upload(&a, &alice, "application/octet-stream", "small.bin", noise(5_000)).await;
    let origin = &a.server_name;

    let path = format!("/_matrix/client/v1/media/download/{origin}/{big}");
    for _ in 0..2 {
        // Refused again the second time: nothing partial was kept.
        let (status, code) = errcode(get(&b, &path, Some(&bob.access_token)).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::BAD_GATEWAY, "M_TOO_LARGE"));
    }
    let response =
        get(&b, &format!("/_matrix/client/v1/media/download/{origin}/{small}"), Some(&bob.access_token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().to_vec(), noise(5_000));
}

/// Serves `routes` over plain HTTP or TLS (as a federation peer) on 127.0.0.1; returns the port.
async fn serve(router: axum::Router, tls: bool) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    if tls {
        let (cert, key) = crate::common::test_certificate();
        let certificates = homeserver::tls::Certificates::load(&cert, &key).unwrap();
        let listener = homeserver::tls::TlsListener::new(listener, certificates).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    } else {
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    }
    port
}

fn multipart_location(location: &str) -> axum::response::Response {
    let body = format!(
        "\r\n--b0undary\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--b0undary\r\nLocation: {location}\r\n\r\n\r\n--b0undary--\r\n"
    );
    http::Response::builder()
        .header("content-type", "multipart/mixed; boundary=b0undary")
        .body(axum::body::Body::from(body))
        .unwrap()
}

/// An origin that is not Myelin: its media is on a "CDN" (a `Location` part), or its answers are
/// broken or errors with details a client must not see.
async fn location_parts_are_followed_through_the_address_guard(engine: Engine) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let image = png(200, 100);
    let served = image.clone();
    let cdn = axum::Router::new().route(
        "/file",
        axum::routing::get(move || {
            let served = served.clone();
            async move {
                http::Response::builder()
                    .header("content-type", "image/png")
                    .header("content-disposition", "inline; filename=\"cdn.png\"")
                    .body(axum::body::Body::from(served))
                    .unwrap()
            }
        }),
    );
    let cdn_port = serve(cdn, false).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let origin = axum::Router::new().route(
        "/_matrix/federation/v1/media/download/{media_id}",
        axum::routing::get(move |axum::extract::Path(media_id): axum::extract::Path<String>| {
            let counter = counter.clone();
            async move {
                match media_id.as_str() {
                    "elsewhere" => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that concurrent requests overlap.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        multipart_location(&format!("http://127.0.0.1:{cdn_port}/file"))
                    }
                    "broken" => http::Response::builder()
                        .header("content-type", "multipart/mixed; boundary=x")
                        .body(axum::body::Body::from("not multipart at all"))
                        .unwrap(),
                    _ => http::Response::builder()
                        .status(500)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(r#"{"errcode":"M_UNKNOWN","error":"secret internal detail"}"#))
                        .unwrap(),
                }
            }
        }),
    );
    let origin = format!("127.0.0.1:{}", serve(origin, true).await);

    let b = TestServer::start_federating_with(engine, |config| {
        config.media.url_preview_ip_allowlist = vec!["127.0.0.1".into()];
    })
    .await;
    let bob = b.register("bob", "password-bob").await;
    let token = Some(bob.access_token.as_str());
    let path = format!("/_matrix/client/v1/media/download/{origin}/elsewhere");
    let (first, second, third) = tokio::join!(get(&b, &path, token), get(&b, &path, token), get(&b, &path, token));
    for response in [first, second, third] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "image/png");
        assert_eq!(response.headers()["content-disposition"], "inline; filename=\"cdn.png\"");
        assert_eq!(response.bytes().await.unwrap().to_vec(), image);
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1, "concurrent requests fetch once");
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{origin}/elsewhere?width=32&height=32&method=crop");
    let response = get(&b, &thumbnail, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(dimensions(&response.bytes().await.unwrap()), (32, 32));
    assert_eq!(asked.load(Ordering::SeqCst), 1, "thumbnails are made from the cached copy");

    for media_id in ["broken", "failing"] {
        let response = get(&b, &format!("/_matrix/client/v1/media/download/{origin}/{media_id}"), token).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{media_id}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("secret"), "the origin's own error stays out: {text}");
    }

    // Without the allow-list, the CDN on loopback is out of reach.
    let guarded = TestServer::start_federating(engine).await;
    let carol = guarded.register("carol", "password-carol").await;
    let (status, code) = errcode(get(&guarded, &path, Some(&carol.access_token)).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{code}");
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}
