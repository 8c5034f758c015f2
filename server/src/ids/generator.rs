//! The generators: [`SnowflakeGenerator`] (the 64-bit layout of `meridian_shared::ids`)
//! and [`UuidV7Generator`] (RFC 9562, monotonic counter in `rand_a`).
//!
//! The hot path never touches the network: one short critical section that reads the
//! injected [`IdClock`] and compares with the state. The lease keeper (`lease.rs`) installs
//! and extends the lease from outside.
//!
//! Invariants of a snowflake generator:
//! - It issues only while it holds an [`ActiveLease`] whose local deadline has not passed
//!   on the **monotonic** clock (so a process paused past its lease refuses when it wakes
//!   up) nor on the wall clock (which, unlike Linux's `CLOCK_MONOTONIC`, also advances
//!   while a machine is suspended).
//! - Every timestamp it issues is above the lease's `floor_ms` (the previous holders'
//!   high-water mark) and at most its `high_water_ms` (reserved in the database before the
//!   generator may use it). Holders of one node id therefore mint from disjoint, increasing
//!   ranges of time, whatever their clocks do.
//! - IDs only increase: the clock reading back by at most `max_backward_wait_ms` is waited
//!   out (issuing continues in the last millisecond while its sequence lasts); further
//!   back is refused with [`IdError::ClockMovedBackwards`] and counted.
//! - A millisecond's 1,024 sequence numbers are never wrapped: the generator waits for the
//!   next millisecond.
//!
//! The core is [`SnowflakeGenerator::try_issue`], which never blocks: it issues, refuses,
//! or says how long to wait ([`Attempt::Wait`]). The deterministic simulation drives it
//! with fake clocks; [`SnowflakeGenerator::next_snowflake`] wraps it for real callers and
//! does the waiting.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian_shared::ids::{
    self, encode_uuid_v7, pack_snowflake, MAX_SEQUENCE, MAX_UUID_COUNTER, MAX_UUID_UNIX_MS,
};
use rand::{Rng, SeedableRng};

use super::metrics::IdCounters;

/// The two clocks a generator reads. Wall time may jump either way (NTP steps, operators,
/// VM migrations); monotonic time never goes back and keeps counting while the process is
/// paused.
pub trait IdClock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn wall_ms(&self) -> i64;
    /// Nanoseconds since an arbitrary origin.
    fn monotonic_ns(&self) -> u64;

    fn reading(&self) -> Reading {
        Reading {
            wall_ms: self.wall_ms(),
            mono_ns: self.monotonic_ns(),
        }
    }
}

/// Both clocks, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub wall_ms: i64,
    pub mono_ns: u64,
}

/// The machine's clocks: `SystemTime` for the wall, and for the monotonic deadline
/// Linux's `CLOCK_MONOTONIC_COARSE` (elsewhere `Instant`).
///
/// The coarse clock is read from the vDSO in a few nanoseconds and lags by at most one
/// scheduler tick (1–10 ms). A lease deadline needs no more: the stop margin is a second.
/// So an ID costs one precise clock read, the wall clock's, which the ID's millisecond
/// needs anyway.
#[derive(Debug, Clone, Copy)]
pub struct SystemIdClock {
    origin: Instant,
}

impl SystemIdClock {
    pub fn new() -> SystemIdClock {
        SystemIdClock {
            origin: Instant::now(),
        }
    }

    #[cfg(target_os = "linux")]
    #[inline]
    fn coarse_monotonic_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux
        // supports (since 2.6.32), so the call cannot fail.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

impl Default for SystemIdClock {
    fn default() -> SystemIdClock {
        SystemIdClock::new()
    }
}

impl IdClock for SystemIdClock {
    #[inline]
    fn wall_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(before) => -(before.duration().as_millis() as i64),
        }
    }

    #[inline]
    fn monotonic_ns(&self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            let _ = self.origin;
            SystemIdClock::coarse_monotonic_ns()
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.origin.elapsed().as_nanos() as u64
        }
    }
}

/// How a generator treats its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// A clock regression up to this is waited out; beyond it, issuing is refused.
    pub max_backward_wait_ms: i64,
    /// The blocking calls give up (`WaitedTooLong`) after waiting this long in total.
    pub max_total_wait: Duration,
}

impl Default for GeneratorConfig {
    fn default() -> GeneratorConfig {
        GeneratorConfig {
            max_backward_wait_ms: 10,
            max_total_wait: Duration::from_secs(1),
        }
    }
}

/// The lease a snowflake generator issues under, as the keeper installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveLease {
    pub node_id: u16,
    pub fencing_token: i64,
    /// Previous holders issued nothing above this (Unix ms): issue strictly above it.
    pub floor_ms: i64,
    /// Reserved in the database: issue at most this (Unix ms).
    pub high_water_ms: i64,
    /// Stop when the monotonic clock reaches this.
    pub valid_until_mono_ns: u64,
    /// ...or when the wall clock reaches this.
    pub valid_until_wall_ms: i64,
}

/// Why no ID was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("this instance holds no node id lease yet")]
    NoLease,
    #[error("the lease on node id {node_id} passed its local deadline without a renewal")]
    LeaseExpired { node_id: u16 },
    #[error("the clock moved backwards by {by_ms} ms, more than the generator waits out")]
    ClockMovedBackwards { by_ms: i64 },
    #[error("the clock is {by_ms} ms behind node id {node_id}'s high-water mark (a previous holder issued up to it)")]
    BehindHighWater { node_id: u16, by_ms: i64 },
    #[error("the clock is {by_ms} ms past node id {node_id}'s reserved high-water mark (it jumped forward); waiting for a renewal")]
    HighWaterReached { node_id: u16, by_ms: i64 },
    #[error("the clock is outside the ID layout's range")]
    TimeOutOfRange,
    #[error("gave up after waiting {waited_ms} ms for the clock")]
    WaitedTooLong { waited_ms: u64 },
}

/// Why a generator asks to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The millisecond's sequence numbers are used up.
    SequenceExhausted,
    /// The clock reads behind the last millisecond issued (by no more than the limit).
    ClockBehind,
}

/// What one [`SnowflakeGenerator::try_issue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// `count` IDs were issued: `first`, `first + 1`, ..., `first + count - 1` (one
    /// millisecond, one node, consecutive sequence numbers).
    Issued {
        first: u64,
        count: u32,
    },
    /// Nothing can be issued before the wall clock reads `until_wall_ms`.
    Wait {
        until_wall_ms: i64,
        reason: WaitReason,
    },
    Refused(IdError),
}

#[derive(Debug)]
struct SnowflakeState {
    lease: Option<ActiveLease>,
    /// The millisecond of the last ID issued under this lease, or its floor.
    last_ms: i64,
    /// The last sequence issued in `last_ms` (`MAX_SEQUENCE` at the floor, so that the
    /// floor's millisecond itself is never used).
    sequence: u16,
    /// Whether `last_ms` is a real issue (rather than the floor).
    issued_under_lease: bool,
    /// The millisecond of the last ID this generator issued under any lease: a new lease
    /// starts above it too, so that one process's IDs only ever increase.
    last_issued_ms: i64,
    /// The wait last counted in the metrics, so that one wait counts once.
    counted_wait: i64,
}

/// Mints 64-bit IDs under a leased node id.
pub struct SnowflakeGenerator {
    clock: Arc<dyn IdClock>,
    config: GeneratorConfig,
    counters: Arc<IdCounters>,
    state: Mutex<SnowflakeState>,
}

impl SnowflakeGenerator {
    pub fn new(
        clock: Arc<dyn IdClock>,
        config: GeneratorConfig,
        counters: Arc<IdCounters>,
    ) -> SnowflakeGenerator {
        SnowflakeGenerator {
            clock,
            config,
            counters,
            state: Mutex::new(SnowflakeState {
                lease: None,
                last_ms: i64::MIN,
                sequence: MAX_SEQUENCE,
                issued_under_lease: false,
                last_issued_ms: i64::MIN,
                counted_wait: i64::MIN,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SnowflakeState> {
        // The state is valid after any panic (every write is a whole field), so a
        // poisoned lock is taken as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues up to `max` (≥ 1) IDs of one millisecond, or says why not. Never blocks
    /// beyond the lock.
    pub fn try_issue(&self, max: u32) -> Attempt {
        debug_assert!(max >= 1);
        let mut s = self.lock();
        let now = self.clock.reading();
        let Some(lease) = s.lease else {
            IdCounters::bump(&self.counters.refused_no_lease);
            return Attempt::Refused(IdError::NoLease);
        };
        if now.mono_ns >= lease.valid_until_mono_ns || now.wall_ms >= lease.valid_until_wall_ms {
            IdCounters::bump(&self.counters.refused_lease_expired);
            return Attempt::Refused(IdError::LeaseExpired {
                node_id: lease.node_id,
            });
        }
        let t = now.wall_ms;
        if t > s.last_ms {
            if t > lease.high_water_ms {
                IdCounters::bump(&self.counters.refused_high_water);
                return Attempt::Refused(IdError::HighWaterReached {
                    node_id: lease.node_id,
                    by_ms: t - lease.high_water_ms,
                });
            }
            let Ok(ms) = ids::ms_since_epoch(t) else {
                return Attempt::Refused(IdError::TimeOutOfRange);
            };
            let count = max.min(MAX_SEQUENCE as u32 + 1);
            s.last_ms = t;
            s.last_issued_ms = t;
            s.sequence = (count - 1) as u16;
            s.issued_under_lease = true;
            self.counters.add_snowflakes(count);
            return Attempt::Issued {
                first: pack_snowflake(ms, lease.node_id, 0),
                count,
            };
        }
        let behind = s.last_ms - t;
        if behind > self.config.max_backward_wait_ms {
            IdCounters::bump(&self.counters.refused_clock_backwards);
            return Attempt::Refused(if s.issued_under_lease {
                IdError::ClockMovedBackwards { by_ms: behind }
            } else {
                IdError::BehindHighWater {
                    node_id: lease.node_id,
                    by_ms: behind,
                }
            });
        }
        if s.sequence < MAX_SEQUENCE {
            // The same millisecond (or a small regression): go on in `last_ms`, which
            // was issued under this lease (the floor's sequence is MAX), so it is within
            // the high-water mark and in the layout's range.
            let first_seq = s.sequence + 1;
            let count = max.min((MAX_SEQUENCE - s.sequence) as u32);
            s.sequence += count as u16;
            self.counters.add_snowflakes(count);
            let ms = (s.last_ms - ids::EPOCH_UNIX_MS) as u64;
            return Attempt::Issued {
                first: pack_snowflake(ms, lease.node_id, first_seq),
                count,
            };
        }
        let until_wall_ms = s.last_ms + 1;
        let reason = if behind > 0 {
            WaitReason::ClockBehind
        } else {
            WaitReason::SequenceExhausted
        };
        if s.counted_wait != until_wall_ms {
            s.counted_wait = until_wall_ms;
            IdCounters::bump(match reason {
                WaitReason::ClockBehind => &self.counters.waits_clock_backwards,
                WaitReason::SequenceExhausted => &self.counters.waits_sequence_exhausted,
            });
        }
        Attempt::Wait {
            until_wall_ms,
            reason,
        }
    }

    /// One ID, waiting (briefly) when the sequence is used up or the clock is a little
    /// behind. This is what the other systems call.
    pub fn next_snowflake(&self) -> Result<u64, IdError> {
        let mut waiter = Waiter::new(self.config.max_total_wait);
        loop {
            match self.try_issue(1) {
                Attempt::Issued { first, .. } => return Ok(first),
                Attempt::Refused(err) => return Err(err),
                Attempt::Wait { until_wall_ms, .. } => waiter.wait(&*self.clock, until_wall_ms)?,
            }
        }
    }

    /// `count` IDs in ascending order (at most 1,024 per millisecond, so a large batch
    /// takes a few milliseconds). On a refusal midway the IDs issued so far are dropped:
    /// they are never issued again, so nothing is lost but numbers.
    pub fn next_snowflakes(&self, count: usize) -> Result<Vec<u64>, IdError> {
        let mut out = Vec::with_capacity(count);
        let mut waiter = Waiter::new(self.config.max_total_wait);
        while out.len() < count {
            let want = (count - out.len()).min(u32::MAX as usize) as u32;
            match self.try_issue(want) {
                Attempt::Issued { first, count } => out.extend(first..first + count as u64),
                Attempt::Refused(err) => return Err(err),
                Attempt::Wait { until_wall_ms, .. } => waiter.wait(&*self.clock, until_wall_ms)?,
            }
        }
        Ok(out)
    }

    /// Starts issuing under `lease`. A different lease (another node id or fencing token)
    /// starts in a millisecond above its floor and above the last one this generator
    /// issued in; the same lease is extended as by [`extend`](Self::extend).
    pub fn install(&self, lease: ActiveLease) {
        let mut s = self.lock();
        match s.lease {
            Some(current)
                if current.node_id == lease.node_id
                    && current.fencing_token == lease.fencing_token =>
            {
                s.lease = Some(ActiveLease {
                    high_water_ms: current.high_water_ms.max(lease.high_water_ms),
                    ..lease
                });
            }
            _ => {
                // Strictly above the floor, and above anything this generator issued
                // before (under another node id, a same-millisecond ID could be smaller).
                s.lease = Some(lease);
                s.issued_under_lease = s.last_issued_ms >= lease.floor_ms;
                s.last_ms = lease.floor_ms.max(s.last_issued_ms);
                s.sequence = MAX_SEQUENCE;
            }
        }
    }

    /// A renewal succeeded: raise the high-water mark and move the deadlines. Ignored
    /// (returns false) unless `fencing_token` is the installed lease's.
    pub fn extend(
        &self,
        fencing_token: i64,
        high_water_ms: i64,
        valid_until_mono_ns: u64,
        valid_until_wall_ms: i64,
    ) -> bool {
        let mut s = self.lock();
        match &mut s.lease {
            Some(lease) if lease.fencing_token == fencing_token => {
                lease.high_water_ms = lease.high_water_ms.max(high_water_ms);
                lease.valid_until_mono_ns = valid_until_mono_ns;
                lease.valid_until_wall_ms = valid_until_wall_ms;
                true
            }
            _ => false,
        }
    }

    /// Stops issuing at once (the lease was lost, or is being released).
    pub fn revoke(&self) {
        self.lock().lease = None;
    }

    /// The installed lease.
    pub fn lease(&self) -> Option<ActiveLease> {
        self.lock().lease
    }

    /// Whether an ID could be issued now (a lease whose deadlines have not passed).
    pub fn is_issuing(&self) -> bool {
        let s = self.lock();
        let now = self.clock.reading();
        s.lease.is_some_and(|lease| {
            now.mono_ns < lease.valid_until_mono_ns && now.wall_ms < lease.valid_until_wall_ms
        })
    }

    pub fn counters(&self) -> &Arc<IdCounters> {
        &self.counters
    }
}

/// Waits for the wall clock in the blocking calls: spins through the last millisecond (a
/// yield could lose the processor, and with it whole milliseconds of sequence numbers),
/// sleeps through longer waits, and gives up after the configured total.
struct Waiter {
    started: Option<Instant>,
    limit: Duration,
}

impl Waiter {
    fn new(limit: Duration) -> Waiter {
        Waiter {
            started: None,
            limit,
        }
    }

    fn wait(&mut self, clock: &dyn IdClock, until_wall_ms: i64) -> Result<(), IdError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let waited = started.elapsed();
        if waited > self.limit {
            return Err(IdError::WaitedTooLong {
                waited_ms: waited.as_millis() as u64,
            });
        }
        let left_ms = until_wall_ms - clock.wall_ms();
        if left_ms > 1 {
            std::thread::sleep(Duration::from_millis((left_ms - 1) as u64));
        } else {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

struct UuidState {
    last_ms: i64,
    counter: u16,
    rng: rand::rngs::StdRng,
}

/// Mints RFC 9562 UUIDv7s: the 12-bit `rand_a` is a counter seeded at random (top bit
/// clear, leaving at least 2,048 increments) each millisecond, so one generator's UUIDs
/// ascend; `rand_b` is 62 fresh random bits from a cryptographic generator, which is
/// what makes UUIDs of different processes distinct. It needs no lease. The clock policy
/// is the snowflake generator's: small regressions are waited out, large ones refused.
pub struct UuidV7Generator {
    clock: Arc<dyn IdClock>,
    config: GeneratorConfig,
    counters: Arc<IdCounters>,
    state: Mutex<UuidState>,
}

/// What one [`UuidV7Generator::try_issue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UuidAttempt {
    Issued(u128),
    Wait { until_wall_ms: i64 },
    Refused(IdError),
}

impl UuidV7Generator {
    /// A generator whose randomness comes from the operating system.
    pub fn new(
        clock: Arc<dyn IdClock>,
        config: GeneratorConfig,
        counters: Arc<IdCounters>,
    ) -> UuidV7Generator {
        UuidV7Generator::with_rng(clock, config, counters, rand::rngs::StdRng::from_os_rng())
    }

    /// A generator with the given random source (tests seed it).
    pub fn with_rng(
        clock: Arc<dyn IdClock>,
        config: GeneratorConfig,
        counters: Arc<IdCounters>,
        rng: rand::rngs::StdRng,
    ) -> UuidV7Generator {
        UuidV7Generator {
            clock,
            config,
            counters,
            state: Mutex::new(UuidState {
                last_ms: i64::MIN,
                counter: 0,
                rng,
            }),
        }
    }

    /// One UUID, or why not, without blocking.
    pub fn try_issue(&self) -> UuidAttempt {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.clock.wall_ms();
        if t < 0 || t as u64 > MAX_UUID_UNIX_MS {
            return UuidAttempt::Refused(IdError::TimeOutOfRange);
        }
        if t > s.last_ms {
            s.last_ms = t;
            s.counter = s.rng.random::<u16>() & (MAX_UUID_COUNTER >> 1);
        } else {
            let behind = s.last_ms - t;
            if behind > self.config.max_backward_wait_ms {
                IdCounters::bump(&self.counters.refused_clock_backwards);
                return UuidAttempt::Refused(IdError::ClockMovedBackwards { by_ms: behind });
            }
            if s.counter == MAX_UUID_COUNTER {
                return UuidAttempt::Wait {
                    until_wall_ms: s.last_ms + 1,
                };
            }
            s.counter += 1;
        }
        let random = s.rng.random::<u64>();
        let (ms, counter) = (s.last_ms as u64, s.counter);
        drop(s);
        IdCounters::bump(&self.counters.uuids_issued);
        UuidAttempt::Issued(encode_uuid_v7(ms, counter, random).expect("fields in range"))
    }

    /// One UUID, waiting briefly when the millisecond's counter is used up.
    pub fn next_uuid_v7(&self) -> Result<u128, IdError> {
        let mut waiter = Waiter::new(self.config.max_total_wait);
        loop {
            match self.try_issue() {
                UuidAttempt::Issued(uuid) => return Ok(uuid),
                UuidAttempt::Refused(err) => return Err(err),
                UuidAttempt::Wait { until_wall_ms } => waiter.wait(&*self.clock, until_wall_ms)?,
            }
        }
    }
}

/// A clock that moves only when told to, for tests: wall and monotonic time separately.
#[derive(Debug, Default)]
pub struct FakeIdClock {
    wall_ms: std::sync::atomic::AtomicI64,
    mono_ns: std::sync::atomic::AtomicU64,
}

impl FakeIdClock {
    pub fn new(wall_ms: i64) -> FakeIdClock {
        FakeIdClock {
            wall_ms: wall_ms.into(),
            mono_ns: 0.into(),
        }
    }

    /// Time passes: both clocks move forward.
    pub fn advance_ms(&self, ms: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.wall_ms.fetch_add(ms as i64, SeqCst);
        self.mono_ns.fetch_add(ms * 1_000_000, SeqCst);
    }

    /// The wall clock is stepped (either way); monotonic time is unaffected.
    pub fn step_wall_ms(&self, by_ms: i64) {
        self.wall_ms
            .fetch_add(by_ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl IdClock for FakeIdClock {
    fn wall_ms(&self) -> i64 {
        self.wall_ms.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn monotonic_ns(&self) -> u64 {
        self.mono_ns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::ids::{decode_snowflake, decode_uuid_v7, EPOCH_UNIX_MS};

    const T0: i64 = EPOCH_UNIX_MS + 1_000_000;

    fn generator() -> (Arc<FakeIdClock>, SnowflakeGenerator) {
        let clock = Arc::new(FakeIdClock::new(T0));
        let generator =
            SnowflakeGenerator::new(clock.clone(), GeneratorConfig::default(), Arc::default());
        (clock, generator)
    }

    fn lease(node_id: u16, token: i64, floor_ms: i64) -> ActiveLease {
        ActiveLease {
            node_id,
            fencing_token: token,
            floor_ms,
            high_water_ms: floor_ms + 10_000,
            valid_until_mono_ns: 5_000_000_000,
            valid_until_wall_ms: floor_ms + 10_000,
        }
    }

    fn issued(attempt: Attempt) -> (u64, u32) {
        match attempt {
            Attempt::Issued { first, count } => (first, count),
            other => panic!("expected IDs, got {other:?}"),
        }
    }

    #[test]
    fn refuses_without_a_lease() {
        let (_, generator) = generator();
        assert_eq!(generator.next_snowflake(), Err(IdError::NoLease));
        assert_eq!(generator.counters().snapshot().refused_no_lease, 1);
    }

    #[test]
    fn issues_above_the_floor_with_node_and_sequence() {
        let (clock, generator) = generator();
        generator.install(lease(7, 1, T0 - 1));
        let (first, count) = issued(generator.try_issue(3));
        assert_eq!(count, 3);
        let parts = decode_snowflake(first).unwrap();
        assert_eq!((parts.unix_ms, parts.node, parts.sequence), (T0, 7, 0));
        let (next, _) = issued(generator.try_issue(1));
        assert_eq!(next, first + 3);
        clock.advance_ms(1);
        let (later, _) = issued(generator.try_issue(1));
        assert_eq!(decode_snowflake(later).unwrap().sequence, 0);
        assert!(later > next);
        assert_eq!(generator.counters().snapshot().snowflakes_issued, 5);
    }

    #[test]
    fn the_floor_millisecond_itself_is_never_used() {
        let (clock, generator) = generator();
        // A previous holder issued up to T0 (a restart within the same millisecond).
        generator.install(lease(7, 2, T0));
        assert_eq!(
            generator.try_issue(1),
            Attempt::Wait {
                until_wall_ms: T0 + 1,
                reason: WaitReason::SequenceExhausted
            }
        );
        clock.advance_ms(1);
        let (first, _) = issued(generator.try_issue(1));
        assert_eq!(decode_snowflake(first).unwrap().unix_ms, T0 + 1);
    }

    #[test]
    fn a_floor_far_ahead_refuses_with_the_high_water_reason() {
        let (_, generator) = generator();
        generator.install(lease(7, 2, T0 + 5_000));
        assert_eq!(
            generator.try_issue(1),
            Attempt::Refused(IdError::BehindHighWater {
                node_id: 7,
                by_ms: 5_000
            })
        );
    }

    #[test]
    fn sequence_exhaustion_waits_for_the_next_millisecond_and_never_wraps() {
        let (clock, generator) = generator();
        generator.install(lease(1, 1, T0 - 1));
        let (first, count) = issued(generator.try_issue(5000));
        assert_eq!(count, 1024);
        assert_eq!(decode_snowflake(first + 1023).unwrap().sequence, 1023);
        let wait = generator.try_issue(1);
        assert_eq!(
            wait,
            Attempt::Wait {
                until_wall_ms: T0 + 1,
                reason: WaitReason::SequenceExhausted
            }
        );
        generator.try_issue(1);
        assert_eq!(generator.counters().snapshot().waits_sequence_exhausted, 1);
        clock.advance_ms(1);
        let (next, _) = issued(generator.try_issue(1));
        assert!(next > first + 1023);
    }

    #[test]
    fn small_regressions_are_waited_out_large_ones_refused() {
        let (clock, generator) = generator();
        generator.install(lease(1, 1, T0 - 1));
        let (a, _) = issued(generator.try_issue(1));
        clock.step_wall_ms(-10);
        // Still within the limit: go on in the last millisecond.
        let (b, _) = issued(generator.try_issue(1022));
        assert!(b > a);
        let (c, _) = issued(generator.try_issue(1));
        assert_eq!(decode_snowflake(c).unwrap().sequence, 1023);
        assert_eq!(
            generator.try_issue(1),
            Attempt::Wait {
                until_wall_ms: T0 + 1,
                reason: WaitReason::ClockBehind
            }
        );
        clock.step_wall_ms(-1);
        assert_eq!(
            generator.try_issue(1),
            Attempt::Refused(IdError::ClockMovedBackwards { by_ms: 11 })
        );
        let metrics = generator.counters().snapshot();
        assert_eq!(metrics.refused_clock_backwards, 1);
        assert_eq!(metrics.waits_clock_backwards, 1);
        clock.step_wall_ms(12);
        let (d, _) = issued(generator.try_issue(1));
        assert!(d > c);
    }

    #[test]
    fn a_pause_past_the_lease_refuses_on_wake_up() {
        let (clock, generator) = generator();
        generator.install(lease(1, 1, T0 - 1));
        generator.next_snowflake().unwrap();
        // A 6 s stall: the monotonic deadline (5 s) passed, even though the wall clock
        // was stepped back meanwhile and reads a time within the lease.
        clock.advance_ms(6_000);
        clock.step_wall_ms(-5_990);
        assert_eq!(
            generator.try_issue(1),
            Attempt::Refused(IdError::LeaseExpired { node_id: 1 })
        );
        assert!(!generator.is_issuing());
    }

    #[test]
    fn the_wall_deadline_catches_a_suspend() {
        let (clock, generator) = generator();
        generator.install(lease(1, 1, T0 - 1));
        // Suspended: the monotonic clock did not move, the wall clock did.
        clock.step_wall_ms(20_000);
        assert_eq!(
            generator.try_issue(1),
            Attempt::Refused(IdError::LeaseExpired { node_id: 1 })
        );
    }

    #[test]
    fn never_past_the_reserved_high_water_mark() {
        let (clock, generator) = generator();
        let mut l = lease(1, 1, T0 - 1);
        l.high_water_ms = T0 + 2;
        generator.install(l);
        clock.advance_ms(3);
        assert_eq!(
            generator.try_issue(1),
            Attempt::Refused(IdError::HighWaterReached {
                node_id: 1,
                by_ms: 1
            })
        );
        assert!(generator.extend(1, T0 + 100, l.valid_until_mono_ns, l.valid_until_wall_ms));
        issued(generator.try_issue(1));
        // A stale renewal of another token changes nothing.
        assert!(!generator.extend(9, T0 + 10_000, u64::MAX, i64::MAX));
        assert_eq!(generator.lease().unwrap().high_water_ms, T0 + 100);
    }

    #[test]
    fn a_new_lease_starts_above_what_this_process_issued() {
        let (clock, generator) = generator();
        generator.install(lease(9, 1, T0 - 1));
        let (a, _) = issued(generator.try_issue(1));
        // The lease is lost; the next one (node 2, a lower node id) has an older floor.
        generator.revoke();
        clock.step_wall_ms(-3);
        generator.install(lease(2, 1, T0 - 100));
        assert!(matches!(generator.try_issue(1), Attempt::Wait { .. }));
        clock.step_wall_ms(4);
        let (b, _) = issued(generator.try_issue(1));
        assert!(b > a);
    }

    #[test]
    fn a_revoked_lease_stops_issuing_at_once() {
        let (_, generator) = generator();
        generator.install(lease(1, 1, T0 - 1));
        generator.next_snowflake().unwrap();
        generator.revoke();
        assert_eq!(generator.next_snowflake(), Err(IdError::NoLease));
    }

    #[test]
    fn blocking_batches_span_milliseconds_on_the_real_clock() {
        let clock = Arc::new(SystemIdClock::new());
        let generator =
            SnowflakeGenerator::new(clock.clone(), GeneratorConfig::default(), Arc::default());
        let now = clock.wall_ms();
        generator.install(ActiveLease {
            node_id: 3,
            fencing_token: 1,
            floor_ms: now - 1,
            high_water_ms: now + 60_000,
            valid_until_mono_ns: clock.monotonic_ns() + 60_000_000_000,
            valid_until_wall_ms: now + 60_000,
        });
        let ids = generator.next_snowflakes(3000).unwrap();
        assert_eq!(ids.len(), 3000);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids
            .iter()
            .all(|&id| decode_snowflake(id).unwrap().node == 3));
    }

    #[test]
    fn uuids_ascend_and_follow_rfc_9562() {
        let clock = Arc::new(FakeIdClock::new(T0));
        let generator = UuidV7Generator::with_rng(
            clock.clone(),
            GeneratorConfig::default(),
            Arc::default(),
            rand::rngs::StdRng::seed_from_u64(7),
        );
        let mut previous = 0u128;
        let mut waits = 0;
        for _ in 0..10_000 {
            let uuid = match generator.try_issue() {
                UuidAttempt::Issued(uuid) => uuid,
                UuidAttempt::Wait { until_wall_ms } => {
                    waits += 1;
                    clock.advance_ms((until_wall_ms - clock.wall_ms()) as u64);
                    continue;
                }
                UuidAttempt::Refused(err) => panic!("{err}"),
            };
            assert!(uuid > previous);
            let parts = decode_uuid_v7(uuid).unwrap();
            assert_eq!((parts.version, parts.variant), (7, 2));
            assert_eq!(parts.unix_ms as i64, clock.wall_ms());
            previous = uuid;
        }
        // At least 2,048 per millisecond, at most 4,096.
        assert!((2..=4).contains(&waits), "{waits} waits");
        clock.step_wall_ms(-11);
        assert_eq!(
            generator.try_issue(),
            UuidAttempt::Refused(IdError::ClockMovedBackwards { by_ms: 11 })
        );
    }
}
