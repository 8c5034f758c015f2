//! Group commit of document updates: one task per instance stores the batches of every
//! room that asked since its last commit in one transaction, so that many documents
//! edited at once cost one commit (one fsync on SQLite), not one each.
//!
//! Rooms forward updates to their own connections before they are stored (see
//! `room.rs`); what waits for the writer is the acknowledgement (a step 1's answer) and
//! the other instances, which learn of updates only from the commit.
//!
//! Invariants:
//! - A room is answered only after the transaction holding its updates committed (or
//!   failed); the "stored" notice to other instances is queued in that transaction, so
//!   it is sent only if it commits.
//! - A room's requests are answered in the order it made them, with increasing ranges:
//!   requests of one document in one transaction are numbered in arrival order, in one
//!   statement.
//! - Within a transaction documents are written in id order, so writers on different
//!   instances take the document rows' locks in the same order (no deadlock).
//! - A room whose document is gone is answered `None`; the others are unaffected.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection};
use tokio::sync::{mpsc, oneshot};

use super::{cluster, store};
use crate::realtime::Events;
use crate::AppState;

/// Why a room's updates were not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The transaction holding them failed (every room in it gets the same error).
    #[error("the database refused the updates: {0}")]
    Db(Arc<sqlx::Error>),
}

/// The first and last sequence numbers given to a room's updates, or `None` when the
/// document no longer exists.
pub type WriteOutcome = Result<Option<(i64, i64)>, StoreError>;

struct Request {
    doc_id: String,
    updates: Vec<Vec<u8>>,
    reply: oneshot::Sender<WriteOutcome>,
}

/// Requests stored in one transaction at most.
const MAX_REQUESTS: usize = 1024;
/// Transactions start at least this far apart while requests keep coming (a lone
/// request after a pause is committed at once). Every commit costs a handful of round
/// trips to the database and an fsync whatever it holds, and nobody watches it happen:
/// rooms forward updates before they are stored, so only acknowledgements and other
/// instances wait, by at most this much more. Measured with `benches/docs.rs` (200
/// typists at 5 keystrokes/s over 20 documents, SQLite): server CPU per delivery 27 µs
/// with a commit per batch as soon as possible, 20 µs with commits 10 ms apart; with 25
/// ms, the SQLite thread's share of the server's CPU (`perf record`) fell from 23 % to
/// 15 % (about 6.3 to 3.9 µs per delivery), an acknowledgement waiting 15 ms more at most.
const COMMIT_EVERY: std::time::Duration = std::time::Duration::from_millis(25);
/// After shutdown, how long the writer waits for rooms' last flushes.
const LAST_FLUSHES: std::time::Duration = std::time::Duration::from_millis(500);

/// The handle rooms store through.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer task of an instance.
    pub fn start(state: &AppState) -> Writer {
        let (tx, rx) = mpsc::channel(4096);
        state.tasks.spawn(run(state.clone(), rx));
        Writer { tx }
    }

    /// Hands a room's updates to the writer (waiting only while the writer's queue is
    /// full); the answer arrives once they are committed.
    pub async fn submit(&self, doc_id: &str, updates: Vec<Vec<u8>>) -> Pending {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            doc_id: doc_id.to_owned(),
            updates,
            reply,
        };
        // A refused request drops its `reply`: the answer reads as "shutting down".
        let _ = self.tx.send(request).await;
        Pending(answer)
    }
}

/// The answer to a submitted batch, once its transaction has ended.
pub struct Pending(oneshot::Receiver<WriteOutcome>);

impl std::future::Future for Pending {
    type Output = WriteOutcome;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<WriteOutcome> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(StoreError::ShuttingDown)))
    }
}

/// Serves until shutdown, and after it as long as rooms still send their last flushes
/// (each room flushes as soon as it sees the shutdown).
async fn run(state: AppState, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::new();
    // The writer keeps its own connection: a pooled one is pinged on every acquire, one
    // more round trip per commit. After an error it takes a fresh one.
    let mut conn: Option<PoolConnection<Any>> = None;
    let mut last_commit: Option<tokio::time::Instant> = None;
    let mut last_was_full = false;
    loop {
        let first = if state.shutdown.is_cancelled() {
            match tokio::time::timeout(LAST_FLUSHES, rx.recv()).await {
                Ok(Some(request)) => request,
                Ok(None) | Err(_) => return,
            }
        } else {
            tokio::select! {
                request = rx.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
                _ = state.shutdown.cancelled() => continue,
            }
        };
        batch.push(first);
        // Under a steady stream of requests, gather what arrives until the next commit
        // is due (a backlog of a full batch is committed at once).
        if let Some(due) = last_commit.map(|at| at + COMMIT_EVERY) {
            if !last_was_full && !state.shutdown.is_cancelled() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = state.shutdown.cancelled() => {}
                }
            }
        }
        last_commit = Some(tokio::time::Instant::now());
        while batch.len() < MAX_REQUESTS {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        last_was_full = batch.len() >= MAX_REQUESTS;
        let mut by_doc: BTreeMap<String, Vec<Request>> = BTreeMap::new();
        for request in batch.drain(..) {
            by_doc
                .entry(request.doc_id.clone())
                .or_default()
                .push(request);
        }
        let result = async {
            if conn.is_none() {
                conn = Some(state.db.pool.acquire().await?);
            }
            let conn = conn.as_mut().expect("just acquired");
            commit(&state, conn, &by_doc).await
        }
        .await;
        if result.is_err() {
            conn = None;
        }
        match result {
            Ok(results) => {
                for ((_, requests), ranges) in by_doc.into_iter().zip(results) {
                    for (request, range) in requests.into_iter().zip(ranges) {
                        let _ = request.reply.send(Ok(range));
                    }
                }
            }
            Err(err) => {
                tracing::error!(%err, "could not store document updates");
                let err = StoreError::Db(Arc::new(err));
                for request in by_doc.into_values().flatten() {
                    let _ = request.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// One transaction for every request; per document (in id order), per request, the
/// range it was given.
async fn commit(
    state: &AppState,
    conn: &mut AnyConnection,
    by_doc: &BTreeMap<String, Vec<Request>>,
) -> Result<Vec<Vec<Option<(i64, i64)>>>, sqlx::Error> {
    // A document asked more than once (a room submits again while its previous batch is
    // being committed) is stored in one statement, its requests numbered in order.
    let docs: Vec<(&str, Vec<&[u8]>)> = by_doc
        .iter()
        .map(|(doc_id, requests)| {
            let updates = requests
                .iter()
                .flat_map(|request| request.updates.iter().map(Vec::as_slice))
                .collect();
            (doc_id.as_str(), updates)
        })
        .collect();
    let now = state.clock.now_ms();
    let _turn = state.db.write_turn().await;
    let mut tx = conn.begin().await?;
    let ranges = store::append_updates(&mut tx, &docs, now).await?;
    let heads: Vec<(&str, i64)> = docs
        .iter()
        .zip(&ranges)
        .filter_map(|((doc_id, _), range)| Some((*doc_id, range.as_ref()?.1)))
        .collect();
    let mut events = Events::new(&state.hub);
    cluster::notify_stored(&mut events, &mut tx, &heads).await?;
    tx.commit().await?;
    events.deliver();
    Ok(by_doc
        .values()
        .zip(ranges)
        .map(|(requests, range)| split_range(range, requests.iter().map(|r| r.updates.len())))
        .collect())
}

/// Splits a document's range among its requests (`None`, the document gone, for all).
/// A request without updates gets an empty range just before the next (`first = last +
/// 1`).
fn split_range(
    range: Option<(i64, i64)>,
    counts: impl Iterator<Item = usize>,
) -> Vec<Option<(i64, i64)>> {
    let mut next = range.map(|(first, _)| first);
    counts
        .map(|count| {
            let first = next?;
            let last = first + count as i64 - 1;
            next = Some(last + 1);
            Some((first, last))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::split_range;

    #[test]
    fn a_documents_range_is_split_in_request_order() {
        assert_eq!(
            split_range(Some((5, 10)), [1, 3, 2].into_iter()),
            vec![Some((5, 5)), Some((6, 8)), Some((9, 10))]
        );
        assert_eq!(split_range(None, [1, 2].into_iter()), vec![None, None]);
    }
}
