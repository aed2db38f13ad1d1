//! A real Matrix client (matrix-nio, from PyPI) against a real server on loopback.
//!
//! Skipped with a visible message where matrix-nio is not installed, unless
//! `MYELIN_REQUIRE_REAL_CLIENTS=1` (set by `.ci/run`, which installs it) makes that a failure.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use homeserver::storage::Order;

use crate::common::{Engine, TestServer, engine_tests};

engine_tests!(
    matrix_nio_registers_and_logs_in,
    matrix_nio_users_chat,
    matrix_nio_end_to_end_encryption,
    matrix_js_sdk_cross_signing_and_key_backup,
);

fn nio_available() -> bool {
    // The crypto backend comes with `matrix-nio[e2e]` (vodozemac in nio 0.26); without it the
    // encryption test cannot run.
    let probe = "import nio.crypto, sys; sys.exit(0 if nio.crypto.ENCRYPTION_ENABLED else 1)";
    let available = Command::new("python3").args(["-c", probe]).output().is_ok_and(|output| output.status.success());
    if !available {
        assert!(
            std::env::var("MYELIN_REQUIRE_REAL_CLIENTS").is_err(),
            "matrix-nio is required here: pip install -r tests/clients/requirements.txt"
        );
        eprintln!("skipped: matrix-nio is not installed (pip install -r tests/clients/requirements.txt)");
    }
    available
}

/// Runs one of the client scripts against the server and returns the JSON it printed.
async fn run_script(name: &str, args: Vec<String>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients").join(name);
    let output = tokio::task::spawn_blocking(move || Command::new("python3").arg(script).args(args).output())
        .await
        .unwrap()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).expect("JSON from the script")
}

async fn matrix_nio_registers_and_logs_in(engine: Engine) {
    if !nio_available() {
        return;
    }
    let server = TestServer::start(engine).await;
    let args = vec![server.base_url.clone(), "niouser".into(), "nio-password-1".into()];
    let seen = run_script("nio_smoke.py", args).await;
    let user_id = server.user_id("niouser");
    assert_eq!(seen["registered_user_id"], user_id.as_str());
    assert_eq!(seen["login_user_id"], user_id.as_str());
    assert_eq!(seen["whoami_user_id"], user_id.as_str());
    assert_eq!(seen["device_names"], serde_json::json!(["nio login", "nio register"]));
    // After nio's logout, its device is gone server-side.
    let devices = server.state.storage.devices(&user_id).await.unwrap();
    let login_device = seen["login_device_id"].as_str().unwrap();
    assert!(devices.iter().all(|d| d.device_id != login_device));
    assert_eq!(devices.len(), 1);
}

async fn matrix_nio_users_chat(engine: Engine) {
    if !nio_available() {
        return;
    }
    let server = TestServer::start(engine).await;
    let seen = run_script("nio_chat.py", vec![server.base_url.clone()]).await;
    assert_eq!(seen["bob_saw"], serde_json::json!(["hello bob"]));
    assert_eq!(seen["alice_saw"], serde_json::json!(["hello bob", "hi alice"]));
    assert_eq!(seen["room_name"], "nio chat");
    let alice = server.user_id("nioalice");
    let bob = server.user_id("niobob");
    let mut expected = vec![alice, bob];
    expected.sort();
    assert_eq!(seen["alice_members"], serde_json::json!(expected));
}

/// Real Olm/Megolm: two nio clients exchange keys through this server and each decrypts the
/// other's message, while the server stores only ciphertext.
async fn matrix_nio_end_to_end_encryption(engine: Engine) {
    if !nio_available() {
        return;
    }
    let server = TestServer::start(engine).await;
    let store = crate::common::temp_dir("nio-e2ee-store");
    let seen = run_script("nio_e2ee.py", vec![server.base_url.clone(), store.display().to_string()]).await;
    assert!(seen["bob_saw"].as_array().unwrap().contains(&"secret hello".into()), "{seen}");
    assert!(seen["alice_saw"].as_array().unwrap().contains(&"secret reply".into()), "{seen}");
    assert!(seen["decrypted_count"].as_u64().unwrap() >= 2, "messages arrived encrypted: {seen}");
    assert_eq!(seen["alice_knows_bob_device"], true);

    let room_id = seen["room_id"].as_str().unwrap();
    let events = server.state.storage.room_events(room_id, 0, i64::MAX, 100, Order::OldestFirst).await.unwrap();
    let encrypted = events.iter().filter(|e| e.event_type == "m.room.encrypted").count();
    assert!(encrypted >= 2, "the messages are stored as m.room.encrypted");
    assert!(events.iter().all(|e| e.event_type != "m.room.message"), "no plaintext message event stored");
    let stored = serde_json::to_string(&events.iter().map(|e| e.json.clone()).collect::<Vec<_>>()).unwrap();
    assert!(!stored.contains("secret hello") && !stored.contains("secret reply"));
    // The olm messages that carried the Megolm keys were acknowledged and deleted.
    for (user, device) in [("e2eealice", "alice_device"), ("e2eebob", "bob_device")] {
        let device = seen[device].as_str().unwrap();
        let pending = server.state.storage.to_device_messages(&server.user_id(user), device, 0, i64::MAX, 100).await;
        assert!(pending.unwrap().len() <= 1, "to-device inbox of {user} is emptied as it syncs");
    }
}

/// matrix-js-sdk with its Rust crypto (as in Element Web), installed by
/// `npm ci --prefix tests/clients/js`.
fn js_sdk_available() -> bool {
    let modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/js/node_modules/matrix-js-sdk");
    let available =
        modules.exists() && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var("MYELIN_REQUIRE_REAL_CLIENTS").is_err(),
            "matrix-js-sdk is required here: npm ci --prefix tests/clients/js"
        );
        eprintln!("skipped: matrix-js-sdk is not installed (npm ci --prefix tests/clients/js)");
    }
    available
}

/// Cross-signing bootstrap (and a password-authorised reset), secret storage with a recovery
/// key, key backup, and a second device that verifies the first through cross-signing and
/// decrypts a message with a key restored from the backup.
async fn matrix_js_sdk_cross_signing_and_key_backup(engine: Engine) {
    if !js_sdk_available() {
        return;
    }
    let server = TestServer::start(engine).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/js/cross_signing_backup.mjs");
    let base_url = server.base_url.clone();
    let output = tokio::task::spawn_blocking(move || Command::new("node").arg(script).arg(base_url).output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "js-sdk script failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).expect("JSON from the script");
    assert_eq!(seen["cross_signing_ready"], true, "{seen}");
    assert_eq!(seen["cross_signing_uia"], serde_json::json!(["none", "m.login.password"]));
    assert_eq!(seen["first_device_signed_by_owner_seen_by_second"], true);
    assert_eq!(seen["first_device_verified_by_second"], true);
    assert_eq!(seen["backup_trusted_on_second"], true);
    assert_eq!(seen["decryptable_before_restore"], false);
    assert!(seen["restored_keys"].as_u64().unwrap() >= 1);
    assert!(seen["decrypted_body"].as_str().unwrap().starts_with("backed-up secret"));
    // The script lists each unexpected answer on stderr.
    assert_eq!(seen["unexpected_http_errors"], 0, "{}", String::from_utf8_lossy(&output.stderr));

    // The server holds the backup the client made, opaque to it.
    let user_id = seen["user_id"].as_str().unwrap();
    let version = server.state.storage.backup_version(user_id, None).await.unwrap().expect("a backup version");
    assert!(version.count >= 1);
}
