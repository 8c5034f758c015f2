//! The WAL's deterministic simulation (issue 13): 3 or 5 nodes of the real cluster
//! code (openraft over our [`LogStore`](super::raft::LogStore) and
//! [`StateMachine`](super::raft::StateMachine), each on its own [`SimDisk`](super::SimDisk))
//! in one process, on one current-thread tokio runtime with paused time, every choice
//! drawn from one RNG seeded by the schedule's seed.
//!
//! ```text
//! runtime    WalRuntime: openraft's runtime, tokio with seedable election timeouts
//! world      World: the seeded RNG, the network's condition, the running nodes, the history
//! network    SimNetwork: RPCs as calls, delayed, lost, duplicated, cut by partitions
//! store      SimLogStore: the real LogStore, fsync acknowledged after a simulated delay
//! cluster    SimCluster: start, crash (power cut, unsynced writes lost), restart
//! schedule   one schedule: workload + nemesis, heal, converge, check
//! checker    the linearizability checker (Wing–Gong search, Lowe's memoization)
//! ```
//!
//! A schedule: the cluster boots; three clients write unique values to, and read
//! (`ensure_linearizable` on the leader, then its state machine), three keys, while
//! the nemesis crashes nodes (sometimes with the power failing in the middle of a few
//! disk operations), restarts them, partitions the network and heals it, changes its
//! loss, duplication and delay, and, in a third of the schedules, adds a voter
//! (learner, then voter) and removes one. Some disks are slow (their fsyncs are
//! acknowledged up to 80 ms late). Then everything heals, every node restarts, and
//! once one leader's log is applied by every member:
//! - every acknowledged write is in every member's log at its LSN (or behind the
//!   member's snapshot), and the members' states agree;
//! - the history, with a final read of every key, is linearizable ([`checker`]).
//!
//! Determinism: replaying a seed replays the schedule (the same faults, operations and
//! history). What it rests on: one thread, paused time, one RNG, openraft's election
//! timeouts drawn from it ([`runtime`]), and the log's syncer thread waited for in
//! place ([`store`]). What it does not control: tokio's `select!` picks a random ready
//! branch first (openraft's replication backoff has one), from a per-runtime seed tokio
//! only lets one set with `tokio_unstable`. The test `a_seed_replays_the_same_history`
//! checks that replays agree in practice.

pub mod checker;
pub mod cluster;
pub mod network;
pub mod runtime;
mod schedule;
pub mod store;
pub mod world;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

/// Which code the clients run: the real one, or a deliberately broken one the
/// simulation must catch (to show it can fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Correct,
    /// Reads serve any node's local state, without the leader's read index.
    StaleFollowerReads,
    /// A restarted node gets its vote back as saved, committed flag included: the
    /// behaviour before `LogStore::read_vote` cleared it (a leader that lost records
    /// it had replicated resumes leading the same term).
    LeaderResumesItsTerm,
    /// A purge does not wait for the snapshot that covers it to be durable: the
    /// behaviour before `LogStore::gate_purges_on`.
    PurgeBeforeSnapshot,
}

/// One schedule, all of it derived from its seed and node count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleOptions {
    pub seed: u64,
    /// Voters at the start: 3 or 5.
    pub voters: u64,
    /// Adds a voter and removes one while the faults run.
    pub membership: bool,
    /// Simulated time the workload and the faults run.
    pub duration: Duration,
    pub variant: Variant,
}

impl ScheduleOptions {
    /// The schedule of `seed` on `voters` nodes: a third of the seeds change the
    /// membership; the workload runs 1 to 2 simulated seconds.
    pub fn new(seed: u64, voters: u64) -> ScheduleOptions {
        ScheduleOptions {
            seed,
            voters,
            membership: seed % 3 == 0,
            duration: Duration::from_millis(1000 + seed.wrapping_mul(7919) % 1000),
            variant: Variant::Correct,
        }
    }

    /// The command that replays this schedule.
    pub fn replay_command(&self) -> String {
        match self.variant {
            Variant::Correct => format!(
                "cargo run -p meridian-server -- wal simulate --seed {} --nodes {} --schedules 1",
                self.seed, self.voters
            ),
            Variant::StaleFollowerReads => format!(
                "MERIDIAN_WAL_SIM_SEED={} cargo test -p meridian-server --lib \
                 wal::sim::tests::the_simulation_catches_stale_follower_reads",
                self.seed
            ),
            Variant::LeaderResumesItsTerm => format!(
                "MERIDIAN_WAL_SIM_SEED={} cargo test -p meridian-server --lib \
                 wal::sim::tests::the_simulation_catches_a_leader_resuming_its_term",
                self.seed
            ),
            Variant::PurgeBeforeSnapshot => format!(
                "cargo test -p meridian-server --lib \
                 wal::sim::tests::a_purge_waits_for_the_snapshot_that_covers_it (seed {})",
                self.seed
            ),
        }
    }
}

/// What a schedule that passed did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleReport {
    pub operations: usize,
    pub acknowledged: usize,
    pub crashes: u32,
    pub partitions: u32,
    pub membership_changes: u32,
    /// The checker ran out of budget on some key (counted, not a failure).
    pub inconclusive: bool,
    /// A hash of the history, to compare replays.
    pub fingerprint: u64,
}

/// A schedule that found a bug.
#[derive(Clone, Debug)]
pub struct Failure {
    pub options: ScheduleOptions,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schedule seed {} ({} nodes{}) failed: {}\nreplay: {}",
            self.options.seed,
            self.options.voters,
            if self.options.membership {
                ", membership changes"
            } else {
                ""
            },
            self.reason,
            self.options.replay_command()
        )
    }
}

/// Runs one schedule on a fresh current-thread runtime with paused time.
pub fn run_schedule(options: ScheduleOptions) -> Result<ScheduleReport, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|err| Failure {
            options: options.clone(),
            reason: format!("no runtime: {err}"),
        })?;
    runtime::seed_election_timeouts(Some(options.seed));
    let result = runtime.block_on(schedule::run(options));
    runtime::seed_election_timeouts(None);
    result
}

/// Where a run of many schedules stands.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub schedules: u64,
    pub operations: u64,
    pub acknowledged: u64,
    pub crashes: u64,
    pub membership_changes: u64,
    pub inconclusive: u64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn per_second(&self) -> f64 {
        self.schedules as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `count` schedules from seed `first_seed` up, stopping at the first failure;
/// `report` sees the progress after each schedule.
pub fn run_schedules(
    first_seed: u64,
    count: u64,
    voters: u64,
    variant: Variant,
    mut report: impl FnMut(&Progress),
) -> Result<Progress, (Progress, Box<Failure>)> {
    let started = Instant::now();
    let mut progress = Progress::default();
    for seed in (0..count).map(|i| first_seed.wrapping_add(i)) {
        let options = ScheduleOptions {
            variant,
            ..ScheduleOptions::new(seed, voters)
        };
        let outcome = run_schedule(options);
        progress.elapsed = started.elapsed();
        match outcome {
            Ok(done) => {
                progress.schedules += 1;
                progress.operations += done.operations as u64;
                progress.acknowledged += done.acknowledged as u64;
                progress.crashes += u64::from(done.crashes);
                progress.membership_changes += u64::from(done.membership_changes);
                progress.inconclusive += u64::from(done.inconclusive);
                report(&progress);
            }
            Err(failure) => return Err((progress, Box::new(failure))),
        }
    }
    Ok(progress)
}
