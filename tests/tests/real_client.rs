//! A real Matrix client (matrix-nio, from PyPI) against a real server on loopback.
//!
//! Skipped with a visible message where matrix-nio is not installed, unless
//! `MYELIN_REQUIRE_REAL_CLIENTS=1` (set by `.ci/run`, which installs it) makes that a failure.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::common::{Engine, TestServer, engine_tests};

engine_tests!(matrix_nio_registers_and_logs_in);

fn nio_available() -> bool {
    let available =
        Command::new("python3").args(["-c", "import nio"]).output().is_ok_and(|output| output.status.success());
    if !available {
        assert!(
            std::env::var("MYELIN_REQUIRE_REAL_CLIENTS").is_err(),
            "matrix-nio is required here: pip install -r tests/clients/requirements.txt"
        );
        eprintln!("skipped: matrix-nio is not installed (pip install -r tests/clients/requirements.txt)");
    }
    available
}

async fn matrix_nio_registers_and_logs_in(engine: Engine) {
    if !nio_available() {
        return;
    }
    let server = TestServer::start(engine).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/nio_smoke.py");
    let base_url = server.base_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).args([&base_url, "niouser", "nio-password-1"]).output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "nio failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).expect("JSON from the script");
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
