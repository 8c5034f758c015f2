//! [`SimCluster`]: the simulated nodes. Each node owns a [`SimDisk`] that outlives its
//! crashes; a running node is openraft's `Raft` over the real [`LogStore`] (through
//! [`SimLogStore`]) and [`StateMachine`] on that disk, talking over [`SimNetwork`].
//!
//! A crash cuts the power (the crashed node's last tasks can no longer change the
//! disk), drops the node's Raft, and the node's disk becomes what a crash leaves:
//! synced bytes plus a random prefix of the unsynced writes. A restart reopens the log,
//! its hard state and the last snapshot from that disk, as `meridian wal-node` does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use rand::Rng;

use super::network::SimNetwork;
use super::store::{spawn_acknowledger, SimLogStore};
use super::world::{NodeHandle, World};
use super::Variant;
use crate::wal::raft::{HardState, LogStore, NodeId, StateMachine};
use crate::wal::{Disk, Log, LogOptions, SimDisk, WalError};

/// Where each node keeps its data on its own disk.
pub const DATA_DIR: &str = "/wal";

/// Small segments (so schedules roll them) and frequent snapshots (so they purge the
/// log and lagging nodes get snapshots installed).
fn log_options() -> LogOptions {
    LogOptions {
        segment_bytes: 16 * 1024,
        max_payload: 4 * 1024,
    }
}

pub fn raft_config() -> Arc<Config> {
    let config = Config {
        cluster_name: "meridian-wal-sim".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        install_snapshot_timeout: 500,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(40),
        max_in_snapshot_log_to_keep: 10,
        purge_batch_size: 1,
        ..Default::default()
    };
    Arc::new(
        config
            .validate()
            .expect("the simulation's Raft config is valid"),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the node's disk does not open: {0}")]
    Wal(#[from] WalError),
    #[error("raft: {0}")]
    Raft(String),
}

struct Running {
    node: NodeHandle,
    store: LogStore,
    acknowledger: tokio::task::JoinHandle<()>,
}

struct SimNode {
    disk: SimDisk,
    /// The slowest fsync of this node's disk.
    max_sync_delay: Duration,
    running: Option<Running>,
    /// Ever started (a spare that was never added has not been).
    started: bool,
}

pub struct SimCluster {
    pub world: Arc<World>,
    config: Arc<Config>,
    nodes: BTreeMap<NodeId, SimNode>,
    /// The voters the cluster was initialized with.
    pub initial: BTreeSet<NodeId>,
    /// Nodes whose power is failing (they crash at the next [`heal`](Self::heal) if not before).
    power_failing: BTreeSet<NodeId>,
    variant: Variant,
}

impl SimCluster {
    /// `voters` nodes (ids from 1) plus `spares` that membership changes may add; a
    /// third of the disks (by the seed) are slow.
    pub fn new(world: Arc<World>, voters: u64, spares: u64, variant: Variant) -> SimCluster {
        let nodes = (1..=voters + spares)
            .map(|id| {
                let slow = world.chance(330);
                let max_sync_delay = if slow {
                    world.millis(5..=80)
                } else {
                    Duration::ZERO
                };
                let node = SimNode {
                    disk: SimDisk::new(),
                    max_sync_delay,
                    running: None,
                    started: false,
                };
                (id, node)
            })
            .collect();
        SimCluster {
            world,
            config: raft_config(),
            nodes,
            initial: (1..=voters).collect(),
            power_failing: BTreeSet::new(),
            variant,
        }
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|node| node.running.is_some())
    }

    pub fn was_started(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|node| node.started)
    }

    /// Starts every initial voter and initializes the cluster from node 1.
    pub async fn boot(&mut self) -> Result<(), StartError> {
        for id in self.initial.clone() {
            self.start(id).await?;
        }
        let members: BTreeMap<NodeId, BasicNode> = self
            .initial
            .iter()
            .map(|id| (*id, BasicNode::new(format!("sim-{id}"))))
            .collect();
        let first = self.world.node(1).expect("node 1 was just started");
        first
            .raft
            .initialize(members)
            .await
            .map_err(|err| StartError::Raft(err.to_string()))
    }

    /// Starts (or restarts) node `id` from its disk.
    pub async fn start(&mut self, id: NodeId) -> Result<(), StartError> {
        let world = self.world.clone();
        let config = self.config.clone();
        let Some(node) = self.nodes.get_mut(&id) else {
            return Err(StartError::Raft(format!("no node {id}")));
        };
        if node.running.is_some() {
            return Ok(());
        }
        // openraft checks its election timeout on a tick (every heartbeat interval)
        // counted from the node's start; nodes started at the same simulated instant
        // tick together and split every vote. Real processes never start in step.
        let offset = world.millis(0..=config.heartbeat_interval - 1);
        tokio::time::sleep(offset).await;
        let Some(node) = self.nodes.get_mut(&id) else {
            return Err(StartError::Raft(format!("no node {id}")));
        };
        let dir = Path::new(DATA_DIR);
        let disk: Arc<dyn Disk> = Arc::new(node.disk.clone());
        disk.create_dir_all(dir)
            .map_err(WalError::io("create directory", dir))?;
        let (log, _report) = Log::open(disk.clone(), dir, log_options())?;
        let vote_as_saved = match self.variant {
            Variant::LeaderResumesItsTerm => HardState::load_from(&*disk, dir)?.vote,
            Variant::Correct | Variant::StaleFollowerReads | Variant::PurgeBeforeSnapshot => None,
        };
        let machine = StateMachine::open(disk, dir, log.clone())?;
        let store = match self.variant {
            Variant::PurgeBeforeSnapshot => LogStore::open(log)?,
            _ => LogStore::open(log)?.gate_purges_on(machine.snapshots()),
        };
        let (acknowledgements, acknowledger) = spawn_acknowledger();
        let sim_store = SimLogStore {
            inner: store.clone(),
            world: world.clone(),
            max_sync_delay: node.max_sync_delay,
            acknowledgements,
            vote_as_saved,
        };
        let network = SimNetwork {
            from: id,
            world: world.clone(),
        };
        let raft = Raft::new(id, config, network, sim_store, machine.clone())
            .await
            .map_err(|err| StartError::Raft(err.to_string()))?;
        let handle = NodeHandle { raft, machine };
        world.set_running(id, Some(handle.clone()));
        node.running = Some(Running {
            node: handle,
            store,
            acknowledger,
        });
        node.started = true;
        Ok(())
    }

    /// The power goes out on node `id` after `operations` more disk operations: the
    /// node fails in the middle of whatever it was writing (and stops: openraft treats
    /// a storage error as fatal) until it is [`crash`](Self::crash)ed and restarted.
    pub fn fail_power_after(&mut self, id: NodeId, operations: u64) {
        if let Some(node) = self.nodes.get(&id).filter(|node| node.running.is_some()) {
            node.disk.cut_power_after(operations);
            self.power_failing.insert(id);
        }
    }

    /// Crashes the nodes whose power is failing and restarts every node ever started.
    pub async fn heal(&mut self) -> Result<(), StartError> {
        for id in std::mem::take(&mut self.power_failing) {
            self.crash(id).await;
        }
        for id in self.ids() {
            if self.was_started(id) {
                self.start(id).await?;
            }
        }
        Ok(())
    }

    /// Crashes node `id`: power off, Raft dropped, the disk as a crash leaves it.
    pub async fn crash(&mut self, id: NodeId) {
        let seed = self.world.draw(|rng| rng.random());
        self.power_failing.remove(&id);
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(running) = node.running.take() else {
            return;
        };
        self.world.set_running(id, None);
        node.disk = node.disk.crash_into_new(seed, true);
        running.acknowledger.abort();
        let _ = running.node.raft.shutdown().await;
    }

    /// The log of a running node, for the final checks.
    pub fn store(&self, id: NodeId) -> Option<LogStore> {
        let running = self.nodes.get(&id)?.running.as_ref()?;
        Some(running.store.clone())
    }

    pub fn handle(&self, id: NodeId) -> Option<NodeHandle> {
        let running = self.nodes.get(&id)?.running.as_ref()?;
        Some(running.node.clone())
    }

    /// Stops every node (the end of a schedule).
    pub async fn shut_down(&mut self) {
        for id in self.ids() {
            if let Some(running) = self.nodes.get_mut(&id).and_then(|n| n.running.take()) {
                self.world.set_running(id, None);
                running.acknowledger.abort();
                let _ = running.node.raft.shutdown().await;
            }
        }
    }
}
