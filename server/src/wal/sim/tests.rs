//! The simulation in CI: many short schedules of 3 and 5 nodes, a replay, and a broken
//! variant it must catch. `MERIDIAN_WAL_SIM_SEED` and `MERIDIAN_WAL_SIM_SCHEDULES`
//! move the seeds and the count (the longer run is `meridian wal simulate`).

use super::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Runs the schedules and panics with the failing seed and its replay command.
fn run(first_seed: u64, count: u64, voters: u64) {
    let first_seed = env_u64("MERIDIAN_WAL_SIM_SEED", first_seed);
    let count = env_u64("MERIDIAN_WAL_SIM_SCHEDULES", count);
    println!("{count} schedules of {voters} nodes from seed {first_seed}");
    match run_schedules(first_seed, count, voters, Variant::Correct, |_| {}) {
        Ok(progress) => println!(
            "{} schedules, {} operations, {} acknowledged writes, {} crashes, \
             {} membership changes, {} inconclusive, {:.1} schedules/s",
            progress.schedules,
            progress.operations,
            progress.acknowledged,
            progress.crashes,
            progress.membership_changes,
            progress.inconclusive,
            progress.per_second()
        ),
        Err((progress, failure)) => panic!(
            "after {} schedules that passed:\n{failure}",
            progress.schedules
        ),
    }
}

#[test]
fn three_nodes_keep_every_acknowledged_write_and_stay_linearizable() {
    run(1_000, 1_000, 3);
}

#[test]
fn five_nodes_keep_every_acknowledged_write_and_stay_linearizable() {
    run(500_000, 1_000, 5);
}

#[test]
fn a_seed_replays_the_same_history() {
    for seed in [3, 4] {
        let first = run_schedule(ScheduleOptions::new(seed, 3)).unwrap_or_else(|f| panic!("{f}"));
        let again = run_schedule(ScheduleOptions::new(seed, 3)).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(first, again, "seed {seed} replayed differently");
    }
}

#[test]
fn the_simulation_catches_stale_follower_reads() {
    let first_seed = env_u64("MERIDIAN_WAL_SIM_SEED", 77);
    let outcome = run_schedules(first_seed, 100, 3, Variant::StaleFollowerReads, |_| {});
    let Err((progress, failure)) = outcome else {
        panic!("100 schedules from seed {first_seed} did not catch stale reads");
    };
    println!(
        "caught after {} schedules:\n{failure}",
        progress.schedules + 1
    );
    assert!(
        failure.reason.contains("not linearizable"),
        "caught, but not by the checker: {failure}"
    );
}

#[test]
fn the_simulation_catches_a_leader_resuming_its_term() {
    let first_seed = env_u64("MERIDIAN_WAL_SIM_SEED", LEADER_RESUMES_FIRST_SEED);
    let count = env_u64("MERIDIAN_WAL_SIM_SCHEDULES", 40);
    let outcome = run_schedules(first_seed, count, 3, Variant::LeaderResumesItsTerm, |_| {});
    let Err((progress, failure)) = outcome else {
        panic!("{count} schedules from seed {first_seed} did not catch a leader resuming its term");
    };
    println!(
        "caught after {} schedules:\n{failure}",
        progress.schedules + 1
    );
}

/// A search from seed 7,000,000 found the first schedule of `LeaderResumesItsTerm` that
/// fails at 7,000,336 (its 337th; the correct code passes it); the test starts a little
/// before, so it stays short. The simulation is deterministic: it fails there on every
/// machine.
const LEADER_RESUMES_FIRST_SEED: u64 = 7_000_320;

#[test]
fn a_purge_waits_for_the_snapshot_that_covers_it() {
    // Seed 8001434: a follower's power fails while it installs a snapshot from the
    // leader. Without the gate its log's purge was saved first and it never started again.
    let seed = 8_001_434;
    let broken = run_schedules(seed, 1, 3, Variant::PurgeBeforeSnapshot, |_| {});
    let Err((_, failure)) = broken else {
        panic!("seed {seed} no longer reaches a purge before its snapshot is durable");
    };
    println!("the ungated purge fails as expected:\n{failure}");
    if let Err((_, failure)) = run_schedules(seed, 1, 3, Variant::Correct, |_| {}) {
        panic!("seed {seed} with purges gated on durable snapshots:\n{failure}");
    }
}

#[test]
fn a_stale_leaders_replication_is_never_taken() {
    // Seed 9001008: a leader cut off in a minority stepped down after the partition
    // healed; its replication stream then woke from a back-off and sent, under its old
    // vote, the entries the node had meanwhile appended as a follower of a later term. A
    // restarted follower still holding that old vote took them, and openraft panicked on
    // the next leader's append. `raft::append_from_its_leader` keeps them from being sent
    // or accepted.
    let seed = 9_001_008;
    if let Err((_, failure)) = run_schedules(seed, 1, 5, Variant::Correct, |_| {}) {
        panic!("seed {seed}:\n{failure}");
    }
}
