//! Meridian's test harness: real servers (in-process on `127.0.0.1:0`, or as child
//! processes for fault tests) on a fresh database of either backend, HTTP and WebSocket
//! clients with their own cookie jars, and a headless Chromium driven over WebDriver.
//!
//! PostgreSQL tests need `MERIDIAN_TEST_PG_URL` (an account that may create databases);
//! `scripts/test.sh` starts a server and sets it. Without it they fail, naming the
//! variable: a backend is never skipped silently.

pub mod bench;
pub mod browser;
pub mod client;
pub mod db;
pub mod objects;
pub mod process;
pub mod server;
pub mod wal;
pub mod ybench;
pub mod yjs;

/// Runs an async test body once per backend, as two tests `sqlite` and `postgres` in a
/// module named after the test:
///
/// ```text
/// both_backends!(signup_then_me, |db| async move { ... });
/// ```
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::db::TestDatabase::create($crate::db::Backend::Sqlite).await;
                ($body)(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::db::TestDatabase::create($crate::db::Backend::Postgres).await;
                ($body)(db).await;
            }
        }
    };
}

/// Deterministic bytes (xorshift from `seed`), so a failing test replays.
pub fn seeded_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
