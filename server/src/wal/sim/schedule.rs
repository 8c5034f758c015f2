//! One schedule: boot the cluster, run the register workload while the nemesis injects
//! faults, then heal everything and check (durability, convergence, linearizability).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meridian_shared::wal::WalWrite;
use openraft::ChangeMembers;
use rand::Rng;
use tokio::time::{timeout, Instant};

use super::checker::{self, Action, Operation, Outcome, Verdict};
use super::cluster::SimCluster;
use super::world::{Acknowledged, World};
use super::{Failure, ScheduleOptions, ScheduleReport, Variant};
use crate::wal::kv;
use crate::wal::raft::NodeId;

/// How long a client waits for one operation before it calls the outcome unknown.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the cluster has to converge once everything is healed.
const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(30);
const CLIENTS: usize = 3;
const KEYS: u32 = 3;
/// The node id membership changes add (one past the initial voters).
const SPARES: u64 = 1;

pub async fn run(options: ScheduleOptions) -> Result<ScheduleReport, Failure> {
    let fail = |reason: String| Failure {
        options: options.clone(),
        reason,
    };
    let world = World::new(options.seed);
    let spares = if options.membership { SPARES } else { 0 };
    let mut cluster = SimCluster::new(world.clone(), options.voters, spares, options.variant);
    cluster
        .boot()
        .await
        .map_err(|err| fail(format!("boot: {err}")))?;
    {
        let mut net = world.net();
        net.max_delay = world.millis(1..=20);
        net.loss = world.draw(|rng| rng.random_range(0..=60));
        net.duplication = world.draw(|rng| rng.random_range(0..=60));
    }
    let end = Instant::now() + options.duration;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| tokio::spawn(client(world.clone(), index, end, options.variant)))
        .collect();
    let mut faults = Faults::default();
    let membership = nemesis(&mut cluster, &options, end, &mut faults).await;
    for client in clients {
        let _ = client.await;
    }
    for change in membership {
        let _ = change.await;
    }

    // Heal: no partition, no loss, every node up; then wait for one leader whose log
    // every member has applied.
    {
        let mut net = world.net();
        net.sides.clear();
        net.loss = 0;
        net.duplication = 0;
        net.max_delay = Duration::from_millis(2);
    }
    cluster
        .heal()
        .await
        .map_err(|err| fail(format!("a node does not restart: {err}")))?;
    let members = converge(&world)
        .await
        .map_err(|reason| fail(format!("after healing: {reason}")))?;
    final_reads(&world).await.map_err(fail)?;
    check_durability(&cluster, &world, &members)
        .await
        .map_err(fail)?;

    let history = world.history();
    let verdict = checker::check(&history, checker::DEFAULT_BUDGET);
    cluster.shut_down().await;
    if let Verdict::NotLinearizable { key } = &verdict {
        return Err(fail(format!(
            "the history of key {key} is not linearizable:\n{}",
            describe(&history, key)
        )));
    }
    Ok(ScheduleReport {
        operations: history.len(),
        acknowledged: world.acknowledged().len(),
        crashes: faults.crashes,
        partitions: faults.partitions,
        membership_changes: faults.membership_changes,
        inconclusive: matches!(verdict, Verdict::Inconclusive { .. }),
        fingerprint: fingerprint(&history),
    })
}

#[derive(Default)]
struct Faults {
    crashes: u32,
    partitions: u32,
    membership_changes: u32,
}

/// Injects faults until `end`; returns the membership changes still running.
async fn nemesis(
    cluster: &mut SimCluster,
    options: &ScheduleOptions,
    end: Instant,
    faults: &mut Faults,
) -> Vec<tokio::task::JoinHandle<()>> {
    let world = cluster.world.clone();
    let spare = options.voters + 1;
    let mut changes = Vec::new();
    let mut added = false;
    let mut removed = false;
    loop {
        tokio::time::sleep(world.millis(30..=300)).await;
        if Instant::now() >= end {
            return changes;
        }
        let ids: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|id| cluster.was_started(*id))
            .collect();
        let pick = |world: &World, among: &[NodeId]| {
            (!among.is_empty()).then(|| among[world.draw(|rng| rng.random_range(0..among.len()))])
        };
        let running: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|id| cluster.is_running(*id))
            .collect();
        let down: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|id| !cluster.is_running(*id))
            .collect();
        match world.draw(|rng| rng.random_range(0..100)) {
            0..=17 => {
                if let Some(id) = pick(&world, &running) {
                    tracing::debug!(at = world.now_ms(), id, "crash");
                    cluster.crash(id).await;
                    faults.crashes += 1;
                }
            }
            18..=27 => {
                // The power fails in the middle of the node's next few disk operations;
                // half the time on the leader, and half the time the node comes back
                // at once (before the others time out and elect another).
                let leader = world
                    .leader()
                    .map(|(id, _)| id)
                    .filter(|_| world.chance(500));
                if let Some(id) = leader.or_else(|| pick(&world, &running)) {
                    let operations = world.draw(|rng| rng.random_range(0..=30));
                    tracing::debug!(at = world.now_ms(), id, operations, "power fails");
                    cluster.fail_power_after(id, operations);
                    tokio::time::sleep(world.millis(0..=100)).await;
                    cluster.crash(id).await;
                    faults.crashes += 1;
                    if world.chance(500) {
                        tracing::debug!(at = world.now_ms(), id, "restart at once");
                        let _ = cluster.start(id).await;
                    }
                }
            }
            28..=52 => {
                if let Some(id) = pick(&world, &down) {
                    tracing::debug!(at = world.now_ms(), id, "restart");
                    if cluster.start(id).await.is_err() {
                        // A disk that does not reopen is a finding: the final restart
                        // reports it with the error.
                    }
                }
            }
            53..=67 => {
                let mut net = world.net();
                net.sides = ids
                    .iter()
                    .map(|id| (*id, world.draw(|rng| rng.random_range(0..2u8))))
                    .collect();
                tracing::debug!(at = world.now_ms(), sides = ?net.sides, "partition");
                faults.partitions += 1;
            }
            68..=82 => world.net().sides.clear(),
            83..=89 => {
                let mut net = world.net();
                net.loss = world.draw(|rng| rng.random_range(0..=200));
                net.duplication = world.draw(|rng| rng.random_range(0..=200));
                net.max_delay = world.millis(1..=60);
            }
            _ if options.membership && !added => {
                added = true;
                if cluster.start(spare).await.is_ok() {
                    faults.membership_changes += 1;
                    changes.push(tokio::spawn(add_voter(world.clone(), spare)));
                }
            }
            _ if options.membership && !removed => {
                removed = true;
                let voters: Vec<NodeId> = cluster.initial.iter().copied().collect();
                if let Some(id) = pick(&world, &voters) {
                    faults.membership_changes += 1;
                    changes.push(tokio::spawn(remove_voter(world.clone(), id)));
                }
            }
            _ => {}
        }
    }
}

/// Adds `id` as a learner and then as a voter, through whichever node leads, retrying
/// while the cluster is in trouble (for a few seconds).
async fn add_voter(world: Arc<World>, id: NodeId) {
    let node = openraft::BasicNode::new(format!("sim-{id}"));
    for _ in 0..20 {
        if let Some((_, leader)) = world.leader() {
            let added = timeout(
                OPERATION_TIMEOUT * 2,
                leader.raft.add_learner(id, node.clone(), true),
            )
            .await;
            if matches!(added, Ok(Ok(_))) {
                let promoted = timeout(
                    OPERATION_TIMEOUT * 2,
                    leader
                        .raft
                        .change_membership(ChangeMembers::AddVoterIds([id].into()), false),
                )
                .await;
                if matches!(promoted, Ok(Ok(_))) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes voter `id`, through whichever node leads.
async fn remove_voter(world: Arc<World>, id: NodeId) {
    for _ in 0..20 {
        if let Some((_, leader)) = world.leader() {
            let removed = timeout(
                OPERATION_TIMEOUT * 2,
                leader
                    .raft
                    .change_membership(ChangeMembers::RemoveVoters([id].into()), false),
            )
            .await;
            if matches!(removed, Ok(Ok(_))) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One client: writes of unique values and reads, on a few keys, until `end`.
async fn client(world: Arc<World>, index: usize, end: Instant, variant: Variant) {
    let mut written = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(world.millis(0..=40)).await;
        let key = format!("k{}", world.draw(|rng| rng.random_range(0..KEYS)));
        if world.chance(500) {
            let Some((_, leader)) = world.leader() else {
                continue;
            };
            written += 1;
            let value = format!("c{index}-{written}");
            let invoked = world.event();
            let invoked_ms = world.now_ms();
            let write = WalWrite {
                key: key.clone(),
                value: value.clone(),
                idempotency_key: None,
                leader_time_ms: invoked_ms as i64,
            };
            let answer = timeout(OPERATION_TIMEOUT, leader.raft.client_write(write)).await;
            // Only a success is certain: a leader that lost its place may still have
            // replicated the entry, which a later leader then commits.
            let outcome = match answer {
                Ok(Ok(response)) => {
                    tracing::debug!(
                        at = world.now_ms(),
                        key,
                        value,
                        lsn = response.data.lsn,
                        "acknowledged"
                    );
                    world.acknowledge(Acknowledged {
                        key: key.clone(),
                        value: value.clone(),
                        lsn: response.data.lsn,
                    });
                    Outcome::Ok {
                        returned: world.event(),
                    }
                }
                _ => Outcome::Unknown,
            };
            world.record(Operation {
                client: index,
                key,
                action: Action::Write(value),
                invoked,
                outcome,
                invoked_ms,
                ended_ms: world.now_ms(),
            });
        } else {
            let invoked = world.event();
            let invoked_ms = world.now_ms();
            let value = match variant {
                Variant::StaleFollowerReads => stale_read(&world, &key).await,
                Variant::Correct | Variant::LeaderResumesItsTerm | Variant::PurgeBeforeSnapshot => {
                    linearizable_read(&world, &key).await
                }
            };
            let (read, outcome) = match value {
                Some(value) => (
                    value,
                    Outcome::Ok {
                        returned: world.event(),
                    },
                ),
                None => (None, Outcome::Failed),
            };
            world.record(Operation {
                client: index,
                key,
                action: Action::Read(read),
                invoked,
                outcome,
                invoked_ms,
                ended_ms: world.now_ms(),
            });
        }
    }
}

/// A read through the leader's read index: `Some(value)` when it succeeded.
async fn linearizable_read(world: &World, key: &str) -> Option<Option<String>> {
    let (id, leader) = world.leader()?;
    match timeout(OPERATION_TIMEOUT, leader.raft.ensure_linearizable()).await {
        Ok(Ok(read_index)) => {
            let (value, applied) = leader.machine.get(key).await;
            tracing::debug!(
                at = world.now_ms(),
                id,
                ?read_index,
                ?applied,
                key,
                ?value,
                "read"
            );
            Some(value)
        }
        _ => None,
    }
}

/// The broken read the simulation must catch: any node's local state, no read index.
async fn stale_read(world: &World, key: &str) -> Option<Option<String>> {
    let running = world.running();
    if running.is_empty() {
        return None;
    }
    let (_, node) = &running[world.draw(|rng| rng.random_range(0..running.len()))];
    Some(node.machine.get(key).await.0)
}

/// Waits until one leader's log is applied by every member, all running; the members.
async fn converge(world: &World) -> Result<BTreeSet<NodeId>, String> {
    let deadline = Instant::now() + CONVERGENCE_DEADLINE;
    let mut last_seen = String::from("no leader");
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some((leader_id, leader)) = world.leader() else {
            last_seen = "no leader".into();
            continue;
        };
        let metrics = leader.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if let [.., target] = membership.get_joint_config().as_slice() {
            if membership.get_joint_config().len() > 1 {
                // A change whose caller gave up (a timeout, its leader crashed) stays
                // joint until someone asks again: the operator finishes it.
                last_seen = format!("node {leader_id} leads in a joint configuration");
                let finish = ChangeMembers::ReplaceAllVoters(target.clone());
                let _ = timeout(
                    OPERATION_TIMEOUT * 2,
                    leader.raft.change_membership(finish, false),
                )
                .await;
                continue;
            }
        }
        let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let last = metrics.last_log_index;
        let lagging: Vec<String> = members
            .iter()
            .filter_map(|id| {
                let applied = world
                    .node(*id)
                    .map(|node| node.raft.metrics().borrow().last_applied.map(|l| l.index));
                match applied {
                    Some(applied) if applied == last => None,
                    Some(applied) => Some(format!("{id} applied {applied:?}")),
                    None => Some(format!("{id} down")),
                }
            })
            .collect();
        if lagging.is_empty() {
            return Ok(members);
        }
        last_seen = format!(
            "leader {leader_id} at {last:?}, members {members:?}: {}",
            lagging.join(", ")
        );
    }
    Err(format!(
        "no convergence within {CONVERGENCE_DEADLINE:?}: {last_seen}"
    ))
}

/// One linearizable read of every key, into the history: a lost acknowledged write
/// shows as a read the checker cannot place.
async fn final_reads(world: &World) -> Result<(), String> {
    for key in (0..KEYS).map(|k| format!("k{k}")) {
        // A leader may still change hands (a removed node calling an election): retry.
        let deadline = Instant::now() + CONVERGENCE_DEADLINE;
        let (invoked, invoked_ms, value) = loop {
            let invoked = world.event();
            let invoked_ms = world.now_ms();
            if let Some(value) = linearizable_read(world, &key).await {
                break (invoked, invoked_ms, value);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no final read of {key} within {CONVERGENCE_DEADLINE:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        world.record(Operation {
            client: CLIENTS,
            key,
            action: Action::Read(value),
            invoked,
            outcome: Outcome::Ok {
                returned: world.event(),
            },
            invoked_ms,
            ended_ms: world.now_ms(),
        });
    }
    Ok(())
}

/// Every acknowledged write is in every member's log at the LSN it was acknowledged at
/// (or behind the member's snapshot, when the log was purged), and the members' states
/// agree.
async fn check_durability(
    cluster: &SimCluster,
    world: &World,
    members: &BTreeSet<NodeId>,
) -> Result<(), String> {
    let mut states: BTreeMap<NodeId, Vec<Option<String>>> = BTreeMap::new();
    for &id in members {
        let store = cluster
            .store(id)
            .ok_or_else(|| format!("member {id} is not running"))?;
        let log = store.log();
        let first = log.first_index().unwrap_or(u64::MAX);
        for write in world.acknowledged() {
            let found = log
                .read(write.lsn..write.lsn + 1)
                .map_err(|err| format!("node {id}: reading LSN {}: {err}", write.lsn))?
                .pop();
            match found {
                Some(record) => match kv::Entry::decode(&record.payload) {
                    Ok(kv::Entry::Write(held))
                        if held.key == write.key && held.value == write.value => {}
                    other => {
                        return Err(format!(
                            "node {id} holds {other:?} at LSN {} where {}={} was acknowledged",
                            write.lsn, write.key, write.value
                        ))
                    }
                },
                None if write.lsn < first => {}
                None => {
                    return Err(format!(
                        "node {id} lost {}={} acknowledged at LSN {} (its log: {:?}..={:?})",
                        write.key,
                        write.value,
                        write.lsn,
                        log.first_index(),
                        log.last_index()
                    ))
                }
            }
        }
        let handle = cluster
            .handle(id)
            .ok_or_else(|| format!("member {id} is not running"))?;
        let mut values = Vec::new();
        for key in (0..KEYS).map(|k| format!("k{k}")) {
            values.push(handle.machine.get(&key).await.0);
        }
        states.insert(id, values);
    }
    let mut distinct = states.values().collect::<Vec<_>>();
    distinct.dedup();
    if distinct.len() > 1 {
        return Err(format!("the members' states differ: {states:?}"));
    }
    Ok(())
}

/// A hash of the whole history (the same on every machine: `DefaultHasher::new` has
/// fixed keys).
fn fingerprint(history: &[Operation]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    for op in history {
        format!("{op:?}").hash(&mut hasher);
    }
    hasher.finish()
}

/// The operations on `key`, one a line, for a failure report.
fn describe(history: &[Operation], key: &str) -> String {
    history
        .iter()
        .filter(|op| op.key == key)
        .map(|op| {
            let outcome = match op.outcome {
                Outcome::Ok { .. } => "ok",
                Outcome::Failed => "failed",
                Outcome::Unknown => "unknown",
            };
            format!(
                "  client {} {:?} {}..{} ms {outcome}",
                op.client, op.action, op.invoked_ms, op.ended_ms
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
