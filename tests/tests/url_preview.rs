//! URL previews against a tiny HTTP server on loopback: off by default, OpenGraph through
//! redirects with the image stored as media, cached, size-bounded, and never reaching
//! non-public addresses unless the allow-list says so.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use image::{DynamicImage, ImageFormat};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Engine, Session, TestServer, encode, engine_tests};

engine_tests!(
    previews_are_off_by_default,
    previews_read_opengraph_through_redirects,
    previews_refuse_non_public_addresses
);

/// A canned answer: status, extra header lines, content type and body.
#[derive(Clone)]
struct Page {
    status: u16,
    headers: String,
    content_type: &'static str,
    body: Vec<u8>,
}

fn html(body: &str) -> Page {
    Page {
        status: 200,
        headers: String::new(),
        content_type: "text/html; charset=utf-8",
        body: body.as_bytes().to_vec(),
    }
}

fn redirect(location: &str) -> Page {
    Page { status: 302, headers: format!("Location: {location}\r\n"), content_type: "text/plain", body: Vec::new() }
}

/// Serves `pages` by path on 127.0.0.1; returns the port and how often each path was asked for.
async fn serve(pages: HashMap<&'static str, Page>) -> (u16, Arc<std::sync::Mutex<HashMap<String, usize>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let pages = pages.clone();
            let hits = counted.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                if path.starts_with("/slow") {
                    // Long enough for concurrent previews to overlap.
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
                let page = pages.get(path.as_str()).cloned().unwrap_or(Page {
                    status: 404,
                    headers: String::new(),
                    content_type: "text/plain",
                    body: b"no".to_vec(),
                });
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
                    page.status,
                    page.content_type,
                    page.body.len(),
                    page.headers
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&page.body).await;
            });
        }
    });
    (port, hits)
}

async fn preview(server: &TestServer, session: &Session, url: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v1/media/preview_url?url={}&ts=0", encode(url)), session.token()).await
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::new_rgb8(width, height).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

async fn previews_are_off_by_default(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "password-alice").await;
    let (status, body) = preview(&server, &alice, "https://example.org/").await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED")), "{body}");
}

async fn previews_read_opengraph_through_redirects(engine: Engine) {
    let cat = png(400, 300);
    let mut big = "<html><head>".to_owned() + &" ".repeat(3 * 1024 * 1024);
    big.push_str("<meta property=\"og:title\" content=\"past the limit\"></head></html>");
    let pages = HashMap::from([
        ("/start", redirect("/page")),
        (
            "/page",
            html(
                "<html><head><title>Fallback</title>\
                 <meta property=\"og:title\" content=\"Cats &amp; dogs\">\
                 <meta property=\"og:description\" content=\"All about pets\">\
                 <meta property=\"og:image\" content=\"/cat.png\"></head></html>",
            ),
        ),
        ("/cat.png", Page { status: 200, headers: String::new(), content_type: "image/png", body: cat.clone() }),
        ("/plain", html("<title>Just a title</title>")),
        ("/slow", html("<meta property=\"og:image\" content=\"/cat.png\"><title>Slow</title>")),
        ("/big", html(&big)),
    ]);
    let (port, hits) = serve(pages).await;
    let server = TestServer::start_with(engine, |config| {
        config.media.url_previews = true;
        config.media.url_preview_ip_allowlist = vec!["127.0.0.1".into()];
    })
    .await;
    let alice = server.register("alice", "password-alice").await;

    let url = format!("http://127.0.0.1:{port}/start");
    let (status, body) = preview(&server, &alice, &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["og:title"], "Cats & dogs");
    assert_eq!(body["og:description"], "All about pets");
    assert_eq!(body["og:image:type"], "image/png");
    assert_eq!(body["matrix:image:size"], cat.len());
    assert_eq!((body["og:image:width"].as_u64(), body["og:image:height"].as_u64()), (Some(400), Some(300)));
    let image = body["og:image"].as_str().unwrap();
    let media = image.strip_prefix("mxc://").expect("the image is our media");
    let response = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v1/media/download/{media}", server.base_url))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().to_vec(), cat);

    // The same URL again is answered from the cache.
    let (status, again) = preview(&server, &alice, &url).await;
    assert_eq!((status, &again), (StatusCode::OK, &body));
    assert_eq!(hits.lock().unwrap()["/page"], 1);

    // Concurrent previews of one URL fetch the page (and store its image) once.
    let slow = format!("http://127.0.0.1:{port}/slow");
    let (first, second, third) =
        tokio::join!(preview(&server, &alice, &slow), preview(&server, &alice, &slow), preview(&server, &alice, &slow));
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!((&first.1["og:title"], &first.1, &first.1), (&Value::from("Slow"), &second.1, &third.1));
    assert_eq!(hits.lock().unwrap()["/slow"], 1);

    let (_, plain) = preview(&server, &alice, &format!("http://127.0.0.1:{port}/plain")).await;
    assert_eq!(plain["og:title"], "Just a title");
    // Only the first MiB of a page is read.
    let (status, big) = preview(&server, &alice, &format!("http://127.0.0.1:{port}/big")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(big.get("og:title").is_none(), "{big}");
}

async fn previews_refuse_non_public_addresses(engine: Engine) {
    let (port, hits) = serve(HashMap::from([("/page", html("<title>secret</title>"))])).await;
    let open = TestServer::start_with(engine, |config| config.media.url_previews = true).await;
    let alice = open.register("alice", "password-alice").await;
    for url in [
        format!("http://127.0.0.1:{port}/page"),
        format!("http://localhost:{port}/page"),
        format!("http://[::1]:{port}/page"),
    ] {
        let (status, body) = preview(&open, &alice, &url).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{url}: {body}");
    }
    assert!(hits.lock().unwrap().is_empty(), "nothing reached the loopback server");
    let (status, _) = preview(&open, &alice, "file:///etc/passwd").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Allowing 127.0.0.1 does not allow a redirect to another loopback address.
    let (port, _) = serve(HashMap::from([("/escape", redirect("http://127.0.0.2:9/"))])).await;
    let allowed = TestServer::start_with(engine, |config| {
        config.media.url_previews = true;
        config.media.url_preview_ip_allowlist = vec!["127.0.0.1/32".into()];
    })
    .await;
    let bob = allowed.register("bob", "password-bob").await;
    let (status, body) = preview(&allowed, &bob, &format!("http://127.0.0.1:{port}/escape")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
