//! A sliding-window limiter of attempts per key (an account, a client address), in
//! memory, with an injected clock.
//!
//! Invariants: a key never holds more than `limit` timestamps, and the map never holds
//! more than `max_keys` keys (the least recently used are dropped first), so memory stays
//! bounded whatever clients send. Limits are per server instance.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Counts attempts per key within a sliding window.
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window_ms: i64,
    max_keys: usize,
    keys: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl RateLimiter {
    pub fn new(limit: usize, window_ms: i64) -> RateLimiter {
        RateLimiter::with_capacity(limit, window_ms, 100_000)
    }

    pub fn with_capacity(limit: usize, window_ms: i64, max_keys: usize) -> RateLimiter {
        RateLimiter {
            limit: limit.max(1),
            window_ms,
            max_keys: max_keys.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` until the next attempt for `key` would be allowed, or `Ok` if it is
    /// allowed now. Does not count an attempt.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = keys.get_mut(key) else {
            return Ok(());
        };
        Self::expire(times, now_ms - self.window_ms);
        if times.len() < self.limit {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now_ms);
        let wait_ms = (oldest + self.window_ms - now_ms).max(0);
        Err((wait_ms as u64).div_ceil(1000).max(1))
    }

    /// Counts one attempt for `key`.
    pub fn record(&self, key: &str, now_ms: i64) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if !keys.contains_key(key) && keys.len() >= self.max_keys {
            let horizon = now_ms - self.window_ms;
            keys.retain(|_, times| {
                Self::expire(times, horizon);
                !times.is_empty()
            });
            if keys.len() >= self.max_keys {
                // Every key is young: the stalest tenth goes at once, so the next scan
                // comes only after as many new keys (one scan per key made a flood of
                // distinct keys cost a scan of the whole map each).
                let mut last: Vec<i64> = keys
                    .values()
                    .map(|times| times.back().copied().unwrap_or(i64::MIN))
                    .collect();
                let cut = (self.max_keys / 10).max(1).min(last.len() - 1);
                let (_, &mut threshold, _) = last.select_nth_unstable(cut);
                let mut over = keys.len() + 1 - self.max_keys.saturating_sub(cut);
                keys.retain(|_, times| {
                    let stale = times.back().copied().unwrap_or(i64::MIN) < threshold;
                    if stale && over > 0 {
                        over -= 1;
                        return false;
                    }
                    true
                });
                if keys.len() >= self.max_keys {
                    // Ties at the threshold: drop one of them.
                    if let Some(k) = keys
                        .iter()
                        .min_by_key(|(_, times)| times.back().copied().unwrap_or(i64::MIN))
                        .map(|(k, _)| k.clone())
                    {
                        keys.remove(&k);
                    }
                }
            }
        }
        let times = keys.entry(key.to_owned()).or_default();
        Self::expire(times, now_ms - self.window_ms);
        if times.len() >= self.limit {
            times.pop_front();
        }
        times.push_back(now_ms);
    }

    /// `check` and, if allowed, `record`, in one step.
    pub fn attempt(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        self.check(key, now_ms)?;
        self.record(key, now_ms);
        Ok(())
    }

    /// Forgets `key` (after a successful sign-in, say).
    pub fn reset(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn expire(times: &mut VecDeque<i64>, horizon: i64) {
        while times.front().is_some_and(|&t| t <= horizon) {
            times.pop_front();
        }
    }

    #[cfg(test)]
    fn key_count(&self) -> usize {
        self.keys.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocks_after_the_limit_and_reopens_after_the_window() {
        let limiter = RateLimiter::new(3, 60_000);
        for t in 0..3 {
            assert_eq!(limiter.attempt("alice", t), Ok(()));
        }
        assert_eq!(limiter.attempt("alice", 10_000), Err(50));
        assert_eq!(limiter.check("bob", 10_000), Ok(()));
        assert_eq!(limiter.check("alice", 60_000), Ok(()));
    }

    #[test]
    fn reset_forgets_a_key() {
        let limiter = RateLimiter::new(1, 60_000);
        limiter.record("alice", 0);
        assert!(limiter.check("alice", 1).is_err());
        limiter.reset("alice");
        assert_eq!(limiter.check("alice", 1), Ok(()));
    }

    #[test]
    fn a_flood_of_young_keys_evicts_the_stalest_tenth_at_once() {
        let limiter = RateLimiter::with_capacity(2, 60_000, 100);
        for i in 0..100 {
            limiter.record(&format!("key{i}"), i);
        }
        limiter.record("new", 100);
        // The ten stalest went together: the next nine new keys need no scan.
        assert_eq!(limiter.key_count(), 91);
        assert!(limiter.check("key0", 101).is_ok());
        limiter.record("key99", 101);
        limiter.record("key99", 102);
        assert!(limiter.check("key99", 103).is_err(), "a young key is kept");
        for i in 0..1000 {
            limiter.record(&format!("more{i}"), 200 + i);
            assert!(limiter.key_count() <= 100);
        }
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let limiter = RateLimiter::with_capacity(2, 60_000, 10);
        for i in 0..1000 {
            limiter.record(&format!("key{i}"), i);
        }
        assert!(limiter.key_count() <= 10);
    }

    proptest! {
        #[test]
        fn never_allows_more_than_limit_within_any_window(
            gaps in proptest::collection::vec(0i64..5_000, 1..200),
            limit in 1usize..10,
        ) {
            let window = 10_000;
            let limiter = RateLimiter::new(limit, window);
            let mut now = 0;
            let mut allowed = Vec::new();
            for gap in gaps {
                now += gap;
                if limiter.attempt("k", now).is_ok() {
                    allowed.push(now);
                }
            }
            for (i, &t) in allowed.iter().enumerate() {
                let in_window = allowed[i..].iter().take_while(|&&u| u < t + window).count();
                prop_assert!(in_window <= limit);
            }
        }
    }
}
