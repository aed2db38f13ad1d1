//! A bounded in-memory cache of rows that rarely change (decoded events, resolved state groups).
//!
//! Two segments approximate least-recently-used eviction without per-hit bookkeeping: entries go
//! into the hot segment; when it is full it becomes the cold one (and the old cold one is
//! dropped); a hit in the cold segment moves the entry back to the hot one. Capacity is counted
//! in a weight per entry (1 per event, the number of entries of a room state), so a few huge
//! entries cannot take unbounded memory.
//!
//! A generation counter keeps a reader from caching what it read before a change: readers take
//! the generation before their query, and [`Cache::insert_read`] drops rows when it moved since.
//! Writers call [`Cache::invalidate`] or [`Cache::clear`] after their commit.

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
}

/// The cache's generation when a read began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generation(u64);

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache holding entries of at most `capacity` weight in all.
    pub(super) fn new(capacity: usize, weigh: fn(&V) -> usize) -> Self {
        let segments = Segments { hot: HashMap::new(), hot_weight: 0, cold: HashMap::new(), generation: 0 };
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
        if segments.generation != generation.0 {
            return;
        }
        for (key, value) in rows {
            self.put(&mut segments, key, value);
        }
    }

    /// Forgets these entries (after a commit that changed them).
    pub(super) fn invalidate<'a, Q>(&self, keys: impl IntoIterator<Item = &'a Q>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'a,
    {
        let mut segments = self.lock();
        segments.generation += 1;
        for key in keys {
            if let Some(value) = segments.hot.remove(key) {
                segments.hot_weight -= (self.weigh)(&value);
            }
            segments.cold.remove(key);
        }
    }

    /// Forgets everything (after a commit that changed many entries, or reused keys).
    pub(super) fn clear(&self) {
        let mut segments = self.lock();
        segments.generation += 1;
        segments.hot.clear();
        segments.hot_weight = 0;
        segments.cold.clear();
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
    fn zero_capacity_caches_nothing() {
        let cache: Cache<u32, u32> = Cache::new(0, |_| 1);
        cache.insert_read(cache.generation(), [(1, 1)]);
        assert_eq!(cache.get(&1), None);
    }
}
