//! The in-process broadcast hub: which connection is subscribed to which topic, the
//! bounded queue of each connection, the order in which each topic's events go out, and
//! the door to the other server instances ([`Remote`]).
//!
//! Invariants:
//! - Every connection has one bounded queue (`outbound_queue` messages). Delivery never
//!   waits: a connection whose queue is full is dropped from the hub at once, and its
//!   task closes the socket with `SLOW_CONSUMER`. Memory per connection is bounded.
//! - The hub holds the only sender of a connection's queue (`socket::Queue`), so a
//!   connection's task learns that it was dropped when its queue ends, with the reason.
//! - Per topic, events leave the hub in sequence order. Writers commit in sequence order
//!   (the topic row is the lock) but hand their events over in whatever order their tasks
//!   run, and other instances' events arrive by NOTIFY: an event ahead of the next
//!   expected one is held until the gap fills, for at most [`HOLD`] (or [`MAX_HELD`]
//!   events); then the held events go out and each connection fills the gap from the
//!   durable log. Nothing is ever held behind a lock on the write path.
//! - Events, session closes and systems' notices reach other instances through the
//!   [`Remote`] (PostgreSQL NOTIFY on one channel, one LISTEN connection per instance);
//!   without one (SQLite: a single instance) they stay local.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use meridian_shared::realtime::{close_code, Event};
use sqlx::AnyConnection;
use tokio::sync::mpsc;

use super::socket::{self, Close, Queue, QueueSender};
use crate::clock::Clock;

pub type ConnId = u64;

/// How long an event that arrived ahead of its topic's next one waits for the gap to fill.
pub const HOLD: Duration = Duration::from_millis(100);
/// How many events a topic holds at most while it waits.
pub const MAX_HELD: usize = 256;
/// Notices of one system waiting for it to read them.
const NOTICE_QUEUE: usize = 1024;

/// Something one instance tells the others.
#[derive(Debug, Clone)]
pub enum Notice {
    /// An event was committed.
    Event(Arc<Event>),
    /// Close a session's connections.
    CloseSession {
        session_id: String,
        code: u16,
        reason: String,
    },
    /// Close the connections of every session of an account.
    CloseUser {
        user_id: String,
        code: u16,
        reason: String,
    },
    /// A system's own notice (e.g. documents: "updates stored through seq N"): passed to
    /// the receiver registered with [`Hub::notices`] on every other instance.
    System {
        system: String,
        body: serde_json::Value,
    },
}

/// Where notices go to reach other server instances.
pub trait Remote: Send + Sync + 'static {
    /// Queues a notice in the caller's transaction: the others receive it once, and only
    /// if, that transaction commits.
    fn queue<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
        notice: &Notice,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;

    /// Queues notices in the caller's transaction, in order (see [`Remote::queue`]); a
    /// remote may send them in fewer statements.
    fn queue_all<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
        notices: &'c [Notice],
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move {
            for notice in notices {
                self.queue(conn, notice).await?;
            }
            Ok(())
        })
    }

    /// Sends a notice now; resolves once the database took it (failures are logged).
    fn send(&self, notice: Notice) -> BoxFuture<'static, ()>;

    /// Sends a notice in the background (fire and forget).
    fn send_later(&self, notice: Notice);
}

/// The session id prefix of the server's own listeners (a system following a topic
/// in-process, like the flags following `public:flags`).
pub const INTERNAL_PREFIX: &str = "internal:";

/// A registered connection, as the connection task sees it.
pub struct Registration {
    pub id: ConnId,
    /// Ends when the hub drops the connection, with the reason.
    pub queue: Queue<Arc<Event>>,
}

struct ConnEntry {
    session_id: String,
    /// The account signed in on the session, if any.
    user_id: Option<String>,
    queue: QueueSender<Arc<Event>>,
    topics: HashSet<String>,
}

/// One topic with subscribers on this instance.
#[derive(Default)]
struct TopicState {
    subscribers: HashSet<ConnId>,
    /// The sequence number that goes out next (`None` until the first event).
    next: Option<u64>,
    /// Events that arrived ahead of `next`, waiting for the gap to fill.
    held: BTreeMap<u64, Arc<Event>>,
    /// The hold in progress (see [`Hub::release_hold`]).
    hold: u64,
}

/// What became of an event handed to a topic.
#[derive(Debug, PartialEq)]
enum Accepted {
    /// These go out now, in this order.
    Ready(Vec<Arc<Event>>),
    /// Held; `true` when this started a hold (the caller starts its timer).
    Held(bool),
}

impl TopicState {
    fn accept(&mut self, event: Arc<Event>) -> Accepted {
        let seq = event.seq;
        match self.next {
            // Already sent, or given up on after a hold: the connections have it.
            Some(next) if seq < next => Accepted::Ready(Vec::new()),
            Some(next) if seq > next => {
                let started = self.held.is_empty();
                self.held.insert(seq, event);
                if self.held.len() > MAX_HELD {
                    Accepted::Ready(self.release())
                } else {
                    Accepted::Held(started)
                }
            }
            _ => {
                let mut ready = vec![event];
                let mut next = seq + 1;
                while let Some(held) = self.held.remove(&next) {
                    ready.push(held);
                    next += 1;
                }
                self.next = Some(next);
                Accepted::Ready(ready)
            }
        }
    }

    /// Gives up waiting: everything held goes out, in order.
    fn release(&mut self) -> Vec<Arc<Event>> {
        let held = std::mem::take(&mut self.held);
        if let Some(last) = held.keys().next_back() {
            self.next = Some(last + 1);
        }
        held.into_values().collect()
    }
}

#[derive(Default)]
struct HubState {
    next_id: ConnId,
    next_hold: u64,
    conns: HashMap<ConnId, ConnEntry>,
    topics: HashMap<String, TopicState>,
    /// Per system, where other instances' notices go.
    systems: HashMap<String, mpsc::Sender<serde_json::Value>>,
}

/// The broadcast hub of one server instance. Clones share it.
#[derive(Clone)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    queue_len: usize,
    remote: Arc<OnceLock<Arc<dyn Remote>>>,
    clock: Arc<dyn Clock>,
}

impl Hub {
    pub fn new(queue_len: usize, clock: Arc<dyn Clock>) -> Hub {
        Hub {
            state: Arc::default(),
            queue_len: queue_len.max(1),
            remote: Arc::default(),
            clock,
        }
    }

    /// Connects the hub to the other instances (once, at start).
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    /// The other instances, if this one shares its database with any.
    pub fn remote(&self) -> Option<&Arc<dyn Remote>> {
        self.remote.get()
    }

    /// The instance's clock (events are stamped with it).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection of a session (of the account `user_id`, if signed in).
    /// The server's own listeners register a session id starting with
    /// [`INTERNAL_PREFIX`] and no user.
    pub fn register(&self, session_id: &str, user_id: Option<&str>) -> Registration {
        let (tx, rx) = socket::queue(self.queue_len);
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.conns.insert(
            id,
            ConnEntry {
                session_id: session_id.to_owned(),
                user_id: user_id.map(str::to_owned),
                queue: tx,
                topics: HashSet::new(),
            },
        );
        Registration { id, queue: rx }
    }

    pub fn unregister(&self, id: ConnId) {
        let mut state = self.lock();
        Self::remove(&mut state, id);
    }

    fn remove(state: &mut HubState, id: ConnId) -> Option<ConnEntry> {
        let entry = state.conns.remove(&id)?;
        for topic in &entry.topics {
            Self::leave_topic(state, id, topic);
        }
        Some(entry)
    }

    fn leave_topic(state: &mut HubState, id: ConnId, topic: &str) {
        if let Some(t) = state.topics.get_mut(topic) {
            t.subscribers.remove(&id);
            if t.subscribers.is_empty() {
                state.topics.remove(topic);
            }
        }
    }

    /// Subscribes a connection; false if it is no longer registered.
    pub fn subscribe(&self, id: ConnId, topic: &str) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.conns.get_mut(&id) else {
            return false;
        };
        entry.topics.insert(topic.to_owned());
        state
            .topics
            .entry(topic.to_owned())
            .or_default()
            .subscribers
            .insert(id);
        true
    }

    pub fn unsubscribe(&self, id: ConnId, topic: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.conns.get_mut(&id) {
            entry.topics.remove(topic);
        }
        Self::leave_topic(&mut state, id, topic);
    }

    pub fn subscription_count(&self, id: ConnId) -> usize {
        self.lock().conns.get(&id).map_or(0, |e| e.topics.len())
    }

    /// Delivers a committed event to this instance's subscribers of its topic, in
    /// sequence order (see the module's invariants), dropping any whose queue is full.
    pub fn deliver_local(&self, event: Arc<Event>) {
        let mut state = self.lock();
        let Some(topic) = state.topics.get_mut(&event.topic) else {
            return;
        };
        let name = event.topic.clone();
        match topic.accept(event) {
            Accepted::Ready(events) => Self::send(&mut state, &name, &events),
            Accepted::Held(false) => {}
            Accepted::Held(true) => {
                state.next_hold += 1;
                let hold = state.next_hold;
                if let Some(topic) = state.topics.get_mut(&name) {
                    topic.hold = hold;
                }
                drop(state);
                self.start_hold_timer(name, hold);
            }
        }
    }

    fn start_hold_timer(&self, topic: String, hold: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let hub = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(HOLD).await;
            hub.release_hold(&topic, hold);
        });
    }

    /// Ends hold `hold` of `topic` if it is still waiting: its events go out, and the
    /// connections fill the gap from the log.
    fn release_hold(&self, topic: &str, hold: u64) {
        let mut state = self.lock();
        let Some(t) = state.topics.get_mut(topic) else {
            return;
        };
        if t.hold != hold || t.held.is_empty() {
            return;
        }
        let events = t.release();
        tracing::debug!(%topic, released = events.len(), "a gap did not fill in time");
        Self::send(&mut state, topic, &events);
    }

    fn send(state: &mut HubState, topic: &str, events: &[Arc<Event>]) {
        let Some(t) = state.topics.get(topic) else {
            return;
        };
        let mut slow = Vec::new();
        for event in events {
            for id in &t.subscribers {
                if let Some(entry) = state.conns.get(id) {
                    if !slow.contains(id) && !entry.queue.try_send(event.clone()) {
                        slow.push(*id);
                    }
                }
            }
        }
        for id in slow {
            if let Some(entry) = Self::remove(state, id) {
                tracing::warn!(conn = id, "dropping a slow realtime client");
                entry.queue.close(Close::new(
                    close_code::SLOW_CONSUMER,
                    "slow consumer: too many undelivered messages",
                ));
            }
        }
    }

    /// Closes this instance's connections that `which` picks.
    fn close_local(&self, which: impl Fn(&ConnEntry) -> bool, code: u16, reason: &str) {
        let mut state = self.lock();
        let ids: Vec<ConnId> = state
            .conns
            .iter()
            .filter(|(_, e)| which(e))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(entry) = Self::remove(&mut state, id) {
                entry.queue.close(Close::new(code, reason));
            }
        }
    }

    /// Closes this instance's connections of a session.
    pub fn close_session_local(&self, session_id: &str, code: u16, reason: &str) {
        self.close_local(|e| e.session_id == session_id, code, reason);
    }

    /// Closes this instance's connections of an account's sessions.
    pub fn close_user_local(&self, user_id: &str, code: u16, reason: &str) {
        self.close_local(|e| e.user_id.as_deref() == Some(user_id), code, reason);
    }

    /// Closes the connections of every session of an account, on every instance (e.g.
    /// `ACCESS_CHANGED` when its role changed: its pages reconnect with what the new
    /// role allows).
    pub async fn close_user(&self, user_id: &str, code: u16, reason: &str) {
        self.close_user_local(user_id, code, reason);
        if let Some(remote) = self.remote.get() {
            remote
                .send(Notice::CloseUser {
                    user_id: user_id.to_owned(),
                    code,
                    reason: reason.to_owned(),
                })
                .await;
        }
    }

    /// Closes a session's connections on every instance.
    pub async fn close_session(&self, session_id: &str, code: u16, reason: &str) {
        self.close_session_local(session_id, code, reason);
        if let Some(remote) = self.remote.get() {
            remote
                .send(Notice::CloseSession {
                    session_id: session_id.to_owned(),
                    code,
                    reason: reason.to_owned(),
                })
                .await;
        }
    }

    /// The notices of `system` that other instances send (see [`Hub::notify_others`]
    /// and `Events::notify`), from now on; replaces an earlier receiver. The queue is
    /// bounded: while it is full, the instance's one LISTEN loop waits.
    pub fn notices(&self, system: &str) -> mpsc::Receiver<serde_json::Value> {
        let (tx, rx) = mpsc::channel(NOTICE_QUEUE);
        self.lock().systems.insert(system.to_owned(), tx);
        rx
    }

    /// Tells `system` on every other instance (fire and forget: no transaction, no
    /// retry). Nothing happens on a single instance.
    pub fn notify_others(&self, system: &str, body: serde_json::Value) {
        if let Some(remote) = self.remote.get() {
            remote.send_later(Notice::System {
                system: system.to_owned(),
                body,
            });
        }
    }

    /// Hands a notice another instance sent to its system's receiver.
    pub async fn receive_notice(&self, system: &str, body: serde_json::Value) {
        let receiver = self.lock().systems.get(system).cloned();
        match receiver {
            Some(receiver) => {
                let _ = receiver.send(body).await;
            }
            None => tracing::debug!(%system, "a notice for a system that does not listen"),
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
    use crate::clock::ManualClock;

    fn event(topic: &str, seq: u64) -> Arc<Event> {
        Arc::new(Event {
            topic: topic.into(),
            seq,
            op_id: format!("op{seq}"),
            payload: serde_json::Value::Null,
            at_ms: 0,
        })
    }

    fn hub(queue_len: usize) -> Hub {
        Hub::new(queue_len, Arc::new(ManualClock::new(0)))
    }

    fn seqs(registration: &mut Registration) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(event) = registration.queue.try_recv() {
            seqs.push(event.seq);
        }
        seqs
    }

    #[tokio::test]
    async fn delivers_only_to_subscribers() {
        let hub = hub(8);
        let mut a = hub.register("s1", None);
        let mut b = hub.register("s2", None);
        assert!(hub.subscribe(a.id, "public:x"));
        hub.deliver_local(event("public:x", 1));
        hub.deliver_local(event("public:y", 1));
        assert_eq!(a.queue.recv().await.unwrap().seq, 1);
        assert!(a.queue.try_recv().is_none());
        assert!(b.queue.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_connection_with_a_reason() {
        let hub = hub(2);
        let mut slow = hub.register("s1", None);
        let mut fast = hub.register("s2", None);
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
        assert_eq!(slow.queue.close_reason().code, close_code::SLOW_CONSUMER);
    }

    #[test]
    fn events_go_out_in_sequence_order_whatever_order_they_arrive_in() {
        let hub = hub(64);
        let mut a = hub.register("s1", None);
        hub.subscribe(a.id, "public:x");
        hub.deliver_local(event("public:x", 4));
        // Writers of 6 and 7 handed over before the writer of 5 (each committed after
        // the one before it: the topic row is the lock).
        hub.deliver_local(event("public:x", 6));
        hub.deliver_local(event("public:x", 7));
        assert_eq!(seqs(&mut a), [4]);
        hub.deliver_local(event("public:x", 5));
        assert_eq!(seqs(&mut a), [5, 6, 7]);
        // A late duplicate (a NOTIFY of an event delivered already) is not sent again.
        hub.deliver_local(event("public:x", 6));
        hub.deliver_local(event("public:x", 8));
        assert_eq!(seqs(&mut a), [8]);
    }

    #[test]
    fn a_gap_that_does_not_fill_is_given_up_on() {
        let hub = hub(1024);
        let mut a = hub.register("s1", None);
        hub.subscribe(a.id, "public:x");
        hub.deliver_local(event("public:x", 1));
        hub.deliver_local(event("public:x", 3));
        hub.deliver_local(event("public:x", 4));
        assert_eq!(seqs(&mut a), [1]);
        let hold = hub.lock().topics["public:x"].hold;
        // An older hold's timer changes nothing.
        hub.release_hold("public:x", hold - 1);
        assert_eq!(seqs(&mut a), Vec::<u64>::new());
        hub.release_hold("public:x", hold);
        assert_eq!(seqs(&mut a), [3, 4], "the connection fills 2 from the log");
        // 2 arriving late is not sent; the topic goes on from 5.
        hub.deliver_local(event("public:x", 2));
        hub.deliver_local(event("public:x", 5));
        assert_eq!(seqs(&mut a), [5]);
        // Too many held at once: released without waiting.
        for seq in 7..=(7 + MAX_HELD as u64) {
            hub.deliver_local(event("public:x", seq));
        }
        let released = seqs(&mut a);
        assert_eq!(released.len(), MAX_HELD + 1);
        assert!(released.windows(2).all(|w| w[0] < w[1]));
    }

    #[tokio::test]
    async fn closing_a_session_ends_its_connections_only() {
        let hub = hub(4);
        let mut a = hub.register("s1", None);
        let mut b = hub.register("s2", None);
        hub.close_session("s1", close_code::SESSION_REVOKED, "revoked")
            .await;
        assert!(a.queue.recv().await.is_none());
        assert_eq!(
            a.queue.close_reason(),
            Close::new(close_code::SESSION_REVOKED, "revoked")
        );
        assert!(b.queue.try_recv().is_none(), "still open");
        assert_eq!(hub.connection_count(), 1);
    }

    #[tokio::test]
    async fn closing_a_user_ends_the_connections_of_all_its_sessions() {
        let hub = hub(4);
        let mut laptop = hub.register("s1", Some("u1"));
        let mut phone = hub.register("s2", Some("u1"));
        let mut other = hub.register("s3", Some("u2"));
        let mut guest = hub.register("s4", None);
        hub.close_user("u1", close_code::ACCESS_CHANGED, "your role changed")
            .await;
        for connection in [&mut laptop, &mut phone] {
            assert!(connection.queue.recv().await.is_none());
            assert_eq!(
                connection.queue.close_reason(),
                Close::new(close_code::ACCESS_CHANGED, "your role changed")
            );
        }
        assert_eq!(hub.connection_count(), 2);
        hub.subscribe(other.id, "public:x");
        hub.subscribe(guest.id, "public:x");
        hub.deliver_local(event("public:x", 1));
        assert_eq!(seqs(&mut other), [1]);
        assert_eq!(seqs(&mut guest), [1]);
    }

    #[tokio::test]
    async fn notices_reach_the_system_that_listens() {
        let hub = hub(4);
        let mut docs = hub.notices("docs");
        hub.receive_notice("docs", serde_json::json!({"doc": "d1"}))
            .await;
        hub.receive_notice("nobody", serde_json::json!(1)).await;
        assert_eq!(docs.try_recv().unwrap()["doc"], "d1");
        assert!(docs.try_recv().is_err());
    }

    #[test]
    fn unregister_forgets_topics() {
        let hub = hub(4);
        let a = hub.register("s1", None);
        hub.subscribe(a.id, "public:x");
        hub.unregister(a.id);
        assert!(hub.lock().topics.is_empty());
        assert!(!hub.subscribe(a.id, "public:x"));
    }
}
