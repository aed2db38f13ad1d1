//! The admin audit log: admin API changes are recorded (without secrets), the hash chain
//! verifies, and tampering with a row (editing or deleting it) is reported at that entry.

use homeserver::audit::{Verification, verify};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, encode, engine_tests};

engine_tests!(
    admin_changes_are_audited_without_secrets,
    tampering_breaks_the_chain_at_that_entry,
    a_change_is_recorded_even_when_the_client_goes_away,
    odd_numbers_in_parameters_are_still_recorded,
);

const PASSWORD: &str = "correct-horse";

async fn audit_entries(server: &TestServer, token: Option<&str>, query: &str) -> Value {
    let (status, body) = server.get(&format!("/_myelin/admin/v1/audit_log?{query}"), token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn admin_changes_are_audited_without_secrets(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let carol = encode(&server.user_id("carol"));

    let (status, _) = server
        .put(&format!("/_synapse/admin/v2/users/{carol}"), admin.token(), json!({"password": "carols-secret-1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let reset = format!("/_synapse/admin/v1/reset_password/{}", encode(&alice.user_id));
    let (status, _) = server.post(&reset, admin.token(), json!({"new_password": "alices-secret-2"})).await;
    assert_eq!(status, StatusCode::OK);
    // A failed change is recorded with its error.
    let missing = format!("/_synapse/admin/v1/deactivate/{}", encode(&server.user_id("nobody")));
    assert_error(server.post(&missing, admin.token(), json!({})).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (status, token) = server
        .post("/_synapse/admin/v1/registration_tokens/new", admin.token(), json!({"token": "secret-reg-token"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    // Reads are not changes and leave no entry.
    server.get("/_synapse/admin/v2/users", admin.token()).await;

    let log = audit_entries(&server, admin.token(), "").await;
    let entries = log["entries"].as_array().unwrap();
    let summary: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (text(&e["actor"]), text(&e["action"]), text(&e["target"]), text(&e["result"]))
        })
        .collect();
    let root = admin.user_id.clone();
    assert_eq!(
        summary,
        vec![
            (root.clone(), "create_user".into(), server.user_id("carol"), "ok".into()),
            (root.clone(), "reset_password".into(), alice.user_id.clone(), "ok".into()),
            (root.clone(), "deactivate_user".into(), server.user_id("nobody"), "error: M_NOT_FOUND".into()),
            (
                root.clone(),
                "create_registration_token".into(),
                entries[3]["target"].as_str().unwrap().to_owned(),
                "ok".into()
            ),
        ]
    );
    assert_eq!(entries[0]["params"]["password"], "<redacted>");
    assert_eq!(entries[1]["params"]["new_password"], "<redacted>");
    assert!(entries[3]["target"].as_str().unwrap().starts_with("sha256:"));
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert!(entries.iter().all(|e| e["hash"].as_str().unwrap().len() == 64 && e["ts"].as_i64().unwrap() > 0));

    // No secret is stored anywhere in the table.
    let dump = serde_json::to_string(&log).unwrap();
    for secret in ["carols-secret-1", "alices-secret-2", "secret-reg-token", PASSWORD, &admin.access_token] {
        assert!(!dump.contains(secret), "{secret} leaked into the audit log");
    }

    // Filters and paging.
    let only = audit_entries(&server, admin.token(), "action=reset_password").await;
    assert_eq!(only["entries"].as_array().unwrap().len(), 1);
    let by_actor = audit_entries(&server, admin.token(), &format!("actor={}", encode(&root))).await;
    assert_eq!(by_actor["entries"].as_array().unwrap().len(), 4);
    let none = audit_entries(&server, admin.token(), "actor=cli").await;
    assert!(none["entries"].as_array().unwrap().is_empty());
    let later = audit_entries(&server, admin.token(), &format!("since={}", server.state.now_ms() + 1000)).await;
    assert!(later["entries"].as_array().unwrap().is_empty());
    let first = audit_entries(&server, admin.token(), "limit=3").await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 3);
    let next = first["next_token"].as_str().unwrap();
    let rest = audit_entries(&server, admin.token(), &format!("limit=3&from={next}")).await;
    let rest_seqs: Vec<i64> = rest["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(rest_seqs, vec![4]);
    assert!(rest.get("next_token").is_none());

    assert_eq!(verify(&server.state.storage).await.unwrap(), Verification::Intact { entries: 4 });
}

async fn tampering_breaks_the_chain_at_that_entry(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        let path = format!("/_synapse/admin/v2/users/{}", encode(&server.user_id(name)));
        let (status, _) = server.put(&path, admin.token(), json!({})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(verify(&server.state.storage).await.unwrap(), Verification::Intact { entries: 5 });

    // Editing entry 2 (say, to hide who did it) is found at entry 2.
    assert_eq!(server.raw_sql("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2").await, 1);
    match verify(&server.state.storage).await.unwrap() {
        Verification::Broken { seq, reason } => assert_eq!(seq, 2, "{reason}"),
        intact => panic!("tampering not detected: {intact:?}"),
    }
    // Recomputing its hash does not help: the next entry's hash covers it.
    let rows = server.state.storage.audit_chain_after(0, 10).await.unwrap();
    let forged = homeserver::audit::entry_hash(2, &rows[1].entry, &rows[0].hash).unwrap();
    server.raw_sql(&format!("UPDATE audit_log SET hash = '{forged}' WHERE seq = 2")).await;
    match verify(&server.state.storage).await.unwrap() {
        Verification::Broken { seq, reason } => assert_eq!(seq, 3, "{reason}"),
        intact => panic!("forged hash not detected: {intact:?}"),
    }

    // On a fresh chain, deleting an entry in the middle or at the end is found too.
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    for name in ["u1", "u2", "u3", "u4"] {
        let path = format!("/_synapse/admin/v2/users/{}", encode(&server.user_id(name)));
        server.put(&path, admin.token(), json!({})).await;
    }
    assert_eq!(server.raw_sql("DELETE FROM audit_log WHERE seq = 3").await, 1);
    match verify(&server.state.storage).await.unwrap() {
        Verification::Broken { seq, reason } => {
            assert_eq!(seq, 3, "{reason}");
            assert!(reason.contains("missing"), "{reason}");
        }
        intact => panic!("deletion not detected: {intact:?}"),
    }
    server.raw_sql("DELETE FROM audit_log WHERE seq >= 3").await;
    match verify(&server.state.storage).await.unwrap() {
        Verification::Broken { seq, reason } => assert_eq!(seq, 3, "{reason}"),
        intact => panic!("truncation not detected: {intact:?}"),
    }
}

async fn a_change_is_recorded_even_when_the_client_goes_away(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let work = async move {
        let _ = released.await;
        Ok::<_, homeserver::error::Error>(())
    };
    let call = homeserver::api::admin::audited(&server.state, "@root:x", json!({}), work, |_| ("slow_change", None));
    // The request's future is dropped mid-action, as when the client disconnects.
    assert!(tokio::time::timeout(std::time::Duration::from_millis(50), call).await.is_err());
    release.send(()).unwrap();
    for _ in 0..100 {
        if let Verification::Intact { entries: 1 } = verify(&server.state.storage).await.unwrap() {
            let rows = server.state.storage.audit_chain_after(0, 10).await.unwrap();
            assert_eq!((rows[0].entry.action.as_str(), rows[0].entry.result.as_str()), ("slow_change", "ok"));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the finished change was never recorded");
}

/// Canonical JSON has no floats or integers beyond 2^53: parameters holding them are recorded
/// as strings rather than failing the entry after the change was made.
async fn odd_numbers_in_parameters_are_still_recorded(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let path = format!("/_synapse/admin/v2/users/{}", encode(&server.user_id("dora")));
    let body = json!({"password": "pass-word-1", "displayname": "Dora", "weight": 1.5, "big": u64::MAX});
    let (status, user) = server.put(&path, admin.token(), body).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let entries = server.audit_entries_for(&admin, "create_user").await;
    let entry = entries.last().expect("recorded");
    assert_eq!(entry["params"]["weight"], "1.5");
    assert_eq!(entry["params"]["big"], u64::MAX.to_string());
    assert_eq!(entry["params"]["password"], "<redacted>");
    assert!(matches!(verify(&server.state.storage).await.unwrap(), Verification::Intact { .. }));
}
