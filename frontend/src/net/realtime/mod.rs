//! The realtime client: one WebSocket to `ws(s)://<host>/api/realtime` per tab, shared by
//! every page through a cloneable [`Realtime`] handle in a Yew context.
//!
//! What it does:
//! - Connects after learning who the session is (`GET /api/auth/me`), so that the socket
//!   and the page agree on the session.
//! - Connects, reconnects and watches the network through the one reconnecting socket
//!   ([`super::socket`]: [`Link`] and [`Socket`]): exponential backoff with full jitter
//!   (500 ms doubling to 30 s, [`Backoff::REALTIME`]), reset by a successful `welcome`;
//!   reconnects at once when the browser comes back `online`, and drops the socket when
//!   it goes `offline` (then waits for the network rather than retrying blind).
//! - Pings every `heartbeat_ms` (from the `welcome`) and treats the socket as dead when a
//!   ping goes unanswered for twice that; shows the last round-trip time.
//! - Remembers subscriptions and re-sends them on every connection with `since` = the
//!   last sequence number seen without a gap; drops duplicate events by sequence number.
//! - Publishes through the outbox: an op is written to IndexedDB first, shown as pending,
//!   sent when online, and removed on its `ack`. Every connection replays the whole
//!   outbox, in order, with the same op ids (the server applies an op id once). A
//!   permanent `error` for an op removes it and is shown to the user.
//! - On close code 4001 (session revoked) it refetches the session, then reconnects;
//!   on 4003 (the account's role changed) it refetches the session (so the page shows
//!   what the new role allows) and reconnects at once. It also refetches the session
//!   when the window regains the focus.
//! - Carries session and outbox changes between tabs over the BroadcastChannel.
//!
//! Invariants:
//! - Only the socket of the current `generation` is heard: handlers of a replaced socket
//!   are removed and any late event of theirs is ignored.
//! - No `RefCell` borrow is held while a callback into Yew runs or across an `.await`.
//! - A page hears about a topic only through [`TopicView`] snapshots, so it renders the
//!   same thing whatever order messages arrived in.
//!
//! Layout: the handle, its shared state and its public API here; `connection.rs` (the
//! socket: the link's commands, the messages, the heartbeat, the network events of the
//! window), `outbox.rs` (the other tabs, the outbox in IndexedDB and its replay).

mod connection;
mod outbox;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::{Rc, Weak};

use gloo_timers::callback::{Interval, Timeout};
use meridian_shared::api::Me;
use meridian_shared::realtime::{close_code, ClientMessage, Event, ServerMessage};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use yew::Callback;

use super::http::{self, HttpError};
use super::realtime_state::{is_permanent_error, Heartbeat, RecentOps, Rejection, TopicLog};
use super::socket::{
    AfterClose, Backoff, Frame, Link, LinkCommand, LinkInput, Socket, SocketEvents,
};
use crate::browser::{self, WindowListener};
use crate::store::broadcast::{TabChannel, TabMessage};
use crate::store::idb::IdbError;
use crate::store::outbox::{CreationClock, OutboxOp, OutboxQueue, OutboxStore};

/// A socket that has not been greeted with `welcome` within this long is given up.
pub const WELCOME_TIMEOUT_MS: u32 = 10_000;
/// After a passing error for a publish (rate limit, overload), the outbox is sent again
/// this much later.
pub const RESEND_AFTER_MS: u32 = 5_000;

/// Whether the realtime channel is usable, as the connection indicator shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected and greeted by the server.
    Online,
    /// A connection is being opened (or the session is being checked before it is).
    Connecting,
    /// Not connected; a reconnect is scheduled.
    Offline,
}

impl ConnectionState {
    /// The machine-readable name, used in `data-state` attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Online => "online",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Offline => "offline",
        }
    }

    /// The words people read.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionState::Online => "Online",
            ConnectionState::Connecting => "Connecting…",
            ConnectionState::Offline => "Offline",
        }
    }
}

/// Where the outbox is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageMode {
    /// IndexedDB is being opened.
    Opening,
    /// Unsent messages survive a reload.
    IndexedDb,
    /// IndexedDB is unavailable (for the reason given); unsent messages live in memory.
    Memory(String),
}

/// What the server said in its `welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub connection_id: String,
    pub session_id: String,
    pub instance_id: String,
    pub heartbeat_ms: u64,
}

/// A snapshot of the channel for the UI.
#[derive(Debug, Clone, PartialEq)]
pub struct RealtimeStatus {
    pub state: ConnectionState,
    /// The current connection, while online.
    pub connection: Option<Connection>,
    /// The round-trip time of the last answered ping, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Publishes waiting for their acknowledgement (this tab's and other tabs').
    pub pending: usize,
    pub storage: StorageMode,
    /// Connection attempts that failed since the last `welcome`.
    pub failed_attempts: u32,
    /// The delay of the scheduled reconnect, while one is scheduled.
    pub retry_in_ms: Option<u32>,
    /// The last problem worth telling the user about.
    pub last_error: Option<String>,
}

impl Default for RealtimeStatus {
    fn default() -> RealtimeStatus {
        RealtimeStatus {
            state: ConnectionState::Connecting,
            connection: None,
            rtt_ms: None,
            pending: 0,
            storage: StorageMode::Opening,
            failed_attempts: 0,
            retry_in_ms: None,
            last_error: None,
        }
    }
}

/// What a page sees of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicView {
    pub topic: String,
    /// Whether the topic is subscribed on the current connection (its replay has been
    /// asked for).
    pub subscribed: bool,
    /// Recent events, oldest first.
    pub events: Vec<Event>,
    /// Publishes to the topic that are not acknowledged yet, oldest first.
    pub pending: Vec<OutboxOp>,
    /// Why the topic cannot be followed, if the server refused it.
    pub error: Option<String>,
    /// Recent publishes the server refused for good.
    pub rejections: Vec<Rejection>,
}

/// What the client reports to the app.
pub struct RealtimeConfig {
    /// Hears every change of [`RealtimeStatus`].
    pub on_status: Callback<RealtimeStatus>,
    /// Hears every answer of `GET /api/auth/me` and every session change.
    pub on_session: Callback<Result<Me, HttpError>>,
}

/// The handle to the tab's realtime client. Clones share one client; two handles are
/// equal when they are the same client.
#[derive(Clone)]
pub struct Realtime {
    inner: Rc<Inner>,
}

impl PartialEq for Realtime {
    fn eq(&self, other: &Realtime) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Keeps a page's interest in a topic; dropping it stops the page's updates. The topic
/// itself stays subscribed for the life of the tab, so that coming back to a page shows
/// its history at once.
pub struct TopicWatch {
    client: Weak<Inner>,
    id: u64,
}

impl Drop for TopicWatch {
    fn drop(&mut self) {
        if let Some(inner) = self.client.upgrade() {
            if let Ok(mut state) = inner.state.try_borrow_mut() {
                let topic = state
                    .watchers
                    .iter()
                    .find(|watcher| watcher.id == self.id)
                    .map(|watcher| watcher.topic.clone());
                state.watchers.retain(|watcher| watcher.id != self.id);
                if let Some(topic) = topic {
                    state.forget_private_topic(&topic);
                }
            }
        }
    }
}

struct Inner {
    state: RefCell<State>,
    on_status: Callback<RealtimeStatus>,
    on_session: Callback<Result<Me, HttpError>>,
}

struct Watcher {
    id: u64,
    topic: String,
    on_view: Callback<TopicView>,
}

/// Which topics' watchers a change concerns (the status always hears).
enum Changed {
    Status,
    Topic(String),
    AllTopics,
}

struct State {
    url: String,
    started: bool,
    /// Increases with every socket; events of older sockets are ignored.
    generation: u64,
    socket: Option<Socket>,
    /// The connection's state machine: backoff, the network, what a close means.
    link: Link,
    conn: ConnectionState,
    connection: Option<Connection>,
    /// The retry the link scheduled.
    retry: Option<Timeout>,
    welcome_deadline: Option<Timeout>,
    resend: Option<Timeout>,
    heartbeat: Option<(Heartbeat, Interval)>,
    /// Fires when the oldest unanswered ping has waited two heartbeat intervals.
    pong_deadline: Option<Timeout>,
    rtt_ms: Option<f64>,
    topics: BTreeMap<String, TopicLog>,
    watchers: Vec<Watcher>,
    next_watcher_id: u64,
    outbox: OutboxQueue,
    /// Ops acknowledged or refused lately: a racing reread of storage must not revive
    /// them.
    settled: RecentOps,
    /// Ops in the queue that are not in storage (storage was not open yet, or the write
    /// failed): a reread of storage keeps them.
    unsaved: HashSet<String>,
    clock: CreationClock,
    store: Option<OutboxStore>,
    storage: StorageMode,
    tab: Option<TabChannel>,
    last_error: Option<String>,
    /// The session the page believes it has, from `/api/auth/me`.
    session_id: Option<String>,
    /// Bumped whenever this tab changes the session itself: an answer of
    /// `/api/auth/me` asked for before the change is stale and dropped (it would show a
    /// freshly signed-up account as a guest again).
    session_generation: u64,
    listeners: Vec<WindowListener>,
}

impl State {
    fn new(url: String) -> State {
        State {
            url,
            started: false,
            generation: 0,
            socket: None,
            link: Link::new(Backoff::REALTIME),
            conn: ConnectionState::Connecting,
            connection: None,
            retry: None,
            welcome_deadline: None,
            resend: None,
            heartbeat: None,
            pong_deadline: None,
            rtt_ms: None,
            topics: BTreeMap::new(),
            watchers: Vec::new(),
            next_watcher_id: 0,
            outbox: OutboxQueue::default(),
            settled: RecentOps::default(),
            unsaved: HashSet::new(),
            clock: CreationClock::default(),
            store: None,
            storage: StorageMode::Opening,
            tab: None,
            last_error: None,
            session_id: None,
            session_generation: 0,
            listeners: Vec::new(),
        }
    }

    fn status(&self) -> RealtimeStatus {
        RealtimeStatus {
            state: self.conn,
            connection: self.connection.clone(),
            rtt_ms: self.rtt_ms,
            pending: self.outbox.len(),
            storage: self.storage.clone(),
            failed_attempts: self.link.failed_attempts(),
            retry_in_ms: self.link.retry_in_ms(),
            last_error: self.last_error.clone(),
        }
    }

    fn view(&self, topic: &str) -> TopicView {
        let log = self.topics.get(topic);
        TopicView {
            topic: topic.to_owned(),
            subscribed: log.is_some_and(TopicLog::is_subscribed),
            events: log
                .map(|log| log.events().cloned().collect())
                .unwrap_or_default(),
            pending: self
                .outbox
                .for_topic(topic)
                .filter(|op| !log.is_some_and(|log| log.contains_op(&op.op_id)))
                .cloned()
                .collect(),
            error: log.and_then(|log| log.error().map(str::to_owned)),
            rejections: log
                .map(|log| log.rejections().cloned().collect())
                .unwrap_or_default(),
        }
    }

    fn send(&self, message: &ClientMessage) {
        send(&self.socket, message);
    }

    /// Stops following a `session:` or `user:` topic that nothing watches and nothing
    /// waits to publish to: after a sign-in or sign-out it belongs to another session,
    /// and resubscribing to it on every reconnect would only be refused.
    fn forget_private_topic(&mut self, topic: &str) {
        let private = topic.starts_with("session:") || topic.starts_with("user:");
        let watched = self.watchers.iter().any(|watcher| watcher.topic == topic);
        let pending = self.outbox.for_topic(topic).next().is_some();
        if !private || watched || pending || self.topics.remove(topic).is_none() {
            return;
        }
        self.send(&ClientMessage::Unsubscribe {
            topic: topic.to_owned(),
        });
    }

    fn publish_message(op: &OutboxOp) -> ClientMessage {
        ClientMessage::Publish {
            op_id: op.op_id.clone(),
            topic: op.topic.clone(),
            payload: op.payload.clone(),
        }
    }

    /// Forgets the current socket and everything that belongs to one connection.
    fn drop_connection(&mut self) {
        self.socket = None;
        self.heartbeat = None;
        self.pong_deadline = None;
        self.welcome_deadline = None;
        self.resend = None;
        self.connection = None;
        for log in self.topics.values_mut() {
            log.disconnected();
        }
    }

    /// Takes an op out of the queue for good (acknowledged, applied or refused).
    fn settle(&mut self, op_id: &str) -> Option<OutboxOp> {
        self.settled.insert(op_id);
        self.unsaved.remove(op_id);
        self.outbox.remove(op_id)
    }

    fn post(&self, message: TabMessage) {
        if let Some(tab) = &self.tab {
            tab.post(message);
        }
    }
}

fn send(socket: &Option<Socket>, message: &ClientMessage) {
    if let (Some(socket), Ok(text)) = (socket, serde_json::to_string(message)) {
        socket.send_text(&text);
    }
}

/// What a close code of the realtime channel means for the connection: a revoked
/// session or a changed role waits for the session to be learned again (the client then
/// reconnects); anything else is retried after the backoff.
pub fn after_close(code: u16) -> AfterClose {
    match code {
        close_code::SESSION_REVOKED | close_code::ACCESS_CHANGED => AfterClose::Hold,
        _ => AfterClose::Retry,
    }
}

/// A sentence about why a socket closed, for the status page.
pub fn describe_close(code: u16, reason: &str, was_welcomed: bool) -> String {
    let what = match code {
        close_code::GOING_AWAY => "The server is restarting or shutting down.".to_owned(),
        close_code::PROTOCOL_ERROR => {
            "The server did not understand a message from this page.".to_owned()
        }
        close_code::TOO_BIG => "A message was larger than the server accepts.".to_owned(),
        close_code::HEARTBEAT_TIMEOUT => {
            "The server stopped hearing from this page in time.".to_owned()
        }
        close_code::SESSION_REVOKED => "The session was signed out.".to_owned(),
        close_code::ACCESS_CHANGED => "Your role changed; catching up.".to_owned(),
        close_code::SLOW_CONSUMER => "This page fell behind on messages.".to_owned(),
        _ if !was_welcomed => "Could not connect to the server.".to_owned(),
        _ => format!("The connection closed (code {code})."),
    };
    crate::net::socket::close_sentence(what, reason)
}

impl Realtime {
    /// Creates the client without touching the network; [`Realtime::start`] starts it.
    pub fn new(config: RealtimeConfig) -> Realtime {
        Realtime {
            inner: Rc::new(Inner {
                state: RefCell::new(State::new(browser::realtime_url())),
                on_status: config.on_status,
                on_session: config.on_session,
            }),
        }
    }

    /// Opens the outbox, the tab channel and the window listeners, checks the session and
    /// connects. Calling it again does nothing.
    pub fn start(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            if state.started {
                return;
            }
            state.started = true;
        }
        self.listen_to_window();
        self.open_tab_channel();
        self.open_storage();
        self.refresh_session(false);
    }

    /// The current status.
    pub fn status(&self) -> RealtimeStatus {
        self.inner.state.borrow().status()
    }

    /// Follows a topic: `on_view` hears its current [`TopicView`] at once and after every
    /// change, until the returned watch is dropped. With `from_start`, a topic this tab
    /// has not followed before is replayed from its first kept event.
    pub fn watch(&self, topic: &str, from_start: bool, on_view: Callback<TopicView>) -> TopicWatch {
        let (id, view) = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            let id = state.next_watcher_id;
            state.next_watcher_id += 1;
            let log = state
                .topics
                .entry(topic.to_owned())
                .or_insert_with(|| TopicLog::new(topic, from_start));
            if from_start {
                log.want_history();
            }
            if state.conn == ConnectionState::Online && !log.is_subscribed() && !log.is_requested()
            {
                let since = log.subscribe_since();
                log.subscribing(since);
                send(
                    &state.socket,
                    &ClientMessage::Subscribe {
                        topic: topic.to_owned(),
                        since,
                    },
                );
            }
            state.watchers.push(Watcher {
                id,
                topic: topic.to_owned(),
                on_view: on_view.clone(),
            });
            (id, state.view(topic))
        };
        on_view.emit(view);
        TopicWatch {
            client: Rc::downgrade(&self.inner),
            id,
        }
    }

    /// Publishes `payload` to `topic` through the outbox and returns the op id. The op is
    /// stored first, then shown as pending and sent if online; it stays pending until the
    /// server acknowledges it, across reconnects and reloads.
    pub fn publish(&self, topic: &str, payload: serde_json::Value) -> String {
        let (op, store) = {
            let mut state = self.inner.state.borrow_mut();
            let created_at_ms = state.clock.next(browser::now_ms());
            let op = OutboxOp {
                op_id: browser::new_op_id(),
                topic: topic.to_owned(),
                payload,
                created_at_ms,
            };
            (op, state.store.clone())
        };
        let op_id = op.op_id.clone();
        match store {
            Some(store) => {
                let client = self.clone();
                spawn_local(async move {
                    let stored = store.put(&op).await;
                    client.op_stored(op, stored);
                });
            }
            None => {
                // Storage is still opening: the op waits in memory and is written (then
                // sent) as soon as it is open.
                let topic = op.topic.clone();
                {
                    let mut state = self.inner.state.borrow_mut();
                    state.unsaved.insert(op.op_id.clone());
                    state.outbox.insert(op);
                }
                self.changed(Changed::Topic(topic));
            }
        }
        op_id
    }

    /// Closes the socket (if any) and connects again now, forgetting the backoff.
    pub fn reconnect_now(&self) {
        self.input(LinkInput::ReconnectNow);
    }

    /// This tab changed the session (signed in, signed up or out): tells the app and the
    /// other tabs, and reconnects so that the socket carries the new session.
    pub fn session_changed(&self, me: Me) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.session_id = Some(me.session_id.clone());
            state.session_generation += 1;
            state.post(TabMessage::AuthChanged);
        }
        self.inner.on_session.emit(Ok(me));
        self.input(LinkInput::ReconnectNow);
    }

    /// Refetches the session, tells the app, then reconnects. With `after_revocation`
    /// (close code 4001), repeated revocations back off instead of reconnecting at once.
    pub fn refresh_session(&self, after_revocation: bool) {
        {
            let mut state = self.inner.state.borrow_mut();
            if state.conn != ConnectionState::Online {
                state.conn = ConnectionState::Connecting;
            }
        }
        self.input(LinkInput::Hold);
        self.changed(Changed::Status);
        let client = self.clone();
        spawn_local(async move {
            client.fetch_session().await;
            client.input(if after_revocation {
                LinkInput::Resume {
                    jitter: browser::random_unit(),
                }
            } else {
                LinkInput::Connect
            });
        });
    }

    /// Asks who the session is again (the window regained the focus: the role may have
    /// changed meanwhile), and reconnects if the socket turns out to belong to another
    /// session.
    pub fn recheck_session(&self) {
        let client = self.clone();
        spawn_local(async move {
            client.fetch_session().await;
            let stale = {
                let state = client.inner.state.borrow();
                state.connection.as_ref().is_some_and(|connection| {
                    state.session_id.as_ref() != Some(&connection.session_id)
                })
            };
            if stale {
                client.input(LinkInput::Connect);
            }
        });
    }

    /// Rereads the outbox from storage (another tab changed it).
    pub fn reload_outbox(&self) {
        let client = self.clone();
        spawn_local(async move {
            client.reload_outbox_now().await;
            client.changed(Changed::AllTopics);
        });
    }

    async fn fetch_session(&self) {
        let asked_at = self.inner.state.borrow().session_generation;
        let result = http::me().await;
        {
            let mut state = self.inner.state.borrow_mut();
            if state.session_generation != asked_at {
                // The tab signed in, up or out meanwhile: this answer describes the old
                // session.
                return;
            }
            if let Ok(me) = &result {
                state.session_id = Some(me.session_id.clone());
            }
        }
        self.inner.on_session.emit(result);
    }

    fn upgrade(inner: &Weak<Inner>) -> Option<Realtime> {
        inner.upgrade().map(|inner| Realtime { inner })
    }

    fn changed(&self, changed: Changed) {
        let (status, deliveries) = {
            let state = self.inner.state.borrow();
            let wanted = |topic: &str| match &changed {
                Changed::Status => false,
                Changed::Topic(only) => only == topic,
                Changed::AllTopics => true,
            };
            let mut views: BTreeMap<&str, TopicView> = BTreeMap::new();
            let mut deliveries = Vec::new();
            for watcher in state.watchers.iter().filter(|w| wanted(&w.topic)) {
                let view = views
                    .entry(watcher.topic.as_str())
                    .or_insert_with(|| state.view(&watcher.topic))
                    .clone();
                deliveries.push((watcher.on_view.clone(), view));
            }
            (state.status(), deliveries)
        };
        self.inner.on_status.emit(status);
        for (on_view, view) in deliveries {
            on_view.emit(view);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_stable_names_and_human_labels() {
        assert_eq!(ConnectionState::Online.as_str(), "online");
        assert_eq!(ConnectionState::Connecting.as_str(), "connecting");
        assert_eq!(ConnectionState::Offline.as_str(), "offline");
        assert_eq!(ConnectionState::Online.label(), "Online");
        assert_eq!(ConnectionState::Connecting.label(), "Connecting…");
        assert_eq!(ConnectionState::Offline.label(), "Offline");
    }

    #[test]
    fn the_status_starts_connecting_with_storage_opening() {
        let status = RealtimeStatus::default();
        assert_eq!(status.state, ConnectionState::Connecting);
        assert_eq!(status.storage, StorageMode::Opening);
        assert_eq!(status.pending, 0);
    }

    #[test]
    fn a_changed_role_or_a_revoked_session_waits_for_the_session() {
        assert_eq!(after_close(close_code::SESSION_REVOKED), AfterClose::Hold);
        assert_eq!(after_close(close_code::ACCESS_CHANGED), AfterClose::Hold);
        assert_eq!(after_close(close_code::GOING_AWAY), AfterClose::Retry);
        assert_eq!(after_close(1006), AfterClose::Retry);
        assert!(describe_close(close_code::ACCESS_CHANGED, "", true).contains("role changed"));
    }

    #[test]
    fn close_codes_are_explained() {
        assert_eq!(
            describe_close(1006, "", false),
            "Could not connect to the server."
        );
        assert_eq!(
            describe_close(1006, "", true),
            "The connection closed (code 1006)."
        );
        assert_eq!(
            describe_close(close_code::GOING_AWAY, "restart", true),
            "The server is restarting or shutting down. (restart)"
        );
        assert!(describe_close(close_code::HEARTBEAT_TIMEOUT, " ", true).contains("in time"));
        assert!(describe_close(close_code::SLOW_CONSUMER, "", true).contains("behind"));
    }
}
