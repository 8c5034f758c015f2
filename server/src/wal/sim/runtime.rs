//! [`WalRuntime`]: openraft's async runtime for the WAL: tokio, except that the
//! election timeouts openraft draws come from a seeded RNG when the thread runs a
//! simulation ([`seed_election_timeouts`]), so a schedule replays with the same
//! elections. Outside a simulation it draws from `rand::rng()` as openraft's
//! `TokioRuntime` does.
//!
//! openraft 0.9 draws through `AsyncRuntime::thread_rng()` (rand 0.8's `Rng`, hence
//! `rand_core` 0.6 here); `Config::new_rand_election_timeout` is its only caller.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use rand::rngs::StdRng;
use rand::SeedableRng;

thread_local! {
    static ELECTION_RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// From now on, election timeouts drawn on this thread come from `seed` (`None`: from
/// the thread's OS-seeded RNG again).
pub fn seed_election_timeouts(seed: Option<u64>) {
    ELECTION_RNG.with(|rng| *rng.borrow_mut() = seed.map(StdRng::seed_from_u64));
}

/// The RNG openraft gets from [`WalRuntime::thread_rng`].
pub struct ElectionRng;

impl ElectionRng {
    fn draw<T>(&mut self, f: impl FnOnce(&mut dyn rand::RngCore) -> T) -> T {
        ELECTION_RNG.with(|seeded| match seeded.borrow_mut().as_mut() {
            Some(rng) => f(rng),
            None => f(&mut rand::rng()),
        })
    }
}

impl rand_core_06::RngCore for ElectionRng {
    fn next_u32(&mut self) -> u32 {
        self.draw(|rng| rng.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        self.draw(|rng| rng.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.draw(|rng| rng.fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// tokio, with [`ElectionRng`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WalRuntime;

impl AsyncRuntime for WalRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = ElectionRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ElectionRng
    }

    fn oneshot<T: OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_election_timeouts() {
        let config = openraft::Config::default();
        let draw = |seed| {
            seed_election_timeouts(Some(seed));
            let timeouts: Vec<u64> = (0..8)
                .map(|_| config.new_rand_election_timeout::<WalRuntime>())
                .collect();
            seed_election_timeouts(None);
            timeouts
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
