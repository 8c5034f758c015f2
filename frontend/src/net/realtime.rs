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
    let reason = reason.trim();
    if reason.is_empty() {
        what
    } else {
        format!("{what} ({reason})")
    }
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
        let result = http::me().await;
        if let Ok(me) = &result {
            self.inner.state.borrow_mut().session_id = Some(me.session_id.clone());
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

    fn listen_to_window(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut listeners = Vec::new();
        for event in ["online", "offline", "focus"] {
            let client = Rc::downgrade(&self.inner);
            let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
                if let Some(client) = Realtime::upgrade(&client) {
                    match event {
                        "online" => client.browser_online(),
                        "offline" => client.browser_offline(),
                        _ => client.recheck_session(),
                    }
                }
            });
            if let Some(listener) = WindowListener::add(&window, event, closure) {
                listeners.push(listener);
            }
        }
        self.inner.state.borrow_mut().listeners = listeners;
    }

    fn open_tab_channel(&self) {
        let client = Rc::downgrade(&self.inner);
        let channel = TabChannel::open(move |message| {
            if let Some(client) = Realtime::upgrade(&client) {
                match message {
                    TabMessage::AuthChanged => client.refresh_session(false),
                    TabMessage::OutboxChanged => client.reload_outbox(),
                }
            }
        });
        // Without BroadcastChannel the tab works alone; nothing else depends on it.
        self.inner.state.borrow_mut().tab = channel.ok();
    }

    fn open_storage(&self) {
        let client = self.clone();
        spawn_local(async move {
            let store = OutboxStore::open().await;
            let loaded = store.load().await;
            let waiting: Vec<OutboxOp> = {
                let mut state = client.inner.state.borrow_mut();
                let state = &mut *state;
                state.storage = match store.memory_reason() {
                    None => StorageMode::IndexedDb,
                    Some(reason) => StorageMode::Memory(reason.to_owned()),
                };
                state.store = Some(store.clone());
                match loaded {
                    Ok(Some(ops)) => {
                        for op in ops {
                            if !state.settled.contains(&op.op_id) {
                                state.outbox.insert(op);
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        state.last_error =
                            Some(format!("Could not read the offline queue: {error}."));
                    }
                }
                let waiting = state
                    .outbox
                    .ops()
                    .iter()
                    .filter(|op| state.unsaved.contains(&op.op_id))
                    .cloned()
                    .collect();
                if store.memory_reason().is_some() {
                    // Nothing to write to: memory is the only copy.
                    state.unsaved.clear();
                    Vec::new()
                } else {
                    waiting
                }
            };
            let mut wrote = false;
            for op in &waiting {
                match store.put(op).await {
                    Ok(()) => {
                        client.inner.state.borrow_mut().unsaved.remove(&op.op_id);
                        wrote = true;
                    }
                    Err(error) => {
                        client.inner.state.borrow_mut().last_error = Some(format!(
                            "Could not save a message to the offline queue ({error}); it is kept in memory until it is sent."
                        ));
                    }
                }
            }
            if wrote {
                client.inner.state.borrow().post(TabMessage::OutboxChanged);
            }
            client.changed(Changed::AllTopics);
            let online = {
                let state = client.inner.state.borrow();
                (state.conn == ConnectionState::Online).then_some(state.generation)
            };
            if let Some(generation) = online {
                client.replay_outbox(generation);
            }
        });
    }

    fn op_stored(&self, op: OutboxOp, stored: Result<(), IdbError>) {
        let topic = op.topic.clone();
        {
            let mut state = self.inner.state.borrow_mut();
            if let Err(error) = &stored {
                state.last_error = Some(format!(
                    "Could not save a message to the offline queue ({error}); it is kept in memory until it is sent."
                ));
                state.unsaved.insert(op.op_id.clone());
            }
            if state.conn == ConnectionState::Online {
                state.send(&State::publish_message(&op));
            }
            state.outbox.insert(op);
            if stored.is_ok() {
                state.post(TabMessage::OutboxChanged);
            }
        }
        self.changed(Changed::Topic(topic));
    }

    /// Rereads storage into the queue (keeping unsaved ops, leaving out settled ones and
    /// ones whose event has already been seen).
    async fn reload_outbox_now(&self) {
        let Some(store) = self.inner.state.borrow().store.clone() else {
            return;
        };
        let loaded = store.load().await;
        let applied: Vec<String> = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            match loaded {
                Ok(Some(mut ops)) => {
                    ops.extend(
                        state
                            .outbox
                            .ops()
                            .iter()
                            .filter(|op| state.unsaved.contains(&op.op_id))
                            .cloned(),
                    );
                    let settled = &state.settled;
                    state
                        .outbox
                        .replace_all(ops, |op_id| settled.contains(op_id));
                    let applied: Vec<String> = state
                        .outbox
                        .ops()
                        .iter()
                        .filter(|op| {
                            state
                                .topics
                                .get(&op.topic)
                                .is_some_and(|log| log.contains_op(&op.op_id))
                        })
                        .map(|op| op.op_id.clone())
                        .collect();
                    for op_id in &applied {
                        state.settle(op_id);
                    }
                    applied
                }
                Ok(None) => Vec::new(),
                Err(error) => {
                    state.last_error = Some(format!("Could not read the offline queue: {error}."));
                    Vec::new()
                }
            }
        };
        if !applied.is_empty() {
            self.forget_stored(applied);
        }
    }

    /// Deletes settled ops from storage, then tells the other tabs.
    fn forget_stored(&self, op_ids: Vec<String>) {
        let Some(store) = self.inner.state.borrow().store.clone() else {
            return;
        };
        let client = self.clone();
        spawn_local(async move {
            for op_id in &op_ids {
                if let Err(error) = store.delete(op_id).await {
                    client.inner.state.borrow_mut().last_error =
                        Some(format!("Could not update the offline queue: {error}."));
                }
            }
            client.inner.state.borrow().post(TabMessage::OutboxChanged);
        });
    }

    /// Sends the whole outbox, in order, if connection `generation` is still the current
    /// one, after rereading storage for other tabs' ops.
    fn replay_outbox(&self, generation: u64) {
        let client = self.clone();
        spawn_local(async move {
            client.reload_outbox_now().await;
            {
                let state = client.inner.state.borrow();
                if state.generation != generation || state.conn != ConnectionState::Online {
                    return;
                }
                for op in state.outbox.ops() {
                    state.send(&State::publish_message(op));
                }
            }
            client.changed(Changed::AllTopics);
        });
    }

    /// Feeds the link and does what it asks.
    fn input(&self, input: LinkInput) {
        let commands = self.inner.state.borrow_mut().link.handle(input);
        self.run(commands);
    }

    fn run(&self, commands: Vec<LinkCommand>) {
        if commands.is_empty() {
            return;
        }
        for command in commands {
            match command {
                LinkCommand::Connect => self.open_socket(),
                LinkCommand::Close => {
                    let mut state = self.inner.state.borrow_mut();
                    state.drop_connection();
                    state.conn = ConnectionState::Offline;
                }
                LinkCommand::RetryIn(delay) => {
                    let mut state = self.inner.state.borrow_mut();
                    state.conn = ConnectionState::Offline;
                    let client = Rc::downgrade(&self.inner);
                    state.retry = Some(Timeout::new(delay, move || {
                        if let Some(client) = Realtime::upgrade(&client) {
                            client.inner.state.borrow_mut().retry = None;
                            client.input(LinkInput::RetryDue);
                        }
                    }));
                }
                LinkCommand::CancelRetry => {
                    let retry = self.inner.state.borrow_mut().retry.take();
                    drop(retry);
                }
            }
        }
        self.changed(Changed::AllTopics);
    }

    /// Opens a new socket in place of any, as the current generation.
    fn open_socket(&self) {
        let opened = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.drop_connection();
            state.generation += 1;
            let generation = state.generation;
            let on_frame = Rc::downgrade(&self.inner);
            let on_close = Rc::downgrade(&self.inner);
            let events = SocketEvents {
                // The server's `welcome` says the connection is usable, not the open.
                on_open: Box::new(|| {}),
                on_frame: Box::new(move |frame| {
                    if let (Some(client), Frame::Text(text)) = (Realtime::upgrade(&on_frame), frame)
                    {
                        client.on_text(generation, &text);
                    }
                }),
                on_close: Box::new(move |code, reason| {
                    if let Some(client) = Realtime::upgrade(&on_close) {
                        client.on_close(generation, code, &reason);
                    }
                }),
            };
            match Socket::open(&state.url, events) {
                Ok(socket) => {
                    state.socket = Some(socket);
                    let client = Rc::downgrade(&self.inner);
                    state.welcome_deadline = Some(Timeout::new(WELCOME_TIMEOUT_MS, move || {
                        if let Some(client) = Realtime::upgrade(&client) {
                            client.welcome_overdue(generation);
                        }
                    }));
                    state.conn = ConnectionState::Connecting;
                    true
                }
                Err(_) => {
                    state.last_error = Some("This browser refused to open the connection.".into());
                    false
                }
            }
        };
        if !opened {
            self.input(LinkInput::Closed {
                after: AfterClose::Retry,
                jitter: browser::random_unit(),
            });
        }
    }

    fn connection_lost(&self, reason: String) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.drop_connection();
            state.last_error = Some(reason);
        }
        self.input(LinkInput::Lost {
            jitter: browser::random_unit(),
        });
    }

    fn welcome_overdue(&self, generation: u64) {
        let overdue = {
            let state = self.inner.state.borrow();
            state.generation == generation && state.conn != ConnectionState::Online
        };
        if overdue {
            self.connection_lost("The server did not greet this page in time.".to_owned());
        }
    }

    fn browser_online(&self) {
        let probe = {
            let state = self.inner.state.borrow();
            (state.conn == ConnectionState::Online).then_some(state.generation)
        };
        // Forgets the backoff; connects unless a socket is open or opening.
        self.input(LinkInput::BrowserOnline);
        if let Some(generation) = probe {
            // The socket may have died while the network was away: ping it now rather
            // than at the next heartbeat.
            self.heartbeat_tick(generation);
        }
    }

    fn browser_offline(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.drop_connection();
            state.conn = ConnectionState::Offline;
            state.last_error = Some("This browser is offline.".to_owned());
        }
        // Closes and waits for the `online` event.
        self.input(LinkInput::BrowserOffline);
        self.changed(Changed::AllTopics);
    }

    fn heartbeat_tick(&self, generation: u64) {
        let dead = {
            let mut state = self.inner.state.borrow_mut();
            if state.generation != generation {
                return;
            }
            let now = browser::monotonic_ms();
            let Some((heartbeat, _)) = state.heartbeat.as_mut() else {
                return;
            };
            if heartbeat.is_dead(now) {
                true
            } else {
                let nonce = heartbeat.ping(now);
                state.send(&ClientMessage::Ping { nonce });
                self.arm_pong_deadline(&mut state, now);
                false
            }
        };
        if dead {
            self.connection_lost("The server stopped answering heartbeats.".to_owned());
        }
    }

    /// Sets the pong deadline for the oldest unanswered ping (or clears it when every
    /// ping is answered), so that silence is noticed exactly two intervals after it began
    /// rather than at the next tick.
    fn arm_pong_deadline(&self, state: &mut State, now: f64) {
        let due_in = state
            .heartbeat
            .as_ref()
            .and_then(|(heartbeat, _)| heartbeat.dead_in(now));
        let generation = state.generation;
        state.pong_deadline = due_in.map(|due_in| {
            let client = Rc::downgrade(&self.inner);
            // One extra millisecond so that the check never runs just before the line.
            let delay = (due_in.ceil() as u32).saturating_add(1);
            Timeout::new(delay, move || {
                if let Some(client) = Realtime::upgrade(&client) {
                    client.pong_overdue(generation);
                }
            })
        });
    }

    fn pong_overdue(&self, generation: u64) {
        let dead = {
            let mut state = self.inner.state.borrow_mut();
            if state.generation != generation {
                return;
            }
            let now = browser::monotonic_ms();
            let dead = state
                .heartbeat
                .as_ref()
                .is_some_and(|(heartbeat, _)| heartbeat.is_dead(now));
            if !dead {
                self.arm_pong_deadline(&mut state, now);
            }
            dead
        };
        if dead {
            self.connection_lost("The server stopped answering heartbeats.".to_owned());
        }
    }

    fn on_close(&self, generation: u64, code: u16, reason: &str) {
        {
            let mut state = self.inner.state.borrow_mut();
            if state.generation != generation {
                return;
            }
            let was_welcomed = state.connection.is_some();
            state.drop_connection();
            state.conn = ConnectionState::Offline;
            state.last_error = Some(if browser::navigator_online() {
                describe_close(code, reason, was_welcomed)
            } else {
                "This browser is offline.".to_owned()
            });
        }
        self.input(LinkInput::Closed {
            after: after_close(code),
            jitter: browser::random_unit(),
        });
        match code {
            close_code::SESSION_REVOKED => self.refresh_session(true),
            // The new role may allow more or less: the page learns it, and the new
            // connection carries it.
            close_code::ACCESS_CHANGED => self.refresh_session(false),
            _ => {}
        }
        self.changed(Changed::AllTopics);
    }

    fn on_text(&self, generation: u64, text: &str) {
        if self.inner.state.borrow().generation != generation {
            return;
        }
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(message) => self.on_message(generation, message),
            Err(error) => {
                self.inner.state.borrow_mut().last_error = Some(format!(
                    "The server sent a message this page cannot read ({error})."
                ));
                self.changed(Changed::Status);
            }
        }
    }

    fn on_message(&self, generation: u64, message: ServerMessage) {
        match message {
            ServerMessage::Welcome {
                connection_id,
                session_id,
                instance_id,
                heartbeat_ms,
            } => self.on_welcome(
                generation,
                Connection {
                    connection_id,
                    session_id,
                    instance_id,
                    heartbeat_ms,
                },
            ),
            ServerMessage::Subscribed {
                topic,
                head,
                truncated,
            } => {
                if let Some(log) = self.inner.state.borrow_mut().topics.get_mut(&topic) {
                    log.subscribed(head, truncated);
                }
                self.changed(Changed::Topic(topic));
            }
            ServerMessage::Unsubscribed { .. } => {}
            ServerMessage::Event(event) => self.on_event(event),
            ServerMessage::Ack {
                op_id, topic, seq, ..
            } => self.on_ack(op_id, topic, seq),
            ServerMessage::Error {
                code,
                message,
                op_id,
                topic,
            } => self.on_error(code, message, op_id, topic),
            ServerMessage::Pong { nonce } => {
                {
                    let mut state = self.inner.state.borrow_mut();
                    let now = browser::monotonic_ms();
                    if let Some(rtt) = state
                        .heartbeat
                        .as_mut()
                        .and_then(|(heartbeat, _)| heartbeat.pong(nonce, now))
                    {
                        state.rtt_ms = Some(rtt);
                        self.arm_pong_deadline(&mut state, now);
                    }
                }
                self.changed(Changed::Status);
            }
        }
    }

    fn on_welcome(&self, generation: u64, connection: Connection) {
        let session_differs = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.conn = ConnectionState::Online;
            // Only a scheduled retry can be cancelled here: there is none while a socket
            // is open, so nothing else is to be done.
            state.link.handle(LinkInput::Ready);
            state.retry = None;
            state.welcome_deadline = None;
            state.last_error = None;
            let session_differs = state.session_id.as_deref() != Some(&connection.session_id);

            let mut heartbeat = Heartbeat::new(connection.heartbeat_ms);
            let client = Rc::downgrade(&self.inner);
            let every = u32::try_from(heartbeat.every_ms()).unwrap_or(u32::MAX);
            let interval = Interval::new(every, move || {
                if let Some(client) = Realtime::upgrade(&client) {
                    client.heartbeat_tick(generation);
                }
            });
            // A first ping right away gives the round-trip time without waiting.
            let now = browser::monotonic_ms();
            let nonce = heartbeat.ping(now);
            send(&state.socket, &ClientMessage::Ping { nonce });
            state.heartbeat = Some((heartbeat, interval));
            self.arm_pong_deadline(state, now);
            state.connection = Some(connection);

            for log in state.topics.values_mut() {
                let since = log.subscribe_since();
                log.subscribing(since);
                send(
                    &state.socket,
                    &ClientMessage::Subscribe {
                        topic: log.topic().to_owned(),
                        since,
                    },
                );
            }
            session_differs
        };
        self.changed(Changed::AllTopics);
        if session_differs {
            // The socket's session is not the one the page shows (it changed while this
            // tab was not listening): learn who we are, without reconnecting.
            let client = self.clone();
            spawn_local(async move { client.fetch_session().await });
        }
        self.replay_outbox(generation);
    }

    fn on_event(&self, event: Event) {
        let topic = event.topic.clone();
        let op_id = event.op_id.clone();
        let (fresh, settled_own) = {
            let mut state = self.inner.state.borrow_mut();
            let Some(log) = state.topics.get_mut(&topic) else {
                return;
            };
            let fresh = log.event(event);
            // Our own op came back as an event: it is applied even if its ack was lost
            // with a connection.
            let settled_own = state.settle(&op_id).is_some();
            (fresh, settled_own)
        };
        if settled_own {
            self.forget_stored(vec![op_id]);
        }
        if fresh || settled_own {
            self.changed(Changed::Topic(topic));
        }
    }

    fn on_ack(&self, op_id: String, topic: String, seq: u64) {
        {
            let mut state = self.inner.state.borrow_mut();
            if let Some(op) = state.settle(&op_id) {
                if let Some(log) = state.topics.get_mut(&op.topic) {
                    log.acknowledged(Event {
                        topic: op.topic.clone(),
                        seq,
                        op_id: op.op_id.clone(),
                        payload: op.payload,
                        at_ms: browser::now_ms(),
                    });
                }
            }
        }
        // Deleted even when this tab did not queue it: it may be another tab's op,
        // replayed from storage.
        self.forget_stored(vec![op_id]);
        self.changed(Changed::Topic(topic));
    }

    fn on_error(
        &self,
        code: String,
        message: String,
        op_id: Option<String>,
        topic: Option<String>,
    ) {
        let permanent = is_permanent_error(&code);
        let mut forget = None;
        {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            match op_id {
                Some(op_id) if permanent => {
                    let op = state.settle(&op_id);
                    let topic = op.as_ref().map(|op| op.topic.clone()).or(topic);
                    match topic.and_then(|topic| state.topics.get_mut(&topic)) {
                        Some(log) => log.rejected(Rejection {
                            op_id: op_id.clone(),
                            code,
                            message,
                            payload: op.map(|op| op.payload).unwrap_or_default(),
                        }),
                        None => state.last_error = Some(message),
                    }
                    forget = Some(op_id);
                }
                Some(_) => {
                    state.last_error = Some(format!("{message} (retrying shortly)"));
                    self.schedule_resend(state);
                }
                None => {
                    match topic.and_then(|topic| state.topics.get_mut(&topic)) {
                        Some(log) => log.failed(message),
                        None => state.last_error = Some(message),
                    }
                    if !permanent {
                        self.schedule_resend(state);
                    }
                }
            }
        }
        if let Some(op_id) = forget {
            self.forget_stored(vec![op_id]);
        }
        self.changed(Changed::AllTopics);
    }

    /// After a passing error, tries again in [`RESEND_AFTER_MS`] on the same connection
    /// (a reconnect would retry anyway).
    fn schedule_resend(&self, state: &mut State) {
        if state.resend.is_some() {
            return;
        }
        let client = Rc::downgrade(&self.inner);
        let generation = state.generation;
        state.resend = Some(Timeout::new(RESEND_AFTER_MS, move || {
            if let Some(client) = Realtime::upgrade(&client) {
                client.resend(generation);
            }
        }));
    }

    /// Subscribes again to the topics a passing error left unsubscribed, and sends the
    /// outbox again.
    fn resend(&self, generation: u64) {
        {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.resend = None;
            if state.generation != generation || state.conn != ConnectionState::Online {
                return;
            }
            for log in state.topics.values_mut() {
                if !log.is_subscribed() && !log.is_requested() {
                    let since = log.subscribe_since();
                    log.subscribing(since);
                    send(
                        &state.socket,
                        &ClientMessage::Subscribe {
                            topic: log.topic().to_owned(),
                            since,
                        },
                    );
                }
            }
            for op in state.outbox.ops() {
                send(&state.socket, &State::publish_message(op));
            }
        }
        self.changed(Changed::AllTopics);
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
