//! [`World`]: what every part of one simulated schedule shares: the one seeded RNG, the
//! network's condition (partitions, loss, duplication, delay), the running nodes'
//! handles and the history the clients record.
//!
//! Everything runs on one current-thread runtime with paused time, so the order in
//! which the parts draw from the RNG is the order in which tasks run, which the seed
//! fixes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::{Raft, ServerState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::checker::Operation;
use crate::wal::raft::{NodeId, StateMachine, WalConfig};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The network's condition: which side of a partition each node is on, and how
/// messages fare.
#[derive(Clone, Debug, Default)]
pub struct NetCondition {
    /// Nodes talk only to nodes on the same side (absent: side 0).
    pub sides: BTreeMap<NodeId, u8>,
    /// Per mille of messages (requests and answers alike) lost.
    pub loss: u32,
    /// Per mille of requests delivered a second time, later.
    pub duplication: u32,
    /// A message takes 0..=this long; reordering follows from the spread.
    pub max_delay: Duration,
}

impl NetCondition {
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.sides.get(&a).copied().unwrap_or(0) == self.sides.get(&b).copied().unwrap_or(0)
    }
}

/// A write the cluster acknowledged, and the LSN it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    pub key: String,
    pub value: String,
    pub lsn: u64,
}

/// What one running node offers the network and the clients.
#[derive(Clone)]
pub struct NodeHandle {
    pub raft: Raft<WalConfig>,
    pub machine: StateMachine,
}

pub struct World {
    rng: Mutex<StdRng>,
    net: Mutex<NetCondition>,
    nodes: Mutex<BTreeMap<NodeId, NodeHandle>>,
    history: Mutex<Vec<Operation>>,
    acknowledged: Mutex<Vec<Acknowledged>>,
    events: Mutex<u64>,
    start: Instant,
}

impl World {
    pub fn new(seed: u64) -> Arc<World> {
        Arc::new(World {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            net: Mutex::new(NetCondition::default()),
            nodes: Mutex::new(BTreeMap::new()),
            history: Mutex::new(Vec::new()),
            acknowledged: Mutex::new(Vec::new()),
            events: Mutex::new(0),
            start: Instant::now(),
        })
    }

    /// Draws from the schedule's RNG.
    pub fn draw<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut lock(&self.rng))
    }

    pub fn chance(&self, per_mille: u32) -> bool {
        per_mille > 0 && self.draw(|rng| rng.random_range(0..1000) < per_mille)
    }

    pub fn millis(&self, range: std::ops::RangeInclusive<u64>) -> Duration {
        Duration::from_millis(self.draw(|rng| rng.random_range(range)))
    }

    pub fn net(&self) -> MutexGuard<'_, NetCondition> {
        lock(&self.net)
    }

    /// The running node `id`, if any.
    pub fn node(&self, id: NodeId) -> Option<NodeHandle> {
        lock(&self.nodes).get(&id).cloned()
    }

    pub fn running(&self) -> Vec<(NodeId, NodeHandle)> {
        lock(&self.nodes)
            .iter()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    pub fn set_running(&self, id: NodeId, node: Option<NodeHandle>) {
        let mut nodes = lock(&self.nodes);
        match node {
            Some(node) => nodes.insert(id, node),
            None => nodes.remove(&id),
        };
    }

    /// The next position in the global order of invocations and returns.
    pub fn event(&self) -> u64 {
        let mut events = lock(&self.events);
        *events += 1;
        *events
    }

    /// Simulated milliseconds since the schedule started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn record(&self, operation: Operation) {
        lock(&self.history).push(operation);
    }

    pub fn acknowledge(&self, write: Acknowledged) {
        lock(&self.acknowledged).push(write);
    }

    pub fn acknowledged(&self) -> Vec<Acknowledged> {
        lock(&self.acknowledged).clone()
    }

    /// The running node that leads, by its own metrics, in the highest term.
    pub fn leader(&self) -> Option<(NodeId, NodeHandle)> {
        self.running()
            .into_iter()
            .filter(|(_, node)| node.raft.metrics().borrow().state == ServerState::Leader)
            .max_by_key(|(_, node)| node.raft.metrics().borrow().current_term)
    }

    pub fn history(&self) -> Vec<Operation> {
        lock(&self.history).clone()
    }
}
