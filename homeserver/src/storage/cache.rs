//! A bounded in-memory cache of rows that rarely change (decoded events, resolved state groups).
//!
//! Two segments approximate least-recently-used eviction without per-hit bookkeeping: entries go
//! into the hot segment; when it is full it becomes the cold one (and the old cold one is
//! dropped); a hit in the cold segment moves the entry back to the hot one. Capacity is counted
//! in a weight per entry (1 per event, the number of entries of a room state), so a few huge
//! entries cannot take unbounded memory.
//!
//! A generation counter keeps a reader from caching what it read before a change: readers take
//! the generation before their query, and [`Cache::insert_read`] drops the rows whose key was
//! invalidated since (every row, after a [`Cache::clear`] or when too many keys changed to
//! remember which). Writers call [`Cache::invalidate`] or [`Cache::clear`] after their commit.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
pub(super) struct Cache<K, V> {
    segments: Mutex<Segments<K, V>>,
    /// Weight per segment; zero disables the cache.
    segment_capacity: usize,
    weigh: fn(&V) -> usize,
}

#[derive(Debug)]
struct Segments<K, V> {
    hot: HashMap<K, V>,
    hot_weight: usize,
    cold: HashMap<K, V>,
    generation: u64,
    /// The generation at which each recently invalidated key changed last.
    changed: HashMap<K, u64>,
    /// Reads that began before this generation may hold any change: `changed` was emptied then.
    changed_since: u64,
}

/// Invalidated keys remembered at most; past that, reads in flight are dropped whole.
const REMEMBERED_CHANGES: usize = 4096;

/// The cache's generation when a read began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generation(u64);

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache holding entries of at most `capacity` weight in all.
    pub(super) fn new(capacity: usize, weigh: fn(&V) -> usize) -> Self {
        let segments = Segments {
            hot: HashMap::new(),
            hot_weight: 0,
            cold: HashMap::new(),
            generation: 0,
            changed: HashMap::new(),
            changed_since: 0,
        };
        Self { segments: Mutex::new(segments), segment_capacity: capacity / 2, weigh }
    }

    pub(super) fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut segments = self.lock();
        if let Some(value) = segments.hot.get(key) {
            return Some(value.clone());
        }
        let (key, value) = segments.cold.remove_entry(key)?;
        self.put(&mut segments, key, value.clone());
        Some(value)
    }

    /// Caches rows read from the database, unless something changed since `generation`.
    pub(super) fn insert_read(&self, generation: Generation, rows: impl IntoIterator<Item = (K, V)>) {
        if self.segment_capacity == 0 {
            return;
        }
        let mut segments = self.lock();
        if generation.0 < segments.changed_since {
            return;
        }
        for (key, value) in rows {
            if segments.changed.get(&key).is_some_and(|&changed| changed > generation.0) {
                continue;
            }
            self.put(&mut segments, key, value);
        }
    }

    /// Forgets these entries (after a commit that changed them).
    pub(super) fn invalidate<'a, Q>(&self, keys: impl IntoIterator<Item = &'a Q>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized + 'a,
    {
        let mut segments = self.lock();
        segments.generation += 1;
        let generation = segments.generation;
        for key in keys {
            if let Some(value) = segments.hot.remove(key) {
                segments.hot_weight -= (self.weigh)(&value);
            }
            segments.cold.remove(key);
            segments.changed.insert(key.to_owned(), generation);
        }
        if segments.changed.len() > REMEMBERED_CHANGES {
            segments.forget_changes();
        }
    }

    /// Forgets everything (after a commit that changed many entries, or reused keys).
    pub(super) fn clear(&self) {
        let mut segments = self.lock();
        segments.generation += 1;
        segments.hot.clear();
        segments.hot_weight = 0;
        segments.cold.clear();
        segments.forget_changes();
    }

    fn put(&self, segments: &mut Segments<K, V>, key: K, value: V) {
        let weight = (self.weigh)(&value);
        if weight > self.segment_capacity {
            return;
        }
        if let Some(old) = segments.hot.remove(&key) {
            segments.hot_weight -= (self.weigh)(&old);
        }
        if segments.hot_weight + weight > self.segment_capacity {
            segments.cold = std::mem::take(&mut segments.hot);
            segments.hot_weight = 0;
            segments.cold.remove(&key);
        }
        segments.hot_weight += weight;
        segments.hot.insert(key, value);
    }

    fn lock(&self) -> MutexGuard<'_, Segments<K, V>> {
        // A panic elsewhere cannot leave the maps inconsistent (every update is one insert or
        // remove), so a poisoned lock is still usable.
        self.segments.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K, V> Segments<K, V> {
    /// Stops tracking changes key by key: every read in flight counts as stale.
    fn forget_changes(&mut self) {
        self.changed.clear();
        self.changed_since = self.generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_keeps_recently_used_entries() {
        let cache: Cache<u32, u32> = Cache::new(4, |_| 1);
        let generation = cache.generation();
        cache.insert_read(generation, [(1, 10), (2, 20)]);
        // Full hot segment: 1 and 2 go cold, 3 and 4 are hot.
        cache.insert_read(generation, [(3, 30), (4, 40)]);
        // A cold hit moves 1 back: 3 and 4 go cold, 2 is dropped.
        assert_eq!(cache.get(&1), Some(10));
        assert_eq!(cache.get(&2), None);
        assert_eq!((cache.get(&3), cache.get(&4)), (Some(30), Some(40)));
        let segments = cache.lock();
        assert!(segments.hot.len() + segments.cold.len() <= 4);
    }

    #[test]
    fn capacity_is_counted_in_weight() {
        let cache: Cache<u32, Vec<u8>> = Cache::new(10, Vec::len);
        let generation = cache.generation();
        // Heavier than a segment: never cached.
        cache.insert_read(generation, [(1, vec![0; 6])]);
        assert_eq!(cache.get(&1), None);
        cache.insert_read(generation, [(2, vec![0; 3]), (3, vec![0; 2]), (4, vec![0; 1])]);
        // 2 and 3 filled the hot segment (5), so 4 started a new one.
        assert_eq!(cache.lock().hot_weight, 1);
        assert_eq!(cache.get(&2).map(|v| v.len()), Some(3));
        assert_eq!(cache.get(&4).map(|v| v.len()), Some(1));
    }

    #[test]
    fn rows_read_before_a_change_are_not_cached() {
        let cache: Cache<String, u32> = Cache::new(8, |_| 1);
        let before = cache.generation();
        cache.invalidate(["a"]);
        cache.insert_read(before, [("a".to_owned(), 1)]);
        assert_eq!(cache.get("a"), None);
        let after = cache.generation();
        cache.insert_read(after, [("a".to_owned(), 2)]);
        assert_eq!(cache.get("a"), Some(2));
        cache.clear();
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn a_change_to_one_key_keeps_reads_of_others() {
        let cache: Cache<String, u32> = Cache::new(8, |_| 1);
        let before = cache.generation();
        cache.invalidate(["a"]);
        cache.insert_read(before, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert_eq!((cache.get("a"), cache.get("b")), (None, Some(2)));
        // Too many changes to remember: a read from before them is dropped whole.
        let before = cache.generation();
        let keys: Vec<String> = (0..=REMEMBERED_CHANGES).map(|i| i.to_string()).collect();
        cache.invalidate(keys.iter().map(String::as_str));
        cache.insert_read(before, [("c".to_owned(), 3)]);
        assert_eq!(cache.get("c"), None);
        cache.insert_read(cache.generation(), [("c".to_owned(), 3)]);
        assert_eq!(cache.get("c"), Some(3));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache: Cache<u32, u32> = Cache::new(0, |_| 1);
        cache.insert_read(cache.generation(), [(1, 1)]);
        assert_eq!(cache.get(&1), None);
    }
}
