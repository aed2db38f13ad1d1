//! Resolved access tokens, kept in memory so an authenticated request needs no database read.
//!
//! Any operation that revokes tokens (logout, device deletion, password change, deactivation,
//! refresh, re-login onto a device) clears the whole cache: those are rare, and a cleared cache
//! can never serve a revoked token. Revocations by another process (the admin CLI) cannot clear
//! it, so entries are also trusted for at most [`MAX_AGE_MS`].

use std::collections::HashMap;
use std::sync::Mutex;

use super::Authed;

/// Entries kept at most; the cache starts over when full.
const MAX_ENTRIES: usize = 100_000;

/// How long a cached token is trusted before the database is asked again.
pub const MAX_AGE_MS: i64 = 30_000;

/// Token hash → the caller, the token's expiry, and when it was cached.
type Entries = HashMap<Vec<u8>, (Authed, Option<i64>, i64)>;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<Entries>,
}

impl TokenCache {
    /// The cached caller for a token hash, with the token's expiry, unless the entry is stale.
    pub fn get(&self, token_hash: &[u8], now_ms: i64) -> Option<(Authed, Option<i64>)> {
        let entries = self.lock();
        let (authed, expires_ts, cached_at) = entries.get(token_hash)?;
        (now_ms - cached_at < MAX_AGE_MS).then(|| (authed.clone(), *expires_ts))
    }

    pub fn insert(&self, token_hash: Vec<u8>, authed: Authed, expires_ts: Option<i64>, now_ms: i64) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(token_hash, (authed, expires_ts, now_ms));
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_go_stale() {
        let cache = TokenCache::default();
        let authed = Authed {
            user_id: ruma::OwnedUserId::try_from("@a:example.org").unwrap(),
            device_id: "D".into(),
            is_admin: false,
        };
        cache.insert(b"hash".to_vec(), authed, None, 1_000);
        assert!(cache.get(b"hash", 1_000 + MAX_AGE_MS - 1).is_some());
        assert!(cache.get(b"hash", 1_000 + MAX_AGE_MS).is_none(), "re-checked against the database");
    }
}
