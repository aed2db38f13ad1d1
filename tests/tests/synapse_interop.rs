//! Federation with a real Synapse (from PyPI) on loopback: a Synapse user joins a Myelin room
//! and a Myelin user joins a Synapse room, with messages both ways each time; each fetches the
//! other's media (multipart/mixed both ways) and thumbnails.
//!
//! Skipped with a visible message where Synapse is not installed, unless
//! `MYELIN_REQUIRE_REAL_CLIENTS=1` (set by `.ci/run`, which installs it) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, Session, TestServer, engine_tests, message_bodies, temp_dir, test_certificate};

engine_tests!(synapse_and_myelin_join_each_others_rooms, synapse_and_myelin_fetch_each_others_media);

fn synapse_available() -> bool {
    let available = Command::new("python3")
        .args(["-c", "import synapse.app.homeserver"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        assert!(
            std::env::var("MYELIN_REQUIRE_REAL_CLIENTS").is_err(),
            "Synapse is required here: pip install -r tests/clients/requirements.txt"
        );
        eprintln!("skipped: Synapse is not installed (pip install -r tests/clients/requirements.txt)");
    }
    available
}

/// A Synapse process serving client and federation traffic over TLS on one loopback port.
struct Synapse {
    child: Child,
    server_name: String,
    base_url: String,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn synapse_config(dir: &Path, port: u16) -> String {
    let (cert, key) = test_certificate();
    let unlimited = "{per_second: 10000, burst_count: 10000}";
    format!(
        r#"server_name: "127.0.0.1:{port}"
pid_file: {dir}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    resources:
      - names: [client, federation]
tls_certificate_path: {cert}
tls_private_key_path: {key}
database:
  name: sqlite3
  args:
    database: {dir}/homeserver.db
media_store_path: {dir}/media
signing_key_path: {dir}/signing.key
report_stats: false
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "interop-test"
macaroon_secret_key: "interop-test-macaroon"
form_secret: "interop-test-form"
trusted_key_servers: []
suppress_key_server_warning: true
federation_verify_certificates: false
ip_range_whitelist: ["127.0.0.1"]
ip_range_blacklist: []
federation_ip_range_blacklist: []
presence:
  enabled: false
rc_message: {unlimited}
rc_registration: {unlimited}
rc_joins:
  local: {unlimited}
  remote: {unlimited}
rc_login:
  address: {unlimited}
  account: {unlimited}
  failed_attempts: {unlimited}
rc_federation:
  window_size: 1000
  sleep_limit: 10000
  sleep_delay: 1
  reject_limit: 10000
  concurrent: 100
"#,
        dir = dir.display(),
        cert = cert.display(),
        key = key.display(),
    )
}

impl Synapse {
    async fn start() -> Self {
        let dir = temp_dir("synapse");
        let port = free_port();
        let config = dir.join("homeserver.yaml");
        std::fs::write(&config, synapse_config(&dir, port)).unwrap();
        let generated = Command::new("python3")
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(&config)
            .output()
            .expect("python3 runs");
        assert!(generated.status.success(), "synapse --generate-keys: {}", String::from_utf8_lossy(&generated.stderr));
        let log = std::fs::File::create(dir.join("synapse.log")).unwrap();
        let child = Command::new("python3")
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("synapse starts");
        let synapse = Self {
            child,
            server_name: format!("127.0.0.1:{port}"),
            base_url: format!("https://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = synapse.http.get(format!("{}/_matrix/client/versions", synapse.base_url)).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return synapse;
            }
            assert!(Instant::now() < deadline, "Synapse did not start; log:\n{}", synapse.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("synapse.log")).unwrap_or_default();
        text.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, localpart: &str) -> Session {
        let body = json!({"username": localpart, "password": "interop-password", "auth": {"type": "m.login.dummy"}});
        let (status, response) =
            self.call(reqwest::Method::POST, "/_matrix/client/v3/register", None, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        Session::from_response(&response)
    }

    /// Syncs until a message with `body` shows in `room_id`.
    async fn wait_for_message(&self, session: &Session, room_id: &str, body: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut since: Option<String> = None;
        loop {
            let query = since.as_ref().map_or("timeout=0".to_owned(), |s| format!("timeout=1000&since={s}"));
            let (status, sync) = self
                .call(reqwest::Method::GET, &format!("/_matrix/client/v3/sync?{query}"), session.token(), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{sync}");
            if message_bodies(&sync["rooms"]["join"][room_id]["timeline"]["events"]).iter().any(|b| b == body) {
                return;
            }
            since = sync["next_batch"].as_str().map(str::to_owned);
            assert!(Instant::now() < deadline, "Synapse never showed {body:?}; log:\n{}", self.log());
        }
    }
}

async fn wait_for_message_on_myelin(server: &TestServer, session: &Session, room_id: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) =
            server.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"), session.token()).await;
        if message_bodies(&page["chunk"]).iter().any(|b| b == body) {
            return;
        }
        assert!(Instant::now() < deadline, "Myelin never showed {body:?}: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn synapse_and_myelin_join_each_others_rooms(engine: Engine) {
    if !synapse_available() {
        return;
    }
    let synapse = Synapse::start().await;
    let myelin = TestServer::start_federating(engine).await;
    let alice = myelin.register("alice", "password-alice").await;
    let sam = synapse.register("sam").await;

    // A Synapse user joins a Myelin room: Synapse verifies our keys, template, state and
    // auth chain.
    let room_id = myelin.create_room(&alice, json!({"preset": "public_chat", "name": "Myelin room"})).await;
    let (status, body) = synapse
        .call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{room_id}?server_name={}", myelin.server_name),
            sam.token(),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "join through Myelin: {body}\n{}", synapse.log());
    myelin.send_text(&alice, &room_id, "hello Synapse").await;
    synapse.wait_for_message(&sam, &room_id, "hello Synapse").await;
    let (status, body) = synapse
        .call(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1"),
            sam.token(),
            Some(json!({"msgtype": "m.text", "body": "hello Myelin"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_message_on_myelin(&myelin, &alice, &room_id, "hello Myelin").await;

    // A Myelin user joins a Synapse room: we verify Synapse's state and auth chain.
    let (status, created) = synapse
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            sam.token(),
            Some(json!({"preset": "public_chat", "name": "Synapse room", "room_version": "10"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let synapse_room = created["room_id"].as_str().unwrap().to_owned();
    let (status, body) = myelin
        .post(&format!("/_matrix/client/v3/join/{synapse_room}?via={}", synapse.server_name), alice.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "join through Synapse: {body}\n{}", synapse.log());
    let name = myelin.state_content(&alice, &synapse_room, "m.room.name", "").await;
    assert_eq!(name["name"], "Synapse room");
    myelin.send_text(&alice, &synapse_room, "from Myelin into Synapse's room").await;
    synapse.wait_for_message(&sam, &synapse_room, "from Myelin into Synapse's room").await;
    let (status, _) = synapse
        .call(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{synapse_room}/send/m.room.message/t2"),
            sam.token(),
            Some(json!({"msgtype": "m.text", "body": "Synapse answers"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_message_on_myelin(&myelin, &alice, &synapse_room, "Synapse answers").await;
}

/// Uploads to any server with a client API; returns the media ID.
async fn upload_media(base_url: &str, server_name: &str, token: &str, content_type: &str, bytes: Vec<u8>) -> String {
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let response = http
        .post(format!("{base_url}/_matrix/media/v3/upload?filename=file"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["content_uri"].as_str().unwrap().strip_prefix(&format!("mxc://{server_name}/")).unwrap().to_owned()
}

/// Downloads `path` with a token; returns the status, content type and bytes.
async fn fetch_media(base_url: &str, path: &str, token: &str) -> (StatusCode, String, Vec<u8>) {
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let response = http.get(format!("{base_url}{path}")).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

fn test_png() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::new_rgb8(640, 480)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).unwrap();
    (image.width(), image.height())
}

async fn synapse_and_myelin_fetch_each_others_media(engine: Engine) {
    if !synapse_available() {
        return;
    }
    let synapse = Synapse::start().await;
    let myelin = TestServer::start_federating(engine).await;
    let alice = myelin.register("alice", "password-alice").await;
    let sam = synapse.register("sam").await;
    let (alice_token, sam_token) = (alice.access_token.as_str(), sam.access_token.as_str());
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let png = test_png();

    // Synapse fetches Myelin's media: our multipart/mixed, our thumbnails.
    let file =
        upload_media(&myelin.base_url, &myelin.server_name, alice_token, "application/octet-stream", bytes.clone())
            .await;
    let image = upload_media(&myelin.base_url, &myelin.server_name, alice_token, "image/png", png.clone()).await;
    let origin = &myelin.server_name;
    let (status, content_type, got) =
        fetch_media(&synapse.base_url, &format!("/_matrix/client/v1/media/download/{origin}/{file}"), sam_token).await;
    assert_eq!(status, StatusCode::OK, "Synapse fetching our media; log:\n{}", synapse.log());
    assert_eq!(content_type, "application/octet-stream");
    assert!(got == bytes, "Synapse got {} bytes instead of the {} uploaded", got.len(), bytes.len());
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{origin}/{image}?width=96&height=96&method=crop");
    let (status, _, got) = fetch_media(&synapse.base_url, &thumbnail, sam_token).await;
    assert_eq!(status, StatusCode::OK, "Synapse fetching our thumbnail; log:\n{}", synapse.log());
    assert_eq!(dimensions(&got), (96, 96));

    // Myelin fetches Synapse's media: Synapse's multipart/mixed, its thumbnails.
    let file =
        upload_media(&synapse.base_url, &synapse.server_name, sam_token, "application/octet-stream", bytes.clone())
            .await;
    let image = upload_media(&synapse.base_url, &synapse.server_name, sam_token, "image/png", png.clone()).await;
    let origin = &synapse.server_name;
    let (status, content_type, got) =
        fetch_media(&myelin.base_url, &format!("/_matrix/client/v1/media/download/{origin}/{file}"), alice_token).await;
    assert_eq!(status, StatusCode::OK, "fetching Synapse's media; log:\n{}", synapse.log());
    assert_eq!(content_type, "application/octet-stream");
    assert!(got == bytes, "got {} bytes instead of the {} uploaded", got.len(), bytes.len());
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{origin}/{image}?width=96&height=96&method=crop");
    let (status, _, got) = fetch_media(&myelin.base_url, &thumbnail, alice_token).await;
    assert_eq!(status, StatusCode::OK, "fetching Synapse's thumbnail; log:\n{}", synapse.log());
    assert_eq!(dimensions(&got), (96, 96));
    let (status, _, got) =
        fetch_media(&myelin.base_url, &format!("/_matrix/client/v1/media/download/{origin}/{image}"), alice_token)
            .await;
    assert_eq!(status, StatusCode::OK);
    assert!(got == png);
}
