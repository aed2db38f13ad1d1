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

/// The shortest time between two fetches of one server's keys, whatever the last one found:
/// requests naming unknown keys must not make us hammer a server (ours or a victim's).
const MIN_REFETCH: Duration = Duration::from_secs(30);
/// The longest we trust a fetched key object, whatever its `valid_until_ts` says (the spec's cap).
const MAX_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Default)]
pub struct Keyring {
    known: Mutex<HashMap<String, Vec<ServerKeyRow>>>,
    /// One fetch per server at a time; concurrent lookups wait for it.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    last_fetch: Mutex<HashMap<String, Instant>>,
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
            return Ok(own_key(state, key_id, at_ts));
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

    /// Fetches a server's keys from the server itself, at most once per [`MIN_REFETCH`];
    /// failures are logged.
    async fn fetch(&self, state: &AppState, server: &str) {
        let gate = lock(&self.fetching).entry(server.to_owned()).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        if lock(&self.last_fetch).get(server).is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return;
        }
        lock(&self.last_fetch).insert(server.to_owned(), Instant::now());
        match fetch_and_store(state, server).await {
            Ok(keys) => {
                lock(&self.known).insert(server.to_owned(), keys);
            }
            Err(e) => tracing::warn!(server, error = %e, "could not fetch the server's signing keys"),
        }
    }
}

fn own_key(state: &AppState, key_id: &str, at_ts: i64) -> Option<String> {
    if key_id == state.signing_key.key_id() {
        return Some(state.signing_key.public_key_base64());
    }
    // A retired key only vouches for what it signed before it was retired.
    let old = state.config.keys.old_verify_keys.get(key_id)?;
    (at_ts < i64::try_from(old.expired_ts).unwrap_or(i64::MAX)).then(|| old.key.clone())
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
    let mut verified = verify_server_keys(object, server).map_err(|e| Error::internal(e.to_string()))?;
    // Only the server's own signatures are kept: others' (a notary's) are not ours to vouch for.
    if let Some(ruma::CanonicalJsonValue::Object(signatures)) = verified.object.get_mut("signatures") {
        signatures.retain(|signer, _| signer == server);
    }
    verified.valid_until_ts = verified.valid_until_ts.min(state.now_ms().saturating_add(MAX_VALIDITY_MS));
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

/// Our own key object, self-signed, valid for the configured period from now.
pub fn own_key_object(state: &AppState) -> ruma::CanonicalJsonObject {
    let keys_config = &state.config.keys;
    let old_keys: Vec<federation::keys::OldVerifyKey> = keys_config
        .old_verify_keys
        .iter()
        .map(|(key_id, old)| federation::keys::OldVerifyKey {
            key_id: key_id.clone(),
            public_key_base64: old.key.clone(),
            expired_ts: old.expired_ts,
        })
        .collect();
    let now = u64::try_from(state.now_ms()).unwrap_or(0);
    let valid_until = now.saturating_add(keys_config.validity_period_secs.saturating_mul(1000));
    federation::keys::signed_server_keys(state.server_name.as_str(), &state.signing_key, &old_keys, valid_until)
}

impl Keyring {
    /// For notary queries: `server`'s key object valid at least until `minimum_valid_until_ts`
    /// (fetched again when the stored one is older), countersigned by us.
    pub async fn notarised_object(
        &self,
        state: &AppState,
        server: &str,
        minimum_valid_until_ts: i64,
    ) -> Result<Option<ruma::CanonicalJsonObject>> {
        if server == state.server_name.as_str() {
            return Ok(Some(own_key_object(state)));
        }
        let fresh_enough = |stored: &Option<(serde_json::Value, i64)>| {
            stored.as_ref().is_some_and(|(_, valid_until)| *valid_until >= minimum_valid_until_ts)
        };
        let mut stored = state.storage.server_key_object(server).await?;
        if !fresh_enough(&stored) {
            self.fetch(state, server).await;
            stored = state.storage.server_key_object(server).await?;
        }
        let Some((json, _)) = stored else { return Ok(None) };
        let mut object = federation::signing::to_canonical_object(json).map_err(|e| Error::internal(e.to_string()))?;
        federation::signing::sign_object(state.server_name.as_str(), &state.signing_key, &mut object);
        Ok(Some(object))
    }
}
