//! The deterministic simulation of the ID generator: many nodes, one in-memory lease store,
//! fake clocks, and seeded faults. The real [`SnowflakeGenerator`] and [`LeaseKeeper`] run
//! unchanged; only time, the store and the faults are simulated.
//!
//! One thread, one event queue ordered by simulated microseconds, one SplitMix64 seeded
//! RNG: the same seed replays the same run exactly (`MERIDIAN_SIM_SEED`).
//!
//! Each node has its own clock (a skew of up to ±30 ms, a drift of up to ±200 ppm) and
//! issues requests of 1 to 3,000 IDs. Faults, drawn at random per node:
//! - wall clock steps, small (waited out) and large (refused), both ways, up to an hour;
//! - pauses (a GC stall) of up to 3 lease TTLs: the process does nothing, time goes on;
//! - crashes with an immediate restart in the same microsecond (generator state lost,
//!   lease not released), sometimes with the clock rolled back across the restart;
//!   graceful restarts (lease released);
//! - partitions of one node from the store, and store-wide outages, some of which apply
//!   writes but lose the answers.
//!
//! Checked at the end: no ID was issued twice (all IDs sorted, adjacent compared); each
//! process's IDs strictly increase; and on each node id, the IDs issued under different
//! leases (fencing tokens) fall in disjoint ranges.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_shared::ids::{decode_snowflake, IdMetrics, EPOCH_UNIX_MS, NODE_COUNT};

use super::generator::{Attempt, GeneratorConfig, IdClock, SnowflakeGenerator};
use super::lease::{
    now_or_never, splitmix64, AcquireRequest, Grant, LeaseConfig, LeaseKeeper, LeaseRow,
    LeaseStore, LeaseStoreError, MemoryLeaseStore, Renewal, StoreFault,
};
use super::metrics::IdCounters;

/// The environment variable that replays a seed.
pub const SEED_VAR: &str = "MERIDIAN_SIM_SEED";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Stop once this many IDs were issued.
    pub ids: u64,
    /// How many node ids the store hands out (4,096 in production).
    pub node_ids: u32,
    pub lease: LeaseConfig,
    pub generator: GeneratorConfig,
    /// The simulated time the run is planned to take; it sets the request rate. Faults
    /// make it run longer.
    pub planned: Duration,
    /// Faults per node over the planned time.
    pub faults_per_node: f64,
    /// Store-wide outages over the planned time.
    pub outages: u32,
    /// Whether wall clocks are stepped (and rolled back across restarts). Without
    /// steps, clocks differ only by their skew and drift, within the lease's margins.
    pub clock_steps: bool,
}

impl SimConfig {
    /// `nodes` nodes issuing `ids` IDs, with a 500 ms lease so that a run sees many
    /// renewals, expiries and takeovers.
    pub fn new(seed: u64, nodes: usize, ids: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            ids,
            node_ids: NODE_COUNT,
            lease: LeaseConfig::with_ttl(Duration::from_millis(500)),
            generator: GeneratorConfig::default(),
            planned: Duration::from_millis((ids / 10_000).clamp(3_000, 12_000)),
            faults_per_node: 6.0,
            outages: 4,
            clock_steps: true,
        }
    }
}

/// The seed from `MERIDIAN_SIM_SEED`, or a fresh one.
pub fn seed_from_env() -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR} must be a u64, not {text:?}")),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let mut state = now.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
            splitmix64(&mut state)
        }
    }
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    pub ids: u64,
    /// IDs equal to another: must be 0.
    pub duplicates: u64,
    /// IDs not above the previous ID of the same process: must be 0.
    pub backwards: u64,
    /// Pairs of holders of one node id whose ID ranges overlap: must be 0.
    pub overlapping_ranges: u64,
    /// Requests answered by a holder whose node id had already been granted to another
    /// node (possible when the taker's clock ran ahead by more than the margins; still
    /// unique, by the high-water mark).
    pub issued_after_takeover: u64,
    pub processes: u64,
    pub crashes: u64,
    pub graceful_restarts: u64,
    pub rollback_restarts: u64,
    pub pauses: u64,
    pub pauses_past_lease: u64,
    pub clock_steps_small: u64,
    pub clock_steps_large: u64,
    pub partitions: u64,
    pub outages: u64,
    pub requests: u64,
    pub requests_refused: u64,
    pub node_ids_used: u64,
    pub metrics: IdMetrics,
    pub simulated: Duration,
    pub elapsed: Duration,
    pub check_elapsed: Duration,
}

impl SimReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.duplicates == 0 && self.backwards == 0 && self.overlapping_ranges == 0
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.metrics;
        writeln!(
            f,
            "seed={} ({SEED_VAR}={} replays it)",
            self.seed, self.seed
        )?;
        writeln!(
            f,
            "nodes={} processes={} node_ids_used={} ids={} simulated={:.3}s elapsed={:.2}s (check {:.2}s)",
            self.nodes,
            self.processes,
            self.node_ids_used,
            self.ids,
            self.simulated.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.check_elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "duplicates={} backwards={} overlapping_ranges={} issued_after_takeover={}",
            self.duplicates, self.backwards, self.overlapping_ranges, self.issued_after_takeover
        )?;
        writeln!(
            f,
            "faults: crashes={} graceful_restarts={} rollback_restarts={} pauses={} (past the lease: {}) \
             clock_steps small={} large={} partitions={} outages={}",
            self.crashes,
            self.graceful_restarts,
            self.rollback_restarts,
            self.pauses,
            self.pauses_past_lease,
            self.clock_steps_small,
            self.clock_steps_large,
            self.partitions,
            self.outages
        )?;
        writeln!(
            f,
            "requests={} refused={} | refusals: no_lease={} lease_expired={} clock_backwards={} high_water={} \
             | waits: clock={} sequence={}",
            self.requests,
            self.requests_refused,
            m.refused_no_lease,
            m.refused_lease_expired,
            m.refused_clock_backwards,
            m.refused_high_water,
            m.waits_clock_backwards,
            m.waits_sequence_exhausted
        )?;
        write!(
            f,
            "leases: acquisitions={} renewals={} renewal_failures={} losses={} | {}",
            m.lease_acquisitions,
            m.lease_renewals,
            m.lease_renewal_failures,
            m.lease_losses,
            if self.ok() { "OK" } else { "FAILED" }
        )
    }
}

/// Simulated time: microseconds since the run began.
type Micros = u64;

/// Wall-clock time of the simulated world at `Micros` 0 (40 days after our epoch).
const WORLD_START_UNIX_MS: i64 = EPOCH_UNIX_MS + 40 * 86_400_000;

/// One node's clocks. Wall: the world's time, drifting by `drift_ppm`, plus an offset that
/// steps move. Monotonic: the world's time since the process started.
#[derive(Debug)]
struct SimClock {
    world: Arc<AtomicU64>,
    offset_us: AtomicI64,
    drift_ppm: i64,
    mono_origin: AtomicU64,
}

impl SimClock {
    fn wall_us(&self) -> i64 {
        let world = self.world.load(Ordering::Relaxed) as i64;
        WORLD_START_UNIX_MS * 1000
            + world
            + world * self.drift_ppm / 1_000_000
            + self.offset_us.load(Ordering::Relaxed)
    }
}

impl IdClock for SimClock {
    fn wall_ms(&self) -> i64 {
        self.wall_us().div_euclid(1000)
    }

    fn monotonic_ns(&self) -> u64 {
        let world = self.world.load(Ordering::Relaxed);
        (world - self.mono_origin.load(Ordering::Relaxed)) * 1000
    }
}

const LINK_UP: u8 = 0;
const LINK_DOWN: u8 = 1;
const LINK_ANSWERS_LOST: u8 = 2;

/// One node's way to the shared store, which a partition can cut.
struct NodeLink {
    store: Arc<MemoryLeaseStore>,
    state: Arc<AtomicU8>,
}

impl NodeLink {
    fn pass<T>(
        &self,
        work: impl FnOnce() -> Result<T, LeaseStoreError>,
    ) -> Result<T, LeaseStoreError> {
        match self.state.load(Ordering::Relaxed) {
            LINK_DOWN => Err(LeaseStoreError("partitioned".into())),
            LINK_ANSWERS_LOST => {
                let _ = work();
                Err(LeaseStoreError("answer lost".into()))
            }
            _ => work(),
        }
    }
}

impl LeaseStore for NodeLink {
    fn acquire(
        &self,
        request: &AcquireRequest,
    ) -> impl std::future::Future<Output = Result<Option<Grant>, LeaseStoreError>> + Send {
        std::future::ready(self.pass(|| self.store.acquire_now(request)))
    }

    fn renew(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
        expires_at_ms: i64,
        high_water_ms: i64,
    ) -> impl std::future::Future<Output = Result<Renewal, LeaseStoreError>> + Send {
        std::future::ready(self.pass(|| {
            self.store
                .renew_now(node_id, fencing_token, now_ms, expires_at_ms, high_water_ms)
        }))
    }

    fn release(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
    ) -> impl std::future::Future<Output = Result<(), LeaseStoreError>> + Send {
        std::future::ready(self.pass(|| self.store.release_now(node_id, fencing_token, now_ms)))
    }

    fn list(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<LeaseRow>, LeaseStoreError>> + Send {
        self.store.list()
    }
}

/// One run of the server process on a node.
struct Process {
    generator: Arc<SnowflakeGenerator>,
    keeper: LeaseKeeper<NodeLink>,
    last_id: Option<u64>,
    /// The lease (node id, fencing token) and the range of IDs issued under it.
    range: Option<(u16, i64, u64, u64)>,
}

struct Node {
    clock: Arc<SimClock>,
    link: Arc<AtomicU8>,
    paused_until: Micros,
    /// Bumped at every restart, so that the old process's pending events are dropped.
    generation: u32,
    process: Process,
    /// IDs still wanted by the current request.
    pending: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Keeper,
    Issue,
    Fault,
    LinkRestored,
    StoreDown,
    StoreUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: Micros,
    order: u64,
    node: u32,
    generation: u32,
    kind: Kind,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Exponentially distributed with this mean (at least 1).
    fn exp(&mut self, mean: f64) -> u64 {
        let u = ((self.next() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        ((-u.ln() * mean) as u64).max(1)
    }

    fn signed(&mut self, magnitude: u64) -> i64 {
        let value = self.range(0, magnitude) as i64;
        if self.chance(0.5) {
            value
        } else {
            -value
        }
    }
}

struct Sim<'a> {
    config: &'a SimConfig,
    rng: Rng,
    world: Arc<AtomicU64>,
    store: Arc<MemoryLeaseStore>,
    counters: Arc<IdCounters>,
    queue: BinaryHeap<Reverse<Event>>,
    order: u64,
    nodes: Vec<Node>,
    incarnations: u32,
    /// Every ID issued, for the duplicate check.
    issued: Vec<u64>,
    /// (node id, fencing token, min, max) of the IDs issued under each lease.
    ranges: Vec<(u16, i64, u64, u64)>,
    report: SimReport,
    issue_every_us: f64,
    now: Micros,
}

/// Runs a simulation to its end and checks it.
pub fn run(config: &SimConfig) -> SimReport {
    let started = Instant::now();
    let mut sim = Sim::new(config);
    sim.start();
    sim.run_events();
    let mut report = sim.check();
    report.elapsed = started.elapsed();
    report
}

impl<'a> Sim<'a> {
    fn new(config: &'a SimConfig) -> Sim<'a> {
        // 80 %: 1-8 IDs, 17 %: 9-256, 3 %: 1,024-3,000 (a millisecond's sequence and more).
        let mean_batch = 0.8 * 4.5 + 0.17 * 132.5 + 0.03 * 2012.0;
        let planned_us = config.planned.as_micros() as f64;
        let per_node_per_us = config.ids as f64 / config.nodes as f64 / planned_us;
        Sim {
            config,
            rng: Rng(config.seed),
            world: Arc::new(AtomicU64::new(0)),
            store: Arc::new(MemoryLeaseStore::new(config.node_ids)),
            counters: Arc::default(),
            queue: BinaryHeap::new(),
            order: 0,
            nodes: Vec::with_capacity(config.nodes),
            incarnations: 0,
            issued: Vec::with_capacity(config.ids as usize + 4096),
            ranges: Vec::new(),
            report: SimReport {
                seed: config.seed,
                nodes: config.nodes,
                ..SimReport::default()
            },
            issue_every_us: mean_batch / per_node_per_us,
            now: 0,
        }
    }

    fn schedule(&mut self, at: Micros, node: usize, kind: Kind) {
        let generation = self.nodes.get(node).map_or(0, |n| n.generation);
        self.order += 1;
        self.queue.push(Reverse(Event {
            at,
            order: self.order,
            node: node as u32,
            generation,
            kind,
        }));
    }

    fn new_process(&mut self, clock: &Arc<SimClock>, link: &Arc<AtomicU8>) -> Process {
        let generator = Arc::new(SnowflakeGenerator::new(
            clock.clone(),
            self.config.generator,
            self.counters.clone(),
        ));
        self.incarnations += 1;
        let keeper = LeaseKeeper::new(
            NodeLink {
                store: self.store.clone(),
                state: link.clone(),
            },
            generator.clone(),
            clock.clone(),
            self.config.lease,
            format!("p{}", self.incarnations),
            self.rng.next(),
        );
        clock.mono_origin.store(self.now, Ordering::Relaxed);
        self.report.processes += 1;
        Process {
            generator,
            keeper,
            last_id: None,
            range: None,
        }
    }

    fn start(&mut self) {
        for i in 0..self.config.nodes {
            let clock = Arc::new(SimClock {
                world: self.world.clone(),
                offset_us: AtomicI64::new(self.rng.signed(30_000)),
                drift_ppm: self.rng.signed(200),
                mono_origin: AtomicU64::new(0),
            });
            let link = Arc::new(AtomicU8::new(LINK_UP));
            let process = self.new_process(&clock, &link);
            self.nodes.push(Node {
                clock,
                link,
                paused_until: 0,
                generation: 0,
                process,
                pending: 0,
            });
            let start = self.rng.range(0, 50_000);
            self.schedule(start, i, Kind::Keeper);
            let first = start + self.rng.exp(self.issue_every_us);
            self.schedule(first, i, Kind::Issue);
            let fault_every = self.fault_every_us();
            let at = self.rng.exp(fault_every);
            self.schedule(at, i, Kind::Fault);
        }
        let planned = self.config.planned.as_micros() as u64;
        for _ in 0..self.config.outages {
            let at = self.rng.range(planned / 10, planned);
            self.schedule(at, 0, Kind::StoreDown);
        }
    }

    fn fault_every_us(&self) -> f64 {
        self.config.planned.as_micros() as f64 / self.config.faults_per_node.max(0.001)
    }

    fn ttl_us(&self) -> u64 {
        self.config.lease.ttl.as_micros() as u64
    }

    fn run_events(&mut self) {
        // A run that cannot reach its target (say every node refusing for good) stops.
        let give_up = self.config.planned.as_micros() as u64 * 20;
        while self.report.ids < self.config.ids {
            let Some(Reverse(event)) = self.queue.pop() else {
                break;
            };
            if event.at > give_up {
                break;
            }
            self.now = event.at;
            self.world.store(event.at, Ordering::Relaxed);
            let i = event.node as usize;
            match event.kind {
                Kind::StoreDown => self.store_down(),
                Kind::StoreUp => self.store.set_fault(None),
                Kind::LinkRestored => self.nodes[i].link.store(LINK_UP, Ordering::Relaxed),
                _ if event.generation != self.nodes[i].generation => {}
                Kind::Keeper | Kind::Issue if self.nodes[i].paused_until > self.now => {
                    let until = self.nodes[i].paused_until;
                    self.schedule(until, i, event.kind);
                }
                Kind::Keeper => {
                    let delay = now_or_never(self.nodes[i].process.keeper.tick());
                    self.schedule(self.now + delay.as_micros() as u64, i, Kind::Keeper);
                }
                Kind::Issue => self.issue(i),
                Kind::Fault => {
                    self.fault(i);
                    let every = self.fault_every_us();
                    let at = self.now + self.rng.exp(every);
                    self.schedule(at, i, Kind::Fault);
                }
            }
        }
        self.report.simulated = Duration::from_micros(self.now);
    }

    fn draw_batch(&mut self) -> u32 {
        let roll = self.rng.range(0, 99);
        if roll < 80 {
            self.rng.range(1, 8) as u32
        } else if roll < 97 {
            self.rng.range(9, 256) as u32
        } else {
            self.rng.range(1024, 3000) as u32
        }
    }

    fn issue(&mut self, i: usize) {
        if self.nodes[i].pending == 0 {
            self.nodes[i].pending = self.draw_batch();
            self.report.requests += 1;
        }
        loop {
            let node = &mut self.nodes[i];
            match node.process.generator.try_issue(node.pending) {
                Attempt::Issued { first, count } => {
                    let last = first + count as u64 - 1;
                    let process = &mut node.process;
                    if process.last_id.is_some_and(|previous| first <= previous) {
                        self.report.backwards += 1;
                    }
                    process.last_id = Some(last);
                    let node_id = decode_snowflake(first).expect("a valid ID").node;
                    let held = process.keeper.held().expect("issuing under a lease");
                    assert_eq!(held.node_id, node_id);
                    match &mut process.range {
                        Some((n, token, _, max))
                            if *n == node_id && *token == held.fencing_token =>
                        {
                            *max = last
                        }
                        range => {
                            if let Some(done) = range.take() {
                                self.ranges.push(done);
                            }
                            *range = Some((node_id, held.fencing_token, first, last));
                        }
                    }
                    if self
                        .store
                        .row(node_id)
                        .is_some_and(|row| row.fencing_token != held.fencing_token)
                    {
                        self.report.issued_after_takeover += 1;
                    }
                    self.issued.extend(first..=last);
                    self.report.ids += count as u64;
                    node.pending -= count;
                    if node.pending == 0 {
                        let at = self.now + self.rng.exp(self.issue_every_us);
                        self.schedule(at, i, Kind::Issue);
                        return;
                    }
                }
                Attempt::Wait { until_wall_ms, .. } => {
                    let behind_us = until_wall_ms * 1000 - node.clock.wall_us();
                    let at = self.now + behind_us.max(1) as u64;
                    self.schedule(at, i, Kind::Issue);
                    return;
                }
                Attempt::Refused(_) => {
                    node.pending = 0;
                    self.report.requests_refused += 1;
                    let at = self.now + self.rng.exp(self.issue_every_us);
                    self.schedule(at, i, Kind::Issue);
                    return;
                }
            }
        }
    }

    fn store_down(&mut self) {
        self.report.outages += 1;
        let fault = if self.rng.chance(0.3) {
            StoreFault::AnswersLost
        } else {
            StoreFault::Down
        };
        self.store.set_fault(Some(fault));
        let ttl = self.ttl_us();
        let length = self.rng.range(ttl / 10, ttl * 5 / 2);
        self.schedule(self.now + length, 0, Kind::StoreUp);
    }

    fn step_clock(&mut self, i: usize, by_us: i64) {
        self.nodes[i]
            .clock
            .offset_us
            .fetch_add(by_us, Ordering::Relaxed);
    }

    fn fault(&mut self, i: usize) {
        let ttl = self.ttl_us();
        let max_wait_us = self.config.generator.max_backward_wait_ms as u64 * 1000;
        let mut roll = self.rng.range(0, 99);
        if !self.config.clock_steps && roll < 25 {
            roll = 25 + roll % 20; // a pause instead
        }
        match roll {
            // Small clock steps: waited out (back) or harmless (forward).
            0..=14 => {
                self.report.clock_steps_small += 1;
                let by = if self.rng.chance(0.6) {
                    -(self.rng.range(1, max_wait_us) as i64)
                } else {
                    self.rng.range(1, 50_000) as i64
                };
                self.step_clock(i, by);
            }
            // Large clock steps, both ways: up to 2 s, or an hour.
            15..=24 => {
                self.report.clock_steps_large += 1;
                let magnitude = if self.rng.chance(0.1) {
                    3_600_000_000
                } else {
                    self.rng.range(max_wait_us + 1, 2_000_000)
                };
                let by = if self.rng.chance(0.5) {
                    magnitude as i64
                } else {
                    -(magnitude as i64)
                };
                self.step_clock(i, by);
            }
            // A pause (GC stall), up to three lease TTLs.
            25..=44 => {
                self.report.pauses += 1;
                let length = self.rng.range(ttl / 5, ttl * 3);
                if length > ttl {
                    self.report.pauses_past_lease += 1;
                }
                self.nodes[i].paused_until = self.now + length;
            }
            // A crash and an immediate restart, in the same microsecond.
            45..=69 => {
                self.report.crashes += 1;
                let roll = self.rng.range(0, 9);
                if roll < 3 && self.config.clock_steps {
                    // The clock rolled back across the restart.
                    self.report.rollback_restarts += 1;
                    let by = self.rng.range(1_000, 2_000_000) as i64;
                    self.step_clock(i, -by);
                } else if roll < 8 {
                    // The restart brought a synchronised clock.
                    let skew = self.rng.signed(30_000);
                    self.nodes[i].clock.offset_us.store(skew, Ordering::Relaxed);
                }
                self.restart(i);
            }
            // A graceful restart: the lease is released first.
            70..=79 => {
                self.report.graceful_restarts += 1;
                now_or_never(self.nodes[i].process.keeper.release());
                self.restart(i);
            }
            // A partition from the store.
            _ => {
                self.report.partitions += 1;
                let mode = if self.rng.chance(0.3) {
                    LINK_ANSWERS_LOST
                } else {
                    LINK_DOWN
                };
                self.nodes[i].link.store(mode, Ordering::Relaxed);
                let length = self.rng.range(ttl / 5, ttl * 2);
                self.schedule(self.now + length, i, Kind::LinkRestored);
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let clock = self.nodes[i].clock.clone();
        let link = self.nodes[i].link.clone();
        let process = self.new_process(&clock, &link);
        let old = std::mem::replace(&mut self.nodes[i].process, process);
        if let Some(range) = old.range {
            self.ranges.push(range);
        }
        let node = &mut self.nodes[i];
        node.generation += 1;
        node.pending = 0;
        node.paused_until = 0;
        self.schedule(self.now, i, Kind::Keeper);
        self.schedule(self.now, i, Kind::Issue);
    }

    fn check(mut self) -> SimReport {
        let started = Instant::now();
        for node in &mut self.nodes {
            if let Some(range) = node.process.range.take() {
                self.ranges.push(range);
            }
        }
        let mut report = self.report;
        report.metrics = self.counters.snapshot();

        let mut issued = std::mem::take(&mut self.issued);
        radix_sort(&mut issued);
        report.duplicates = issued.windows(2).filter(|w| w[0] == w[1]).count() as u64;
        drop(issued);

        // On each node id, sorted by their smallest ID, each lease's IDs end below the
        // next lease's first.
        let mut ranges = std::mem::take(&mut self.ranges);
        ranges.sort_unstable_by_key(|&(node_id, _, min, _)| (node_id, min));
        report.overlapping_ranges = ranges
            .windows(2)
            .filter(|w| w[0].0 == w[1].0 && w[0].3 >= w[1].2)
            .count() as u64;
        let mut node_ids: Vec<u16> = ranges.iter().map(|r| r.0).collect();
        node_ids.dedup();
        report.node_ids_used = node_ids.len() as u64;
        report.check_elapsed = started.elapsed();
        report
    }
}

/// Sorts by the 63 bits an ID uses: LSD radix sort, 8 passes of 8 bits (the top pass
/// covers 7), with one scratch buffer. Faster than a comparison sort for 100 M IDs.
fn radix_sort(values: &mut Vec<u64>) {
    let mut scratch = vec![0u64; values.len()];
    for pass in 0..8 {
        let shift = pass * 8;
        let mut counts = [0usize; 256];
        for &v in values.iter() {
            counts[((v >> shift) & 0xff) as usize] += 1;
        }
        if counts.contains(&values.len()) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut sum = 0;
        for (offset, count) in offsets.iter_mut().zip(counts) {
            *offset = sum;
            sum += count;
        }
        for &v in values.iter() {
            let bucket = ((v >> shift) & 0xff) as usize;
            scratch[offsets[bucket]] = v;
            offsets[bucket] += 1;
        }
        std::mem::swap(values, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_sorts() {
        let mut state = 5;
        let mut values: Vec<u64> = (0..10_000)
            .map(|_| splitmix64(&mut state) >> 1)
            .chain([0, 0, i64::MAX as u64])
            .collect();
        let mut expected = values.clone();
        expected.sort_unstable();
        radix_sort(&mut values);
        assert_eq!(values, expected);
    }

    #[test]
    fn the_same_seed_replays_the_same_run() {
        let config = SimConfig {
            planned: Duration::from_millis(1_500),
            ..SimConfig::new(42, 50, 100_000)
        };
        let (a, b) = (run(&config), run(&config));
        assert!(a.ok(), "{a}");
        assert_eq!(
            (a.ids, a.requests, a.crashes, a.metrics.clone(), a.simulated),
            (b.ids, b.requests, b.crashes, b.metrics.clone(), b.simulated)
        );
    }

    #[test]
    fn scarce_node_ids_are_reused_without_a_duplicate() {
        // 40 nodes, 48 node ids: every restart and loss must reuse someone's node id.
        let seed = seed_from_env();
        let config = SimConfig {
            node_ids: 48,
            planned: Duration::from_millis(4_000),
            faults_per_node: 12.0,
            ..SimConfig::new(seed, 40, 300_000)
        };
        let report = run(&config);
        println!("{report}");
        assert!(report.ok(), "{report}");
        // Progress, loosely: with 8 spare node ids and 12 faults per node, a rare seed
        // keeps many nodes waiting for a free node id until the run's horizon (20x the
        // planned time) ends it short of the target (seed 10359014744003151545: 90 %).
        assert!(report.ids >= config.ids * 4 / 5, "{report}");
    }

    #[test]
    fn with_clocks_within_the_margins_no_holder_outlives_its_lease() {
        // No clock steps: then a node stops issuing before anyone else may take its node
        // id, through pauses, partitions, outages and crashes alike.
        let seed = seed_from_env();
        let config = SimConfig {
            clock_steps: false,
            planned: Duration::from_millis(4_000),
            faults_per_node: 10.0,
            ..SimConfig::new(seed, 200, 500_000)
        };
        let report = run(&config);
        println!("{report}");
        assert!(report.ok(), "{report}");
        assert_eq!(report.issued_after_takeover, 0, "{report}");
        assert!(report.metrics.lease_losses > 0, "{report}");
    }

    /// The issue's simulation at test size: 1,000 nodes, 2 million IDs (the 100 million
    /// run is `cargo run --release -p meridian-server --example id-sim`).
    #[test]
    fn a_thousand_nodes_under_faults_never_repeat_an_id() {
        let seed = seed_from_env();
        let ids = std::env::var("MERIDIAN_SIM_IDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000_000);
        let config = SimConfig::new(seed, 1000, ids);
        println!("simulating {ids} IDs on 1000 nodes, seed {seed}");
        let report = run(&config);
        println!("{report}");
        assert!(report.ok(), "{report}");
        assert!(report.ids >= ids, "{report}");
        assert!(report.crashes > 0 && report.pauses_past_lease > 0 && report.outages > 0);
        assert!(report.metrics.lease_losses > 0, "{report}");
        assert!(report.metrics.refused_clock_backwards > 0, "{report}");
        assert!(report.metrics.waits_sequence_exhausted > 0, "{report}");
    }
}
