//! A work queue of object keys, as controllers use it: a key queued many
//! times is processed once; a key is never processed by two workers at once
//! (re-adds while processing run again after); failures come back with
//! exponential back-off.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    shut: bool,
}

#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

/// Back-off after the n-th consecutive failure: 5 ms doubling, at most 30 s.
pub fn backoff(failures: u32) -> Duration {
    let ms = 5u64.saturating_mul(1u64 << failures.min(20));
    Duration::from_millis(ms.min(30_000))
}

impl WorkQueue {
    pub fn new() -> Arc<WorkQueue> {
        Arc::new(WorkQueue::default())
    }

    pub fn add(&self, key: &str) {
        let mut s = self.state.lock();
        if s.shut || s.dirty.contains(key) {
            return;
        }
        s.dirty.insert(key.to_string());
        if !s.processing.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: &str, delay: Duration) {
        let (q, key) = (self.clone(), key.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(&key);
        });
    }

    /// Re-adds a key that failed, with back-off.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) {
        let n = {
            let mut s = self.state.lock();
            let n = s.failures.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        self.add_after(key, backoff(n));
    }

    /// Clears a key's failure count (after a success).
    pub fn forget(&self, key: &str) {
        self.state.lock().failures.remove(key);
    }

    /// Waits for the next key; `None` once shut down.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.shut {
                    return None;
                }
                if let Some(k) = s.queue.pop_front() {
                    s.dirty.remove(&k);
                    s.processing.insert(k.clone());
                    if !s.queue.is_empty() {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return Some(k);
                }
            }
            notified.await;
        }
    }

    /// Marks a key processed; if it was re-added meanwhile it is queued again.
    pub fn done(&self, key: &str) {
        let mut s = self.state.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shutdown(&self) {
        self.state.lock().shut = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_requeues_while_processing() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.get().await.unwrap();
        assert_eq!(k, "a");
        q.add("a"); // re-added while processing: not queued twice
        assert_eq!(q.len(), 1);
        q.done("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await.unwrap(), "b");
        assert_eq!(q.get().await.unwrap(), "a");
    }

    #[tokio::test]
    async fn backoff_grows_and_caps() {
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(40), Duration::from_secs(30));
        let q = WorkQueue::new();
        q.add_rate_limited("x");
        let k = tokio::time::timeout(Duration::from_secs(1), q.get())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(k, "x");
    }

    #[tokio::test]
    async fn shutdown_releases_waiters() {
        let q = WorkQueue::new();
        let q2 = q.clone();
        let h = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shutdown();
        assert_eq!(h.await.unwrap(), None);
    }
}
