//! One open document's sync engine ([`DocSession`]): the replica's traffic with the
//! server over the y-websocket protocol (`ws(s)://<host>/yjs/{doc_id}`), with IndexedDB
//! ([`super::persist`]) and with the other tabs of this browser (BroadcastChannel
//! `meridian-docs-{doc_id}`), and the participants' presence (awareness).
//!
//! Layout:
//! - [`SyncMachine`]: the connection's pure state machine (inputs in, commands out) and
//!   the [`SyncStatus`] it shows; tested natively.
//! - [`PresenceTable`]: awareness as y-protocols applies it (clocks, removals, renewal,
//!   expiry), this client's state, and the peers' cursors resolved against the replica;
//!   tested natively.
//! - [`decode_server_frame`], [`TabMessage`] and [`base64`]: the codecs.
//! - [`DocSession`]: the browser glue (WebSocket, timers, window events, storage, tabs):
//!   its state and public API here, its traffic with the server, the tabs and the window
//!   in `traffic.rs`, its IndexedDB copy in `storage.rs`.
//!
//! Files: `machine.rs` ([`SyncMachine`]), `presence.rs` ([`PresenceTable`]), `codec.rs`
//! (the codecs).
//!
//! The sequence: the stored updates are applied first (origin [`STORED_ORIGIN`]) so the
//! page renders at once, then the socket opens. On open the client sends its sync step 1
//! and its awareness state; it answers the server's step 1 with a step 2 (which carries
//! every edit made offline), applies the server's step 2 and updates with origin
//! [`REMOTE_ORIGIN`]. Every local update (any origin but remote, stored and tab) is sent,
//! stored and posted to the other tabs; remote and tab updates are stored only.
//!
//! "Saved" is known, not guessed: after sending local updates the client sends a step 1,
//! and the server answers it with a step 2 only after storing everything sent before it
//! (messages of one connection are processed in order). Until that answer arrives the
//! status is [`SyncStatus::Saving`]. A connection that stays silent is probed (a step 1)
//! after [`SILENCE_PROBE_MS`] and replaced after [`SILENCE_CLOSE_MS`]; a closed one is
//! reopened by the one reconnecting socket of the app ([`crate::net::socket`]: its
//! [`Link`] inside the [`SyncMachine`], its [`Socket`] in the glue), with exponential
//! backoff and full jitter capped at 10 s ([`Backoff::DOCUMENT`]), at once when the
//! browser comes back online.
//!
//! Presence: this tab's state is renewed every [`AWARENESS_RENEW_MS`]; peers not renewed
//! for [`AWARENESS_TIMEOUT_MS`] are removed; the tab says goodbye (a `null` state) on
//! `pagehide` and when the session closes, so its cursor disappears at once elsewhere.
//!
//! Invariants:
//! - One protocol message per WebSocket frame, both ways.
//! - Only the socket of the current generation is heard; a replaced socket's handlers are
//!   removed before it is closed.
//! - No `RefCell` borrow is held while the replica is written (its update observer runs
//!   inside the write) or while a callback into Yew runs.
//! - The awareness clock only grows, and a reconnect announces with a clock above the
//!   removal the server made when the previous connection closed, so a peer never keeps a
//!   ghost of this tab nor misses its return.
//! - A close with 4403 or 4404, or an auth "permission denied", stops the session for
//!   good: it never reconnects in a loop.

mod codec;
mod machine;
mod presence;
mod storage;
mod traffic;

pub use codec::*;
pub use machine::*;
pub use presence::*;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use gloo_timers::callback::{Interval, Timeout};
use gloo_timers::future::TimeoutFuture;
use meridian_shared::docs::close_code;
use meridian_shared::docs::protocol;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{BroadcastChannel, MessageEvent};
use yew::Callback;
use yrs::block::ClientID;
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::{
    Assoc, IndexedSequence, Origin, ReadTxn, StateVector, StickyIndex, Text, TextRef, Transact,
    TransactionMut, Update, UpdateEvent,
};

use super::persist::{DocStore, COMPACT_AFTER};
use super::{DocHandle, PeerCursor, REMOTE_ORIGIN, STORED_ORIGIN, TAB_ORIGIN};
use crate::browser::{self, WindowListener};
use crate::net::http::path_segment;
use crate::net::socket::{
    AfterClose, Backoff, Frame, Link, LinkCommand, LinkInput, Phase, Socket, SocketEvents,
    ABNORMAL_CLOSURE,
};
use crate::store::idb::IdbError;
/// With nothing heard from the server for this long, the client asks (a step 1).
pub const SILENCE_PROBE_MS: f64 = 15_000.0;
/// With nothing heard for this long, the connection is given up and reopened.
pub const SILENCE_CLOSE_MS: f64 = 30_000.0;
/// The local awareness state is renewed this often (as Yjs clients do).
pub const AWARENESS_RENEW_MS: f64 = 15_000.0;
/// A peer whose awareness state was not renewed for this long is removed.
pub const AWARENESS_TIMEOUT_MS: f64 = 30_000.0;
/// An update that found the replica busy is applied again this much later.
pub const DEFERRED_RETRY_MS: u32 = 10;
/// How often the session checks its timers (renewal, expiry, silence).
pub const TICK_MS: u32 = 3_000;
/// The longest name shown for a peer.
pub const MAX_PEER_NAME_CHARS: usize = 40;

// ---------------------------------------------------------------------------------------
// Browser glue

/// Everything the document page renders from the session, as one value.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub status: SyncStatus,
    /// A longer explanation of the status (tooltip).
    pub detail: String,
    /// Moves on with every change of the replica that this tab's editor did not make
    /// (server, other tabs, storage): the editor re-renders from the replica.
    pub revision: u64,
    /// The other participants' cursors, resolved against the replica.
    pub peers: Vec<PeerCursor>,
    /// Who is here, this tab first.
    pub present: Vec<Presence>,
    /// The stored copy has been read (or found unusable).
    pub restored: bool,
    /// Why this browser cannot keep the document (IndexedDB unusable or failing).
    pub storage_note: Option<String>,
}

impl Default for SessionView {
    fn default() -> SessionView {
        SessionView {
            status: SyncStatus::Connecting,
            detail: String::new(),
            revision: 0,
            peers: Vec::new(),
            present: Vec::new(),
            restored: false,
            storage_note: None,
        }
    }
}

/// Where an update of the replica came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// This tab: the editor, the undo manager, anything but the three below.
    Local,
    /// The server.
    Remote,
    /// Another tab of this browser (BroadcastChannel).
    Tab,
    /// This browser's copy in IndexedDB.
    Persisted,
}

fn source_of(txn: &TransactionMut) -> Source {
    let Some(origin) = txn.origin() else {
        return Source::Local;
    };
    if *origin == Origin::from(REMOTE_ORIGIN) {
        Source::Remote
    } else if *origin == Origin::from(TAB_ORIGIN) {
        Source::Tab
    } else if *origin == Origin::from(STORED_ORIGIN) {
        Source::Persisted
    } else {
        Source::Local
    }
}

/// The key of the session's update observer on its replica.
const OBSERVER_KEY: &str = "meridian-doc-session";

/// This tab's end of the document's BroadcastChannel. Dropping it closes the channel.
struct DocTabChannel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl DocTabChannel {
    fn open(doc_id: &str, on_update: impl Fn(Vec<u8>) + 'static) -> Option<DocTabChannel> {
        let channel = BroadcastChannel::new(&tab_channel_name(doc_id)).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(update) = event
                .data()
                .as_string()
                .as_deref()
                .and_then(TabMessage::decode_update)
            {
                on_update(update);
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some(DocTabChannel {
            channel,
            _on_message: on_message,
        })
    }

    fn post(&self, update: &[u8]) {
        let _ = self
            .channel
            .post_message(&JsValue::from_str(&TabMessage::update(update).encode()));
    }
}

impl Drop for DocTabChannel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

enum Storage {
    Opening,
    Open(DocStore),
    Unavailable,
}

struct State {
    doc_id: String,
    machine: SyncMachine,
    presence: PresenceTable,
    /// Increases with every socket; events of older sockets are ignored.
    generation: u64,
    socket: Option<Socket>,
    retry: Option<Timeout>,
    ticker: Option<Interval>,
    storage: Storage,
    /// Updates observed while storage was opening, written once it is open.
    unstored: Vec<Vec<u8>>,
    /// Records written since the stored copy was last compacted.
    stored_records: usize,
    compacting: bool,
    storage_note: Option<String>,
    restored: bool,
    tab: Option<DocTabChannel>,
    listeners: Vec<WindowListener>,
    revision: u64,
    /// The editor's latest selection, applied at the next flush.
    pending_cursor: Option<(u32, u32)>,
    closed: bool,
}

struct Inner {
    doc: DocHandle,
    state: RefCell<State>,
    /// Updates seen by the replica's observer, waiting for the flush (a microtask).
    observed: RefCell<Vec<(Source, Vec<u8>)>>,
    /// What could not be done at once because the replica was busy; the flush does it.
    deferred: RefCell<Vec<Deferred>>,
    flush_scheduled: Cell<bool>,
    on_change: Callback<SessionView>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let doc = self.doc.clone();
        shut_down(self.state.get_mut(), &doc);
    }
}

/// Says goodbye (a `null` awareness state) and stops everything. Idempotent.
fn shut_down(state: &mut State, doc: &DocHandle) {
    if state.closed {
        return;
    }
    state.closed = true;
    if state.machine.is_open() {
        let goodbye = state.presence.goodbye();
        if let Some(socket) = &state.socket {
            socket.send_bytes(&protocol::awareness(goodbye));
        }
    }
    state.machine.handle(SyncInput::Stop);
    state.socket = None;
    state.retry = None;
    state.ticker = None;
    state.tab = None;
    state.listeners.clear();
    let _ = doc.doc().unobserve_update_v1(OBSERVER_KEY);
}

/// Work that needs the replica, put off while someone else holds it.
enum Deferred {
    /// An update from elsewhere, with its origin.
    Apply(&'static str, Vec<u8>),
    /// A server frame of socket `generation` that reads the replica (a step 1).
    Frame(u64, Vec<u8>),
    /// A step 1 the machine asked for.
    Step1,
}

/// What some commands need besides the state.
#[derive(Default)]
struct CommandContext {
    /// The answer to the server's step 1.
    step2: Option<Vec<u8>>,
    /// The local update being reported.
    update: Option<Vec<u8>>,
}

/// A document open in this tab, synchronised with the server, IndexedDB and the other
/// tabs. Clones share one session; two handles are equal when they are the same session.
#[derive(Clone)]
pub struct DocSession {
    inner: Rc<Inner>,
}

impl PartialEq for DocSession {
    fn eq(&self, other: &DocSession) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

fn doc_ws_url(doc_id: &str) -> String {
    browser::page_ws_url(&sync_path(doc_id))
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Merges updates into one (or `None` for none); falls back to the first on a merge
/// failure, which cannot happen for updates the replica itself produced.
fn merge_updates(mut updates: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    match updates.len() {
        0 => None,
        1 => updates.pop(),
        _ => match yrs::merge_updates_v1(updates.iter()) {
            Ok(merged) => Some(merged),
            Err(_) => updates.into_iter().next(),
        },
    }
}

impl DocSession {
    /// Opens document `doc_id` for `user_name`: reads the stored copy, then connects.
    /// `on_change` hears a [`SessionView`] after every change.
    pub fn open(doc_id: &str, user_name: &str, on_change: Callback<SessionView>) -> DocSession {
        let doc = DocHandle::empty();
        let client = doc.doc().client_id().get();
        let session = DocSession {
            inner: Rc::new(Inner {
                doc,
                state: RefCell::new(State {
                    doc_id: doc_id.to_owned(),
                    machine: SyncMachine::default(),
                    presence: PresenceTable::new(client, user_name),
                    generation: 0,
                    socket: None,
                    retry: None,
                    ticker: None,
                    storage: Storage::Opening,
                    unstored: Vec::new(),
                    stored_records: 0,
                    compacting: false,
                    storage_note: None,
                    restored: false,
                    tab: None,
                    listeners: Vec::new(),
                    revision: 0,
                    pending_cursor: None,
                    closed: false,
                }),
                observed: RefCell::new(Vec::new()),
                deferred: RefCell::new(Vec::new()),
                flush_scheduled: Cell::new(false),
                on_change,
            }),
        };
        session.observe_replica();
        session.open_tab_channel();
        session.listen_to_window();
        session.start_ticker();
        session.restore_then_connect();
        session
    }

    /// The replica the editor binds to.
    pub fn doc(&self) -> DocHandle {
        self.inner.doc.clone()
    }

    pub fn status(&self) -> SyncStatus {
        self.inner.state.borrow().machine.status()
    }

    pub fn peers(&self) -> Vec<PeerCursor> {
        self.view().peers
    }

    /// Everything the page shows.
    pub fn view(&self) -> SessionView {
        let state = self.inner.state.borrow();
        let peers = match self.inner.doc.doc().try_transact() {
            Ok(txn) => state.presence.cursors(&txn, self.inner.doc.text()),
            Err(_) => Vec::new(),
        };
        SessionView {
            status: state.machine.status(),
            detail: state.machine.detail(),
            revision: state.revision,
            peers,
            present: state.presence.present(),
            restored: state.restored,
            storage_note: state.storage_note.clone(),
        }
    }

    /// The editor's selection (UTF-16 offsets `(anchor, head)`), published to the others
    /// at the next flush. `None` (the editor lost the focus: another window or tab was
    /// brought forward) keeps the last position, as Google Docs does: the others still
    /// see where this person is working, anchored to the text, until the tab closes.
    pub fn set_cursor(&self, selection: Option<(u32, u32)>) {
        let Some(selection) = selection else {
            return;
        };
        self.inner.state.borrow_mut().pending_cursor = Some(selection);
        self.schedule_flush();
    }

    /// Says goodbye to the others and stops (the page is closing). Updates already made
    /// are still written to storage.
    pub fn close(&self) {
        let doc = self.inner.doc.clone();
        shut_down(&mut self.inner.state.borrow_mut(), &doc);
    }

    fn upgrade(inner: &Weak<Inner>) -> Option<DocSession> {
        inner.upgrade().map(|inner| DocSession { inner })
    }
}
