//! The media repository over HTTP: uploads (plain and asynchronous), authenticated downloads,
//! thumbnails, limits, hostile images and the headers that make serving uploads safe.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Engine, Session, TestServer, assert_error, engine_tests};

engine_tests!(
    upload_and_download_round_trip,
    upload_limits_hold_while_streaming,
    thumbnails_of_common_formats,
    hostile_images_are_refused,
    asynchronous_upload,
);

const PASSWORD: &str = "correct-horse";

async fn upload(
    server: &TestServer,
    session: &Session,
    content_type: &str,
    query: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload{query}", server.base_url))
        .bearer_auth(&session.access_token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// Uploads and returns the media ID from the `mxc://` URI.
async fn upload_ok(server: &TestServer, session: &Session, content_type: &str, bytes: Vec<u8>) -> String {
    let response = upload(server, session, content_type, "", bytes).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let uri = body["content_uri"].as_str().unwrap();
    let prefix = format!("mxc://{}/", server.server_name);
    uri.strip_prefix(&prefix).expect("an mxc URI of this server").to_owned()
}

async fn get(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn upload_and_download_round_trip(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let response =
        upload(&server, &alice, "application/x-test", "?filename=report%20%E2%98%95.bin", bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let uri = response.json::<Value>().await.unwrap()["content_uri"].as_str().unwrap().to_owned();
    let media_id = uri.rsplit('/').next().unwrap();
    let path = format!("/_matrix/client/v1/media/download/{}/{media_id}", server.server_name);

    // Any signed-in user can fetch it, byte for byte, with headers that keep browsers safe.
    let response = get(&server, &path, bob.token()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/x-test");
    assert_eq!(header(&response, "content-disposition"), "attachment; filename*=utf-8''report%20%E2%98%95.bin");
    assert!(header(&response, "content-security-policy").starts_with("sandbox; default-src 'none'"));
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(header(&response, "cross-origin-resource-policy"), "cross-origin");
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);

    // A file name in the path overrides the stored one; images are shown inline.
    let png_id = upload_ok(&server, &alice, "image/png", png(4, 4)).await;
    let named = format!("/_matrix/client/v1/media/download/{}/{png_id}/cat.png", server.server_name);
    let response = get(&server, &named, alice.token()).await;
    assert_eq!(header(&response, "content-disposition"), "inline; filename=\"cat.png\"");

    // Authenticated media needs a token; the legacy endpoints are off by default.
    assert_error(error_of(get(&server, &path, None).await).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let legacy = format!("/_matrix/media/v3/download/{}/{media_id}", server.server_name);
    assert_error(error_of(get(&server, &legacy, None).await).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let unknown = format!("/_matrix/client/v1/media/download/{}/nosuchmedia", server.server_name);
    assert_error(error_of(get(&server, &unknown, alice.token()).await).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let traversal = format!("/_matrix/client/v1/media/download/{}/..%2F..%2Fmyelin.db", server.server_name);
    assert_error(error_of(get(&server, &traversal, alice.token()).await).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let (status, config) = server.get("/_matrix/client/v1/media/config", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["m.upload.size"], server.state.config.media.max_upload_bytes);

    // With a legacy cut-off, media uploaded before it is served without a token.
    let server = TestServer::start_with(engine, |c| c.media.legacy_unauthenticated_before_ts = i64::MAX).await;
    let carol = server.register("carol", PASSWORD).await;
    let id = upload_ok(&server, &carol, "text/plain", b"old style".to_vec()).await;
    let legacy = format!("/_matrix/media/v3/download/{}/{id}", server.server_name);
    let response = get(&server, &legacy, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "old style");
}

/// Sends an upload with chunked transfer encoding (no Content-Length), so only the streaming
/// check can stop it. Returns the status line and body.
async fn chunked_upload(server: &TestServer, token: &str, chunks: usize, chunk_size: usize) -> String {
    let address = server.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; chunk_size];
    for _ in 0..chunks {
        let framed = [format!("{chunk_size:x}\r\n").into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // The server answered and closed early.
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

async fn upload_limits_hold_while_streaming(engine: Engine) {
    let server = TestServer::start_with(engine, |c| c.media.max_upload_bytes = 1_000_000).await;
    let alice = server.register("alice", PASSWORD).await;
    let declared = upload(&server, &alice, "application/octet-stream", "", vec![0; 1_000_001]).await;
    assert_error(error_of(declared).await, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    let streamed = chunked_upload(&server, &alice.access_token, 40, 50_000).await;
    assert!(streamed.starts_with("HTTP/1.1 413"), "{streamed}");
    assert!(streamed.contains("M_TOO_LARGE"), "{streamed}");
    let fits = chunked_upload(&server, &alice.access_token, 10, 50_000).await;
    assert!(fits.starts_with("HTTP/1.1 200"), "{fits}");
    // Nothing of the refused uploads is left behind.
    let temp = server.state.config.effective_media_path().join("tmp");
    assert_eq!(std::fs::read_dir(temp).unwrap().count(), 0);
    // Uploads bigger than the JSON request limit are fine when media allows them.
    assert_eq!(
        upload(&server, &alice, "application/octet-stream", "", vec![7; 900_000]).await.status(),
        StatusCode::OK
    );
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn png(width: u32, height: u32) -> Vec<u8> {
    encode(&DynamicImage::new_rgba8(width, height), ImageFormat::Png)
}

/// Fetches a thumbnail and returns its content type and decoded dimensions.
async fn thumbnail_of(server: &TestServer, session: &Session, media_id: &str, query: &str) -> (String, u32, u32) {
    let path = format!("/_matrix/client/v1/media/thumbnail/{}/{media_id}?{query}", server.server_name);
    let response = get(server, &path, session.token()).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let content_type = header(&response, "content-type");
    let image = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    (content_type, image.width(), image.height())
}

async fn thumbnails_of_common_formats(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let wide = DynamicImage::new_rgb8(1000, 500);
    let png_id = upload_ok(&server, &alice, "image/png", encode(&wide, ImageFormat::Png)).await;
    let jpeg_id =
        upload_ok(&server, &alice, "image/jpeg", encode(&DynamicImage::new_rgb8(800, 800), ImageFormat::Jpeg)).await;
    let gif_id =
        upload_ok(&server, &alice, "image/gif", encode(&DynamicImage::new_rgba8(300, 200), ImageFormat::Gif)).await;
    let webp_id =
        upload_ok(&server, &alice, "image/webp", encode(&DynamicImage::new_rgba8(400, 400), ImageFormat::WebP)).await;

    assert_eq!(
        thumbnail_of(&server, &alice, &png_id, "width=32&height=32&method=crop").await,
        ("image/png".into(), 32, 32)
    );
    assert_eq!(
        thumbnail_of(&server, &alice, &png_id, "width=320&height=240&method=scale").await,
        ("image/png".into(), 320, 160)
    );
    // A request between sizes gets the next size up.
    assert_eq!(
        thumbnail_of(&server, &alice, &png_id, "width=50&height=50&method=crop").await,
        ("image/png".into(), 96, 96)
    );
    assert_eq!(thumbnail_of(&server, &alice, &jpeg_id, "width=640&height=480").await, ("image/jpeg".into(), 480, 480));
    assert_eq!(
        thumbnail_of(&server, &alice, &gif_id, "width=96&height=96&method=crop").await,
        ("image/png".into(), 96, 96)
    );
    assert_eq!(thumbnail_of(&server, &alice, &webp_id, "width=320&height=240").await, ("image/png".into(), 240, 240));
    // Never enlarged.
    let small_id = upload_ok(&server, &alice, "image/png", png(20, 10)).await;
    assert_eq!(thumbnail_of(&server, &alice, &small_id, "width=800&height=600").await, ("image/png".into(), 20, 10));

    // Made once, then reused.
    let origin = server.server_name.as_str();
    let stored = server.state.storage.thumbnail(origin, &png_id, 32, 32, "crop").await.unwrap();
    assert!(stored.is_some_and(|t| t.width == 32 && t.content_type == "image/png"));
    thumbnail_of(&server, &alice, &png_id, "width=32&height=32&method=crop").await;

    // Not an image: no thumbnail. Bad parameters: 400.
    let text_id = upload_ok(&server, &alice, "text/plain", b"hello".to_vec()).await;
    let path = |id: &str, q: &str| format!("/_matrix/client/v1/media/thumbnail/{}/{id}?{q}", server.server_name);
    let response = get(&server, &path(&text_id, "width=32&height=32"), alice.token()).await;
    assert_error(error_of(response).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = get(&server, &path(&png_id, "width=32"), alice.token()).await;
    assert_error(error_of(response).await, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    let response = get(&server, &path(&png_id, "width=32&height=32&method=stretch"), alice.token()).await;
    assert_error(error_of(response).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = get(&server, &path(&png_id, "width=32&height=32"), None).await;
    assert_error(error_of(response).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

/// A valid PNG whose header claims `width`×`height`, with a single tiny data chunk: a classic
/// decompression bomb shape.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(1, 1);
    // The IHDR chunk starts after the 8-byte signature: length(4) "IHDR"(4) data(13) crc(4).
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

async fn hostile_images_are_refused(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", PASSWORD).await;
    let bomb = upload_ok(&server, &alice, "image/png", png_claiming(100_000, 100_000)).await;
    let path =
        format!("/_matrix/client/v1/media/thumbnail/{}/{bomb}?width=96&height=96&method=crop", server.server_name);
    let response = get(&server, &path, alice.token()).await;
    assert_error(error_of(response).await, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");

    let garbage = upload_ok(&server, &alice, "image/png", b"\x89PNG but not really".to_vec()).await;
    let path = format!("/_matrix/client/v1/media/thumbnail/{}/{garbage}?width=96&height=96", server.server_name);
    assert_error(error_of(get(&server, &path, alice.token()).await).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // The server is unharmed.
    assert_eq!(
        thumbnail_of(
            &server,
            &alice,
            &upload_ok(&server, &alice, "image/png", png(64, 64)).await,
            "width=32&height=32&method=crop"
        )
        .await
        .1,
        32
    );
}

async fn asynchronous_upload(engine: Engine) {
    let server = TestServer::start_with(engine, |c| c.media.max_pending_uploads = 2).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let (status, created) = server.post("/_matrix/media/v1/create", alice.token(), serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert!(created["unused_expires_at"].as_i64().unwrap() > 0);
    let media_id = created["content_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let download = format!("/_matrix/client/v1/media/download/{}/{media_id}", server.server_name);

    let response = get(&server, &format!("{download}?timeout_ms=100"), alice.token()).await;
    assert_error(error_of(response).await, StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED");

    let put = |session: &Session, bytes: &'static [u8]| {
        reqwest::Client::new()
            .put(format!(
                "{}/_matrix/media/v3/upload/{}/{media_id}?filename=late.txt",
                server.base_url, server.server_name
            ))
            .bearer_auth(session.access_token.clone())
            .header("content-type", "text/plain")
            .body(bytes)
            .send()
    };
    // A download waiting for the upload gets it as soon as it lands.
    let long_wait = format!("{download}?timeout_ms=10000");
    let waiting = get(&server, &long_wait, bob.token());
    let uploading = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_error(error_of(put(&bob, b"not yours").await.unwrap()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert_eq!(put(&alice, b"arrived later").await.unwrap().status(), StatusCode::OK);
    };
    let (response, ()) = tokio::join!(waiting, uploading);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-disposition"), "inline; filename=\"late.txt\"");
    assert_eq!(response.text().await.unwrap(), "arrived later");
    let again = put(&alice, b"overwrite").await.unwrap();
    assert_error(error_of(again).await, StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA");

    // At most `max_pending_uploads` reservations wait at once.
    for _ in 0..2 {
        assert_eq!(
            server.post("/_matrix/media/v1/create", alice.token(), serde_json::json!({})).await.0,
            StatusCode::OK
        );
    }
    let third = server.post("/_matrix/media/v1/create", alice.token(), serde_json::json!({})).await;
    assert_error(third, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
}
