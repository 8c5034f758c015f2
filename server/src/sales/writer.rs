//! One single-writer task per sale on each instance: it takes every checkout and payment
//! that queued meanwhile and writes them all in one transaction (paid reservations and
//! their orders, then new reservations, each in multi-row statements; one update of the
//! ledger row, one realtime event, one commit); each request is answered only once its
//! batch is durable.
//!
//! Invariants:
//! - The ledger row is locked first in every transaction that changes it (here, on any
//!   instance), so the engine's plan is made from figures no one else can change before
//!   the commit: sold + reserved ≤ stock across instances and crashes. A crash loses
//!   only uncommitted batches, whose requests were never answered.
//! - The engine's book (queue, figures) changes only after its transaction committed.
//! - Without units left (by the last figures), a batch of checkouts takes no lock: it is
//!   queued or told sold out from the figures and the buyers' rows; a grant always goes
//!   through the locked path.
//! - Every tick (250 ms) the writer expires due reservations (returning their units),
//!   admits queue heads when units are left and refreshes its figures, so units freed
//!   on other instances reach this queue too.
//! - The locked path writes on a connection the writer keeps between transactions
//!   ([`HeldConnection`]): it never queues for the pool behind the requests it answers;
//!   a failed transaction closes it.
//! - Bounded: [`QUEUE`] jobs wait at most; a full queue answers 503 at once.
//! - Sold out is final (sold = stock: units come back only from reservations, and none
//!   is left): once the writer observes it, it reads the fingerprints of every
//!   reservation's buyer and key (the set can no longer grow), and from then on a
//!   checkout whose fingerprint is absent is told sold out by the route, without the
//!   writer or the database. A present fingerprint (its reservation, or a collision)
//!   goes the usual way.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meridian_shared::sales::{sale_topic, SaleFigures};
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::engine::{Attempt, BuyerRows, Existing, Plan, ReservationState, SaleBook, Verdict};
use super::store::{self, NewOrder, NewReservation, SaleRow};
use crate::db::HeldConnection;
use crate::realtime::Events;
use crate::AppState;

/// The most jobs one transaction carries.
pub const MAX_BATCH: usize = 512;
/// The most jobs waiting for one sale's writer.
pub const QUEUE: usize = 16_384;
/// How often the writer expires, admits and refreshes.
pub const TICK: Duration = Duration::from_millis(250);

/// Why a request got no answer from the ledger.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("too many requests are waiting for this sale")]
    Busy,
    #[error("the server is shutting down")]
    Stopped,
    #[error("cannot mint an id: {0}")]
    Ids(String),
    #[error(transparent)]
    Db(Arc<sqlx::Error>),
}

/// A checkout's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    Reserved(Existing),
    Queued(u64),
    SoldOut,
    LimitReached,
    /// The key's reservation expired unpaid (a new key may try again).
    Expired,
}

/// A payment's outcome (the payment itself was simulated by the route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    Confirmed(String),
    Expired,
}

enum Job {
    Checkout {
        attempt: Attempt,
        reply: oneshot::Sender<Result<Checkout, WriteError>>,
    },
    Pay {
        reservation_id: String,
        buyer: String,
        reply: oneshot::Sender<Result<Payment, WriteError>>,
    },
    Tick {
        reply: oneshot::Sender<Result<u64, WriteError>>,
    },
}

/// A payment waiting in a batch: the reservation, the buyer, where to answer.
type PayJob = (String, String, oneshot::Sender<Result<Payment, WriteError>>);
/// A checkout waiting in a batch.
type CheckoutJob = (Attempt, oneshot::Sender<Result<Checkout, WriteError>>);
/// What one locked transaction decided: each payment's outcome, the checkouts' plan,
/// the reservations granted.
type Written = (Vec<Payment>, Plan, HashMap<Attempt, Existing>);

/// What the routes read without waiting for the writer.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub figures: SaleFigures,
    pub queue_length: u64,
}

/// The handle of one sale's writer.
pub struct SaleWriter {
    pub sale: SaleRow,
    jobs: mpsc::Sender<Job>,
    snapshot: watch::Receiver<Snapshot>,
    sold_out: Arc<OnceLock<SoldOut>>,
}

/// A sale sold out for good: the fingerprints of every reservation's buyer and key.
pub struct SoldOut {
    hasher: RandomState,
    reserved: HashSet<u64>,
}

impl SoldOut {
    fn fingerprint(hasher: &RandomState, attempt: (&str, &str)) -> u64 {
        hasher.hash_one(attempt)
    }

    /// Whether `attempt` surely has no reservation (so its answer is sold out).
    pub fn surely_refused(&self, attempt: &Attempt) -> bool {
        let print = Self::fingerprint(&self.hasher, (&attempt.buyer, &attempt.key));
        !self.reserved.contains(&print)
    }
}

impl SaleWriter {
    /// Starts the writer of `sale` on `state`'s tasks.
    pub fn start(state: &AppState, sale: SaleRow) -> SaleWriter {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let book = SaleBook::new(sale.figures(), sale.per_user_limit);
        let (publish, snapshot) = watch::channel(Snapshot {
            figures: sale.figures(),
            queue_length: 0,
        });
        let sold_out = Arc::new(OnceLock::new());
        let writer = Writer {
            state: state.clone(),
            sale: sale.clone(),
            book,
            publish,
            sold_out: sold_out.clone(),
        };
        state.tasks.spawn(writer.run(queue));
        SaleWriter {
            sale,
            jobs,
            snapshot,
            sold_out,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        *self.snapshot.borrow()
    }

    /// Once the sale is sold out for good (and this writer has read its reservations).
    pub fn sold_out(&self) -> Option<&SoldOut> {
        self.sold_out.get()
    }

    fn send(&self, job: Job) -> Result<(), WriteError> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(WriteError::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriteError::Stopped),
        }
    }

    pub async fn checkout(&self, attempt: Attempt) -> Result<Checkout, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Checkout { attempt, reply })?;
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }

    pub async fn pay(&self, reservation_id: String, buyer: String) -> Result<Payment, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Pay {
            reservation_id,
            buyer,
            reply,
        })?;
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Expires due reservations, admits the queue's heads, refreshes the figures; answers
    /// how many reservations expired.
    pub async fn tick(&self) -> Result<u64, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Tick { reply })?;
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }
}

struct Writer {
    state: AppState,
    sale: SaleRow,
    book: SaleBook,
    publish: watch::Sender<Snapshot>,
    sold_out: Arc<OnceLock<SoldOut>>,
}

static NEXT_EVENT: AtomicU64 = AtomicU64::new(1);

/// Appends a sale's figures to its topic in `conn`'s transaction, which holds the sale's
/// ledger row ([`store::lock_sale`]): so the topic's payloads follow the ledger's order.
/// `origin` prefixes the event's op id (`""` for the writer's ledger moves).
pub(super) async fn append_figures(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    events: &mut Events,
    sale_id: &str,
    figures: SaleFigures,
    origin: &str,
) -> Result<(), sqlx::Error> {
    let op_id = format!(
        "{origin}{}-{}",
        state.instance_id,
        NEXT_EVENT.fetch_add(1, Ordering::Relaxed)
    );
    let payload = serde_json::to_value(figures).unwrap_or_default();
    events
        .append(conn, &sale_topic(sale_id), &op_id, payload, None)
        .await?;
    Ok(())
}

fn db_error(err: sqlx::Error) -> WriteError {
    WriteError::Db(Arc::new(err))
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = false;
        // The connection the locked path writes on (see `HeldConnection`).
        let mut held = HeldConnection::default();
        loop {
            let first = if closing {
                match queue.recv().await {
                    Some(job) => job,
                    None => return,
                }
            } else {
                tokio::select! {
                    biased;
                    job = queue.recv() => match job {
                        Some(job) => job,
                        None => return,
                    },
                    _ = self.state.shutdown.cancelled() => {
                        closing = true;
                        queue.close();
                        continue;
                    }
                    _ = tick.tick() => {
                        if let Err(err) = self.tick(&mut held).await {
                            tracing::warn!(%err, sale = %self.sale.id, "sale tick failed");
                        }
                        self.note_sold_out().await;
                        continue;
                    }
                }
            };
            let mut checkouts = Vec::new();
            let mut pays = Vec::new();
            let mut ticks = Vec::new();
            let mut sort = |job: Job| match job {
                Job::Checkout { attempt, reply } => checkouts.push((attempt, reply)),
                Job::Pay {
                    reservation_id,
                    buyer,
                    reply,
                } => pays.push((reservation_id, buyer, reply)),
                Job::Tick { reply } => ticks.push(reply),
            };
            sort(first);
            for _ in 1..MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => sort(job),
                    Err(_) => break,
                }
            }
            if !ticks.is_empty() {
                let result = self.tick(&mut held).await;
                for reply in ticks {
                    let _ = reply.send(match &result {
                        Ok(n) => Ok(*n),
                        Err(err) => Err(clone_error(err)),
                    });
                }
            }
            if !pays.is_empty() || !checkouts.is_empty() {
                self.batch(&mut held, pays, checkouts).await;
            }
            self.note_sold_out().await;
        }
    }

    /// Reads the reservations' fingerprints once the sale is sold out for good.
    async fn note_sold_out(&mut self) {
        if !self.book.is_sold_out() || self.sold_out.get().is_some() {
            return;
        }
        let hasher = RandomState::new();
        let mut reserved = HashSet::new();
        let read = store::each_reservation_key(&self.state.db.pool, &self.sale.id, |b, k| {
            reserved.insert(SoldOut::fingerprint(&hasher, (b, k)));
        })
        .await;
        match read {
            Ok(()) => {
                let _ = self.sold_out.set(SoldOut { hasher, reserved });
            }
            // Tried again after the next batch or tick; meanwhile the usual way answers.
            Err(err) => {
                tracing::warn!(%err, sale = %self.sale.id, "could not read the reservations")
            }
        }
    }

    fn published(&self) {
        self.publish.send_replace(Snapshot {
            figures: self.book.figures(),
            queue_length: self.book.queue_len(),
        });
    }

    /// Moves the ledger row (locked by `conn`'s transaction) and appends its new figures
    /// to the sale's topic in the same transaction; answers them.
    async fn move_ledger(
        &self,
        conn: &mut sqlx::AnyConnection,
        events: &mut Events,
        reserved_delta: i64,
        sold_delta: i64,
    ) -> Result<SaleFigures, WriteError> {
        let after = store::change_figures(conn, &self.sale.id, reserved_delta, sold_delta)
            .await
            .map_err(db_error)?;
        append_figures(&self.state, conn, events, &self.sale.id, after, "")
            .await
            .map_err(db_error)?;
        Ok(after)
    }

    /// Answers a pass's payments and checkouts: checkouts this instance can answer from
    /// its book at once; the rest, with every payment, in one transaction (or, without
    /// payments and without units left, without the ledger's lock).
    async fn batch(
        &mut self,
        held: &mut HeldConnection,
        pays: Vec<PayJob>,
        checkouts: Vec<CheckoutJob>,
    ) {
        let now = self.state.clock.now_ms();
        // Answers this instance knows (a waiting attempt's position; how a wait ended).
        let mut rest = Vec::with_capacity(checkouts.len());
        for (attempt, reply) in checkouts {
            match self.book.known(&attempt) {
                Some(Verdict::Existing(existing)) => {
                    let _ = reply.send(Ok(answer_existing(existing, now)));
                }
                Some(verdict @ (Verdict::Queued { .. } | Verdict::LimitReached)) => {
                    let _ = reply.send(Ok(answer(&verdict, None, now)));
                }
                _ => rest.push((attempt, reply)),
            }
        }
        if pays.is_empty() && rest.is_empty() {
            return;
        }
        let (attempts, replies): (Vec<Attempt>, Vec<_>) = rest.into_iter().unzip();
        let result = if pays.is_empty() && !self.book.may_grant() {
            self.wait_or_refuse(&attempts)
                .await
                .map(|(plan, granted)| (Vec::new(), plan, granted))
        } else {
            self.write(held, &pays, &attempts, now).await
        };
        match result {
            Ok((payments, plan, granted)) => {
                let paid = payments.iter().any(|p| matches!(p, Payment::Confirmed(_)));
                for ((_, _, reply), outcome) in pays.into_iter().zip(payments) {
                    let _ = reply.send(Ok(outcome));
                }
                for ((reply, attempt), verdict) in
                    replies.into_iter().zip(&attempts).zip(&plan.verdicts)
                {
                    let _ = reply.send(Ok(answer(verdict, granted.get(attempt), now)));
                }
                if paid {
                    self.state.sales.wake_fulfilment();
                }
            }
            Err(err) => {
                tracing::warn!(%err, sale = %self.sale.id, "a sale batch failed");
                for (_, _, reply) in pays {
                    let _ = reply.send(Err(clone_error(&err)));
                }
                for reply in replies {
                    let _ = reply.send(Err(clone_error(&err)));
                }
            }
        }
    }

    /// The locked path, one transaction: lock the ledger row; pay `pays` (each
    /// reservation still reserved and unexpired becomes paid, with a new order and its
    /// outbox row); then plan the queue heads and `attempts` against the figures after
    /// the payments and the buyers' rows read under the lock, and write the grants; move
    /// the ledger once; commit; then update the book.
    async fn write(
        &mut self,
        held: &mut HeldConnection,
        pays: &[PayJob],
        attempts: &[Attempt],
        now: i64,
    ) -> Result<Written, WriteError> {
        let written = self.write_on(held, pays, attempts, now).await;
        if written.is_err() {
            held.discard();
        }
        written
    }

    /// [`write`](Self::write) on the writer's connection.
    async fn write_on(
        &mut self,
        held: &mut HeldConnection,
        pays: &[PayJob],
        attempts: &[Attempt],
        now: i64,
    ) -> Result<Written, WriteError> {
        let state = self.state.clone();
        let order_ids: Vec<String> = if pays.is_empty() {
            Vec::new()
        } else {
            state
                .ids
                .next_snowflakes(pays.len())
                .map_err(|e| WriteError::Ids(e.to_string()))?
                .iter()
                .map(u64::to_string)
                .collect()
        };
        let mut events = Events::new(&state.hub);
        let (payments, plan, granted, after) = {
            let _turn = state.db.write_turn().await;
            let conn = held.get(&state.db.pool).await.map_err(db_error)?;
            let mut tx = Connection::begin(conn).await.map_err(db_error)?;
            let locked = store::lock_sale(&mut tx, &self.sale.id)
                .await
                .map_err(db_error)?
                .ok_or_else(|| db_error(sqlx::Error::RowNotFound))?;
            let (payments, sold) = self.pay_in(&mut tx, pays, &order_ids, now).await?;
            // Paying moves units from reserved to sold: none comes free.
            let figures =
                SaleFigures::new(locked.stock, locked.sold + sold, locked.reserved - sold);
            let heads = self.book.heads(&figures, MAX_BATCH);
            let plan = if heads.is_empty() && attempts.is_empty() {
                self.book.plan(figures, &[], &[], &HashMap::new())
            } else {
                let rows = self.buyer_rows(&mut tx, &heads, attempts).await?;
                self.book.plan(figures, &heads, attempts, &rows)
            };
            let mut granted = HashMap::new();
            let reserved_ids: Vec<String> = if plan.grants.is_empty() {
                Vec::new()
            } else {
                state
                    .ids
                    .next_snowflakes(plan.grants.len())
                    .map_err(|e| WriteError::Ids(e.to_string()))?
                    .iter()
                    .map(u64::to_string)
                    .collect()
            };
            if !plan.grants.is_empty() {
                let expires = now + self.sale.reservation_ttl_ms;
                let rows: Vec<NewReservation> = plan
                    .grants
                    .iter()
                    .zip(&reserved_ids)
                    .map(|(g, id)| NewReservation {
                        id,
                        buyer: &g.buyer,
                        key: &g.key,
                    })
                    .collect();
                store::insert_reservations(&mut tx, &self.sale.id, &rows, now, expires)
                    .await
                    .map_err(db_error)?;
                for (g, id) in plan.grants.iter().zip(reserved_ids) {
                    granted.insert(
                        g.clone(),
                        Existing {
                            reservation_id: id,
                            expires_at_ms: expires,
                            state: ReservationState::Reserved,
                        },
                    );
                }
            }
            let after = if sold == 0 && plan.grants.is_empty() {
                tx.rollback().await.map_err(db_error)?;
                locked
            } else {
                let reserved_delta = plan.grants.len() as i64 - sold;
                let after = self
                    .move_ledger(&mut tx, &mut events, reserved_delta, sold)
                    .await?;
                tx.commit().await.map_err(db_error)?;
                after
            };
            (payments, plan, granted, after)
        };
        events.deliver();
        self.book.commit(&plan, attempts, &granted, after);
        self.published();
        Ok((payments, plan, granted))
    }

    /// No units left by the last figures: queue or refuse without locking the ledger.
    async fn wait_or_refuse(
        &mut self,
        attempts: &[Attempt],
    ) -> Result<(Plan, HashMap<Attempt, Existing>), WriteError> {
        let mut conn = self.state.db.pool.acquire().await.map_err(db_error)?;
        let rows = self.buyer_rows(&mut conn, &[], attempts).await?;
        let figures = self.book.figures();
        let plan = self.book.plan(figures, &[], attempts, &rows);
        debug_assert!(plan.grants.is_empty());
        self.book.commit(&plan, attempts, &HashMap::new(), figures);
        self.published();
        Ok((plan, HashMap::new()))
    }

    async fn buyer_rows(
        &self,
        conn: &mut sqlx::AnyConnection,
        heads: &[Attempt],
        attempts: &[Attempt],
    ) -> Result<HashMap<String, BuyerRows>, WriteError> {
        let mut buyers: Vec<&str> = heads
            .iter()
            .chain(attempts)
            .map(|a| a.buyer.as_str())
            .collect();
        buyers.sort_unstable();
        buyers.dedup();
        store::buyer_rows(conn, &self.sale.id, &buyers)
            .await
            .map_err(db_error)
    }

    /// Pays `jobs` in `tx` (the ledger row locked): each reservation still reserved,
    /// unexpired and the payer's becomes paid with its order (`order_ids`, one per job)
    /// and outbox row. Answers each job's outcome and how many were paid; the caller
    /// moves the ledger.
    async fn pay_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        jobs: &[PayJob],
        order_ids: &[String],
        now: i64,
    ) -> Result<(Vec<Payment>, i64), WriteError> {
        if jobs.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let payments: Vec<(&str, &str, &str)> = jobs
            .iter()
            .zip(order_ids)
            .map(|((reservation_id, buyer, _), order_id)| {
                (reservation_id.as_str(), order_id.as_str(), buyer.as_str())
            })
            .collect();
        // A reservation twice in one batch: only its first payment may pay it.
        let mut seen = HashSet::new();
        let firsts: Vec<(&str, &str, &str)> = payments
            .iter()
            .filter(|p| seen.insert(p.0))
            .copied()
            .collect();
        let paid: HashSet<String> = store::mark_paid(tx, &firsts, now)
            .await
            .map_err(db_error)?
            .into_iter()
            .collect();
        let orders: Vec<NewOrder> = firsts
            .iter()
            .filter(|p| paid.contains(p.0))
            .map(|&(reservation_id, id, buyer)| NewOrder {
                id,
                reservation_id,
                buyer,
            })
            .collect();
        let order_of: HashMap<&str, &str> =
            orders.iter().map(|o| (o.reservation_id, o.id)).collect();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for (reservation_id, _, _) in jobs {
            if let Some(order_id) = order_of.get(reservation_id.as_str()) {
                outcomes.push(Payment::Confirmed((*order_id).to_owned()));
                continue;
            }
            // Paid before (a retry), or expired.
            let row = store::reservation(tx, reservation_id)
                .await
                .map_err(db_error)?;
            outcomes.push(match row.and_then(|r| r.order_id) {
                Some(order_id) => Payment::Confirmed(order_id),
                None => Payment::Expired,
            });
        }
        if !orders.is_empty() {
            store::insert_orders(tx, &self.sale.id, &self.sale.product_id, &orders, now)
                .await
                .map_err(db_error)?;
        }
        Ok((outcomes, orders.len() as i64))
    }

    /// Expires due reservations (returning their units), admits queue heads while units
    /// are left, and refreshes the figures.
    async fn tick(&mut self, held: &mut HeldConnection) -> Result<u64, WriteError> {
        let state = self.state.clone();
        let now = state.clock.now_ms();
        let due = store::count_due(&state.db.pool, &self.sale.id, now)
            .await
            .map_err(db_error)?;
        let mut expired = 0;
        if due > 0 {
            let mut events = Events::new(&state.hub);
            let after = {
                let _turn = state.db.write_turn().await;
                let mut tx = state.db.pool.begin().await.map_err(db_error)?;
                store::lock_sale(&mut tx, &self.sale.id)
                    .await
                    .map_err(db_error)?;
                expired = store::expire_due(&mut tx, &self.sale.id, now)
                    .await
                    .map_err(db_error)?;
                let after = self
                    .move_ledger(&mut tx, &mut events, -(expired as i64), 0)
                    .await?;
                tx.commit().await.map_err(db_error)?;
                after
            };
            events.deliver();
            self.book.observe(after);
        } else if let Some(figures) = store::figures(&state.db.pool, &self.sale.id)
            .await
            .map_err(db_error)?
        {
            self.book.observe(figures);
        }
        if self.book.queue_len() > 0 && self.book.may_grant() {
            self.write(held, &[], &[], now).await?;
        }
        self.published();
        Ok(expired)
    }
}

fn clone_error(err: &WriteError) -> WriteError {
    match err {
        WriteError::Busy => WriteError::Busy,
        WriteError::Stopped => WriteError::Stopped,
        WriteError::Ids(m) => WriteError::Ids(m.clone()),
        WriteError::Db(e) => WriteError::Db(e.clone()),
    }
}

fn answer_existing(existing: Existing, now: i64) -> Checkout {
    match existing.state {
        ReservationState::Paid => Checkout::Reserved(existing),
        ReservationState::Reserved if existing.expires_at_ms > now => Checkout::Reserved(existing),
        _ => Checkout::Expired,
    }
}

fn answer(verdict: &Verdict, granted: Option<&Existing>, now: i64) -> Checkout {
    match verdict {
        Verdict::Grant => match granted {
            Some(existing) => Checkout::Reserved(existing.clone()),
            None => Checkout::Expired,
        },
        Verdict::Existing(existing) => answer_existing(existing.clone(), now),
        Verdict::Queued { position } => Checkout::Queued(*position),
        Verdict::SoldOut => Checkout::SoldOut,
        Verdict::LimitReached => Checkout::LimitReached,
    }
}
