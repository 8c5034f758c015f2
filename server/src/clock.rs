//! Time as an injected dependency, so that tests can freeze, advance and rewind it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by_ms: i64) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Randomness as an injected dependency: secrets (session tokens) come from the
/// operating system's generator in production, and from a seeded one in tests that
/// replay.
pub trait Entropy: Send + Sync + 'static {
    fn fill(&self, bytes: &mut [u8]);
}

impl dyn Entropy {
    /// `N` random bytes as lowercase hex.
    pub fn hex<const N: usize>(&self) -> String {
        let mut bytes = [0u8; N];
        self.fill(&mut bytes);
        hex::encode(bytes)
    }
}

/// A cryptographically secure generator seeded by the operating system (`rand`'s
/// thread-local ChaCha generator).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, bytes: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut rand::rng(), bytes);
    }
}

/// A seeded generator, for tests that must replay. Clones share the sequence.
#[derive(Debug, Clone)]
pub struct SeededEntropy(Arc<std::sync::Mutex<rand::rngs::StdRng>>);

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy(Arc::new(std::sync::Mutex::new(
            rand::SeedableRng::seed_from_u64(seed),
        )))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, bytes: &mut [u8]) {
        let mut rng = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rand::RngCore::fill_bytes(&mut *rng, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_entropy_replays_and_os_entropy_differs() {
        let a: Arc<dyn Entropy> = Arc::new(SeededEntropy::new(7));
        let b: Arc<dyn Entropy> = Arc::new(SeededEntropy::new(7));
        assert_eq!(a.hex::<16>(), b.hex::<16>());
        assert_ne!(a.hex::<16>(), a.hex::<16>());
        let os: Arc<dyn Entropy> = Arc::new(OsEntropy);
        assert_eq!(os.hex::<16>().len(), 32);
        assert_ne!(os.hex::<16>(), os.hex::<16>());
    }
}
