//! Other servers' signing keys: looked up in memory, then the database, then fetched from the
//! server itself and checked (its self-signatures) before they are trusted and stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use federation::server_keys::{KeyMap, verify_server_keys};
use ruma::ServerName;
use ruma::api::federation::discovery::get_server_keys;
use ruma::serde::Base64;

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::ServerKeyRow;

/// How long a failed fetch keeps us from asking the same server again.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Keyring {
    known: Mutex<HashMap<String, Vec<ServerKeyRow>>>,
    /// One fetch per server at a time; concurrent lookups wait for it.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failed: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether a key may verify a signature made at `at_ts`.
fn usable(key: &ServerKeyRow, at_ts: i64) -> bool {
    match key.expired_ts {
        Some(expired) => at_ts < expired,
        None => key.valid_until_ts >= at_ts,
    }
}

impl Keyring {
    /// The unpadded base64 public key `key_id` of `server`, usable for a signature made at
    /// `at_ts`; `None` when the server does not have (or no longer vouches for) that key.
    pub async fn key(&self, state: &AppState, server: &str, key_id: &str, at_ts: i64) -> Result<Option<String>> {
        if server == state.server_name.as_str() {
            return Ok(own_key(state, key_id));
        }
        if let Some(key) = self.cached(server, key_id, at_ts) {
            return Ok(Some(key));
        }
        let stored = state.storage.server_keys(server).await?;
        lock(&self.known).insert(server.to_owned(), stored);
        if let Some(key) = self.cached(server, key_id, at_ts) {
            return Ok(Some(key));
        }
        self.fetch(state, server).await;
        Ok(self.cached(server, key_id, at_ts))
    }

    /// The keys for checking signatures of `signers` (server → key IDs) made at `at_ts`. Keys
    /// that cannot be found are left out, so their signatures fail to verify.
    pub async fn key_map(
        &self,
        state: &AppState,
        signers: &BTreeMap<String, Vec<String>>,
        at_ts: i64,
    ) -> Result<KeyMap> {
        let mut map = KeyMap::new();
        for (server, key_ids) in signers {
            let mut keys = BTreeMap::new();
            for key_id in key_ids {
                if let Some(key) = self.key(state, server, key_id, at_ts).await?
                    && let Ok(parsed) = Base64::parse(&key)
                {
                    keys.insert(key_id.clone(), parsed);
                }
            }
            map.insert(server.clone(), keys);
        }
        Ok(map)
    }

    fn cached(&self, server: &str, key_id: &str, at_ts: i64) -> Option<String> {
        let known = lock(&self.known);
        let key = known.get(server)?.iter().find(|k| k.key_id == key_id && usable(k, at_ts))?;
        Some(key.public_key.clone())
    }

    /// Fetches a server's keys from the server itself; failures are logged and remembered for
    /// a short while.
    async fn fetch(&self, state: &AppState, server: &str) {
        let gate = lock(&self.fetching).entry(server.to_owned()).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        if lock(&self.failed).get(server).is_some_and(|at| at.elapsed() < FAILED_FETCH_BACKOFF) {
            return;
        }
        match fetch_and_store(state, server).await {
            Ok(keys) => {
                lock(&self.failed).remove(server);
                lock(&self.known).insert(server.to_owned(), keys);
            }
            Err(e) => {
                tracing::warn!(server, error = %e, "could not fetch the server's signing keys");
                lock(&self.failed).insert(server.to_owned(), Instant::now());
            }
        }
    }
}

fn own_key(state: &AppState, key_id: &str) -> Option<String> {
    if key_id == state.signing_key.key_id() {
        return Some(state.signing_key.public_key_base64());
    }
    state.config.keys.old_verify_keys.get(key_id).map(|old| old.key.clone())
}

async fn fetch_and_store(state: &AppState, server: &str) -> Result<Vec<ServerKeyRow>> {
    let server_name = <&ServerName>::try_from(server).map_err(|e| Error::bad_json(e.to_string()))?;
    let response = state
        .federation
        .send_unsigned(server_name, get_server_keys::v2::Request::new())
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    let object: ruma::CanonicalJsonObject =
        serde_json::from_str(response.server_key.json().get()).map_err(|e| Error::internal(e.to_string()))?;
    let verified = verify_server_keys(object, server).map_err(|e| Error::internal(e.to_string()))?;
    let rows: Vec<ServerKeyRow> = verified
        .keys
        .iter()
        .map(|key| ServerKeyRow {
            key_id: key.key_id.clone(),
            public_key: key.key_base64.clone(),
            valid_until_ts: verified.valid_until_ts,
            expired_ts: key.expired_ts,
        })
        .collect();
    let json = serde_json::to_value(&verified.object).map_err(|e| Error::internal(e.to_string()))?;
    state.storage.store_server_keys(server, &rows, &json, verified.valid_until_ts, state.now_ms()).await?;
    Ok(rows)
}
