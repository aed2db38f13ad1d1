//! The tamper-evident admin audit log.
//!
//! Every administrative change (admin API calls that change something, admin CLI commands)
//! appends an entry. Each entry's hash is SHA-256 over the canonical JSON of the entry together
//! with the previous entry's hash, so editing or deleting any row breaks the chain from there on;
//! `myelin audit verify` walks the chain and reports the first broken entry.

use ruma::CanonicalJsonValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::storage::{AuditEntry, AuditRow, Storage};

/// The actor of CLI commands.
pub const CLI_ACTOR: &str = "cli";

/// Parameter names whose values never reach the log.
const SECRET_KEYS: &[&str] = &["password", "new_password", "access_token", "refresh_token", "token", "auth"];

/// The largest integer canonical JSON can hold.
const MAX_CANONICAL_INT: i64 = (1 << 53) - 1;

/// `params` with every secret replaced by `"<redacted>"`, at any depth, and numbers canonical
/// JSON cannot hold (floats, integers beyond ±2^53) as strings: an entry must never fail to
/// hash, or a change would be done and not recorded.
pub fn without_secrets(params: Value) -> Value {
    match params {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    if SECRET_KEYS.contains(&key.as_str()) {
                        (key, json!("<redacted>"))
                    } else {
                        (key, without_secrets(value))
                    }
                })
                .collect(),
        ),
        Value::Array(values) => Value::Array(values.into_iter().map(without_secrets).collect()),
        Value::Number(number)
            if number.as_i64().is_none_or(|n| !(-MAX_CANONICAL_INT..=MAX_CANONICAL_INT).contains(&n)) =>
        {
            Value::String(number.to_string())
        }
        other => other,
    }
}

/// A short, stable fingerprint of a secret (e.g. a registration token), so entries about the
/// same secret can be matched without revealing it.
pub fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", &hex(&Sha256::digest(secret.as_bytes()))[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of entry `seq` chained to `previous` (the previous entry's hash, "" for the first).
pub fn entry_hash(seq: i64, entry: &AuditEntry, previous: &str) -> Result<String, String> {
    let value = json!({
        "seq": seq,
        "ts": entry.ts,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "params": entry.params,
        "result": entry.result,
        "prev_hash": previous,
    });
    let canonical =
        CanonicalJsonValue::try_from(value).map_err(|e| format!("audit entry is not canonical JSON: {e}"))?;
    Ok(hex(&Sha256::digest(canonical.to_string().as_bytes())))
}

/// What an action did, as recorded: `ok` or the error code.
pub fn outcome<T>(result: &crate::error::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("error: {}", e.errcode()),
    }
}

/// Appends an entry (secrets are removed from `params` here, whatever the caller passed).
pub async fn record(
    storage: &Storage,
    now: i64,
    actor: &str,
    action: &str,
    target: Option<&str>,
    params: Value,
    result: String,
) -> crate::storage::Result<AuditRow> {
    let entry = AuditEntry {
        ts: now,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        params: without_secrets(params),
        result,
    };
    storage.append_audit_entry(&entry, |seq, previous| entry_hash(seq, &entry, previous)).await
}

/// Removes entries older than `retention_days` (0 keeps everything) from the start of the chain.
pub async fn prune(storage: &Storage, now: i64, retention_days: u64) -> crate::storage::Result<u64> {
    if retention_days == 0 {
        return Ok(0);
    }
    let retention_ms = i64::try_from(retention_days).unwrap_or(i64::MAX / 86_400_000).saturating_mul(86_400_000);
    let removed = storage.prune_audit_log(now.saturating_sub(retention_ms)).await?;
    if removed > 0 {
        tracing::info!(removed, "removed audit log entries past their retention");
    }
    Ok(removed)
}

/// Applies the retention hourly, for as long as the process runs.
pub fn prune_periodically(storage: Storage, clock: std::sync::Arc<dyn crate::state::Clock>, retention_days: u64) {
    if retention_days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            if let Err(e) = prune(&storage, clock.now_ms(), retention_days).await {
                tracing::error!(error = %e, "audit log retention failed");
            }
        }
    });
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Intact { entries: i64 },
    Broken { seq: i64, reason: String },
}

/// Walks the whole chain in order and reports the first entry that does not verify.
pub async fn verify(storage: &Storage) -> crate::storage::Result<Verification> {
    const BATCH: i64 = 500;
    let head = storage.audit_head().await?;
    let mut previous = head.base_hash.clone();
    let mut expected = head.base_seq + 1;
    loop {
        let rows = storage.audit_chain_after(expected - 1, BATCH).await?;
        let done = i64::try_from(rows.len()).unwrap_or(i64::MAX) < BATCH;
        for row in rows {
            if row.seq != expected {
                let reason = format!("entry {expected} is missing (the next entry is {})", row.seq);
                return Ok(Verification::Broken { seq: expected, reason });
            }
            match entry_hash(row.seq, &row.entry, &previous) {
                Ok(hash) if hash == row.hash => {}
                Ok(_) => {
                    let reason = "its content does not match its hash (modified)".to_owned();
                    return Ok(Verification::Broken { seq: row.seq, reason });
                }
                Err(e) => return Ok(Verification::Broken { seq: row.seq, reason: e }),
            }
            previous = row.hash;
            expected += 1;
        }
        if done {
            break;
        }
    }
    let last = expected - 1;
    // Appends that committed while we walked are past the head we read; re-read it.
    let head = storage.audit_head().await?;
    if head.seq < last {
        let reason = format!("entry {last} is past the recorded head {} (modified)", head.seq);
        return Ok(Verification::Broken { seq: last, reason });
    }
    if head.seq > last && storage.audit_chain_after(last, 1).await?.is_empty() {
        let reason = format!("the chain ends at entry {last} but {} entries were written (deleted)", head.seq);
        return Ok(Verification::Broken { seq: last + 1, reason });
    }
    if head.seq == last && head.hash != previous {
        let reason = "the last entry does not match the recorded head (modified)".to_owned();
        return Ok(Verification::Broken { seq: last, reason });
    }
    Ok(Verification::Intact { entries: last - head.base_seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_removed_at_any_depth() {
        let params = json!({"password": "hunter2", "displayname": "A", "nested": [{"new_password": "x"}]});
        let clean = without_secrets(params);
        assert_eq!(
            clean,
            json!({"password": "<redacted>", "displayname": "A", "nested": [{"new_password": "<redacted>"}]})
        );
        assert!(!clean.to_string().contains("hunter2"));
    }

    #[test]
    fn numbers_without_a_canonical_form_become_strings() {
        let params = json!({"ok": 5, "float": 1.5, "huge": i64::MAX, "low": i64::MIN, "deep": [u64::MAX]});
        let clean = without_secrets(params);
        assert_eq!(
            clean,
            json!({"ok": 5, "float": "1.5", "huge": i64::MAX.to_string(), "low": i64::MIN.to_string(),
                   "deep": [u64::MAX.to_string()]})
        );
        let entry = AuditEntry {
            ts: 1,
            actor: "cli".into(),
            action: "x".into(),
            target: None,
            params: clean,
            result: "ok".into(),
        };
        assert!(entry_hash(1, &entry, "").is_ok());
    }

    #[test]
    fn hashes_chain_and_depend_on_every_field() {
        let entry = AuditEntry {
            ts: 1,
            actor: "cli".into(),
            action: "create_user".into(),
            target: Some("@a:x".into()),
            params: json!({"admin": true}),
            result: "ok".into(),
        };
        let first = entry_hash(1, &entry, "").unwrap();
        assert_eq!(first.len(), 64);
        assert_ne!(entry_hash(1, &entry, "abc").unwrap(), first, "previous hash is covered");
        let changed = AuditEntry { result: "error".into(), ..entry.clone() };
        assert_ne!(entry_hash(1, &changed, "").unwrap(), first);
        assert_eq!(entry_hash(1, &entry, "").unwrap(), first, "deterministic");
    }

    #[tokio::test]
    async fn verification_finds_modified_and_deleted_entries() {
        for storage in crate::storage::test_support::engines().await {
            for i in 0..3 {
                record(&storage, i, CLI_ACTOR, "create_user", Some("@a:x"), json!({"n": i}), "ok".into())
                    .await
                    .unwrap();
            }
            assert_eq!(verify(&storage).await.unwrap(), Verification::Intact { entries: 3 });
            // Concurrent appends queue on the head row: the chain stays one line.
            let mut appends = tokio::task::JoinSet::new();
            for i in 0..20 {
                let storage = storage.clone();
                appends.spawn(async move {
                    record(&storage, i, "@admin:x", "modify_user", None, json!({}), "ok".into()).await.unwrap()
                });
            }
            let mut seqs: Vec<i64> = appends.join_all().await.into_iter().map(|row| row.seq).collect();
            seqs.sort_unstable();
            assert_eq!(seqs, (4..24).collect::<Vec<_>>());
            assert_eq!(verify(&storage).await.unwrap(), Verification::Intact { entries: 23 });
            // Retention removes the start of the chain; what is left still verifies.
            assert_eq!(prune(&storage, 2 + 86_400_000, 0).await.unwrap(), 0, "0 keeps everything");
            assert_eq!(prune(&storage, 2 + 86_400_000, 1).await.unwrap(), 2, "entries at ts 0 and 1 go");
            assert_eq!(verify(&storage).await.unwrap(), Verification::Intact { entries: 21 });
            let head = storage.audit_head().await.unwrap();
            assert_eq!((head.base_seq, head.seq), (2, 23));
            storage.execute_raw_for_tests("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3").await;
            assert!(matches!(verify(&storage).await.unwrap(), Verification::Broken { seq: 3, .. }));
            storage.execute_raw_for_tests("UPDATE audit_log SET actor = 'cli' WHERE seq = 3").await;
            assert_eq!(verify(&storage).await.unwrap(), Verification::Intact { entries: 21 });
            storage.execute_raw_for_tests("UPDATE audit_log SET actor = 'mallory' WHERE seq = 4").await;
            assert!(matches!(verify(&storage).await.unwrap(), Verification::Broken { seq: 4, .. }));
        }
    }
}
