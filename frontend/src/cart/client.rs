//! The cart's browser glue around the pure [`super::model::CartReplica`]:
//! - [`CartStorage`]: the IndexedDB database `meridian-cart` (object store `state`: the
//!   confirmed view and the catalog; `pending`: one op per key), or memory when
//!   IndexedDB cannot be used.
//! - [`CartClient`]: sends pending ops (batches of at most [`MAX_OPS_PER_REQUEST`], a
//!   refused batch op by op), retries with backoff and when the network or the realtime
//!   channel comes back, follows the cart's realtime topic, refetches on a session
//!   change, and tells the other tabs over the BroadcastChannel `meridian-cart` when the
//!   pending ops change, so that they reread storage.
//!
//! Invariants: those of the model, and no `RefCell` borrow is held while a callback into
//! Yew or the realtime client runs, or across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use meridian_shared::cart::{CartOpInput, CartOpsRequest, CartOwner, CartView, Product};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{BroadcastChannel, MessageEvent};
use yew::Callback;

use super::api;
use super::model::*;
use crate::browser::{self, WindowListener};
use crate::net::realtime::{Realtime, TopicView, TopicWatch};
use crate::net::socket::Backoff;
use crate::store::idb::{Database, IdbError};

// ---------------------------------------------------------------------------------------
// Storage

/// Where the cart is kept.
#[derive(Debug, Clone)]
pub enum CartStorage {
    IndexedDb(Database),
    /// IndexedDB could not be used, for the reason given: the cart lives as long as the
    /// tab.
    Memory(String),
}

impl CartStorage {
    pub async fn open() -> CartStorage {
        match Database::open(
            DATABASE_NAME,
            DATABASE_VERSION,
            &[STATE_STORE, PENDING_STORE],
        )
        .await
        {
            Ok(db) => CartStorage::IndexedDb(db),
            Err(error) => CartStorage::Memory(error.0),
        }
    }

    pub fn memory_reason(&self) -> Option<&str> {
        match self {
            CartStorage::IndexedDb(_) => None,
            CartStorage::Memory(reason) => Some(reason),
        }
    }

    /// Everything stored; `Ok(None)` in memory mode.
    pub async fn load(&self) -> Result<Option<StoredCart>, IdbError> {
        let CartStorage::IndexedDb(db) = self else {
            return Ok(None);
        };
        let state = db.get_all(STATE_STORE).await?;
        let pending = db.get_all(PENDING_STORE).await?;
        Ok(Some(StoredCart::decode(&state, &pending)))
    }

    pub async fn put_pending(&self, pending: &PendingOp) -> Result<(), IdbError> {
        match self {
            CartStorage::IndexedDb(db) => {
                db.put(PENDING_STORE, &pending.op.op_id, &pending.to_json())
                    .await
            }
            CartStorage::Memory(_) => Ok(()),
        }
    }

    pub async fn delete_pending(&self, op_id: &str) -> Result<(), IdbError> {
        match self {
            CartStorage::IndexedDb(db) => db.delete(PENDING_STORE, op_id).await,
            CartStorage::Memory(_) => Ok(()),
        }
    }

    pub async fn put_state(&self, key: &str, record: &StateRecord) -> Result<(), IdbError> {
        match self {
            CartStorage::IndexedDb(db) => db.put(STATE_STORE, key, &record.to_json()).await,
            CartStorage::Memory(_) => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Browser glue

/// Everything the cart page renders, as one value.
#[derive(Debug, Clone, PartialEq)]
pub struct CartSnapshot {
    /// Storage has been read (or found unusable).
    pub restored: bool,
    /// The server answered `GET /api/cart` since the page opened.
    pub server_loaded: bool,
    pub confirmed: Option<CartView>,
    pub display: CartDisplay,
    pub pending: usize,
    pub catalog: Option<Rc<Vec<Product>>>,
    pub catalog_error: Option<String>,
    /// Why the cart could not be loaded (not for a network failure, which is `offline`).
    pub load_error: Option<String>,
    pub sync: SyncState,
    /// Why the last sync failed, when it did for another reason than the network.
    pub failing: Option<String>,
    pub refusals: Vec<Refusal>,
    /// Set when the cart cannot be kept on this device (memory only).
    pub storage_note: Option<String>,
    /// The last intent that made nothing, for a hint.
    pub hint: Option<String>,
}

impl Default for CartSnapshot {
    fn default() -> CartSnapshot {
        CartSnapshot {
            restored: false,
            server_loaded: false,
            confirmed: None,
            display: CartDisplay::default(),
            pending: 0,
            catalog: None,
            catalog_error: None,
            load_error: None,
            sync: SyncState::Synced,
            failing: None,
            refusals: Vec::new(),
            storage_note: None,
            hint: None,
        }
    }
}

impl CartSnapshot {
    /// Whose cart is shown: the server's word, else the session's.
    pub fn owner(&self, session_is_user: bool) -> CartOwner {
        match &self.confirmed {
            Some(view) => view.owner,
            None if session_is_user => CartOwner::User,
            None => CartOwner::Guest,
        }
    }
}

/// How many refusals are kept to show.
const REFUSALS_KEPT: usize = 5;

/// The cart's end of the BroadcastChannel. Dropping it closes the channel.
struct CartChannel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

/// The one message: "the pending ops in storage changed, reread them".
const CHANGED_MESSAGE: &str = r#"{"type":"cart_changed"}"#;

impl CartChannel {
    fn open(on_changed: impl Fn() + 'static) -> Option<CartChannel> {
        let channel = BroadcastChannel::new(CHANNEL_NAME).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if event.data().as_string().as_deref() == Some(CHANGED_MESSAGE) {
                on_changed();
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some(CartChannel {
            channel,
            _on_message: on_message,
        })
    }

    fn post(&self) {
        let _ = self
            .channel
            .post_message(&JsValue::from_str(CHANGED_MESSAGE));
    }
}

impl Drop for CartChannel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

struct State {
    replica: CartReplica,
    catalog: Option<Rc<Vec<Product>>>,
    catalog_error: Option<String>,
    catalog_loading: bool,
    /// `None` while IndexedDB is being opened.
    storage: Option<CartStorage>,
    /// Pending ops of this tab not (yet) in storage.
    unsaved: BTreeSet<String>,
    restored: bool,
    server_loaded: bool,
    load_error: Option<String>,
    /// The last request found no network.
    offline: bool,
    failing: Option<String>,
    refusals: Vec<Refusal>,
    hint: Option<String>,
    flushing: bool,
    failed_attempts: u32,
    retry: Option<Timeout>,
    /// The session as the page knows it; a change bumps `epoch`, and answers to requests
    /// made under an older epoch no longer set `confirmed`.
    session_id: Option<String>,
    epoch: u64,
    /// Numbers the refreshes; only the latest one's answer is taken.
    refresh_seq: u64,
    watch_topic: Option<String>,
    watch: Option<TopicWatch>,
    last_event_seq: u64,
    channel: Option<CartChannel>,
    listeners: Vec<WindowListener>,
    stopped: bool,
}

struct Inner {
    state: RefCell<State>,
    realtime: Option<Realtime>,
    on_change: Callback<CartSnapshot>,
}

/// The cart page's replica, synchronised with the server and the other tabs. Clones
/// share one client.
#[derive(Clone)]
pub struct CartClient {
    inner: Rc<Inner>,
}

impl PartialEq for CartClient {
    fn eq(&self, other: &CartClient) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// 16 random bytes from `crypto.getRandomValues`, else from `Math.random`.
fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let filled = web_sys::window()
        .and_then(|window| window.crypto().ok())
        .is_some_and(|crypto| crypto.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !filled {
        for byte in bytes.iter_mut() {
            *byte = (browser::random_unit() * 256.0) as u8;
        }
    }
    bytes
}

fn now_ms() -> u64 {
    browser::now_ms().max(0) as u64
}

impl CartClient {
    /// A client that reports every change to `on_change`; nothing happens before
    /// [`CartClient::start`].
    pub fn new(realtime: Option<Realtime>, on_change: Callback<CartSnapshot>) -> CartClient {
        let node: String = random_bytes()[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        CartClient {
            inner: Rc::new(Inner {
                state: RefCell::new(State {
                    replica: CartReplica::new(format!("tab-{node}")),
                    catalog: None,
                    catalog_error: None,
                    catalog_loading: false,
                    storage: None,
                    unsaved: BTreeSet::new(),
                    restored: false,
                    server_loaded: false,
                    load_error: None,
                    offline: false,
                    failing: None,
                    refusals: Vec::new(),
                    hint: None,
                    flushing: false,
                    failed_attempts: 0,
                    retry: None,
                    session_id: None,
                    epoch: 0,
                    refresh_seq: 0,
                    watch_topic: None,
                    watch: None,
                    last_event_seq: 0,
                    channel: None,
                    listeners: Vec::new(),
                    stopped: false,
                }),
                realtime,
                on_change,
            }),
        }
    }

    /// Opens storage and the tab channel, listens for the network, loads the catalog
    /// and the cart, and sends what is pending.
    pub fn start(&self) {
        self.listen_to_window();
        let weak = Rc::downgrade(&self.inner);
        let channel = CartChannel::open(move || {
            if let Some(client) = CartClient::upgrade(&weak) {
                client.reload_from_storage();
            }
        });
        self.inner.state.borrow_mut().channel = channel;
        self.fetch_catalog();
        self.refresh();
        let client = self.clone();
        spawn_local(async move {
            let storage = CartStorage::open().await;
            let loaded = storage.load().await;
            let accepted = {
                let mut state = client.inner.state.borrow_mut();
                let state = &mut *state;
                state.storage = Some(storage.clone());
                state.restored = true;
                match loaded {
                    Ok(Some(stored)) => {
                        if state.catalog.is_none() {
                            state.catalog = stored.catalog.clone().map(Rc::new);
                        }
                        Some(state.replica.merge_stored(stored, &state.unsaved))
                    }
                    Ok(None) => None,
                    Err(error) => {
                        state.hint = Some(format!("Could not read the saved cart: {error}."));
                        None
                    }
                }
            };
            if let Some(accepted) = accepted {
                client.persist(accepted, false);
            }
            client.save_unsaved().await;
            client.ensure_watch();
            client.emit();
            client.flush();
        });
    }

    /// Stops every listener, timer and subscription (the page is closing).
    pub fn stop(&self) {
        let (watch, channel, listeners, retry) = {
            let mut state = self.inner.state.borrow_mut();
            state.stopped = true;
            (
                state.watch.take(),
                state.channel.take(),
                std::mem::take(&mut state.listeners),
                state.retry.take(),
            )
        };
        drop((watch, channel, listeners, retry));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> CartSnapshot {
        let state = self.inner.state.borrow();
        let pending = state.replica.pending().len();
        let offline = state.offline || !browser::navigator_online();
        let failing = state.failing.is_some() || state.load_error.is_some();
        CartSnapshot {
            restored: state.restored,
            server_loaded: state.server_loaded,
            confirmed: state.replica.confirmed().cloned(),
            display: state
                .replica
                .display(state.catalog.as_ref().map(|catalog| catalog.as_slice())),
            pending,
            catalog: state.catalog.clone(),
            catalog_error: state.catalog_error.clone(),
            load_error: state.load_error.clone(),
            sync: SyncState::of(pending, state.server_loaded, offline, failing),
            failing: state.failing.clone(),
            refusals: state.refusals.clone(),
            storage_note: state
                .storage
                .as_ref()
                .and_then(|storage| storage.memory_reason())
                .map(|reason| {
                    format!(
                        "This browser is not keeping your cart on this device ({reason}). Changes not yet sent are lost if you close the tab."
                    )
                }),
            hint: state.hint.clone(),
        }
    }

    /// Acts on what the user asked for: the change shows at once, is stored, then sent.
    pub fn act(&self, intent: CartIntent) {
        let made = {
            let mut state = self.inner.state.borrow_mut();
            let op_id = op_id_from_bytes(random_bytes());
            match state.replica.local(&intent, op_id, now_ms()) {
                Ok(op) => {
                    state.hint = None;
                    state.unsaved.insert(op.op_id.clone());
                    Some(op)
                }
                Err(error) => {
                    state.hint = Some(error.message());
                    None
                }
            }
        };
        self.emit();
        if made.is_none() {
            return;
        }
        let client = self.clone();
        spawn_local(async move {
            client.save_unsaved().await;
            client.flush();
        });
    }

    /// Forgets a refusal the user has read.
    pub fn dismiss_refusal(&self, op_id: &str) {
        self.inner
            .state
            .borrow_mut()
            .refusals
            .retain(|refusal| refusal.op.op_id != op_id);
        self.emit();
    }

    /// The page learned its session. A change (sign-in, sign-up, sign-out, here or in
    /// another tab) refetches the cart, follows the new cart's topic, and then sends
    /// what is pending to it.
    pub fn session_seen(&self, session_id: Option<String>) {
        let switched = {
            let mut state = self.inner.state.borrow_mut();
            let switched =
                matches!((&state.session_id, &session_id), (Some(old), Some(new)) if old != new);
            if session_id.is_some() {
                state.session_id = session_id;
            }
            if switched {
                state.epoch += 1;
                state.server_loaded = false;
            }
            switched
        };
        if switched {
            self.refresh();
        }
    }

    /// The realtime channel connected again: events may have been missed and the
    /// session may have changed, so the cart is refetched, then what is pending is sent.
    pub fn connection_online(&self) {
        self.network_back();
    }

    /// `GET /api/cart`, then sends what is pending. A later refresh supersedes one in
    /// flight.
    pub fn refresh(&self) {
        let seq = {
            let mut state = self.inner.state.borrow_mut();
            if state.stopped {
                return;
            }
            state.refresh_seq += 1;
            state.refresh_seq
        };
        let client = self.clone();
        spawn_local(async move {
            let result = api::cart().await;
            let accepted = {
                let mut state = client.inner.state.borrow_mut();
                if state.refresh_seq != seq {
                    // A newer refresh (after a session change or a reconnect) is under
                    // way: only its answer counts.
                    return;
                }
                match result {
                    Ok(view) => {
                        state.server_loaded = true;
                        state.load_error = None;
                        state.offline = false;
                        Some(state.replica.accept_server_view(view))
                    }
                    Err(error) if error.is_network() => {
                        state.offline = true;
                        None
                    }
                    Err(error) => {
                        state.load_error = Some(error.message());
                        None
                    }
                }
            };
            let loaded = accepted.is_some();
            if let Some(accepted) = accepted {
                client.persist(accepted, false);
                client.ensure_watch();
            }
            client.emit();
            if loaded {
                client.flush();
                if client.inner.state.borrow().catalog.is_none() {
                    client.fetch_catalog();
                }
            } else {
                client.schedule_retry();
            }
        });
    }

    /// Asks for the catalog again (after it failed to load).
    pub fn reload_catalog(&self) {
        self.fetch_catalog();
    }

    fn fetch_catalog(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            if state.catalog_loading {
                return;
            }
            state.catalog_loading = true;
        }
        let client = self.clone();
        spawn_local(async move {
            let result = api::products().await;
            let store = {
                let mut state = client.inner.state.borrow_mut();
                state.catalog_loading = false;
                match result {
                    Ok(list) => {
                        state.catalog_error = None;
                        state.catalog = Some(Rc::new(list.products.clone()));
                        state
                            .storage
                            .clone()
                            .map(|storage| (storage, list.products))
                    }
                    Err(error) => {
                        state.catalog_error = Some(error.message());
                        None
                    }
                }
            };
            client.emit();
            if let Some((storage, products)) = store {
                let _ = storage
                    .put_state(CATALOG_KEY, &StateRecord::Catalog { products })
                    .await;
            }
        });
    }

    /// Sends the pending ops, oldest first, one request at a time, until none is left or
    /// a request fails for the network or a passing reason (then a retry is scheduled).
    /// A refused batch is sent again op by op; a refused op is dropped and shown.
    pub fn flush(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            if state.flushing || state.stopped || state.storage.is_none() || !state.server_loaded {
                // A flush under way rereads the pending ops before every request. Before
                // storage is read, the stored ops are not known yet; before the session's
                // cart is known, ops made against another cart cannot be rebased.
                return;
            }
            state.flushing = true;
        }
        let client = self.clone();
        spawn_local(async move {
            client.flush_loop().await;
            client.inner.state.borrow_mut().flushing = false;
        });
    }

    async fn flush_loop(&self) {
        let mut sender = Sender::default();
        loop {
            let (batch, epoch) = {
                let state = self.inner.state.borrow();
                if state.stopped {
                    return;
                }
                (sender.next(&state.replica), state.epoch)
            };
            if batch.is_empty() {
                return;
            }
            if !browser::navigator_online() {
                self.inner.state.borrow_mut().offline = true;
                self.emit();
                self.schedule_retry();
                return;
            }
            let request = CartOpsRequest {
                ops: batch.iter().cloned().map(CartOpInput::from).collect(),
            };
            let outcome = match api::cart_ops(&request).await {
                Ok(view) => SendOutcome::Applied(view),
                Err(error) => SendOutcome::Failed {
                    failure: SendFailure::of(&error),
                    code: error.code().map(str::to_owned),
                    message: error.message(),
                },
            };
            let step = {
                let mut state = self.inner.state.borrow_mut();
                let state = &mut *state;
                let same_session = state.epoch == epoch;
                let step = sender.answer(&mut state.replica, &batch, outcome, same_session);
                match &step {
                    SendStep::Continue { accepted, refusal } => {
                        state.offline = false;
                        if refusal.is_none() {
                            state.failing = None;
                            state.failed_attempts = 0;
                        }
                        for op_id in &accepted.dropped {
                            state.unsaved.remove(op_id);
                        }
                        if let Some(refusal) = refusal {
                            state.refusals.push(Refusal::clone(refusal));
                            let excess = state.refusals.len().saturating_sub(REFUSALS_KEPT);
                            state.refusals.drain(..excess);
                        }
                    }
                    SendStep::Stop {
                        failure: SendFailure::Network,
                        ..
                    } => state.offline = true,
                    SendStep::Stop { message, .. } => state.failing = Some(message.clone()),
                }
                step
            };
            match step {
                SendStep::Continue { accepted, .. } => {
                    let tell = !accepted.dropped.is_empty();
                    self.persist(accepted, tell);
                    self.ensure_watch();
                    self.emit();
                }
                SendStep::Stop { .. } => {
                    self.emit();
                    self.schedule_retry();
                    return;
                }
            }
        }
    }

    /// Tries again after an exponential backoff with full jitter.
    fn schedule_retry(&self) {
        let mut state = self.inner.state.borrow_mut();
        if state.stopped {
            return;
        }
        let delay = Backoff::REALTIME
            .delay_ms(state.failed_attempts, browser::random_unit())
            .max(200);
        state.failed_attempts = state.failed_attempts.saturating_add(1);
        let weak = Rc::downgrade(&self.inner);
        state.retry = Some(Timeout::new(delay, move || {
            if let Some(client) = CartClient::upgrade(&weak) {
                client.inner.state.borrow_mut().retry = None;
                let loaded = client.inner.state.borrow().server_loaded;
                if loaded {
                    client.flush();
                } else {
                    client.refresh();
                }
            }
        }));
    }

    /// The network or the realtime channel is back. The session may have changed
    /// meanwhile (a sign-in in another tab), so nothing is sent before the session's cart
    /// is fetched again: pending ops made against another cart are rebased first.
    fn network_back(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.offline = false;
            state.failed_attempts = 0;
            state.server_loaded = false;
        }
        self.emit();
        self.refresh();
        if self.inner.state.borrow().catalog.is_none() {
            self.fetch_catalog();
        }
    }

    /// Writes what changed to storage and, with `tell`, then tells the other tabs that
    /// the pending ops changed.
    fn persist(&self, accepted: Accepted, tell: bool) {
        let (storage, confirmed) = {
            let state = self.inner.state.borrow();
            let Some(storage) = state.storage.clone() else {
                return;
            };
            let confirmed = accepted
                .confirmed_changed
                .then(|| state.replica.confirmed().cloned())
                .flatten();
            (storage, confirmed)
        };
        if accepted == Accepted::default() && !tell {
            return;
        }
        let client = self.clone();
        spawn_local(async move {
            if let Some(view) = confirmed {
                let _ = storage
                    .put_state(CONFIRMED_KEY, &StateRecord::Confirmed { view })
                    .await;
            }
            for pending in &accepted.rewritten {
                let _ = storage.put_pending(pending).await;
            }
            for op_id in &accepted.dropped {
                let _ = storage.delete_pending(op_id).await;
            }
            if tell {
                client.post();
            }
        });
    }

    /// Writes this tab's ops that are not stored yet, then tells the other tabs.
    async fn save_unsaved(&self) {
        let (storage, ops) = {
            let state = self.inner.state.borrow();
            let Some(storage) = state.storage.clone() else {
                return;
            };
            let ops: Vec<PendingOp> = state
                .replica
                .pending()
                .iter()
                .filter(|pending| state.unsaved.contains(&pending.op.op_id))
                .cloned()
                .collect();
            (storage, ops)
        };
        if storage.memory_reason().is_some() {
            // Memory is the only copy.
            self.inner.state.borrow_mut().unsaved.clear();
            return;
        }
        let mut wrote = false;
        for pending in &ops {
            match storage.put_pending(pending).await {
                Ok(()) => {
                    let settled = {
                        let mut state = self.inner.state.borrow_mut();
                        state.unsaved.remove(&pending.op.op_id);
                        !state.replica.is_pending(&pending.op.op_id)
                    };
                    if settled {
                        // Acknowledged while it was being written: do not leave it.
                        let _ = storage.delete_pending(&pending.op.op_id).await;
                    }
                    wrote = true;
                }
                Err(error) => {
                    self.inner.state.borrow_mut().hint = Some(format!(
                        "Could not save a change on this device ({error}); it is kept in this tab until it is sent."
                    ));
                }
            }
        }
        if wrote {
            self.post();
        }
    }

    /// Another tab changed the stored cart: reread it.
    fn reload_from_storage(&self) {
        let Some(storage) = self.inner.state.borrow().storage.clone() else {
            return;
        };
        let client = self.clone();
        spawn_local(async move {
            let loaded = storage.load().await;
            let accepted = {
                let mut state = client.inner.state.borrow_mut();
                match loaded {
                    Ok(Some(stored)) => {
                        let unsaved = state.unsaved.clone();
                        Some(state.replica.merge_stored(stored, &unsaved))
                    }
                    _ => None,
                }
            };
            if let Some(accepted) = accepted {
                // Deleting settled ops is news for the other tabs; a rebase is not (each
                // tab rebases onto its own view, and telling would echo between them).
                let tell = !accepted.dropped.is_empty();
                client.persist(accepted, tell);
            }
            client.emit();
        });
    }

    fn post(&self) {
        if let Some(channel) = &self.inner.state.borrow().channel {
            channel.post();
        }
    }

    /// Follows the confirmed cart's realtime topic (again, if it changed).
    fn ensure_watch(&self) {
        let Some(realtime) = self.inner.realtime.clone() else {
            return;
        };
        let topic = {
            let mut state = self.inner.state.borrow_mut();
            let Some(topic) = state.replica.confirmed().map(|view| view.topic.clone()) else {
                return;
            };
            if state.stopped || state.watch_topic.as_deref() == Some(topic.as_str()) {
                return;
            }
            state.watch = None;
            state.watch_topic = Some(topic.clone());
            state.last_event_seq = 0;
            topic
        };
        let weak = Rc::downgrade(&self.inner);
        // `watch` reports the topic's current view at once: no borrow may be held here.
        let watch = realtime.watch(
            &topic,
            false,
            Callback::from(move |view: TopicView| {
                if let Some(client) = CartClient::upgrade(&weak) {
                    client.on_topic(view);
                }
            }),
        );
        let mut state = self.inner.state.borrow_mut();
        if state.watch_topic.as_deref() == Some(topic.as_str()) && !state.stopped {
            state.watch = Some(watch);
        }
    }

    fn on_topic(&self, view: TopicView) {
        let accepted = {
            let mut state = self.inner.state.borrow_mut();
            if state.watch_topic.as_deref() != Some(view.topic.as_str()) {
                return;
            }
            let (newest, highest) = newest_event_view(&view, state.last_event_seq);
            state.last_event_seq = highest;
            match newest {
                Some(cart) => state.replica.accept_event_view(cart),
                None => return,
            }
        };
        if accepted.confirmed_changed {
            self.persist(accepted, false);
            self.emit();
        }
    }

    fn listen_to_window(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut listeners = Vec::new();
        for (event, online) in [("online", true), ("offline", false)] {
            let weak = Rc::downgrade(&self.inner);
            let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
                if let Some(client) = CartClient::upgrade(&weak) {
                    if online {
                        client.network_back();
                    } else {
                        client.inner.state.borrow_mut().offline = true;
                        client.emit();
                    }
                }
            });
            if let Some(listener) = WindowListener::add(&window, event, closure) {
                listeners.push(listener);
            }
        }
        self.inner.state.borrow_mut().listeners = listeners;
    }

    fn emit(&self) {
        if self.inner.state.borrow().stopped {
            return;
        }
        let snapshot = self.snapshot();
        self.inner.on_change.emit(snapshot);
    }

    fn upgrade(inner: &Weak<Inner>) -> Option<CartClient> {
        inner.upgrade().map(|inner| CartClient { inner })
    }
}
