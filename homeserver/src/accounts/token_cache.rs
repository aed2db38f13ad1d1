//! Resolved access tokens, kept in memory so an authenticated request needs no database read.
//!
//! Any operation that revokes tokens (logout, device deletion, password change, deactivation,
//! refresh, re-login onto a device) clears the whole cache: those are rare, and a cleared cache
//! can never serve a revoked token.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Authed;

/// Entries kept at most; the cache starts over when full.
const MAX_ENTRIES: usize = 100_000;

/// Token hash → the caller and the token's expiry.
type Entries = HashMap<Vec<u8>, (Authed, Option<i64>)>;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<Entries>,
}

impl TokenCache {
    /// The cached caller for a token hash, with the token's expiry.
    pub fn get(&self, token_hash: &[u8]) -> Option<(Authed, Option<i64>)> {
        self.lock().get(token_hash).cloned()
    }

    pub fn insert(&self, token_hash: Vec<u8>, authed: Authed, expires_ts: Option<i64>) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(token_hash, (authed, expires_ts));
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
