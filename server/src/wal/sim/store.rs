//! [`SimLogStore`]: the node's real [`LogStore`] with a simulated fsync latency.
//!
//! The log's group commit runs on its own syncer thread, which the simulated clock
//! knows nothing of: left alone, when an append became durable would depend on the
//! machine, not the seed. So an append here waits (blocking the one runtime thread,
//! for the microseconds an in-memory fsync takes) until the log says it is durable,
//! and only then tells openraft, after the node's disk delay: a slow disk is one whose
//! acknowledgements come late, in order, through one queue per node. Nothing is
//! acknowledged before it is durable, as in production.
//!
//! Every other call goes straight to the [`LogStore`].

use std::fmt::Debug;
use std::future::Future;
use std::ops::RangeBounds;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry as RaftEntry, LogId, LogState, RaftLogReader, StorageError, Vote};
use tokio::sync::mpsc;

use super::world::World;
use crate::wal::raft::{entry_to_record, LogStore, NodeId, WalConfig};

type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// Appends waiting for their acknowledgement: the callback, the outcome, the delay.
pub type Acknowledgements =
    mpsc::UnboundedSender<(LogFlushed<WalConfig>, Result<(), std::io::Error>, Duration)>;

/// Runs the node's acknowledgement queue until the node crashes (the task is aborted).
pub fn spawn_acknowledger() -> (Acknowledgements, tokio::task::JoinHandle<()>) {
    let (sender, mut queue) =
        mpsc::unbounded_channel::<(LogFlushed<WalConfig>, Result<(), std::io::Error>, Duration)>();
    let task = tokio::spawn(async move {
        while let Some((callback, outcome, delay)) = queue.recv().await {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            callback.log_io_completed(outcome);
        }
    });
    (sender, task)
}

#[derive(Clone)]
pub struct SimLogStore {
    pub inner: LogStore,
    pub world: Arc<World>,
    /// The slowest fsync of this node's disk (zero: a fast disk).
    pub max_sync_delay: Duration,
    pub acknowledgements: Acknowledgements,
    /// The broken variant `LeaderResumesItsTerm`: the vote as saved, handed to openraft
    /// instead of the store's answer.
    pub vote_as_saved: Option<Vote<NodeId>>,
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread until it is ready. Only for futures another thread
/// completes (the log's syncer): nothing on this runtime runs meanwhile.
fn wait_here<F: Future>(future: F) -> F::Output {
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut context = Context::from_waker(&waker);
    // Outside tokio's cooperative budget, which would otherwise say "yield" forever.
    let mut future = pin!(tokio::task::unconstrained(future));
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

impl RaftLogReader<WalConfig> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<RaftEntry<WalConfig>>> {
        self.inner.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<WalConfig> for SimLogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<WalConfig>> {
        self.inner.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.inner.get_log_reader().await
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.inner.save_vote(vote).await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        match self.vote_as_saved {
            Some(vote) => Ok(Some(vote)),
            None => self.inner.read_vote().await,
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        self.inner.save_committed(committed).await
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        self.inner.read_committed().await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<WalConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = RaftEntry<WalConfig>> + Send,
        I::IntoIter: Send,
    {
        let records = entries
            .into_iter()
            .map(|entry| entry_to_record(&entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| StorageError::IO {
                source: openraft::StorageIOError::write_logs(openraft::AnyError::new(&err)),
            })?;
        let outcome = if records.is_empty() {
            Ok(())
        } else {
            wait_here(self.inner.log().append(records)).map_err(std::io::Error::other)
        };
        let delay = self
            .world
            .millis(0..=self.max_sync_delay.as_millis() as u64);
        // A crashed node's queue is gone; its Raft is stopping anyway.
        let _ = self.acknowledgements.send((callback, outcome, delay));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.inner.truncate(log_id).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.inner.purge(log_id).await
    }
}
