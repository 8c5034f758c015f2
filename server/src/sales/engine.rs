//! The pure part of a sale's single writer: who gets a unit, who waits, who is told it is
//! sold out. No I/O: the writer (`writer.rs`) reads the ledger row and the buyers'
//! reservations under the sale row's lock, asks [`SaleBook::plan`], writes the plan in the
//! same transaction and only then [`SaleBook::commit`]s it here.
//!
//! Rules (decided here, tested below and by property):
//! - A plan never grants more units than `stock - sold - reserved` of the figures it was
//!   given, so with figures read under the row lock sold + reserved ≤ stock holds.
//! - A buyer never holds more than `per_user_limit` units (reserved + paid): its held
//!   count comes from the database under the same lock, plus what this plan grants.
//! - FIFO: the queue's head is served before any new attempt; a queued attempt keeps its
//!   ticket, and its position is `ticket - head ticket + 1`.
//! - Honest sold out: units can come back only from reservations, so an attempt is
//!   queued only while its position ≤ `stock - sold` (the units that might still be
//!   bought); otherwise it is answered 410 at once, and the queue is cut to that length
//!   whenever the figures change (everyone waiting past it is told too).
//! - Queued attempts of one buyer never exceed the buyer's limit on this instance.

use std::collections::{HashMap, VecDeque};

use meridian_shared::sales::SaleFigures;

/// A checkout attempt: who, and its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    pub buyer: String,
    pub key: String,
}

/// What the database holds for one buyer: its reservations (any state) by key, and how
/// many units it holds (reserved or paid).
#[derive(Debug, Clone, Default)]
pub struct BuyerRows {
    pub by_key: HashMap<String, Existing>,
    pub held: i64,
}

/// A reservation already made with an attempt's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub reservation_id: String,
    pub expires_at_ms: i64,
    pub state: ReservationState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    Reserved,
    Paid,
    Expired,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Reserved => "reserved",
            ReservationState::Paid => "paid",
            ReservationState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<ReservationState> {
        match text {
            "reserved" => Some(ReservationState::Reserved),
            "paid" => Some(ReservationState::Paid),
            "expired" => Some(ReservationState::Expired),
            _ => None,
        }
    }
}

/// The answer an attempt gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A unit is granted in this plan (written by the writer, then answered reserved).
    Grant,
    /// The key already has a reservation: answer it.
    Existing(Existing),
    Queued {
        position: u64,
    },
    SoldOut,
    LimitReached,
}

/// One queued attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Waiting {
    attempt: Attempt,
    ticket: u64,
}

/// A plan for one transaction: units granted (queue heads first, then new attempts, in
/// order) and every new attempt's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Attempts that get a unit, in grant order.
    pub grants: Vec<Attempt>,
    /// How many queue heads are settled (granted, or refused for their limit).
    pub heads_settled: usize,
    /// The settled heads refused because their buyer reached its limit.
    pub heads_refused: Vec<Attempt>,
    /// Per new attempt, in the order given.
    pub verdicts: Vec<Verdict>,
}

/// One sale's queue on this instance and what it last knew of the ledger.
#[derive(Debug)]
pub struct SaleBook {
    pub per_user_limit: i64,
    figures: SaleFigures,
    queue: VecDeque<Waiting>,
    next_ticket: u64,
    /// Queued attempts by key, and which ones were granted after waiting.
    waiting: HashMap<Attempt, u64>,
    queued_per_buyer: HashMap<String, i64>,
    /// Attempts admitted from the queue or told sold out after waiting (answers for
    /// their replays); bounded by the stock and the queue's length.
    settled: HashMap<Attempt, Settled>,
}

/// What became of an attempt that waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Granted(Existing),
    SoldOut,
    LimitReached,
}

impl SaleBook {
    pub fn new(figures: SaleFigures, per_user_limit: i64) -> SaleBook {
        SaleBook {
            per_user_limit,
            figures,
            queue: VecDeque::new(),
            next_ticket: 1,
            waiting: HashMap::new(),
            queued_per_buyer: HashMap::new(),
            settled: HashMap::new(),
        }
    }

    pub fn figures(&self) -> SaleFigures {
        self.figures
    }

    pub fn queue_len(&self) -> u64 {
        self.queue.len() as u64
    }

    /// Units that might still be bought: the queue is never longer than this.
    fn buyable(figures: &SaleFigures) -> i64 {
        figures.stock - figures.sold
    }

    pub fn is_sold_out(&self) -> bool {
        Self::buyable(&self.figures) <= 0
    }

    /// Whether a transaction could grant anything: units left, by the last figures.
    pub fn may_grant(&self) -> bool {
        self.figures.stock_left > 0
    }

    /// An answer that needs no database: a queued attempt's position, or how a waiting
    /// attempt was settled.
    pub fn known(&self, attempt: &Attempt) -> Option<Verdict> {
        if let Some(ticket) = self.waiting.get(attempt) {
            return Some(Verdict::Queued {
                position: self.position(*ticket),
            });
        }
        self.settled.get(attempt).map(|settled| match settled {
            Settled::Granted(existing) => Verdict::Existing(existing.clone()),
            Settled::SoldOut => Verdict::SoldOut,
            Settled::LimitReached => Verdict::LimitReached,
        })
    }

    fn position(&self, ticket: u64) -> u64 {
        let head = self.queue.front().map_or(ticket, |w| w.ticket);
        ticket - head + 1
    }

    /// The queue heads a transaction should try to admit: as many as `figures` (read
    /// under the lock) leave units, at most `max`.
    pub fn heads(&self, figures: &SaleFigures, max: usize) -> Vec<Attempt> {
        let n = (figures.stock_left.max(0) as usize).min(max);
        self.queue
            .iter()
            .take(n)
            .map(|w| w.attempt.clone())
            .collect()
    }

    /// Decides `attempts` (and first the queue heads `heads`, as returned by
    /// [`heads`](Self::heads)) against `figures` read under the sale row's lock and the
    /// buyers' rows read under it too. Changes nothing: see [`commit`](Self::commit).
    pub fn plan(
        &self,
        figures: SaleFigures,
        heads: &[Attempt],
        attempts: &[Attempt],
        buyers: &HashMap<String, BuyerRows>,
    ) -> Plan {
        let mut left = figures.stock_left.max(0);
        let mut held: HashMap<&str, i64> = HashMap::new();
        let held_of = |held: &mut HashMap<&str, i64>, buyer: &str| -> i64 {
            *held
                .get(buyer)
                .unwrap_or(&buyers.get(buyer).map_or(0, |b| b.held))
        };
        let mut grants = Vec::new();
        let mut heads_settled = 0;
        let mut heads_refused = Vec::new();
        for head in heads {
            if left == 0 {
                break;
            }
            let h = held_of(&mut held, &head.buyer);
            heads_settled += 1;
            if h >= self.per_user_limit {
                heads_refused.push(head.clone());
                continue;
            }
            held.insert(&head.buyer, h + 1);
            grants.push(head.clone());
            left -= 1;
        }
        // The queue after the heads settled, before new attempts join it.
        let mut queue_len = self.queue.len() as i64 - heads_settled as i64;
        let buyable = Self::buyable(&figures);
        let mut queued_per_buyer: HashMap<&str, i64> = HashMap::new();
        let mut seen: HashMap<&Attempt, usize> = HashMap::new();
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(attempts.len());
        for (i, attempt) in attempts.iter().enumerate() {
            // The same key twice in one batch: the second answers as the first.
            if let Some(&first) = seen.get(attempt) {
                let verdict = verdicts[first].clone();
                verdicts.push(verdict);
                continue;
            }
            seen.insert(attempt, i);
            if let Some(existing) = buyers
                .get(&attempt.buyer)
                .and_then(|b| b.by_key.get(&attempt.key))
            {
                verdicts.push(Verdict::Existing(existing.clone()));
                continue;
            }
            if let Some(verdict) = self.known(attempt) {
                // Still waiting (position after this plan's heads leave), or settled.
                verdicts.push(match verdict {
                    Verdict::Queued { position } => Verdict::Queued {
                        position: position.saturating_sub(heads_settled as u64).max(1),
                    },
                    other => other,
                });
                continue;
            }
            if buyable <= 0 {
                verdicts.push(Verdict::SoldOut);
                continue;
            }
            let h = held_of(&mut held, &attempt.buyer);
            let queued = self.queued_of(&attempt.buyer)
                + queued_per_buyer
                    .get(attempt.buyer.as_str())
                    .copied()
                    .unwrap_or(0);
            if h + queued >= self.per_user_limit {
                verdicts.push(Verdict::LimitReached);
                continue;
            }
            if left > 0 && queue_len == 0 {
                held.insert(&attempt.buyer, h + 1);
                grants.push(attempt.clone());
                left -= 1;
                verdicts.push(Verdict::Grant);
            } else if queue_len < buyable {
                // Units come back only from reservations: `buyable` (stock - sold) is
                // every unit anyone waiting might still get, one each, in order.
                queue_len += 1;
                *queued_per_buyer.entry(&attempt.buyer).or_default() += 1;
                verdicts.push(Verdict::Queued {
                    position: queue_len as u64,
                });
            } else {
                verdicts.push(Verdict::SoldOut);
            }
        }
        Plan {
            grants,
            heads_settled,
            heads_refused,
            verdicts,
        }
    }

    fn queued_of(&self, buyer: &str) -> i64 {
        self.queued_per_buyer.get(buyer).copied().unwrap_or(0)
    }

    /// Applies a plan once its transaction committed: the settled heads leave the queue
    /// (`granted` says what each grant became), new attempts queue, and the figures are
    /// those after the transaction. Then cuts the queue to what might still be bought.
    pub fn commit(
        &mut self,
        plan: &Plan,
        attempts: &[Attempt],
        granted: &HashMap<Attempt, Existing>,
        figures: SaleFigures,
    ) {
        for _ in 0..plan.heads_settled {
            if let Some(head) = self.queue.pop_front() {
                self.forget_waiting(&head.attempt);
                let settled = match granted.get(&head.attempt) {
                    Some(existing) => Settled::Granted(existing.clone()),
                    None => Settled::LimitReached,
                };
                self.settled.insert(head.attempt, settled);
            }
        }
        for (attempt, verdict) in attempts.iter().zip(&plan.verdicts) {
            if let Verdict::Queued { .. } = verdict {
                if self.waiting.contains_key(attempt) {
                    continue;
                }
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.queue.push_back(Waiting {
                    attempt: attempt.clone(),
                    ticket,
                });
                self.waiting.insert(attempt.clone(), ticket);
                *self
                    .queued_per_buyer
                    .entry(attempt.buyer.clone())
                    .or_default() += 1;
            }
        }
        self.observe(figures);
    }

    /// New figures (from this instance's transactions or a refresh): the queue is cut to
    /// `stock - sold`, and those cut are told sold out.
    pub fn observe(&mut self, figures: SaleFigures) {
        self.figures = figures;
        let keep = Self::buyable(&figures).max(0) as usize;
        while self.queue.len() > keep {
            let Some(cut) = self.queue.pop_back() else {
                break;
            };
            self.forget_waiting(&cut.attempt);
            self.settled.insert(cut.attempt, Settled::SoldOut);
        }
        if keep == 0 {
            // Sold out for good: every replay answers 410 from the figures.
            self.settled.retain(|_, s| matches!(s, Settled::Granted(_)));
        }
    }

    fn forget_waiting(&mut self, attempt: &Attempt) {
        self.waiting.remove(attempt);
        if let Some(n) = self.queued_per_buyer.get_mut(&attempt.buyer) {
            *n -= 1;
            if *n <= 0 {
                self.queued_per_buyer.remove(&attempt.buyer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attempt(buyer: &str, key: &str) -> Attempt {
        Attempt {
            buyer: buyer.into(),
            key: key.into(),
        }
    }

    fn existing(id: &str) -> Existing {
        Existing {
            reservation_id: id.into(),
            expires_at_ms: 1000,
            state: ReservationState::Reserved,
        }
    }

    /// Plans and commits as the writer does, granting ids `r1, r2, ...`.
    fn run(
        book: &mut SaleBook,
        figures: SaleFigures,
        attempts: &[Attempt],
        buyers: &mut HashMap<String, BuyerRows>,
    ) -> (Plan, SaleFigures) {
        let heads = book.heads(&figures, 64);
        let plan = book.plan(figures, &heads, attempts, buyers);
        let mut granted = HashMap::new();
        for (n, g) in plan.grants.iter().enumerate() {
            let e = existing(&format!("r{}-{}", figures.reserved, n));
            let rows = buyers.entry(g.buyer.clone()).or_default();
            rows.held += 1;
            rows.by_key.insert(g.key.clone(), e.clone());
            granted.insert(g.clone(), e);
        }
        let after = SaleFigures::new(
            figures.stock,
            figures.sold,
            figures.reserved + plan.grants.len() as i64,
        );
        book.commit(&plan, attempts, &granted, after);
        (plan, after)
    }

    /// [`run`] with the figures the book knows.
    fn run_now(
        book: &mut SaleBook,
        attempts: &[Attempt],
        buyers: &mut HashMap<String, BuyerRows>,
    ) -> (Plan, SaleFigures) {
        let figures = book.figures();
        run(book, figures, attempts, buyers)
    }

    #[test]
    fn grants_until_the_stock_is_reserved_then_queues_then_sells_out() {
        let mut book = SaleBook::new(SaleFigures::new(2, 0, 0), 1);
        let mut buyers = HashMap::new();
        let attempts: Vec<_> = (0..5).map(|i| attempt(&format!("b{i}"), "k")).collect();
        let (plan, after) = run_now(&mut book, &attempts, &mut buyers);
        assert_eq!(
            plan.verdicts,
            vec![
                Verdict::Grant,
                Verdict::Grant,
                // Two units might come back (both reserved, unpaid): two may wait.
                Verdict::Queued { position: 1 },
                Verdict::Queued { position: 2 },
                Verdict::SoldOut,
            ]
        );
        assert_eq!((after.reserved, after.stock_left), (2, 0));
        assert_eq!(book.queue_len(), 2);
        // A replay of a waiting attempt answers its position without the database.
        assert_eq!(
            book.known(&attempts[3]),
            Some(Verdict::Queued { position: 2 })
        );
        // One unit is paid: only one may still come back, so the second waiter is told.
        book.observe(SaleFigures::new(2, 1, 1));
        assert_eq!(book.queue_len(), 1);
        assert_eq!(book.known(&attempts[3]), Some(Verdict::SoldOut));
        // The other reservation expires: the head of the queue gets it.
        let (plan, _) = run(&mut book, SaleFigures::new(2, 1, 0), &[], &mut buyers);
        assert_eq!(plan.grants, vec![attempts[2].clone()]);
        assert!(matches!(
            book.known(&attempts[2]),
            Some(Verdict::Existing(_))
        ));
        assert_eq!(book.queue_len(), 0);
    }

    #[test]
    fn replays_answer_the_original_reservation_and_limits_hold_across_keys() {
        let mut book = SaleBook::new(SaleFigures::new(10, 0, 0), 2);
        let mut buyers = HashMap::new();
        let a = [
            attempt("ann", "1"),
            attempt("ann", "1"),
            attempt("ann", "2"),
        ];
        let (plan, _) = run_now(&mut book, &a, &mut buyers);
        assert_eq!(
            plan.grants.len(),
            2,
            "a duplicate in one batch reserves once"
        );
        assert_eq!(plan.verdicts[1], Verdict::Grant);
        let (plan, _) = run_now(
            &mut book,
            &[attempt("ann", "1"), attempt("ann", "3")],
            &mut buyers,
        );
        assert!(matches!(plan.verdicts[0], Verdict::Existing(_)));
        assert_eq!(plan.verdicts[1], Verdict::LimitReached);
        assert!(plan.grants.is_empty());
    }

    #[test]
    fn a_queued_buyer_at_its_limit_is_refused_when_its_turn_comes() {
        let mut book = SaleBook::new(SaleFigures::new(1, 0, 0), 1);
        let mut buyers = HashMap::new();
        run_now(&mut book, &[attempt("a", "1")], &mut buyers);
        let (plan, _) = run_now(&mut book, &[attempt("b", "1")], &mut buyers);
        assert_eq!(plan.verdicts, vec![Verdict::Queued { position: 1 }]);
        // Meanwhile b bought one elsewhere (another instance): at its limit.
        buyers.entry("b".into()).or_default().held = 1;
        // a's reservation expires: b's turn, but b is refused; the unit stays left.
        let (plan, after) = run(&mut book, SaleFigures::new(1, 0, 0), &[], &mut buyers);
        assert!(plan.grants.is_empty());
        assert_eq!(plan.heads_refused, vec![attempt("b", "1")]);
        assert_eq!(after.stock_left, 1);
        assert_eq!(book.known(&attempt("b", "1")), Some(Verdict::LimitReached));
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A batch of attempts by these buyers (keys drawn from a small set: replays).
        Batch(Vec<(u8, u8)>),
        /// One reservation of this index is paid (if any is reserved).
        Pay(u8),
        /// One reservation expires.
        Expire(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => prop::collection::vec((0u8..6, 0u8..4), 0..12).prop_map(Step::Batch),
            1 => any::<u8>().prop_map(Step::Pay),
            1 => any::<u8>().prop_map(Step::Expire),
        ]
    }

    proptest! {
        /// Whatever the interleaving of batches, payments and expiries: sold + reserved ≤
        /// stock, no buyer holds past its limit, every grant is one row, the queue is
        /// never longer than what might be bought and keeps FIFO order.
        #[test]
        fn the_ledger_never_oversells(stock in 1i64..8, limit in 1i64..3, steps in prop::collection::vec(step(), 1..40)) {
            let mut book = SaleBook::new(SaleFigures::new(stock, 0, 0), limit);
            let mut buyers: HashMap<String, BuyerRows> = HashMap::new();
            let mut figures = book.figures();
            // (buyer, key, paid) of every row the "database" holds.
            let mut reserved: Vec<(String, String)> = Vec::new();
            for step in steps {
                match step {
                    Step::Batch(list) => {
                        let attempts: Vec<_> = list.iter().map(|(b, k)| attempt(&format!("b{b}"), &format!("k{k}"))).collect();
                        let queue_before: Vec<_> = book.queue.iter().map(|w| w.ticket).collect();
                        let (plan, after) = run(&mut book, figures, &attempts, &mut buyers);
                        for g in &plan.grants { reserved.push((g.buyer.clone(), g.key.clone())); }
                        figures = after;
                        // FIFO: tickets still queued keep their relative order.
                        let queue_after: Vec<_> = book.queue.iter().map(|w| w.ticket).collect();
                        let kept: Vec<_> = queue_before.iter().filter(|t| queue_after.contains(t)).collect();
                        prop_assert!(kept.windows(2).all(|w| w[0] < w[1]));
                        prop_assert!(queue_after.windows(2).all(|w| w[0] < w[1]));
                    }
                    Step::Pay(i) if !reserved.is_empty() => {
                        reserved.remove(i as usize % reserved.len());
                        figures = SaleFigures::new(figures.stock, figures.sold + 1, figures.reserved - 1);
                        book.observe(figures);
                    }
                    Step::Expire(i) if !reserved.is_empty() => {
                        let (buyer, key) = reserved.remove(i as usize % reserved.len());
                        let rows = buyers.get_mut(&buyer).unwrap();
                        rows.held -= 1;
                        rows.by_key.get_mut(&key).unwrap().state = ReservationState::Expired;
                        figures = SaleFigures::new(figures.stock, figures.sold, figures.reserved - 1);
                        book.observe(figures);
                    }
                    _ => {}
                }
                prop_assert!(figures.sold + figures.reserved <= figures.stock);
                prop_assert!(figures.stock_left >= 0);
                prop_assert_eq!(figures.reserved as usize, reserved.len());
                prop_assert!(book.queue_len() as i64 <= (figures.stock - figures.sold).max(0));
                for rows in buyers.values() {
                    prop_assert!(rows.held <= limit);
                }
                for (buyer, n) in &book.queued_per_buyer {
                    prop_assert!(*n <= limit, "{buyer} queued {n}");
                }
            }
        }
    }
}
