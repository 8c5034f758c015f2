//! The outbox: publishes that the server has not acknowledged yet.
//!
//! [`OutboxQueue`] is the in-memory, ordered view every tab keeps; [`OutboxStore`] is where
//! the ops survive a reload: the IndexedDB database `meridian`, object store `outbox`,
//! keyed by op id, each value the JSON text of an [`OutboxOp`]. When IndexedDB cannot be
//! opened the store is memory-only, and says why, so the UI can tell the user that
//! unsent messages will not survive a reload.
//!
//! Invariants:
//! - An op is written to the store before it is shown as pending or sent.
//! - The queue is ordered by `created_at_ms`, oldest first (ties keep insertion order),
//!   which is the order ops are replayed in.
//! - An op id appears at most once.

use meridian_shared::realtime::valid_op_id;
use serde::{Deserialize, Serialize};

use super::idb::{Database, IdbError};

/// The IndexedDB database of the app.
pub const DATABASE_NAME: &str = "meridian";
/// Its schema version; bump it (and extend [`STORES`]) to add object stores.
pub const DATABASE_VERSION: u32 = 1;
/// The object store holding the outbox.
pub const OUTBOX_STORE: &str = "outbox";
/// Every object store of the database.
pub const STORES: &[&str] = &[OUTBOX_STORE];

/// One publish waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxOp {
    pub op_id: String,
    pub topic: String,
    pub payload: serde_json::Value,
    /// When it was made, in milliseconds since the Unix epoch; orders the replay.
    pub created_at_ms: i64,
}

impl OutboxOp {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored value; `None` for anything that is not a well-formed op.
    pub fn from_json(text: &str) -> Option<OutboxOp> {
        serde_json::from_str::<OutboxOp>(text)
            .ok()
            .filter(|op| valid_op_id(&op.op_id))
    }
}

/// The ordered, in-memory outbox.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxQueue {
    ops: Vec<OutboxOp>,
}

impl OutboxQueue {
    /// Adds an op in `created_at_ms` order, replacing one with the same op id.
    pub fn insert(&mut self, op: OutboxOp) {
        self.ops.retain(|existing| existing.op_id != op.op_id);
        let at = self
            .ops
            .partition_point(|existing| existing.created_at_ms <= op.created_at_ms);
        self.ops.insert(at, op);
    }

    /// Removes and returns the op with this id.
    pub fn remove(&mut self, op_id: &str) -> Option<OutboxOp> {
        let index = self.ops.iter().position(|op| op.op_id == op_id)?;
        Some(self.ops.remove(index))
    }

    /// Replaces the whole queue with what storage holds (which includes other tabs'
    /// ops), leaving out ops for which `settled` says they are already done.
    pub fn replace_all(&mut self, ops: Vec<OutboxOp>, settled: impl Fn(&str) -> bool) {
        let mut queue = OutboxQueue::default();
        for op in ops {
            if !settled(&op.op_id) {
                queue.insert(op);
            }
        }
        *self = queue;
    }

    pub fn contains(&self, op_id: &str) -> bool {
        self.ops.iter().any(|op| op.op_id == op_id)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Every op, oldest first.
    pub fn ops(&self) -> &[OutboxOp] {
        &self.ops
    }

    /// The ops of one topic, oldest first.
    pub fn for_topic<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a OutboxOp> + 'a {
        self.ops.iter().filter(move |op| op.topic == topic)
    }
}

/// Hands out creation times that strictly increase within a tab, so that two ops made
/// in the same millisecond keep their order after a round trip through storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreationClock {
    last: i64,
}

impl CreationClock {
    pub fn next(&mut self, now_ms: i64) -> i64 {
        self.last = now_ms.max(self.last + 1);
        self.last
    }
}

/// Where the outbox is kept.
#[derive(Debug, Clone)]
pub enum OutboxStore {
    IndexedDb(Database),
    /// IndexedDB could not be used, for the reason given: ops live only as long as the
    /// page.
    Memory(String),
}

impl OutboxStore {
    /// Opens the IndexedDB outbox, or falls back to memory with the reason.
    pub async fn open() -> OutboxStore {
        match Database::open(DATABASE_NAME, DATABASE_VERSION, STORES).await {
            Ok(db) => OutboxStore::IndexedDb(db),
            Err(error) => OutboxStore::Memory(error.0),
        }
    }

    /// Writes an op (a no-op in memory mode).
    pub async fn put(&self, op: &OutboxOp) -> Result<(), IdbError> {
        match self {
            OutboxStore::IndexedDb(db) => db.put(OUTBOX_STORE, &op.op_id, &op.to_json()).await,
            OutboxStore::Memory(_) => Ok(()),
        }
    }

    /// Deletes an op (a no-op in memory mode).
    pub async fn delete(&self, op_id: &str) -> Result<(), IdbError> {
        match self {
            OutboxStore::IndexedDb(db) => db.delete(OUTBOX_STORE, op_id).await,
            OutboxStore::Memory(_) => Ok(()),
        }
    }

    /// Every stored op, oldest first; `Ok(None)` in memory mode, where the in-memory
    /// queue is the only copy.
    pub async fn load(&self) -> Result<Option<Vec<OutboxOp>>, IdbError> {
        match self {
            OutboxStore::IndexedDb(db) => {
                let values = db.get_all(OUTBOX_STORE).await?;
                let mut ops: Vec<OutboxOp> = values
                    .iter()
                    .filter_map(|value| OutboxOp::from_json(value))
                    .collect();
                ops.sort_by_key(|op| op.created_at_ms);
                Ok(Some(ops))
            }
            OutboxStore::Memory(_) => Ok(None),
        }
    }

    /// Why the outbox is memory-only, if it is.
    pub fn memory_reason(&self) -> Option<&str> {
        match self {
            OutboxStore::IndexedDb(_) => None,
            OutboxStore::Memory(reason) => Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(op_id: &str, created_at_ms: i64) -> OutboxOp {
        OutboxOp {
            op_id: op_id.into(),
            topic: "public:lobby".into(),
            payload: json!({"text": op_id, "author": "Guest"}),
            created_at_ms,
        }
    }

    fn ids(queue: &OutboxQueue) -> Vec<&str> {
        queue.ops().iter().map(|op| op.op_id.as_str()).collect()
    }

    #[test]
    fn ops_stay_in_creation_order() {
        let mut queue = OutboxQueue::default();
        queue.insert(op("b", 20));
        queue.insert(op("a", 10));
        queue.insert(op("c", 20));
        queue.insert(op("d", 30));
        assert_eq!(ids(&queue), vec!["a", "b", "c", "d"]);
        queue.insert(op("b", 20));
        assert_eq!(queue.len(), 4, "an op id is never queued twice");
        assert_eq!(queue.remove("c").map(|op| op.op_id), Some("c".into()));
        assert_eq!(queue.remove("c"), None);
        assert_eq!(ids(&queue), vec!["a", "b", "d"]);
        assert!(queue.contains("d"));
        assert!(!queue.is_empty());
    }

    #[test]
    fn reloading_skips_settled_ops() {
        let mut queue = OutboxQueue::default();
        queue.insert(op("mine", 5));
        queue.replace_all(
            vec![op("other-tab", 7), op("acked", 6), op("mine", 5)],
            |op_id| op_id == "acked",
        );
        assert_eq!(ids(&queue), vec!["mine", "other-tab"]);
    }

    #[test]
    fn ops_filter_by_topic() {
        let mut queue = OutboxQueue::default();
        queue.insert(op("a", 1));
        let mut elsewhere = op("b", 2);
        elsewhere.topic = "public:other".into();
        queue.insert(elsewhere);
        let lobby: Vec<_> = queue.for_topic("public:lobby").collect();
        assert_eq!(lobby.len(), 1);
        assert_eq!(lobby[0].op_id, "a");
    }

    #[test]
    fn stored_values_round_trip_as_json() {
        let original = op("0f3a", 1_700_000_000_000);
        let text = original.to_json();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["op_id"], "0f3a");
        assert_eq!(value["topic"], "public:lobby");
        assert_eq!(value["created_at_ms"], 1_700_000_000_000i64);
        assert_eq!(value["payload"]["author"], "Guest");
        assert_eq!(OutboxOp::from_json(&text), Some(original));
        assert_eq!(OutboxOp::from_json("{}"), None);
        assert_eq!(
            OutboxOp::from_json(&op("has space", 1).to_json()),
            None,
            "an op id the server would refuse is dropped"
        );
    }

    #[test]
    fn creation_times_strictly_increase() {
        let mut clock = CreationClock::default();
        assert_eq!(clock.next(100), 100);
        assert_eq!(clock.next(100), 101);
        assert_eq!(
            clock.next(50),
            102,
            "a clock step back does not reorder ops"
        );
        assert_eq!(clock.next(500), 500);
    }
}
