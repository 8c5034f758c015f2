//! Group commit of cart changes across carts.
//!
//! A request's change goes into a bounded queue; a committer takes every change that
//! queued meanwhile (at most [`MAX_BATCH`]) and writes them in one transaction — one
//! fsync on SQLite, one commit (and so one round of NOTIFYs) on PostgreSQL — with their
//! realtime events appended to one `Events`, delivered after the commit. Each request is
//! answered only once its batch is durable.
//!
//! A batch costs a fixed number of statements, not some per change: its carts are
//! locked and read together, its changes are checked and applied in memory
//! (`apply.rs`), and what was accepted is written with one multi-row statement per kind
//! of row (snapshots, tombstones, history, events).
//!
//! Invariants:
//! - A request's ops still apply all or nothing: every change is checked in memory
//!   before anything is written, and a refused change is simply not written (answered
//!   alone, 422); the others commit.
//! - A database error fails the whole batch: nothing of it commits, and every request in
//!   it gets the error (the snapshot cache keeps only what committed).
//! - A cart's changes keep their arrival order (one cart always goes to one committer;
//!   the sort within a batch is stable, and a cart's changes apply in memory in order,
//!   each seeing the ones before).
//! - Lock order: within a batch, carts are locked in descending id order, so that an
//!   account's cart (`user-…`) is locked before a guest cart (`guest-…`), as the merge
//!   does; then their topics, in descending order too. Two batches (on any instance)
//!   never wait on each other in a cycle.
//! - A committer writes on a connection it keeps from batch to batch (it never queues
//!   for the pool behind the requests' own reads); a failed batch closes it and the next
//!   batch takes another.
//! - Bounded: each committer's queue holds at most [`QUEUE_PER_SHARD`] changes; a full
//!   queue refuses at once ([`WriteError::Busy`], 503 with `Retry-After`).
//! - On shutdown the queue closes and what it holds is still written and answered.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use meridian_shared::api::DatabaseBackend;
use meridian_shared::cart::{Cart, CartEvent, CartOp};
use sqlx::{AnyConnection, Connection};
use tokio::sync::{mpsc, oneshot};

use super::apply::{Change, WorkingCart};
use super::store::{self, StoredCart, WriteError};
use super::CartRef;
use crate::db::HeldConnection;
use crate::realtime::{Append, Events};
use crate::AppState;

/// The most changes one transaction carries.
pub const MAX_BATCH: usize = 256;
/// The most changes waiting for one committer.
pub const QUEUE_PER_SHARD: usize = 2048;
/// Committers on PostgreSQL, which writes concurrently (SQLite has one writer).
pub const PG_SHARDS: usize = 4;

/// The outcome of one change: the stored cart and whether it changed.
pub type Outcome = Result<(StoredCart, bool), WriteError>;

/// One request's change, waiting for its batch.
struct Job {
    change: Request,
    reply: oneshot::Sender<Outcome>,
}

/// What a request asks to write.
pub struct Request {
    pub cart: CartRef,
    pub ops: Vec<(CartOp, bool)>,
    pub session_id: Option<String>,
}

/// The queues of the committers (one per shard of carts).
pub struct Committer {
    shards: Vec<mpsc::Sender<Job>>,
}

impl Committer {
    fn new(shards: usize, capacity: usize) -> (Committer, Vec<mpsc::Receiver<Job>>) {
        let (senders, receivers) = (0..shards.max(1)).map(|_| mpsc::channel(capacity)).unzip();
        (Committer { shards: senders }, receivers)
    }

    /// Starts the committers of `state`'s database on its task tracker.
    pub fn start(state: &AppState) -> Committer {
        let shards = match state.db.backend {
            DatabaseBackend::Sqlite => 1,
            DatabaseBackend::Postgres => PG_SHARDS,
        };
        let (committer, receivers) = Committer::new(shards, QUEUE_PER_SHARD);
        for receiver in receivers {
            state.tasks.spawn(run(state.clone(), receiver));
        }
        committer
    }

    /// The committer of a cart: a stable hash (FNV-1a) of its id.
    fn shard_of(&self, cart_id: &str) -> usize {
        let hash = cart_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % self.shards.len() as u64) as usize
    }

    /// Queues a change and waits until its batch is durable (or refused it).
    pub async fn submit(&self, change: Request) -> Outcome {
        let reply = self.enqueue(change)?;
        reply.await.unwrap_or(Err(WriteError::Stopped))
    }

    fn enqueue(&self, change: Request) -> Result<oneshot::Receiver<Outcome>, WriteError> {
        let (reply, answer) = oneshot::channel();
        let shard = self.shard_of(&change.cart.id);
        match self.shards[shard].try_send(Job { change, reply }) {
            Ok(()) => Ok(answer),
            Err(mpsc::error::TrySendError::Full(_)) => Err(WriteError::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriteError::Stopped),
        }
    }
}

/// One committer: waits for a change, takes everything queued behind it, writes the
/// batch; until shutdown, then drains what is left.
async fn run(state: AppState, mut queue: mpsc::Receiver<Job>) {
    let mut held = HeldConnection::default();
    let mut closing = false;
    loop {
        let first = if closing {
            queue.recv().await
        } else {
            tokio::select! {
                biased;
                job = queue.recv() => job,
                _ = state.shutdown.cancelled() => {
                    closing = true;
                    queue.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&state, &mut held, batch).await;
    }
}

/// Writes a batch on the committer's connection and answers each of its requests.
async fn commit(state: &AppState, held: &mut HeldConnection, batch: Vec<Job>) {
    let (changes, replies): (Vec<Request>, Vec<_>) =
        batch.into_iter().map(|job| (job.change, job.reply)).unzip();
    for (reply, outcome) in replies
        .into_iter()
        .zip(write_batch_on(state, held, changes).await)
    {
        let _ = reply.send(outcome);
    }
}

/// Writes `changes` as one batch (see the module's invariants) and delivers their events
/// once it committed. Answers each change's outcome, in the order given. Requests
/// normally come here through [`Committer::submit`]; tests call it to build a batch
/// deterministically.
pub async fn write_batch(state: &AppState, changes: Vec<Request>) -> Vec<Outcome> {
    write_batch_on(state, &mut HeldConnection::default(), changes).await
}

/// [`write_batch`] on the connection `held` (taken from the pool when there is none).
/// A failed batch closes it: the error may have been the connection's own.
async fn write_batch_on(
    state: &AppState,
    held: &mut HeldConnection,
    changes: Vec<Request>,
) -> Vec<Outcome> {
    let count = changes.len();
    // Descending cart ids: accounts' carts before guests' (see the lock order); stable,
    // so one cart's changes keep their order.
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|&a, &b| changes[b].cart.id.cmp(&changes[a].cart.id));
    let mut slots: Vec<Option<Request>> = changes.into_iter().map(Some).collect();
    let sorted: Vec<Request> = order
        .iter()
        .map(|&i| slots[i].take().expect("each change once"))
        .collect();
    let mut events = Events::new(&state.hub);
    match write(state, held, sorted, &mut events).await {
        Ok(outcomes) => {
            events.deliver();
            let mut answers: Vec<Option<Outcome>> = (0..count).map(|_| None).collect();
            for (&i, outcome) in order.iter().zip(outcomes) {
                answers[i] = Some(outcome);
            }
            answers
                .into_iter()
                .map(|a| a.expect("an outcome per change"))
                .collect()
        }
        Err(err) => {
            tracing::warn!(%err, requests = count, "a cart batch failed");
            held.discard();
            let err = Arc::new(err);
            (0..count)
                .map(|_| Err(WriteError::Batch(err.clone())))
                .collect()
        }
    }
}

/// The batch's transaction, in a fixed number of statements whatever its size: lock
/// every cart of the batch (one multi-row upsert), read those not cached and what the
/// history and tombstones hold about the batch's op ids, apply each change in memory
/// (a refused change is simply not written), then write the accepted changes' rows and
/// events. Any database error aborts the batch.
async fn write(
    state: &AppState,
    held: &mut HeldConnection,
    changes: Vec<Request>,
    events: &mut Events,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let _turn = state.db.write_turn().await;
    let now = state.clock.now_ms();
    let mut tx = Connection::begin(held.get(&state.db.pool).await?).await?;
    let mut distinct = HashSet::new();
    let carts: Vec<&CartRef> = changes
        .iter()
        .map(|change| &change.cart)
        .filter(|cart| distinct.insert(cart.id.as_str()))
        .collect();
    let locked = store::lock_carts(&mut tx, &carts, now).await?;
    let mut working: HashMap<String, WorkingCart> = working_carts(state, &mut tx, locked)
        .await?
        .into_iter()
        .map(|cart| (cart.id.clone(), cart))
        .collect();
    let wanted: Vec<(&str, &str)> = changes
        .iter()
        .flat_map(|change| {
            let cart_id = change.cart.id.as_str();
            change
                .ops
                .iter()
                .map(move |(op, _)| (cart_id, op.op_id.as_str()))
        })
        .collect();
    let recorded = store::recorded(&mut tx, &wanted).await?;
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut accepted = Vec::new();
    for change in changes {
        let cart = working
            .get_mut(&change.cart.id)
            .ok_or(sqlx::Error::RowNotFound)?;
        match cart.apply(&recorded, &state.carts, change.ops) {
            Ok(Some(applied)) => {
                let stored = cart.stored();
                outcomes.push(Ok((stored.clone(), true)));
                accepted.push(Accepted {
                    cart: change.cart,
                    stored,
                    change: applied,
                    session_id: change.session_id,
                });
            }
            Ok(None) => outcomes.push(Ok((cart.stored(), false))),
            Err((index, err)) => outcomes.push(Err(WriteError::Op(index, err))),
        }
    }
    let changed: Vec<&WorkingCart> = working.values().filter(|cart| cart.changed).collect();
    write_accepted(state, &mut tx, events, &changed, &accepted, now).await?;
    tx.commit().await?;
    state.carts.snapshots.keep(working.into_values());
    Ok(outcomes)
}

/// The carts just locked (see [`store::lock_carts`]), in that order, with their live
/// ops: from the snapshot cache when it is current, else read in one statement.
pub(super) async fn working_carts(
    state: &AppState,
    conn: &mut AnyConnection,
    locked: Vec<store::Locked>,
) -> Result<Vec<WorkingCart>, sqlx::Error> {
    let mut carts = Vec::with_capacity(locked.len());
    let mut unread = Vec::new();
    for (index, row) in locked.into_iter().enumerate() {
        // Version 0 is a cart no change was written to yet.
        let live = match row.version {
            0 => Some(Cart::new()),
            version => state
                .carts
                .snapshots
                .take(&row.id, version, row.created_at_ms),
        };
        if live.is_none() {
            unread.push(index);
        }
        carts.push(WorkingCart::new(
            row.id,
            row.version,
            row.created_at_ms,
            live.unwrap_or_default(),
        ));
    }
    if !unread.is_empty() {
        let ids: Vec<&str> = unread.iter().map(|&i| carts[i].id.as_str()).collect();
        let mut read: HashMap<String, Cart> =
            store::live_ops(conn, &ids).await?.into_iter().collect();
        for index in unread {
            carts[index].live = read
                .remove(&carts[index].id)
                .ok_or(sqlx::Error::RowNotFound)?;
        }
    }
    Ok(carts)
}

/// A change accepted in memory, to be written.
pub(super) struct Accepted {
    pub cart: CartRef,
    /// The cart as this change leaves it.
    pub stored: StoredCart,
    pub change: Change,
    pub session_id: Option<String>,
}

/// Writes accepted changes in the caller's transaction (their carts locked): the
/// snapshots of `changed` carts, every history row and tombstone, and one realtime
/// event per change carrying the cart it made — each kind in one multi-row statement
/// (per chunk).
pub(super) async fn write_accepted(
    state: &AppState,
    conn: &mut AnyConnection,
    events: &mut Events,
    changed: &[&WorkingCart],
    accepted: &[Accepted],
    now: i64,
) -> Result<(), sqlx::Error> {
    if accepted.is_empty() {
        return Ok(());
    }
    store::write_snapshots(conn, changed).await?;
    let tombstones: Vec<(&str, &str, &str)> = accepted
        .iter()
        .flat_map(|a| {
            a.change
                .tombstones
                .iter()
                .map(|(op_id, scope)| (a.cart.id.as_str(), op_id.as_str(), scope.as_str()))
        })
        .collect();
    store::insert_tombstones(conn, &tombstones).await?;
    let history: Vec<store::HistoryInsert<'_>> = accepted
        .iter()
        .flat_map(|a| {
            a.change
                .entries
                .iter()
                .enumerate()
                .map(|(position, row)| store::HistoryInsert {
                    cart_id: &a.cart.id,
                    version: a.stored.version,
                    position,
                    row,
                    session_id: a.session_id.as_deref(),
                })
        })
        .collect();
    store::insert_history(conn, &history, now).await?;
    let appends = accepted
        .iter()
        .map(|a| {
            let view = state.carts.view(&a.cart, &a.stored, None);
            Append {
                topic: a.cart.topic.clone(),
                op_id: format!("cart:{}:{}", a.cart.id, a.stored.version),
                payload: serde_json::to_value(CartEvent::Cart { cart: view }).expect("serialises"),
                session_id: a.session_id.clone(),
            }
        })
        .collect();
    events.append_all(conn, appends).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::cart::CartOpType;

    fn request(cart: &str) -> Request {
        Request {
            cart: CartRef::guest(cart),
            ops: vec![(
                CartOp {
                    hlc: meridian_shared::cart::Hlc {
                        wall_ms: 1,
                        counter: 0,
                        node: "t".into(),
                    },
                    observed: Vec::new(),
                    op_id: "op-1".into(),
                    op_type: CartOpType::Add,
                    product_id: Some("p".into()),
                    quantity: Some(1),
                },
                false,
            )],
            session_id: None,
        }
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_a_closed_one_says_stopped() {
        let (committer, mut receivers) = Committer::new(1, 2);
        assert!(committer.enqueue(request("a")).is_ok());
        assert!(committer.enqueue(request("b")).is_ok());
        assert!(matches!(
            committer.enqueue(request("c")),
            Err(WriteError::Busy)
        ));
        // A change taken off the queue makes room for one more.
        receivers[0].try_recv().expect("a queued change");
        assert!(committer.enqueue(request("d")).is_ok());
        receivers[0].close();
        assert!(matches!(
            committer.enqueue(request("e")),
            Err(WriteError::Stopped)
        ));
    }

    #[test]
    fn one_cart_always_goes_to_one_committer() {
        let (committer, _receivers) = Committer::new(PG_SHARDS, 1);
        let mut used = std::collections::HashSet::new();
        for i in 0..64 {
            let id = format!("guest-{i}");
            let shard = committer.shard_of(&id);
            assert_eq!(shard, committer.shard_of(&id));
            assert!(shard < PG_SHARDS);
            used.insert(shard);
        }
        assert_eq!(used.len(), PG_SHARDS, "carts spread over every committer");
    }
}
