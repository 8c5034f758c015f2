//! Node id leases: how a node gets one of the 4,096 node ids without coordinating on the
//! hot path, and keeps it.
//!
//! A lease is a row `(node_id, holder, fencing_token, expires_at_ms, high_water_ms)` in a
//! [`LeaseStore`]: the database (`store.rs`, both backends) or memory (the simulation).
//!
//! - **Grant.** A node takes a node id that was never leased, or whose lease expired more
//!   than `skew_margin` ago by the taker's clock, with a compare-and-set on the fencing
//!   token; every grant increments the token. It prefers node ids whose high-water mark
//!   is already in the past, so that it can issue at once.
//! - **High-water mark.** The holder reserves time ahead: `high_water_ms` is raised to
//!   `now + reserve_ahead` in the database *before* the generator may issue up to it. A
//!   grant sets the new holder's floor to `max(previous high water, now)`, and the
//!   generator issues strictly above its floor. So the holders of one node id mint from
//!   disjoint, increasing ranges of time: a restart within the same millisecond, a clock
//!   rolled back across a restart, or an old holder still issuing after it lost the lease
//!   (say its clock ran slow), can never repeat an ID.
//! - **Renewal**, every `renew_every` in the background: `WHERE node_id = $ AND
//!   fencing_token = $`. No row matched: another node holds it now, and the generator
//!   stops at once. The store unreachable: the generator goes on until its local
//!   deadline, `ttl − stop_margin` after the start of the last successful renewal on the
//!   monotonic clock, which is before anyone else may take the node id (`ttl +
//!   skew_margin` after that renewal by their clocks).
//! - **Release**, at a graceful shutdown: the lease expires at once (its high water stays).
//!
//! [`LeaseKeeper::tick`] is one step of the background task. It is `async` because the
//! SQL store is; the in-memory store's futures are always ready, so the simulation drives
//! the very same keeper synchronously.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_shared::ids::NODE_COUNT;

use super::generator::{ActiveLease, IdClock, SnowflakeGenerator};
use super::metrics::IdCounters;

/// Lease timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a grant or renewal holds.
    pub ttl: Duration,
    /// How often the holder renews (a third of the TTL: two renewals may fail in a row).
    pub renew_every: Duration,
    /// How soon to try again after a failed acquisition or renewal.
    pub retry_every: Duration,
    /// The holder stops issuing this long before its lease expires.
    pub stop_margin: Duration,
    /// A lease is granted to another node only this long after it expired, by that
    /// node's clock: the clock skew between two nodes that the design tolerates is
    /// `stop_margin + skew_margin`.
    pub skew_margin: Duration,
    /// How far ahead of its clock a holder reserves the high-water mark.
    pub reserve_ahead: Duration,
}

impl LeaseConfig {
    /// Timings derived from a TTL: renew every third, retry every twentieth, stop a
    /// tenth early, wait a fifth after expiry, reserve one TTL ahead.
    pub fn with_ttl(ttl: Duration) -> LeaseConfig {
        LeaseConfig {
            ttl,
            renew_every: ttl / 3,
            retry_every: ttl / 20,
            stop_margin: ttl / 10,
            skew_margin: ttl / 5,
            reserve_ahead: ttl,
        }
    }

    fn ms(d: Duration) -> i64 {
        d.as_millis() as i64
    }
}

impl Default for LeaseConfig {
    /// A 10 s lease: renewed every 3.3 s, 1 s of stop margin and 2 s of skew margin.
    fn default() -> LeaseConfig {
        LeaseConfig::with_ttl(Duration::from_secs(10))
    }
}

/// One row of the lease table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub node_id: u16,
    pub holder: String,
    pub fencing_token: i64,
    pub granted_at_ms: i64,
    pub renewed_at_ms: i64,
    pub expires_at_ms: i64,
    pub high_water_ms: i64,
}

/// What a node asks for when it wants a node id.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub holder: String,
    /// The requester's wall clock.
    pub now_ms: i64,
    pub ttl_ms: i64,
    pub skew_margin_ms: i64,
    pub reserve_ms: i64,
    /// Where to start looking among equally good node ids (random, so that nodes starting
    /// together do not all race for the same one).
    pub start_hint: u16,
}

impl AcquireRequest {
    /// Leases that expired before this may be taken.
    pub fn expired_before(&self) -> i64 {
        self.now_ms - self.skew_margin_ms
    }

    /// The high-water mark a grant at `previous_high_water` sets.
    pub fn granted_high_water(&self, previous_high_water: i64) -> i64 {
        previous_high_water.max(self.now_ms) + self.reserve_ms
    }
}

/// A node id granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub node_id: u16,
    pub fencing_token: i64,
    /// Issue strictly above this.
    pub floor_ms: i64,
    /// Issue at most this (already persisted).
    pub high_water_ms: i64,
    pub expires_at_ms: i64,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours; the persisted high-water mark.
    Renewed { high_water_ms: i64 },
    /// The fencing token moved on: another node holds it.
    Lost,
}

/// The store could not answer (a database outage, a network partition, a timeout). The
/// operation may or may not have taken effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the lease store is unavailable: {0}")]
pub struct LeaseStoreError(pub String);

/// Where leases live. Implementations must make each operation atomic.
pub trait LeaseStore: Send + Sync + 'static {
    /// Grants a node id (see [`candidates`] for the order of preference), or `None` when
    /// none is free.
    fn acquire(
        &self,
        request: &AcquireRequest,
    ) -> impl Future<Output = Result<Option<Grant>, LeaseStoreError>> + Send;

    /// Extends the lease `(node_id, fencing_token)` to `expires_at_ms` and raises its
    /// high-water mark to at least `high_water_ms`.
    fn renew(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
        expires_at_ms: i64,
        high_water_ms: i64,
    ) -> impl Future<Output = Result<Renewal, LeaseStoreError>> + Send;

    /// Ends the lease now (keeping its high-water mark), if it is still this one.
    fn release(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), LeaseStoreError>> + Send;

    /// Every row, by node id.
    fn list(&self) -> impl Future<Output = Result<Vec<LeaseRow>, LeaseStoreError>> + Send;
}

/// A node id to try, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    /// An expired lease: compare-and-set on its token.
    Expired { node_id: u16, fencing_token: i64 },
    /// A node id never leased: insert it.
    Fresh { node_id: u16 },
}

/// How many candidates one acquisition tries before giving up until the next tick.
pub const MAX_CANDIDATES: usize = 16;

/// The order in which to try node ids: expired leases whose high-water mark is already
/// past (usable at once), then never-used node ids, both starting at `start_hint`; then
/// expired leases whose high water is still ahead, lowest first (usable once the clock
/// passes it).
///
/// `rows` are `(node_id, fencing_token, expires_at_ms, high_water_ms)`; `node_count`
/// bounds the node ids (4,096 in production; fewer in tests that want contention).
pub fn candidates(
    rows: &[(u16, i64, i64, i64)],
    node_count: u32,
    request: &AcquireRequest,
) -> Vec<Candidate> {
    let expired_before = request.expired_before();
    let start = request.start_hint as u32 % node_count.max(1);
    let rotated = |node_id: u16| (node_id as u32 + node_count - start) % node_count;
    let mut usable = Vec::new();
    let mut later = Vec::new();
    let mut used = vec![false; node_count as usize];
    for &(node_id, fencing_token, expires_at_ms, high_water_ms) in rows {
        if let Some(slot) = used.get_mut(node_id as usize) {
            *slot = true;
        } else {
            continue;
        }
        if expires_at_ms >= expired_before {
            continue;
        }
        let candidate = Candidate::Expired {
            node_id,
            fencing_token,
        };
        if high_water_ms < request.now_ms {
            usable.push((rotated(node_id), candidate));
        } else {
            later.push((high_water_ms, candidate));
        }
    }
    usable.sort_unstable_by_key(|(key, _)| *key);
    later.sort_unstable_by_key(|(key, _)| *key);
    let fresh = (0..node_count)
        .map(|i| ((start + i) % node_count) as u16)
        .filter(|&node_id| !used[node_id as usize])
        .map(|node_id| Candidate::Fresh { node_id });
    usable
        .into_iter()
        .map(|(_, c)| c)
        .chain(fresh)
        .chain(later.into_iter().map(|(_, c)| c))
        .take(MAX_CANDIDATES)
        .collect()
}

/// Leases in memory, for the simulation and unit tests. Faults are switched on from
/// outside: the whole store down, or down with the writes still applied (the answer is
/// lost, as when a connection drops after the commit).
#[derive(Debug)]
pub struct MemoryLeaseStore {
    node_count: u32,
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    rows: BTreeMap<u16, LeaseRow>,
    fault: Option<StoreFault>,
}

/// A fault of the in-memory store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// Nothing happens; every call fails.
    Down,
    /// Writes happen but every call fails (the answers are lost).
    AnswersLost,
}

impl MemoryLeaseStore {
    pub fn new(node_count: u32) -> MemoryLeaseStore {
        assert!((1..=NODE_COUNT).contains(&node_count));
        MemoryLeaseStore {
            node_count,
            state: Mutex::default(),
        }
    }

    pub fn set_fault(&self, fault: Option<StoreFault>) {
        self.lock().fault = fault;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The row of `node_id`, if it was ever leased.
    pub fn row(&self, node_id: u16) -> Option<LeaseRow> {
        self.lock().rows.get(&node_id).cloned()
    }

    fn answer<T>(fault: Option<StoreFault>, value: T) -> Result<T, LeaseStoreError> {
        match fault {
            None => Ok(value),
            Some(fault) => Err(LeaseStoreError(format!("{fault:?}"))),
        }
    }

    pub fn acquire_now(&self, request: &AcquireRequest) -> Result<Option<Grant>, LeaseStoreError> {
        let mut state = self.lock();
        if state.fault == Some(StoreFault::Down) {
            return Err(LeaseStoreError("down".into()));
        }
        let rows: Vec<_> = state
            .rows
            .values()
            .map(|r| (r.node_id, r.fencing_token, r.expires_at_ms, r.high_water_ms))
            .collect();
        let expires_at_ms = request.now_ms + request.ttl_ms;
        let mut granted = None;
        // Every candidate is taken at once here (no other writer between the look and the
        // compare-and-set), so the first one wins.
        if let Some(candidate) = candidates(&rows, self.node_count, request).first() {
            let (node_id, previous) = match *candidate {
                Candidate::Expired { node_id, .. } => {
                    let row = &state.rows[&node_id];
                    (node_id, Some((row.fencing_token, row.high_water_ms)))
                }
                Candidate::Fresh { node_id } => (node_id, None),
            };
            let (fencing_token, high_water_ms) = match previous {
                Some((token, high_water)) => (token + 1, request.granted_high_water(high_water)),
                None => (1, request.granted_high_water(i64::MIN / 2)),
            };
            state.rows.insert(
                node_id,
                LeaseRow {
                    node_id,
                    holder: request.holder.clone(),
                    fencing_token,
                    granted_at_ms: request.now_ms,
                    renewed_at_ms: request.now_ms,
                    expires_at_ms,
                    high_water_ms,
                },
            );
            granted = Some(Grant {
                node_id,
                fencing_token,
                floor_ms: high_water_ms - request.reserve_ms,
                high_water_ms,
                expires_at_ms,
            });
        }
        Self::answer(state.fault, granted)
    }

    pub fn renew_now(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
        expires_at_ms: i64,
        high_water_ms: i64,
    ) -> Result<Renewal, LeaseStoreError> {
        let mut state = self.lock();
        if state.fault == Some(StoreFault::Down) {
            return Err(LeaseStoreError("down".into()));
        }
        let renewal = match state.rows.get_mut(&node_id) {
            Some(row) if row.fencing_token == fencing_token => {
                row.expires_at_ms = expires_at_ms;
                row.renewed_at_ms = now_ms;
                row.high_water_ms = row.high_water_ms.max(high_water_ms);
                Renewal::Renewed {
                    high_water_ms: row.high_water_ms,
                }
            }
            _ => Renewal::Lost,
        };
        Self::answer(state.fault, renewal)
    }

    pub fn release_now(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
    ) -> Result<(), LeaseStoreError> {
        let mut state = self.lock();
        if state.fault == Some(StoreFault::Down) {
            return Err(LeaseStoreError("down".into()));
        }
        if let Some(row) = state.rows.get_mut(&node_id) {
            if row.fencing_token == fencing_token {
                row.expires_at_ms = row.expires_at_ms.min(now_ms);
            }
        }
        Self::answer(state.fault, ())
    }
}

impl LeaseStore for MemoryLeaseStore {
    fn acquire(
        &self,
        request: &AcquireRequest,
    ) -> impl Future<Output = Result<Option<Grant>, LeaseStoreError>> + Send {
        std::future::ready(self.acquire_now(request))
    }

    fn renew(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
        expires_at_ms: i64,
        high_water_ms: i64,
    ) -> impl Future<Output = Result<Renewal, LeaseStoreError>> + Send {
        std::future::ready(self.renew_now(
            node_id,
            fencing_token,
            now_ms,
            expires_at_ms,
            high_water_ms,
        ))
    }

    fn release(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), LeaseStoreError>> + Send {
        std::future::ready(self.release_now(node_id, fencing_token, now_ms))
    }

    fn list(&self) -> impl Future<Output = Result<Vec<LeaseRow>, LeaseStoreError>> + Send {
        let state = self.lock();
        let rows = match state.fault {
            Some(_) => Err(LeaseStoreError("down".into())),
            None => Ok(state.rows.values().cloned().collect()),
        };
        std::future::ready(rows)
    }
}

impl<S: LeaseStore> LeaseStore for Arc<S> {
    fn acquire(
        &self,
        request: &AcquireRequest,
    ) -> impl Future<Output = Result<Option<Grant>, LeaseStoreError>> + Send {
        (**self).acquire(request)
    }

    fn renew(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
        expires_at_ms: i64,
        high_water_ms: i64,
    ) -> impl Future<Output = Result<Renewal, LeaseStoreError>> + Send {
        (**self).renew(node_id, fencing_token, now_ms, expires_at_ms, high_water_ms)
    }

    fn release(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), LeaseStoreError>> + Send {
        (**self).release(node_id, fencing_token, now_ms)
    }

    fn list(&self) -> impl Future<Output = Result<Vec<LeaseRow>, LeaseStoreError>> + Send {
        (**self).list()
    }
}

/// The lease this keeper holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub node_id: u16,
    pub fencing_token: i64,
}

/// Acquires, renews and releases one node's lease, and tells its generator.
pub struct LeaseKeeper<S> {
    store: S,
    generator: Arc<SnowflakeGenerator>,
    clock: Arc<dyn IdClock>,
    config: LeaseConfig,
    holder: String,
    held: Option<Held>,
    /// SplitMix64 state for the start hint.
    hint_state: u64,
}

impl<S: LeaseStore> LeaseKeeper<S> {
    pub fn new(
        store: S,
        generator: Arc<SnowflakeGenerator>,
        clock: Arc<dyn IdClock>,
        config: LeaseConfig,
        holder: impl Into<String>,
        seed: u64,
    ) -> LeaseKeeper<S> {
        LeaseKeeper {
            store,
            generator,
            clock,
            config,
            holder: holder.into(),
            held: None,
            hint_state: seed,
        }
    }

    pub fn held(&self) -> Option<Held> {
        self.held
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn counters(&self) -> &IdCounters {
        self.generator.counters()
    }

    /// One step: acquire when holding nothing, else renew (and, if the lease was lost,
    /// acquire another at once). Returns how long to wait before the next step.
    pub async fn tick(&mut self) -> Duration {
        if let Some(held) = self.held {
            if self.renew(held).await {
                return self.config.renew_every;
            }
            if self.held.is_some() {
                return self.config.retry_every;
            }
        }
        if self.acquire().await {
            self.config.renew_every
        } else {
            self.config.retry_every
        }
    }

    /// Ends the lease: the generator stops first, then the store is told.
    pub async fn release(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        self.generator.revoke();
        let now = self.clock.wall_ms();
        if let Err(err) = self
            .store
            .release(held.node_id, held.fencing_token, now)
            .await
        {
            tracing::warn!(%err, node_id = held.node_id, "could not release the node id lease; it will expire");
        }
    }

    fn deadlines(&self, started: super::generator::Reading) -> (u64, i64) {
        let valid_for = self.config.ttl.saturating_sub(self.config.stop_margin);
        (
            started.mono_ns + valid_for.as_nanos() as u64,
            started.wall_ms + LeaseConfig::ms(valid_for),
        )
    }

    async fn acquire(&mut self) -> bool {
        let started = self.clock.reading();
        let request = AcquireRequest {
            holder: self.holder.clone(),
            now_ms: started.wall_ms,
            ttl_ms: LeaseConfig::ms(self.config.ttl),
            skew_margin_ms: LeaseConfig::ms(self.config.skew_margin),
            reserve_ms: LeaseConfig::ms(self.config.reserve_ahead),
            start_hint: (splitmix64(&mut self.hint_state) % NODE_COUNT as u64) as u16,
        };
        match self.store.acquire(&request).await {
            Ok(Some(grant)) => {
                let (valid_until_mono_ns, valid_until_wall_ms) = self.deadlines(started);
                self.generator.install(ActiveLease {
                    node_id: grant.node_id,
                    fencing_token: grant.fencing_token,
                    floor_ms: grant.floor_ms,
                    high_water_ms: grant.high_water_ms,
                    valid_until_mono_ns,
                    valid_until_wall_ms,
                });
                self.held = Some(Held {
                    node_id: grant.node_id,
                    fencing_token: grant.fencing_token,
                });
                IdCounters::bump(&self.counters().lease_acquisitions);
                tracing::info!(
                    node_id = grant.node_id,
                    fencing_token = grant.fencing_token,
                    floor_ms = grant.floor_ms,
                    "node id leased"
                );
                true
            }
            Ok(None) => {
                tracing::warn!("no node id is free; retrying");
                false
            }
            Err(err) => {
                tracing::warn!(%err, "could not lease a node id; retrying");
                false
            }
        }
    }

    /// True when renewed; false when it failed (`held` kept) or the lease was lost
    /// (`held` cleared, generator revoked).
    async fn renew(&mut self, held: Held) -> bool {
        let started = self.clock.reading();
        let result = self
            .store
            .renew(
                held.node_id,
                held.fencing_token,
                started.wall_ms,
                started.wall_ms + LeaseConfig::ms(self.config.ttl),
                started.wall_ms + LeaseConfig::ms(self.config.reserve_ahead),
            )
            .await;
        match result {
            Ok(Renewal::Renewed { high_water_ms }) => {
                let (mono, wall) = self.deadlines(started);
                IdCounters::bump(&self.counters().lease_renewals);
                if self
                    .generator
                    .extend(held.fencing_token, high_water_ms, mono, wall)
                {
                    return true;
                }
                // The generator was revoked behind the keeper's back: let this lease go
                // (it expires on its own) and take a fresh one.
                self.held = None;
                false
            }
            Ok(Renewal::Lost) => {
                self.generator.revoke();
                self.held = None;
                IdCounters::bump(&self.counters().lease_losses);
                tracing::warn!(
                    node_id = held.node_id,
                    "the node id lease was taken over; stopped issuing"
                );
                false
            }
            Err(err) => {
                IdCounters::bump(&self.counters().lease_renewal_failures);
                tracing::warn!(%err, node_id = held.node_id, "lease renewal failed");
                false
            }
        }
    }
}

/// SplitMix64: a tiny, good-enough generator for hints and the simulation.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Polls a future that must be ready at once (the in-memory store's), without a runtime.
pub fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("a future expected to be ready was pending"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::generator::{FakeIdClock, GeneratorConfig, IdError};
    use super::*;
    use meridian_shared::ids::{decode_snowflake, EPOCH_UNIX_MS};

    const T0: i64 = EPOCH_UNIX_MS + 86_400_000;

    struct Node {
        clock: Arc<FakeIdClock>,
        generator: Arc<SnowflakeGenerator>,
        keeper: LeaseKeeper<Arc<MemoryLeaseStore>>,
    }

    fn node(store: &Arc<MemoryLeaseStore>, name: &str, wall_ms: i64) -> Node {
        let clock = Arc::new(FakeIdClock::new(wall_ms));
        let generator = Arc::new(SnowflakeGenerator::new(
            clock.clone(),
            GeneratorConfig::default(),
            Arc::default(),
        ));
        let keeper = LeaseKeeper::new(
            store.clone(),
            generator.clone(),
            clock.clone(),
            LeaseConfig::default(),
            name,
            1,
        );
        Node {
            clock,
            generator,
            keeper,
        }
    }

    fn request(now_ms: i64, hint: u16) -> AcquireRequest {
        AcquireRequest {
            holder: "x".into(),
            now_ms,
            ttl_ms: 10_000,
            skew_margin_ms: 2_000,
            reserve_ms: 10_000,
            start_hint: hint,
        }
    }

    #[test]
    fn candidates_prefer_past_high_water_then_fresh_then_lowest_future() {
        let now = 1_000_000;
        let rows = [
            (0, 5, now - 10_000, now + 50),    // expired, high water ahead
            (1, 3, now - 10_000, now - 5_000), // expired, usable
            (2, 9, now + 5_000, now + 9_000),  // live
            (3, 4, now - 1_000, now - 900),    // expired, but within the skew margin
            (4, 1, now - 10_000, now + 10),    // expired, high water ahead (lower)
        ];
        let order = candidates(&rows, 8, &request(now, 0));
        assert_eq!(
            order,
            vec![
                Candidate::Expired {
                    node_id: 1,
                    fencing_token: 3
                },
                Candidate::Fresh { node_id: 5 },
                Candidate::Fresh { node_id: 6 },
                Candidate::Fresh { node_id: 7 },
                Candidate::Expired {
                    node_id: 4,
                    fencing_token: 1
                },
                Candidate::Expired {
                    node_id: 0,
                    fencing_token: 5
                },
            ]
        );
        // The hint rotates where fresh ids start.
        let order = candidates(&rows, 8, &request(now, 6));
        assert_eq!(order[1], Candidate::Fresh { node_id: 6 });
        assert_eq!(order[3], Candidate::Fresh { node_id: 5 });
    }

    #[test]
    fn two_nodes_get_different_node_ids() {
        let store = Arc::new(MemoryLeaseStore::new(NODE_COUNT));
        let mut a = node(&store, "a", T0);
        let mut b = node(&store, "b", T0);
        now_or_never(a.keeper.tick());
        now_or_never(b.keeper.tick());
        let (na, nb) = (a.keeper.held().unwrap(), b.keeper.held().unwrap());
        assert_ne!(na.node_id, nb.node_id);
        a.clock.advance_ms(1);
        b.clock.advance_ms(1);
        let ia = decode_snowflake(a.generator.next_snowflake().unwrap()).unwrap();
        let ib = decode_snowflake(b.generator.next_snowflake().unwrap()).unwrap();
        assert_eq!((ia.node, ib.node), (na.node_id, nb.node_id));
    }

    #[test]
    fn a_restart_that_gets_its_node_id_back_at_once_starts_above_its_high_water() {
        // One node id only, and no skew margin: the restarted process gets the very node
        // id it had, a millisecond later. Only the high-water mark protects it.
        let store = Arc::new(MemoryLeaseStore::new(1));
        let mut first = node(&store, "first", T0);
        first.keeper.config.skew_margin = Duration::ZERO;
        now_or_never(first.keeper.tick());
        first.clock.advance_ms(1);
        let last = first.generator.next_snowflakes(10).unwrap()[9];
        now_or_never(first.keeper.release());

        let mut second = node(&store, "second", T0 + 1);
        second.keeper.config.skew_margin = Duration::ZERO;
        second.clock.advance_ms(1); // the release is in the past now
        now_or_never(second.keeper.tick());
        let held = second.keeper.held().expect("the same node id again");
        assert_eq!(held.node_id, 0);
        assert_eq!(held.fencing_token, 2);
        // Its floor is the first holder's reservation, well ahead: it refuses rather than
        // reissue, until its clock passes the floor.
        let floor = second.generator.lease().unwrap().floor_ms;
        assert!(floor > T0 + 1);
        assert!(matches!(
            second.generator.next_snowflake(),
            Err(IdError::BehindHighWater { .. })
        ));
        second
            .clock
            .advance_ms((floor - second.clock.wall_ms() + 1) as u64);
        now_or_never(second.keeper.tick());
        let next = second.generator.next_snowflake().unwrap();
        assert!(next > last);
    }

    #[test]
    fn a_lost_lease_stops_the_generator_and_takes_another() {
        let store = Arc::new(MemoryLeaseStore::new(2));
        let mut a = node(&store, "a", T0);
        now_or_never(a.keeper.tick());
        let held_a = a.keeper.held().unwrap();
        a.clock.advance_ms(1);
        a.generator.next_snowflake().unwrap();
        // `c` holds the other node id; `a` is paused for 25 s, its lease expires and `b`
        // takes its node id.
        let mut c = node(&store, "c", T0);
        now_or_never(c.keeper.tick());
        a.clock.advance_ms(25_000);
        c.clock.advance_ms(25_000);
        now_or_never(c.keeper.tick());
        let mut b = node(&store, "b", T0 + 25_001);
        now_or_never(b.keeper.tick());
        assert_eq!(b.keeper.held().unwrap().node_id, held_a.node_id);
        // `a` wakes up: its generator refuses before the keeper even runs...
        assert!(matches!(
            a.generator.next_snowflake(),
            Err(IdError::LeaseExpired { .. })
        ));
        // ...and the renewal finds the fencing token moved on.
        now_or_never(a.keeper.tick());
        let metrics = a.generator.counters().snapshot();
        assert_eq!(metrics.lease_losses, 1);
        assert_eq!(a.keeper.held(), None, "no node id is free for a");
        assert_eq!(a.generator.next_snowflake(), Err(IdError::NoLease));
    }

    #[test]
    fn an_outage_shorter_than_the_lease_is_ridden_out_a_longer_one_stops_issuing() {
        let store = Arc::new(MemoryLeaseStore::new(NODE_COUNT));
        let mut a = node(&store, "a", T0);
        now_or_never(a.keeper.tick());
        a.clock.advance_ms(1);
        store.set_fault(Some(StoreFault::Down));
        a.clock.advance_ms(5_000);
        assert_eq!(now_or_never(a.keeper.tick()), a.keeper.config.retry_every);
        a.generator
            .next_snowflake()
            .expect("still within the lease");
        // 9 s after the grant: past ttl − stop margin.
        a.clock.advance_ms(4_000);
        assert!(matches!(
            a.generator.next_snowflake(),
            Err(IdError::LeaseExpired { .. })
        ));
        store.set_fault(None);
        now_or_never(a.keeper.tick());
        a.generator
            .next_snowflake()
            .expect("renewed: nobody took it");
        let metrics = a.generator.counters().snapshot();
        assert_eq!(metrics.lease_renewal_failures, 1);
        assert_eq!(metrics.lease_renewals, 1);
    }

    #[test]
    fn a_lost_answer_still_reserved_the_high_water() {
        let store = Arc::new(MemoryLeaseStore::new(NODE_COUNT));
        let mut a = node(&store, "a", T0);
        now_or_never(a.keeper.tick());
        let held = a.keeper.held().unwrap();
        let before = store.row(held.node_id).unwrap().high_water_ms;
        store.set_fault(Some(StoreFault::AnswersLost));
        a.clock.advance_ms(3_000);
        now_or_never(a.keeper.tick());
        // The generator does not know the new mark; the store keeps the larger one.
        assert!(store.row(held.node_id).unwrap().high_water_ms > before);
        assert_eq!(a.generator.lease().unwrap().high_water_ms, before);
    }
}
