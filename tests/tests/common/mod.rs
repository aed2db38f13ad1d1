//! Test harness: a real Myelin router served on 127.0.0.1:0, on SQLite or PostgreSQL, with an
//! HTTP client and helpers for the flows most tests need.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use homeserver::config::{Config, RegistrationMode};
use homeserver::state::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Generates one test per database engine from an async body taking `Engine`.
macro_rules! engine_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::common::postgres_url().is_none() {
                        eprintln!("skipped: MYELIN_TEST_POSTGRES is not set");
                        return;
                    }
                    super::$name($crate::common::Engine::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use engine_tests;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub fn postgres_url() -> Option<String> {
    std::env::var("MYELIN_TEST_POSTGRES").ok().filter(|url| !url.is_empty())
}

pub fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    getrandom_fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn getrandom_fill(bytes: &mut [u8]) {
    // Good enough for unique names: time, process and a counter.
    static COUNTER: AtomicI64 = AtomicI64::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
    let mut x = seed | 1;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// A fresh, empty temporary directory.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("myelin-{label}-{}", random_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A database URL for a fresh, empty database on `engine`.
pub async fn fresh_database_url(engine: Engine, data_dir: &std::path::Path) -> String {
    match engine {
        Engine::Sqlite => format!("sqlite://{}?mode=rwc", data_dir.join("myelin.db").display()),
        Engine::Postgres => {
            let base = postgres_url().expect("MYELIN_TEST_POSTGRES");
            let schema = format!("it_{}", random_suffix());
            let pool = sqlx::PgPool::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await.unwrap();
            pool.close().await;
            let separator = if base.contains('?') { '&' } else { '?' };
            format!("{base}{separator}options[search_path]={schema}")
        }
    }
}

/// A clock tests can move forward.
#[derive(Debug)]
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct TestServer {
    pub base_url: String,
    pub server_name: String,
    pub clock: Arc<TestClock>,
    pub state: homeserver::AppState,
    http: reqwest::Client,
    /// What a restart needs: the same configuration (database, name) and signing key.
    config: Config,
    key_file: String,
    tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
}

pub const SERVER_NAME: &str = "test.myelin.local";

impl TestServer {
    pub async fn start(engine: Engine) -> Self {
        Self::start_with(engine, |_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration.
    pub async fn start_with(engine: Engine, adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = test_config(engine, adjust).await;
        let key = federation::ServerSigningKey::generate();
        Self::launch(config, key, listener, false).await
    }

    /// Starts a server that federates: named after its address (`127.0.0.1:<port>`) and served
    /// over TLS with a self-signed certificate, which peers accept because test servers do not
    /// verify certificates (`federation.verify_tls = false`).
    pub async fn start_federating(engine: Engine) -> Self {
        Self::start_federating_with(engine, |_| {}).await
    }

    pub async fn start_federating_with(engine: Engine, adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let name = listener.local_addr().unwrap().to_string();
        let config = test_config(engine, |config| {
            config.server_name = name;
            config.federation.verify_tls = false;
            adjust(config);
        })
        .await;
        Self::launch(config, federation::ServerSigningKey::generate(), listener, true).await
    }

    /// Stops the server: it no longer answers, and its background tasks wind down.
    pub async fn stop(&mut self) {
        self.state.rooms.begin_shutdown();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }

    /// Starts a stopped server again on the same address, database and signing key.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// Restarts after `adjust` has changed the configuration (same database and address).
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        adjust(&mut self.config);
        self.stop().await;
        let addr = self.base_url.rsplit('/').next().unwrap().to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => break listener,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {addr} again: {e}"),
            }
        };
        let key = federation::ServerSigningKey::parse_key_file(&self.key_file).unwrap();
        Self::launch(self.config.clone(), key, listener, self.tls).await
    }

    async fn launch(
        config: Config,
        key: federation::ServerSigningKey,
        listener: tokio::net::TcpListener,
        tls: bool,
    ) -> Self {
        let storage = homeserver::server::open_storage(&config).await.expect("database");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let clock = Arc::new(TestClock(AtomicI64::new(now)));
        let server_name = config.server_name.clone();
        let key_file = key.to_key_file();
        let media = homeserver::server::open_media_store(&config, &storage).expect("media dir");
        let state = homeserver::AppState::new(config.clone(), storage, key, clock.clone(), media);
        state.outbox.resume(&state).await;
        homeserver::admin_tasks::fail_interrupted(&state).await;
        homeserver::accounts::erasure::resume(&state).await;

        let addr = listener.local_addr().unwrap();
        let (stop, stop_signal) = tokio::sync::oneshot::channel::<()>();
        let app = homeserver::app(state.clone());
        let stop_signal = async move {
            let _ = stop_signal.await;
        };
        let stopped = if tls {
            let (cert, key) = test_certificate();
            let certificates = homeserver::tls::Certificates::load(&cert, &key).expect("test certificate");
            let listener = homeserver::tls::TlsListener::new(listener, certificates).unwrap();
            tokio::spawn(async move {
                axum::serve(listener, app.into_make_service_with_connect_info::<homeserver::server::PeerAddr>())
                    .with_graceful_shutdown(stop_signal)
                    .await
                    .unwrap()
            })
        } else {
            tokio::spawn(async move {
                axum::serve(listener, app.into_make_service_with_connect_info::<homeserver::server::PeerAddr>())
                    .with_graceful_shutdown(stop_signal)
                    .await
                    .unwrap()
            })
        };
        Self {
            base_url: format!("{}://{addr}", if tls { "https" } else { "http" }),
            server_name,
            clock,
            state,
            http: reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap(),
            config,
            key_file,
            tls,
            stop: Some(stop),
            stopped: Some(stopped),
        }
    }

    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// Sends a request; `body` is sent as JSON when given. Returns the status and the JSON body
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn request(
        &self,
        method: Method,
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
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn raw(&self, method: Method, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, token, Some(body)).await
    }

    /// Registers through the dummy UIA flow (registration must be open).
    pub async fn register(&self, localpart: &str, password: &str) -> Session {
        let body = json!({"username": localpart, "password": password});
        let (status, challenge) = self.post("/_matrix/client/v3/register", None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        let session = challenge["session"].as_str().expect("session").to_owned();
        let mut body = body;
        body["auth"] = json!({"type": "m.login.dummy", "session": session});
        let (status, response) = self.post("/_matrix/client/v3/register", None, body).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        Session::from_response(&response)
    }

    pub async fn login(&self, user: &str, password: &str) -> Session {
        let (status, response) = self.post("/_matrix/client/v3/login", None, password_login(user, password)).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        Session::from_response(&response)
    }
}

pub fn password_login(user: &str, password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

/// The UIA `auth` object for a password stage.
pub fn password_auth(user_id: &str, password: &str, session: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "session": session,
    })
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
}

impl Session {
    pub fn from_response(response: &Value) -> Self {
        Self {
            user_id: response["user_id"].as_str().expect("user_id").to_owned(),
            access_token: response["access_token"].as_str().expect("access_token").to_owned(),
            device_id: response["device_id"].as_str().expect("device_id").to_owned(),
        }
    }

    pub fn token(&self) -> Option<&str> {
        Some(&self.access_token)
    }
}

/// Asserts a Matrix error response.
#[track_caller]
pub fn assert_error(actual: (StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(actual.0, status, "body: {}", actual.1);
    assert_eq!(actual.1["errcode"], errcode, "body: {}", actual.1);
    assert!(actual.1["error"].is_string(), "error message missing: {}", actual.1);
}

impl TestServer {
    pub async fn create_room(&self, session: &Session, body: Value) -> String {
        let (status, response) = self.post("/_matrix/client/v3/createRoom", session.token(), body).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        response["room_id"].as_str().expect("room_id").to_owned()
    }

    pub async fn send_text(&self, session: &Session, room_id: &str, body: &str) -> String {
        let txn = format!("t{}", random_suffix());
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
        let (status, response) = self.put(&path, session.token(), json!({"msgtype": "m.text", "body": body})).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        response["event_id"].as_str().expect("event_id").to_owned()
    }

    pub async fn join(&self, session: &Session, room_id_or_alias: &str) -> (StatusCode, Value) {
        let path = format!("/_matrix/client/v3/join/{}", room_id_or_alias.replace('#', "%23"));
        self.post(&path, session.token(), json!({})).await
    }

    pub async fn sync(&self, session: &Session, query: &str) -> Value {
        let (status, response) = self.get(&format!("/_matrix/client/v3/sync?{query}"), session.token()).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        response
    }

    /// The current content of a state event, as the user sees it.
    pub async fn state_content(&self, session: &Session, room_id: &str, event_type: &str, state_key: &str) -> Value {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}");
        let (status, response) = self.get(&path, session.token()).await;
        assert_eq!(status, StatusCode::OK, "{event_type}: {response}");
        response
    }
}

/// Bodies of `m.room.message` events in a list of client events.
pub fn message_bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The engines available here: SQLite always, PostgreSQL when `MYELIN_TEST_POSTGRES` is set.
pub fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Sqlite];
    if postgres_url().is_some() {
        engines.push(Engine::Postgres);
    }
    engines
}

/// The configuration every test server starts from: open registration and a fresh database.
async fn test_config(engine: Engine, adjust: impl FnOnce(&mut Config)) -> Config {
    let data_dir = temp_dir("it");
    let mut config = Config {
        server_name: SERVER_NAME.into(),
        data_dir: data_dir.clone(),
        database_url: fresh_database_url(engine, &data_dir).await,
        registration: RegistrationMode::Open,
        ..Config::default()
    };
    config.database.max_connections = 4;
    adjust(&mut config);
    let errors = config.validate();
    assert!(errors.is_empty(), "test config invalid: {errors:?}");
    config
}

impl TestServer {
    /// Creates a server admin directly (as `myelin create-user --admin` does) and logs in.
    pub async fn admin(&self, localpart: &str, password: &str) -> Session {
        homeserver::accounts::create_account(&self.state, localpart, Some(password.to_owned()), true)
            .await
            .expect("admin account");
        self.login(localpart, password).await
    }

    /// Runs raw SQL on the server's database, as an attacker with database access could.
    pub async fn raw_sql(&self, sql: &str) -> u64 {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.state.config.effective_database_url()).await.expect("database");
        let done = sqlx::query(sql).execute(&pool).await.expect("raw SQL");
        pool.close().await;
        done.rows_affected()
    }

    /// Empties a SQLite server's WAL into the database file, retrying while one of the server's
    /// own readers keeps the checkpoint from finishing (a busy checkpoint leaves old frames).
    pub async fn checkpoint_sqlite(&self) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.state.config.effective_database_url()).await.expect("database");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let busy: i64 =
                sqlx::query_scalar("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&pool).await.expect("checkpoint");
            if busy == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the WAL stayed busy");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        pool.close().await;
    }

    /// Runs `SELECT COUNT(*) …` on the server's database, to see what is really stored.
    pub async fn count_rows(&self, sql: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.state.config.effective_database_url()).await.expect("database");
        let count: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count query");
        pool.close().await;
        count
    }

    /// Polls an admin task's status (`GET path`) until it is `complete` or `failed`.
    pub async fn wait_for_task(&self, admin: &Session, path: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (status, body) = self.get(path, admin.token()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] == "complete" || body["status"] == "failed" {
                return body;
            }
            assert!(["scheduled", "active"].contains(&body["status"].as_str().unwrap_or("")), "{body}");
            assert!(std::time::Instant::now() < deadline, "task still running: {body}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Everything the audit log holds for `action`, oldest first.
    pub async fn audit_entries_for(&self, admin: &Session, action: &str) -> Vec<Value> {
        let (status, body) =
            self.get(&format!("/_myelin/admin/v1/audit_log?action={action}&limit=1000"), admin.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["entries"].as_array().cloned().unwrap_or_default()
    }
}

/// Percent-encodes a path segment (user IDs, room IDs, event IDs).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A self-signed certificate for 127.0.0.1, made once per test process with openssl.
pub fn test_certificate() -> (PathBuf, PathBuf) {
    static MADE: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let dir = temp_dir("tls");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let output = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is installed");
        assert!(output.status.success(), "openssl: {}", String::from_utf8_lossy(&output.stderr));
        (cert, key)
    })
    .clone()
}
