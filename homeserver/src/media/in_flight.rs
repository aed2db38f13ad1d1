//! One fetch at a time per key (a remote media item, a URL to preview): whoever comes while a
//! fetch is running waits for it and then finds its result in the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct InFlight(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// The right to fetch for one key, held until dropped.
pub struct Turn<'a> {
    in_flight: &'a InFlight,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InFlight {
    /// Waits until nobody else is fetching for `key`.
    pub async fn turn(&self, key: String) -> Turn<'_> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        Turn { in_flight: self, key, guard: Some(guard) }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut map = self.in_flight.0.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.guard.take());
        // The last one out (only the map still holds the lock) forgets the key.
        if map.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_turn_at_a_time_and_keys_are_forgotten() {
        let in_flight = Arc::new(InFlight::default());
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (in_flight, running) = (in_flight.clone(), running.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = in_flight.turn("k".into()).await;
                assert_eq!(running.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                tokio::time::sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert!(in_flight.0.lock().unwrap().is_empty());
    }
}
