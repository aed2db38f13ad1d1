//! The `myelin` binary as a process: start-up with no configuration, configuration errors,
//! CLI account creation, restart with the same data, and graceful shutdown on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_myelin");

fn temp_dir(label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("myelin-proc-{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `myelin` run in `dir` with only the given `MYELIN_*` variables.
fn myelin(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("MYELIN_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// A minimal HTTP/1.1 exchange; returns status and body.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

fn wait_until_serving(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some((200, _)) = http(port, "GET", "/_matrix/client/versions", "") {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("myelin exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("myelin did not start serving within 30 s");
}

fn terminate(child: Child) -> Output {
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    child.wait_with_output().unwrap()
}

#[test]
fn starts_with_no_configuration_and_stops_on_sigterm() {
    let dir = temp_dir("defaults");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child =
        myelin(&dir, &[], &[("MYELIN_LISTEN", &listen)]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let (status, body) = http(port, "GET", "/.well-known/matrix/client", "").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(&format!("http://{listen}/")), "{body}");

    let output = terminate(child);
    assert!(output.status.success(), "exit status {:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("no config file found"), "{log}");
    assert!(log.contains("server_name=localhost") || log.contains("server_name\":\"localhost"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    // The embedded default keeps everything in ./data.
    assert!(dir.join("data/myelin.db").exists());
    assert!(dir.join("data/signing.key").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn invalid_configuration_reports_every_problem_and_refuses_to_start() {
    let dir = temp_dir("badconfig");
    std::fs::write(
        dir.join("myelin.toml"),
        "server_name = \"not a name\"\nlisten = \"everywhere\"\nregistraton = \"open\"\n[database]\nmax_connections = 0\n",
    )
    .unwrap();
    let output = myelin(&dir, &["check-config"], &[("MYELIN_PUBLIC_BASEURL", "gopher://x")]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&output.stderr);
    for key in ["server_name", "listen", "registraton", "database.max_connections", "public_baseurl"] {
        assert!(errors.contains(&format!("`{key}`")), "{key} missing from:\n{errors}");
    }
    // Serving refuses too, and an explicitly named missing file is an error.
    let output = myelin(&dir, &[], &[]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = myelin(&dir, &["--config", "absent.toml"], &[]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("absent.toml"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn generated_config_is_the_example_and_is_valid() {
    let dir = temp_dir("genconfig");
    let output = myelin(&dir, &["generate-config"], &[]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config.example.toml")).unwrap();
    assert_eq!(text, example);
    std::fs::write(dir.join("myelin.toml"), text).unwrap();
    let output = myelin(&dir, &["check-config"], &[]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cli_created_admin_logs_in_and_keys_survive_restart() {
    let dir = temp_dir("cli");
    std::fs::write(dir.join("password"), "cli-password-1\n").unwrap();
    let env = [("MYELIN_SERVER_NAME", "cli.example")];
    let output =
        myelin(&dir, &["create-user", "root", "--password-file", "password", "--admin"], &env).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "created @root:cli.example (admin)");
    let again = myelin(&dir, &["create-user", "root"], &env).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("M_USER_IN_USE"));

    let token =
        myelin(&dir, &["registration-token", "create", "--token", "invite1", "--uses", "2"], &env).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&token.stdout).trim(), "invite1");
    let list = myelin(&dir, &["registration-token", "list"], &env).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("invite1\tused 0 of 2"));

    let mut key_ids = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = myelin(&dir, &[], &[env[0], ("MYELIN_LISTEN", &listen)]).stderr(Stdio::null()).spawn().unwrap();
        wait_until_serving(port, &mut child);
        let login = r#"{"type":"m.login.password","identifier":{"type":"m.id.user","user":"root"},"password":"cli-password-1"}"#;
        let (status, body) = http(port, "POST", "/_matrix/client/v3/login", login).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("@root:cli.example"));
        let (_, keys) = http(port, "GET", "/_matrix/key/v2/server", "").unwrap();
        let start = keys.find("\"verify_keys\":{\"").unwrap() + 16;
        key_ids.push(keys[start..].split('"').next().unwrap().to_owned());
        assert!(terminate(child).status.success());
    }
    assert_eq!(key_ids[0], key_ids[1], "the signing key is kept across restarts");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn health_readiness_and_shutdown_during_a_long_poll() {
    let dir = temp_dir("health");
    std::fs::write(dir.join("password"), "health-password-1\n").unwrap();
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let env = [("MYELIN_LISTEN", listen.as_str())];
    let output = myelin(&dir, &["create-user", "ops", "--password-file", "password"], &env).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // Nothing listening yet: the health check fails.
    let output = myelin(&dir, &["healthcheck"], &env).output().unwrap();
    assert_eq!(output.status.code(), Some(1));

    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let output = myelin(&dir, &["healthcheck"], &env).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(http(port, "GET", "/health", "").unwrap().0, 200);
    let (status, body) = http(port, "GET", "/ready", "").unwrap();
    assert_eq!((status, body.contains("ready")), (200, true), "{body}");

    // A client long-polling /sync for a minute must not hold up a graceful shutdown.
    let login =
        r#"{"type":"m.login.password","identifier":{"type":"m.id.user","user":"ops"},"password":"health-password-1"}"#;
    let (_, body) = http(port, "POST", "/_matrix/client/v3/login", login).unwrap();
    let token = body.split("\"access_token\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let (_, body) = http(port, "GET", &format!("/_matrix/client/v3/sync?access_token={token}"), "").unwrap();
    let since = body.split("\"next_batch\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let poll = std::thread::spawn(move || {
        http(port, "GET", &format!("/_matrix/client/v3/sync?since={since}&timeout=60000&access_token={token}"), "")
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let output = terminate(child);
    assert!(output.status.success(), "exit status {:?}", output.status);
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown waited for the long-poll");
    let (status, _) = poll.join().unwrap().expect("the long-poll was answered, not dropped");
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(dir);
}

/// The access token from a login response body.
fn token_of(body: &str) -> String {
    body.split("\"access_token\":\"").nth(1).expect("access token").split('"').next().unwrap().to_owned()
}

fn login_body(user: &str, password: &str) -> String {
    format!(
        r#"{{"type":"m.login.password","identifier":{{"type":"m.id.user","user":"{user}"}},"password":"{password}"}}"#
    )
}

/// The value of one series in a Prometheus text page.
fn series(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[test]
fn metrics_listener_reports_traffic() {
    let dir = temp_dir("metrics");
    std::fs::write(dir.join("password"), "metrics-password-1\n").unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let (listen, metrics_listen) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{metrics_port}"));
    let env = [("MYELIN_LISTEN", listen.as_str()), ("MYELIN_METRICS__LISTEN", metrics_listen.as_str())];
    assert!(
        myelin(&dir, &["create-user", "m", "--password-file", "password"], &env).output().unwrap().status.success()
    );
    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);

    let (status, body) =
        http(port, "POST", "/_matrix/client/v3/login", &login_body("m", "metrics-password-1")).unwrap();
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    assert_eq!(http(port, "POST", "/_matrix/client/v3/login", &login_body("m", "wrong")).unwrap().0, 403);
    let (status, _) = http(port, "POST", &format!("/_matrix/client/v3/createRoom?access_token={token}"), "{}").unwrap();
    assert_eq!(status, 200);

    let (status, page) = http(metrics_port, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    let login = "route=\"/_matrix/client/v3/login\",method=\"POST\"";
    assert_eq!(series(&page, &format!("myelin_http_requests_total{{{login},status=\"200\"}}")), Some(1.0), "{page}");
    assert_eq!(series(&page, &format!("myelin_http_requests_total{{{login},status=\"403\"}}")), Some(1.0));
    let bucket = format!("myelin_http_request_duration_seconds_bucket{{{login},status=\"200\",le=\"+Inf\"}}");
    assert_eq!(series(&page, &bucket), Some(1.0));
    assert!(series(&page, "myelin_events_persisted_total").unwrap() >= 5.0, "createRoom persists several events");
    assert!(series(&page, "myelin_db_event_commit_seconds_count").unwrap() >= 1.0, "{page}");
    assert!(series(&page, "myelin_db_event_commit_seconds_bucket{le=\"+Inf\"}").unwrap() >= 1.0);
    assert!(series(&page, "myelin_db_connections_max").unwrap() >= 1.0);
    assert_eq!(series(&page, "myelin_sync_waiters"), Some(0.0));
    assert!(series(&page, "process_resident_memory_bytes").unwrap() > 1e6);
    // Raw paths (with tokens or IDs) never become labels.
    assert!(!page.contains("access_token") && !page.contains("!"), "{page}");
    // Metrics are not on the public listener.
    assert_eq!(http(port, "GET", "/metrics", "").unwrap().0, 404);
    assert!(terminate(child).status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reset_password_and_migrate_commands() {
    let dir = temp_dir("reset");
    std::fs::write(dir.join("old"), "old-password-1\n").unwrap();
    std::fs::write(dir.join("new"), "new-password-1\n").unwrap();
    std::fs::write(dir.join("short"), "x\n").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [("MYELIN_LISTEN", listen.as_str())];

    let output = myelin(&dir, &["migrate"], &env).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("up to date"));
    assert!(dir.join("data/myelin.db").exists());

    assert!(myelin(&dir, &["create-user", "dana", "--password-file", "old"], &env).output().unwrap().status.success());
    let unknown = myelin(&dir, &["reset-password", "nobody", "--password-file", "new"], &env).output().unwrap();
    assert!(!unknown.status.success());
    let weak = myelin(&dir, &["reset-password", "dana", "--password-file", "short"], &env).output().unwrap();
    assert!(String::from_utf8_lossy(&weak.stderr).contains("M_WEAK_PASSWORD"));

    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let (_, body) = http(port, "POST", "/_matrix/client/v3/login", &login_body("dana", "old-password-1")).unwrap();
    let token = token_of(&body);
    let output = myelin(&dir, &["reset-password", "dana", "--password-file", "new"], &env).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(http(port, "POST", "/_matrix/client/v3/login", &login_body("dana", "old-password-1")).unwrap().0, 403);
    assert_eq!(http(port, "POST", "/_matrix/client/v3/login", &login_body("dana", "new-password-1")).unwrap().0, 200);
    // The old session was logged out: a fresh process (no token cache) refuses its token. A
    // running server notices within its cache's lifetime (unit-tested in token_cache).
    assert!(terminate(child).status.success());
    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let (status, body) =
        http(port, "GET", &format!("/_matrix/client/v3/account/whoami?access_token={token}"), "").unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("M_UNKNOWN_TOKEN"));
    assert!(terminate(child).status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_during_a_burst_of_sends_loses_no_acknowledged_event() {
    let dir = temp_dir("burst");
    std::fs::write(dir.join("password"), "burst-password-1\n").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [("MYELIN_LISTEN", listen.as_str())];
    assert!(
        myelin(&dir, &["create-user", "b", "--password-file", "password"], &env).output().unwrap().status.success()
    );
    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let (_, body) = http(port, "POST", "/_matrix/client/v3/login", &login_body("b", "burst-password-1")).unwrap();
    let token = token_of(&body);
    let (_, body) = http(port, "POST", &format!("/_matrix/client/v3/createRoom?access_token={token}"), "{}").unwrap();
    let room = body.split("\"room_id\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    // Four senders send as fast as they can until the server goes away.
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (token, room) = (token.clone(), room.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    let path = format!(
                        "/_matrix/client/v3/rooms/{room}/send/m.room.message/s{sender}-{n}?access_token={token}"
                    );
                    let body = format!(r#"{{"msgtype":"m.text","body":"{sender}-{n}"}}"#);
                    match http(port, "PUT", &path, &body) {
                        Some((200, response)) => acknowledged.push(response),
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    assert!(terminate(child).status.success());
    let acknowledged: Vec<String> = senders.into_iter().flat_map(|s| s.join().unwrap()).collect();
    assert!(acknowledged.len() > 10, "the burst was under way: {}", acknowledged.len());

    // After a restart, every acknowledged event is there.
    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    for response in &acknowledged {
        let event_id = response.split("\"event_id\":\"").nth(1).unwrap().split('"').next().unwrap();
        let path =
            format!("/_matrix/client/v3/rooms/{room}/event/{}?access_token={token}", event_id.replace('$', "%24"));
        let (status, body) = http(port, "GET", &path, "").unwrap();
        assert_eq!(status, 200, "acknowledged {event_id} lost: {body}");
    }
    assert!(terminate(child).status.success());
    let _ = std::fs::remove_dir_all(dir);
}

/// A test CA and a `localhost` certificate it signed, made with the openssl command.
fn make_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let (ca, ca_key, key, csr, cert, ext) = (
        format!("{name}-ca.pem"),
        format!("{name}-ca.key"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &format!("/CN={name} test CA")],
        ]
        .concat(),
    );
    openssl(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]].concat());
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    (dir.join(ca), dir.join(cert), dir.join(key))
}

/// A TLS client trusting only `ca`.
fn tls_connector(ca: &Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

type TlsConnection = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(port: u16, ca: &Path) -> Result<TlsConnection, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tls_connector(ca).connect(name, tcp).await.map_err(|e| e.to_string())
}

/// One request on an established TLS connection; returns status and body.
async fn tls_request(mut connection: TlsConnection, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    connection.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = connection.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

#[test]
fn tls_listeners_split_by_api_and_reload_certificates_on_sighup() {
    let dir = temp_dir("tls");
    let (ca_a, cert_a, key_a) = make_certificate(&dir, "a");
    let (ca_b, cert_b, key_b) = make_certificate(&dir, "b");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(&cert_a, &cert).unwrap();
    std::fs::copy(&key_a, &key).unwrap();
    let (port, federation_port) = (free_port(), free_port());
    let (listen, federation_listen) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{federation_port}"));
    let env = [
        ("MYELIN_LISTEN", listen.as_str()),
        ("MYELIN_FEDERATION_LISTEN", federation_listen.as_str()),
        ("MYELIN_TLS__CERTIFICATE_PATH", cert.to_str().unwrap()),
        ("MYELIN_TLS__PRIVATE_KEY_PATH", key.to_str().unwrap()),
    ];
    let mut child = myelin(&dir, &[], &env).stderr(Stdio::piped()).spawn().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tls_connect(port, &ca_a).await.is_err() {
            assert!(Instant::now() < deadline, "no TLS listener");
            assert!(child.try_wait().unwrap().is_none(), "myelin exited");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The client listener serves the client API only; the federation listener the rest.
        let (status, _) = tls_request(tls_connect(port, &ca_a).await.unwrap(), "/_matrix/client/versions").await;
        assert_eq!(status, 200);
        let (status, body) = tls_request(tls_connect(port, &ca_a).await.unwrap(), "/_matrix/key/v2/server").await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("M_UNRECOGNIZED"));
        let (status, body) =
            tls_request(tls_connect(federation_port, &ca_a).await.unwrap(), "/_matrix/key/v2/server").await;
        assert_eq!(status, 200, "{body}");
        let (status, _) =
            tls_request(tls_connect(federation_port, &ca_a).await.unwrap(), "/_matrix/client/versions").await;
        assert_eq!(status, 404);
        // Plain HTTP is not served, and a client that does not trust the certificate gets nowhere.
        assert!(http(port, "GET", "/_matrix/client/versions", "").is_none_or(|(status, _)| status != 200));
        assert!(tls_connect(port, &ca_b).await.is_err());

        // A connection made before the reload keeps working after it.
        let established = tls_connect(port, &ca_a).await.unwrap();
        std::fs::copy(&cert_b, &cert).unwrap();
        std::fs::copy(&key_b, &key).unwrap();
        assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while tls_connect(port, &ca_b).await.is_err() {
            assert!(Instant::now() < deadline, "the new certificate was not picked up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(tls_connect(port, &ca_a).await.is_err(), "new connections use the new certificate");
        assert_eq!(tls_request(established, "/health").await.0, 200);
        assert_eq!(tls_request(tls_connect(federation_port, &ca_b).await.unwrap(), "/health").await.0, 200);
    });
    let output = terminate(child);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("reloaded the TLS certificate"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn access_log_keeps_every_answered_request_across_a_graceful_shutdown() {
    let dir = temp_dir("access-log");
    std::fs::write(dir.join("password"), "burst-password-1\n").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [("MYELIN_LISTEN", listen.as_str())];
    let created =
        myelin(&dir, &["create-user", "root", "--password-file", "password", "--admin"], &env).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // The CLI's action is in the audit log, and the chain verifies.
    let verified = myelin(&dir, &["audit", "verify"], &env).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("intact: 1 entries"));

    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let (_, body) = http(port, "POST", "/_matrix/client/v3/login", &login_body("root", "burst-password-1")).unwrap();
    let token = token_of(&body);

    // Concurrent clients; SIGTERM arrives in the middle of the burst.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (token, answered) = (token.clone(), answered.clone());
            std::thread::spawn(move || {
                for _ in 0..60 {
                    match http(port, "GET", &format!("/_matrix/client/v3/account/whoami?access_token={token}"), "") {
                        Some((200, _)) => {
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Some((status, _)) => panic!("whoami answered {status}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 150 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = terminate(child);
    assert!(output.status.success(), "exit status {:?}", output.status);
    for client in clients {
        client.join().unwrap();
    }
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(answered >= 150);

    let mut child = myelin(&dir, &[], &env).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let (_, body) = http(port, "POST", "/_matrix/client/v3/login", &login_body("root", "burst-password-1")).unwrap();
    let token = token_of(&body);
    let path = format!("/_myelin/admin/v1/access_log?user_id=%40root%3Alocalhost&limit=1000&access_token={token}");
    let (status, body) = http(port, "GET", &path, "").unwrap();
    assert_eq!(status, 200, "{body}");
    let log: serde_json::Value = serde_json::from_str(body.trim_start_matches(|c: char| c != '{')).unwrap();
    let whoamis =
        log["entries"].as_array().unwrap().iter().filter(|e| e["route"] == "/_matrix/client/v3/account/whoami").count();
    assert_eq!(whoamis, answered, "every answered request was logged before the process exited");
    assert!(!body.contains(&token), "no token in the log");

    let (_, body) = http(port, "GET", &format!("/_myelin/admin/v1/audit_log?access_token={token}"), "").unwrap();
    assert!(body.contains(r#""actor":"cli""#) && body.contains(r#""action":"create_user""#), "{body}");
    terminate(child);
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs one statement on a database, as someone with direct access to it could.
fn tamper(url: &str, sql: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        assert_eq!(sqlx::query(sql).execute(&pool).await.unwrap().rows_affected(), 1);
        pool.close().await;
    });
}

#[test]
fn audit_verify_follows_migrate_db_and_reports_tampering() {
    let dir = temp_dir("audit");
    std::fs::write(dir.join("password"), "audit-password-1\n").unwrap();
    let env = [("MYELIN_LISTEN", "127.0.0.1:1")];
    for name in ["first", "second"] {
        let created = myelin(&dir, &["create-user", name, "--password-file", "password"], &env).output().unwrap();
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    }
    let source = format!("sqlite://{}", dir.join("data/myelin.db").display());
    let target = format!("sqlite://{}?mode=rwc", dir.join("copy.db").display());
    let copied = myelin(&dir, &["migrate-db", "--from", &source, "--to", &target], &[]).output().unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));

    // The copy continues the chain with the migration itself.
    let target_env = [("MYELIN_LISTEN", "127.0.0.1:1"), ("MYELIN_DATABASE_URL", target.as_str())];
    let verified = myelin(&dir, &["audit", "verify"], &target_env).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("intact: 3 entries"));

    let verified = myelin(&dir, &["audit", "verify"], &env).output().unwrap();
    assert!(verified.status.success());
    tamper(&source, "UPDATE audit_log SET target = '@someone:localhost' WHERE seq = 2");
    let broken = myelin(&dir, &["audit", "verify"], &env).output().unwrap();
    assert!(!broken.status.success(), "tampering went unnoticed");
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("broken at entry 2"), "{stderr}");

    tamper(&target, "DELETE FROM audit_log WHERE seq = 1");
    let broken = myelin(&dir, &["audit", "verify"], &target_env).output().unwrap();
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("broken at entry 1"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn generated_key_encrypts_and_a_wrong_key_refuses_to_start() {
    let dir = temp_dir("atrest");
    let output = myelin(&dir, &["generate-key", "storage.key"], &[]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let key_file = dir.join("storage.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let key = std::fs::read_to_string(&key_file).unwrap();
    let again = myelin(&dir, &["generate-key", "storage.key"], &[]).output().unwrap();
    assert!(!again.status.success(), "an existing key is never overwritten");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let encrypted = [("MYELIN_LISTEN", listen.as_str()), ("MYELIN_STORAGE__ENCRYPTION", "true")];
    let with_file = [encrypted[0], encrypted[1], ("MYELIN_STORAGE__ENCRYPTION_KEY_FILE", "storage.key")];
    let mut child = myelin(&dir, &[], &with_file).stderr(Stdio::piped()).spawn().unwrap();
    wait_until_serving(port, &mut child);
    let output = terminate(child);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit status {:?}: {log}", output.status);
    assert!(!log.contains(key.trim()), "the key is never logged");

    // Another key from the environment: a clear error, non-zero exit, nothing served.
    let other = myelin(&dir, &["generate-key", "other.key"], &[]).output().unwrap();
    assert!(other.status.success());
    let other_key = std::fs::read_to_string(dir.join("other.key")).unwrap();
    let wrong = [encrypted[0], encrypted[1], ("MYELIN_STORAGE__ENCRYPTION_KEY", other_key.trim())];
    let output = myelin(&dir, &[], &wrong).output().unwrap();
    assert!(!output.status.success());
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("does not match"), "{errors}");
    assert!(!errors.contains(other_key.trim()), "the key is never printed");
    // Encryption off on an encrypted database: refused as well.
    let output = myelin(&dir, &[], &[encrypted[0]]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("encrypted at rest"));
    let _ = std::fs::remove_dir_all(dir);
}
