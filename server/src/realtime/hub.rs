//! The in-process broadcast hub: which connection is subscribed to which topic, and the
//! bounded queue of each connection.
//!
//! Invariants:
//! - Every connection has one bounded queue (`outbound_queue` messages). Delivery never
//!   waits: a connection whose queue is full is dropped from the hub at once, and its
//!   task closes the socket with `SLOW_CONSUMER`. Memory per connection is bounded.
//! - The hub holds the only sender of a connection's queue, so a connection's task learns
//!   that it was dropped when its queue ends; the reason is left in its `CloseReason`.
//! - Events reach other server instances through the [`Remote`] (PostgreSQL NOTIFY);
//!   the hub itself only delivers locally.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use meridian_shared::realtime::{close_code, Event};
use tokio::sync::mpsc;

pub type ConnId = u64;

/// Why the hub dropped a connection.
pub type CloseReason = Arc<OnceLock<(u16, String)>>;

/// Where events and session closes go to reach other server instances.
pub trait Remote: Send + Sync + 'static {
    /// Tells the other instances to close a session's connections.
    fn close_session(
        &self,
        session_id: &str,
        code: u16,
        reason: &str,
    ) -> futures_util::future::BoxFuture<'static, ()>;
}

/// The session id prefix of the server's own listeners (a system following a topic
/// in-process, like the flags following `public:flags`).
pub const INTERNAL_PREFIX: &str = "internal:";

/// A registered connection, as the connection task sees it.
pub struct Registration {
    pub id: ConnId,
    pub queue: mpsc::Receiver<Arc<Event>>,
    pub close_reason: CloseReason,
}

struct ConnEntry {
    session_id: String,
    queue: mpsc::Sender<Arc<Event>>,
    close_reason: CloseReason,
    topics: HashSet<String>,
}

#[derive(Default)]
struct HubState {
    next_id: ConnId,
    conns: HashMap<ConnId, ConnEntry>,
    topics: HashMap<String, HashSet<ConnId>>,
}

/// The broadcast hub of one server instance. Clones share it.
#[derive(Clone)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    queue_len: usize,
    remote: Arc<OnceLock<Arc<dyn Remote>>>,
}

impl Hub {
    pub fn new(queue_len: usize) -> Hub {
        Hub {
            state: Arc::default(),
            queue_len: queue_len.max(1),
            remote: Arc::default(),
        }
    }

    /// Connects the hub to the other instances (once, at start).
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, session_id: &str) -> Registration {
        let (tx, rx) = mpsc::channel(self.queue_len);
        let close_reason = CloseReason::default();
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.conns.insert(
            id,
            ConnEntry {
                session_id: session_id.to_owned(),
                queue: tx,
                close_reason: close_reason.clone(),
                topics: HashSet::new(),
            },
        );
        Registration {
            id,
            queue: rx,
            close_reason,
        }
    }

    pub fn unregister(&self, id: ConnId) {
        let mut state = self.lock();
        Self::remove(&mut state, id);
    }

    fn remove(state: &mut HubState, id: ConnId) -> Option<ConnEntry> {
        let entry = state.conns.remove(&id)?;
        for topic in &entry.topics {
            if let Some(subscribers) = state.topics.get_mut(topic) {
                subscribers.remove(&id);
                if subscribers.is_empty() {
                    state.topics.remove(topic);
                }
            }
        }
        Some(entry)
    }

    /// Subscribes a connection; false if it is no longer registered.
    pub fn subscribe(&self, id: ConnId, topic: &str) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.conns.get_mut(&id) else {
            return false;
        };
        entry.topics.insert(topic.to_owned());
        state.topics.entry(topic.to_owned()).or_default().insert(id);
        true
    }

    pub fn unsubscribe(&self, id: ConnId, topic: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.conns.get_mut(&id) {
            entry.topics.remove(topic);
        }
        if let Some(subscribers) = state.topics.get_mut(topic) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                state.topics.remove(topic);
            }
        }
    }

    pub fn subscription_count(&self, id: ConnId) -> usize {
        self.lock().conns.get(&id).map_or(0, |e| e.topics.len())
    }

    /// Delivers an event to this instance's subscribers of its topic, dropping any whose
    /// queue is full.
    pub fn deliver_local(&self, event: Arc<Event>) {
        let mut state = self.lock();
        let Some(subscribers) = state.topics.get(&event.topic) else {
            return;
        };
        let mut slow = Vec::new();
        for id in subscribers {
            if let Some(entry) = state.conns.get(id) {
                if entry.queue.try_send(event.clone()).is_err() {
                    slow.push(*id);
                }
            }
        }
        for id in slow {
            if let Some(entry) = Self::remove(&mut state, id) {
                tracing::warn!(conn = id, "dropping a slow realtime client");
                let _ = entry.close_reason.set((
                    close_code::SLOW_CONSUMER,
                    "slow consumer: too many undelivered messages".to_owned(),
                ));
            }
        }
    }

    /// Closes this instance's connections of a session.
    pub fn close_session_local(&self, session_id: &str, code: u16, reason: &str) {
        let mut state = self.lock();
        let ids: Vec<ConnId> = state
            .conns
            .iter()
            .filter(|(_, e)| e.session_id == session_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(entry) = Self::remove(&mut state, id) {
                let _ = entry.close_reason.set((code, reason.to_owned()));
            }
        }
    }

    /// Closes a session's connections on every instance.
    pub async fn close_session(&self, session_id: &str, code: u16, reason: &str) {
        self.close_session_local(session_id, code, reason);
        if let Some(remote) = self.remote.get() {
            remote.close_session(session_id, code, reason).await;
        }
    }

    /// WebSocket connections (not the server's own listeners, whose session id starts
    /// with [`INTERNAL_PREFIX`]).
    pub fn connection_count(&self) -> usize {
        self.lock()
            .conns
            .values()
            .filter(|c| !c.session_id.starts_with(INTERNAL_PREFIX))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, seq: u64) -> Arc<Event> {
        Arc::new(Event {
            topic: topic.into(),
            seq,
            op_id: format!("op{seq}"),
            payload: serde_json::Value::Null,
            at_ms: 0,
        })
    }

    #[tokio::test]
    async fn delivers_only_to_subscribers() {
        let hub = Hub::new(8);
        let mut a = hub.register("s1");
        let mut b = hub.register("s2");
        assert!(hub.subscribe(a.id, "public:x"));
        hub.deliver_local(event("public:x", 1));
        hub.deliver_local(event("public:y", 1));
        assert_eq!(a.queue.recv().await.unwrap().seq, 1);
        assert!(a.queue.try_recv().is_err());
        assert!(b.queue.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_connection_with_a_reason() {
        let hub = Hub::new(2);
        let mut slow = hub.register("s1");
        let mut fast = hub.register("s2");
        hub.subscribe(slow.id, "public:x");
        hub.subscribe(fast.id, "public:x");
        for seq in 1..=3 {
            hub.deliver_local(event("public:x", seq));
            fast.queue.recv().await.unwrap();
        }
        assert_eq!(hub.connection_count(), 1);
        assert_eq!(slow.queue.recv().await.unwrap().seq, 1);
        assert_eq!(slow.queue.recv().await.unwrap().seq, 2);
        assert!(slow.queue.recv().await.is_none());
        assert_eq!(
            slow.close_reason.get().unwrap().0,
            close_code::SLOW_CONSUMER
        );
    }

    #[tokio::test]
    async fn closing_a_session_ends_its_connections_only() {
        let hub = Hub::new(4);
        let mut a = hub.register("s1");
        let b = hub.register("s2");
        hub.close_session("s1", close_code::SESSION_REVOKED, "revoked")
            .await;
        assert!(a.queue.recv().await.is_none());
        assert_eq!(
            a.close_reason.get().unwrap(),
            &(close_code::SESSION_REVOKED, "revoked".to_owned())
        );
        assert!(b.close_reason.get().is_none());
        assert_eq!(hub.connection_count(), 1);
    }

    #[test]
    fn unregister_forgets_topics() {
        let hub = Hub::new(4);
        let a = hub.register("s1");
        hub.subscribe(a.id, "public:x");
        hub.unregister(a.id);
        assert!(hub.lock().topics.is_empty());
        assert!(!hub.subscribe(a.id, "public:x"));
    }
}
