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
//! - [`DocSession`]: the browser glue (WebSocket, timers, window events, storage, tabs).
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
// The connection's state machine

/// What the status pill says about the document's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// A connection is being opened, or the first exchange with the server is under way.
    Connecting,
    /// Everything made here is stored on the server, and the server's content is here.
    Synced,
    /// Local edits are sent but not yet confirmed as stored.
    Saving,
    /// No connection; edits are kept in this browser and sent on reconnect.
    Offline,
    /// The server refused edits from this page (the reason given); nothing is sent.
    ReadOnly(String),
    /// The document was deleted.
    Deleted,
    /// The server closed the connection over a problem (the reason given); retrying.
    Error(String),
}

impl SyncStatus {
    /// The machine-readable name, used in `data-state` attributes.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncStatus::Connecting => "connecting",
            SyncStatus::Synced => "synced",
            SyncStatus::Saving => "saving",
            SyncStatus::Offline => "offline",
            SyncStatus::ReadOnly(_) => "read-only",
            SyncStatus::Deleted => "deleted",
            SyncStatus::Error(_) => "error",
        }
    }

    /// The words on the pill.
    pub fn label(&self) -> &'static str {
        match self {
            SyncStatus::Connecting => "Connecting…",
            SyncStatus::Synced => "Saved",
            SyncStatus::Saving => "Saving…",
            SyncStatus::Offline => "Offline",
            SyncStatus::ReadOnly(_) => "Read-only",
            SyncStatus::Deleted => "Deleted",
            SyncStatus::Error(_) => "Error",
        }
    }

    /// Whether the page may let the user edit (as far as the sync is concerned).
    pub fn allows_edits(&self) -> bool {
        !matches!(self, SyncStatus::ReadOnly(_) | SyncStatus::Deleted)
    }
}

/// What happened to the connection, as the glue reports it to [`SyncMachine::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum SyncInput {
    /// The session starts (after the stored state is applied).
    Start {
        online: bool,
    },
    /// The socket opened.
    Opened {
        now_ms: f64,
    },
    /// Any frame arrived.
    Heard {
        now_ms: f64,
    },
    /// The server's step 1; `we_have_more`: this replica holds content the server's state
    /// vector does not (edits made offline, or stored before a reload).
    ServerStep1 {
        we_have_more: bool,
    },
    /// A step 2: the answer to one of our step 1 messages, in order.
    ServerStep2,
    /// An edit was made here.
    LocalChange,
    /// The server's auth message "permission denied".
    AuthDenied {
        reason: String,
    },
    /// The socket closed. `jitter` is a random number in `[0, 1)` for the backoff.
    Closed {
        code: u16,
        reason: String,
        jitter: f64,
    },
    BrowserOffline,
    BrowserOnline,
    /// The reconnect timer fired.
    RetryDue,
    /// The periodic check, with whether the browser believes it is online (in case an
    /// `online` event was missed).
    Tick {
        now_ms: f64,
        online: bool,
    },
    /// The page closes the session.
    Stop,
}

/// What the glue must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCommand {
    /// Open a new socket (replacing any).
    Connect,
    /// Send a step 1 with the replica's state vector.
    SendStep1,
    /// Answer the server's step 1 with the update it lacks.
    SendStep2,
    /// Send the local update(s) being reported.
    SendUpdate,
    /// Send this client's awareness state.
    SendAwareness,
    /// Close the socket (its handlers removed first).
    CloseSocket,
    /// Schedule [`SyncInput::RetryDue`] in this many milliseconds.
    RetryIn(u32),
    /// Forget the scheduled reconnect.
    CancelRetry,
}

/// The connection's state: a pure machine. Local edits are numbered; a step 1 sent after
/// some of them were sent is a probe whose step 2 answer confirms them.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncMachine {
    /// The socket's connection: backoff, the network, what a close means.
    link: Link,
    /// The answer to the connection's first step 1 arrived.
    synced: bool,
    /// ReadOnly or Deleted: the session is over.
    terminal: Option<SyncStatus>,
    stopped: bool,
    /// Local changes made (including "this replica had more than the server" at a
    /// connect).
    local_seq: u64,
    /// Local changes sent on the current connection.
    sent_seq: u64,
    /// Local changes the server confirmed as stored.
    confirmed_seq: u64,
    /// The step 1 messages awaiting their step 2, oldest first, each with the `sent_seq`
    /// it confirms.
    probes: VecDeque<u64>,
    last_heard_ms: f64,
    /// A problem worth showing as an error (a malformed-message close).
    error: Option<String>,
    /// Why the last connection ended, for the tooltip.
    last_close: Option<String>,
}

impl Default for SyncMachine {
    fn default() -> SyncMachine {
        SyncMachine {
            link: Link::new(Backoff::DOCUMENT),
            synced: false,
            terminal: None,
            stopped: false,
            local_seq: 0,
            sent_seq: 0,
            confirmed_seq: 0,
            probes: VecDeque::new(),
            last_heard_ms: 0.0,
            error: None,
            last_close: None,
        }
    }
}

/// What a close code of a document socket means for the connection: the document is
/// gone or refuses this page's edits (stop for good), or anything else (retry after the
/// backoff).
pub fn after_close(code: u16) -> AfterClose {
    match code {
        close_code::READ_ONLY | close_code::DELETED => AfterClose::Stop,
        _ => AfterClose::Retry,
    }
}

/// A sentence about why a document connection closed.
pub fn describe_close(code: u16, reason: &str) -> String {
    let what = match code {
        close_code::MALFORMED => "The server could not read a message from this page.".to_owned(),
        close_code::READ_ONLY => "You can no longer edit this document.".to_owned(),
        close_code::DELETED => "The document was deleted.".to_owned(),
        close_code::SLOW_CONSUMER => "This page fell behind on the document's updates.".to_owned(),
        close_code::TIMEOUT => "The server stopped hearing from this page.".to_owned(),
        close_code::STORAGE_FAILED => "The server could not store an edit.".to_owned(),
        close_code::TOO_BIG => "An edit was larger than the server accepts.".to_owned(),
        1001 => "The server is restarting.".to_owned(),
        1006 => "Could not reach the server.".to_owned(),
        _ => format!("The connection closed (code {code})."),
    };
    let reason = reason.trim();
    if reason.is_empty() {
        what
    } else {
        format!("{what} ({reason})")
    }
}

impl SyncMachine {
    pub fn status(&self) -> SyncStatus {
        if let Some(terminal) = &self.terminal {
            return terminal.clone();
        }
        match self.link.phase() {
            Phase::Open if self.synced && self.confirmed_seq < self.local_seq => SyncStatus::Saving,
            Phase::Open if self.synced => SyncStatus::Synced,
            Phase::Open | Phase::Opening => SyncStatus::Connecting,
            Phase::Down => match &self.error {
                Some(error) => SyncStatus::Error(error.clone()),
                None => SyncStatus::Offline,
            },
        }
    }

    /// A longer explanation of the status, for the pill's tooltip.
    pub fn detail(&self) -> String {
        let status = self.status();
        let mut detail = match &status {
            SyncStatus::Connecting => "Connecting to the server…".to_owned(),
            SyncStatus::Synced => "Every edit is saved on the server.".to_owned(),
            SyncStatus::Saving => "Sending your latest edits…".to_owned(),
            SyncStatus::Offline => {
                "Offline: your edits are kept in this browser and sent when the connection is back."
                    .to_owned()
            }
            SyncStatus::ReadOnly(reason) => format!("Read-only: {reason}"),
            SyncStatus::Deleted => "This document was deleted.".to_owned(),
            SyncStatus::Error(error) => error.clone(),
        };
        if matches!(status, SyncStatus::Offline | SyncStatus::Error(_)) {
            if let (Some(close), SyncStatus::Offline) = (&self.last_close, &status) {
                detail.push(' ');
                detail.push_str(close);
            }
            match self.link.retry_in_ms() {
                Some(delay) => {
                    detail.push_str(&format!(" Retrying in {:.1} s.", delay as f64 / 1000.0))
                }
                None if !self.link.browser_online() => {
                    detail.push_str(" Waiting for the network to come back.")
                }
                None => {}
            }
        }
        detail
    }

    /// Whether the socket is open (frames may be sent).
    pub fn is_open(&self) -> bool {
        self.link.is_open()
    }

    /// Whether the session is over (read-only, deleted or stopped).
    pub fn is_over(&self) -> bool {
        self.terminal.is_some() || self.stopped
    }

    /// Connection attempts that failed since the last successful sync.
    pub fn failed_attempts(&self) -> u32 {
        self.link.failed_attempts()
    }

    pub fn handle(&mut self, input: SyncInput) -> Vec<SyncCommand> {
        if self.is_over() {
            return Vec::new();
        }
        let mut out = Vec::new();
        match input {
            SyncInput::Start { online } => self.link_input(LinkInput::Start { online }, &mut out),
            SyncInput::Opened { now_ms } => {
                if self.link.phase() != Phase::Opening {
                    return out;
                }
                self.link_input(LinkInput::Opened, &mut out);
                self.synced = false;
                self.last_heard_ms = now_ms;
                // Nothing of ours is on this connection yet: the first step 2 confirms
                // nothing new, it brings the server's content.
                self.sent_seq = self.confirmed_seq;
                self.probes.clear();
                self.probes.push_back(self.sent_seq);
                out.push(SyncCommand::SendStep1);
                out.push(SyncCommand::SendAwareness);
            }
            SyncInput::Heard { now_ms } => self.last_heard_ms = now_ms,
            SyncInput::ServerStep1 { we_have_more } => {
                if !self.is_open() {
                    return out;
                }
                if we_have_more {
                    self.local_seq += 1;
                }
                // The step 2 carries everything this replica has that the server lacks.
                self.sent_seq = self.local_seq;
                out.push(SyncCommand::SendStep2);
                self.probe_if_needed(&mut out);
            }
            SyncInput::ServerStep2 => {
                if !self.is_open() {
                    return out;
                }
                if let Some(covered) = self.probes.pop_front() {
                    self.confirmed_seq = self.confirmed_seq.max(covered);
                }
                if !self.synced {
                    self.synced = true;
                    self.link_input(LinkInput::Ready, &mut out);
                    self.error = None;
                    self.last_close = None;
                }
                self.probe_if_needed(&mut out);
            }
            SyncInput::LocalChange => {
                self.local_seq += 1;
                if self.is_open() {
                    self.sent_seq = self.local_seq;
                    out.push(SyncCommand::SendUpdate);
                    self.probe_if_needed(&mut out);
                }
            }
            SyncInput::AuthDenied { reason } => {
                let reason = if reason.trim().is_empty() {
                    "the server refused edits from this page".to_owned()
                } else {
                    reason
                };
                self.terminal = Some(SyncStatus::ReadOnly(reason));
                self.link_input(LinkInput::Stop, &mut out);
            }
            SyncInput::Closed {
                code,
                reason,
                jitter,
            } => {
                if self.link.phase() == Phase::Down {
                    return out;
                }
                match code {
                    close_code::READ_ONLY => {
                        let reason = if reason.trim().is_empty() {
                            "your access to this document changed".to_owned()
                        } else {
                            reason.clone()
                        };
                        self.terminal = Some(SyncStatus::ReadOnly(reason));
                    }
                    close_code::DELETED => self.terminal = Some(SyncStatus::Deleted),
                    close_code::MALFORMED | close_code::TOO_BIG => {
                        self.error = Some(describe_close(code, &reason));
                    }
                    _ => {}
                }
                if self.terminal.is_none() {
                    self.last_close = Some(describe_close(code, &reason));
                }
                let after = after_close(code);
                self.link_input(LinkInput::Closed { after, jitter }, &mut out);
            }
            SyncInput::BrowserOffline => {
                self.link_input(LinkInput::BrowserOffline, &mut out);
                self.last_close = None;
            }
            SyncInput::BrowserOnline => self.link_input(LinkInput::BrowserOnline, &mut out),
            SyncInput::RetryDue => self.link_input(LinkInput::RetryDue, &mut out),
            SyncInput::Tick { now_ms, online } => {
                if online && !self.link.browser_online() {
                    self.link_input(LinkInput::NetworkCheck { online }, &mut out);
                    return out;
                }
                if !self.is_open() {
                    return out;
                }
                let silent_for = now_ms - self.last_heard_ms;
                if silent_for >= SILENCE_CLOSE_MS {
                    self.last_close = Some("The server stopped answering.".to_owned());
                    self.link_input(LinkInput::Lost { jitter: 0.0 }, &mut out);
                } else if silent_for >= SILENCE_PROBE_MS && self.probes.is_empty() {
                    self.probes.push_back(self.sent_seq);
                    out.push(SyncCommand::SendStep1);
                }
            }
            SyncInput::Stop => {
                self.link_input(LinkInput::Stop, &mut out);
                self.stopped = true;
            }
        }
        out
    }

    /// Feeds the link and turns what it asks into commands. Whatever leaves the open
    /// state takes the connection's probes with it.
    fn link_input(&mut self, input: LinkInput, out: &mut Vec<SyncCommand>) {
        for command in self.link.handle(input) {
            out.push(match command {
                LinkCommand::Connect => SyncCommand::Connect,
                LinkCommand::Close => SyncCommand::CloseSocket,
                LinkCommand::RetryIn(delay) => SyncCommand::RetryIn(delay),
                LinkCommand::CancelRetry => SyncCommand::CancelRetry,
            });
        }
        if !self.link.is_open() {
            self.probes.clear();
            self.synced = false;
        }
    }

    /// Sends a step 1 when something sent is unconfirmed and no probe is on its way.
    fn probe_if_needed(&mut self, out: &mut Vec<SyncCommand>) {
        if self.is_open() && self.probes.is_empty() && self.sent_seq > self.confirmed_seq {
            self.probes.push_back(self.sent_seq);
            out.push(SyncCommand::SendStep1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Presence (awareness)

/// This client's awareness state, exactly as every client publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceState {
    pub user: PresenceUser,
    pub cursor: Option<PresenceCursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    pub name: String,
    pub color: String,
}

/// A selection as relative positions (Yjs' `relativePositionToJSON`, yrs `StickyIndex`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceCursor {
    pub anchor: StickyIndex,
    pub head: StickyIndex,
}

/// Colours given to participants, readable on light and dark backgrounds.
pub const PRESENCE_COLORS: [&str; 12] = [
    "#e5484d", "#f76b15", "#c28a00", "#30a46c", "#12a594", "#0091ff", "#3e63dd", "#8e4ec6",
    "#d6409f", "#978365", "#0d74ce", "#5bb98b",
];

/// The colour of a username: the same for everyone, every time (FNV-1a of the name).
pub fn user_color(name: &str) -> &'static str {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    PRESENCE_COLORS[(hash % PRESENCE_COLORS.len() as u32) as usize]
}

/// Whether `color` is a CSS hex colour (`#rgb` or `#rrggbb`): only those reach a style.
pub fn is_hex_color(color: &str) -> bool {
    let Some(hex) = color.strip_prefix('#') else {
        return false;
    };
    matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A peer's state as read from their awareness JSON (which another client may shape
/// loosely: everything is optional and checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub name: String,
    pub color: String,
    pub cursor: Option<PresenceCursor>,
}

#[derive(Deserialize)]
struct LooseState {
    #[serde(default)]
    user: Option<LooseUser>,
    #[serde(default)]
    cursor: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LooseUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    color: Option<String>,
}

impl PeerState {
    /// Reads an awareness state; `None` for JSON that is not an object.
    pub fn parse(json: &str) -> Option<PeerState> {
        let loose: LooseState = serde_json::from_str(json).ok()?;
        let user = loose.user;
        let name: String = user
            .as_ref()
            .and_then(|user| user.name.as_deref())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or("Anonymous")
            .chars()
            .take(MAX_PEER_NAME_CHARS)
            .collect();
        let color = user
            .and_then(|user| user.color)
            .filter(|color| is_hex_color(color))
            .unwrap_or_else(|| user_color(&name).to_owned());
        let cursor = loose
            .cursor
            .and_then(|cursor| serde_json::from_value::<PresenceCursor>(cursor).ok());
        Some(PeerState {
            name,
            color,
            cursor,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
struct PeerEntry {
    clock: u32,
    /// `None` once removed (the clock is kept, so an old message cannot revive it).
    state: Option<PeerState>,
    seen_ms: f64,
}

/// Someone shown in the presence list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub client_id: u64,
    pub name: String,
    pub color: String,
    /// This tab.
    pub me: bool,
}

/// What applying an awareness update changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceChange {
    /// Someone appeared, left, moved or renamed.
    pub changed: bool,
    /// Someone said this client is gone: announce again (with a higher clock).
    pub reannounce: bool,
}

/// Awareness: this client's state and every peer's, with y-protocols' rules.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceTable {
    local_client: u64,
    local_clock: u32,
    /// `None` after the goodbye.
    local: Option<PresenceState>,
    last_sent_ms: f64,
    peers: BTreeMap<u64, PeerEntry>,
}

const NULL_STATE: &str = "null";

impl PresenceTable {
    pub fn new(local_client: u64, name: &str) -> PresenceTable {
        PresenceTable {
            local_client,
            local_clock: 0,
            local: Some(PresenceState {
                user: PresenceUser {
                    name: name.to_owned(),
                    color: user_color(name).to_owned(),
                },
                cursor: None,
            }),
            last_sent_ms: 0.0,
            peers: BTreeMap::new(),
        }
    }

    pub fn local_client(&self) -> u64 {
        self.local_client
    }

    pub fn local_state(&self) -> Option<&PresenceState> {
        self.local.as_ref()
    }

    /// Sets this client's cursor; `true` when it changed (and must be announced).
    pub fn set_cursor(&mut self, cursor: Option<PresenceCursor>) -> bool {
        let Some(local) = self.local.as_mut() else {
            return false;
        };
        if local.cursor == cursor {
            return false;
        }
        local.cursor = cursor;
        self.local_clock += 1;
        true
    }

    /// Before announcing on a new connection: the server removed this client (clock + 1)
    /// when the previous one closed, so the next announcement must be above that.
    pub fn reconnecting(&mut self) {
        self.local_clock += 2;
    }

    /// This client's state as an awareness update (sent at `now_ms`).
    pub fn local_update(&mut self, now_ms: f64) -> AwarenessUpdate {
        self.last_sent_ms = now_ms;
        let json = match &self.local {
            Some(state) => serde_json::to_string(state).unwrap_or_else(|_| NULL_STATE.into()),
            None => NULL_STATE.to_owned(),
        };
        one_client(self.local_client, self.local_clock, json)
    }

    /// The tab is being hidden or unloaded: the `null` state to send now. The state is
    /// kept: if the page comes back (back/forward cache), the next tick announces it
    /// again, with a clock above this removal.
    pub fn farewell(&mut self) -> AwarenessUpdate {
        self.local_clock += 1;
        self.last_sent_ms = f64::NEG_INFINITY;
        one_client(self.local_client, self.local_clock, NULL_STATE.to_owned())
    }

    /// Removes this client for good: the `null` state to send.
    pub fn goodbye(&mut self) -> AwarenessUpdate {
        self.local = None;
        self.local_clock += 1;
        one_client(self.local_client, self.local_clock, NULL_STATE.to_owned())
    }

    /// Whether this client's state is due for renewal at `now_ms`; if so its clock moves
    /// on (as y-protocols renews) and the caller sends [`PresenceTable::local_update`].
    pub fn renew_due(&mut self, now_ms: f64) -> bool {
        if self.local.is_some() && now_ms - self.last_sent_ms >= AWARENESS_RENEW_MS {
            self.local_clock += 1;
            true
        } else {
            false
        }
    }

    /// Applies a peer's (or the server's) awareness update received at `now_ms`.
    pub fn apply(&mut self, update: &AwarenessUpdate, now_ms: f64) -> PresenceChange {
        let mut change = PresenceChange::default();
        for (client, entry) in &update.clients {
            let client = client.get();
            let removal = entry.json.trim() == NULL_STATE;
            if client == self.local_client {
                // Never let someone else remove this client: announce again above them.
                if removal && self.local.is_some() && entry.clock >= self.local_clock {
                    self.local_clock = entry.clock + 1;
                    change.reannounce = true;
                }
                continue;
            }
            let accept = match self.peers.get(&client) {
                None => true,
                Some(previous) => {
                    previous.clock < entry.clock
                        || (previous.clock == entry.clock && removal && previous.state.is_some())
                }
            };
            if !accept {
                continue;
            }
            let state = if removal {
                None
            } else {
                PeerState::parse(&entry.json)
            };
            let before = self.peers.get(&client).and_then(|p| p.state.clone());
            if before != state {
                change.changed = true;
            }
            self.peers.insert(
                client,
                PeerEntry {
                    clock: entry.clock,
                    state,
                    seen_ms: now_ms,
                },
            );
        }
        change
    }

    /// Removes peers not renewed for [`AWARENESS_TIMEOUT_MS`]; `true` if any was.
    pub fn expire(&mut self, now_ms: f64) -> bool {
        let mut removed = false;
        for entry in self.peers.values_mut() {
            if entry.state.is_some() && now_ms - entry.seen_ms >= AWARENESS_TIMEOUT_MS {
                entry.state = None;
                removed = true;
            }
        }
        removed
    }

    /// Forgets every peer (the connection that told us about them is gone; the server
    /// tells the present ones again on reconnect).
    pub fn forget_peers(&mut self) -> bool {
        let had = self.peers.values().any(|entry| entry.state.is_some());
        for entry in self.peers.values_mut() {
            entry.state = None;
        }
        had
    }

    /// Who is here: this tab first, then the peers by name.
    pub fn present(&self) -> Vec<Presence> {
        let mut out = Vec::new();
        if let Some(local) = &self.local {
            out.push(Presence {
                client_id: self.local_client,
                name: local.user.name.clone(),
                color: local.user.color.clone(),
                me: true,
            });
        }
        let mut peers: Vec<Presence> = self
            .peers
            .iter()
            .filter_map(|(client, entry)| {
                entry.state.as_ref().map(|state| Presence {
                    client_id: *client,
                    name: state.name.clone(),
                    color: state.color.clone(),
                    me: false,
                })
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.client_id.cmp(&b.client_id)));
        out.extend(peers);
        out
    }

    /// The peers' cursors as offsets into `text` (peers without a cursor, or whose
    /// positions this replica does not have yet, are left out; never this client).
    pub fn cursors<T: ReadTxn>(&self, txn: &T, text: &TextRef) -> Vec<PeerCursor> {
        let len = text.len(txn);
        self.peers
            .iter()
            .filter_map(|(client, entry)| {
                let state = entry.state.as_ref()?;
                let cursor = state.cursor.as_ref()?;
                let anchor = cursor.anchor.get_offset(txn)?.index.min(len);
                let head = cursor.head.get_offset(txn)?.index.min(len);
                Some(PeerCursor {
                    client_id: *client,
                    name: state.name.clone(),
                    color: state.color.clone(),
                    anchor,
                    head,
                })
            })
            .collect()
    }
}

fn one_client(client: u64, clock: u32, json: String) -> AwarenessUpdate {
    let mut clients = HashMap::new();
    clients.insert(
        ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: Arc::from(json),
        },
    );
    AwarenessUpdate { clients }
}

/// A selection (UTF-16 offsets) as relative positions in `text`.
pub fn cursor_at<T: ReadTxn>(txn: &T, text: &TextRef, anchor: u32, head: u32) -> PresenceCursor {
    PresenceCursor {
        anchor: sticky_at(txn, text, anchor),
        head: sticky_at(txn, text, head),
    }
}

/// The position before the character at `offset`; at the end of the text, the end of
/// the type (as Yjs' `createRelativePositionFromTypeIndex` makes it), which stays at the
/// end whatever is appended.
fn sticky_at<T: ReadTxn>(txn: &T, text: &TextRef, offset: u32) -> StickyIndex {
    let offset = offset.min(text.len(txn));
    text.sticky_index(txn, offset, Assoc::After)
        .unwrap_or_else(|| StickyIndex::from_type(txn, text, Assoc::After))
}

// ---------------------------------------------------------------------------------------
// Codecs

/// A message from the server, one per frame.
#[derive(Debug)]
pub enum ServerFrame {
    Step1(StateVector),
    Step2(Vec<u8>),
    Update(Vec<u8>),
    Awareness(AwarenessUpdate),
    /// `02 00 reason`.
    Denied(String),
    /// Something this client does not act on (a query, a custom message).
    Ignored,
}

/// Decodes one server frame.
pub fn decode_server_frame(bytes: &[u8]) -> Result<ServerFrame, String> {
    if bytes.is_empty() {
        return Err("empty frame".to_owned());
    }
    let mut decoder = DecoderV1::new(Cursor::new(bytes));
    let message = Message::decode(&mut decoder).map_err(|error| error.to_string())?;
    Ok(match message {
        Message::Sync(SyncMessage::SyncStep1(sv)) => ServerFrame::Step1(sv),
        Message::Sync(SyncMessage::SyncStep2(update)) => ServerFrame::Step2(update),
        Message::Sync(SyncMessage::Update(update)) => ServerFrame::Update(update),
        Message::Awareness(update) => ServerFrame::Awareness(update),
        Message::Auth(reason) => ServerFrame::Denied(reason.unwrap_or_default()),
        Message::AwarenessQuery | Message::Custom(..) => ServerFrame::Ignored,
    })
}

/// Whether a replica with state vector `ours` holds content that `theirs` lacks.
pub fn has_more_than(ours: &StateVector, theirs: &StateVector) -> bool {
    ours.iter()
        .any(|(client, clock)| theirs.get(client) < *clock)
}

/// Standard base64 (RFC 4648, with padding), for updates inside JSON messages.
pub mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=');
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let mut buffer = 0u32;
        let mut bits = 0u32;
        for byte in text.bytes() {
            let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
            buffer = (buffer << 6) | value;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        // Leftover bits must be padding zeros, and a lone sextet is not a byte.
        (bits < 6 && buffer == 0).then_some(out)
    }
}

/// A message between the tabs showing one document (JSON text, like the app's other
/// BroadcastChannel messages): `{"type":"update","update":"<base64 v1 update>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TabMessage {
    Update { update: String },
}

impl TabMessage {
    pub fn update(bytes: &[u8]) -> TabMessage {
        TabMessage::Update {
            update: base64::encode(bytes),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The update bytes of a message; `None` for anything else.
    pub fn decode_update(text: &str) -> Option<Vec<u8>> {
        match serde_json::from_str::<TabMessage>(text).ok()? {
            TabMessage::Update { update } => base64::decode(&update),
        }
    }
}

/// The BroadcastChannel's name for a document.
pub fn tab_channel_name(doc_id: &str) -> String {
    format!("meridian-docs-{doc_id}")
}

/// Where the y-websocket protocol is spoken for a document, relative to the page.
pub fn sync_path(doc_id: &str) -> String {
    format!("/yjs/{}", path_segment(doc_id))
}

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
    Remote,
    Tab,
    Stored,
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
        Source::Stored
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

    fn observe_replica(&self) {
        let weak = Rc::downgrade(&self.inner);
        let observed = self.inner.doc.doc().observe_update_v1(
            OBSERVER_KEY,
            move |txn: &TransactionMut, event: &UpdateEvent| {
                // Inside the replica's write: only queue, the flush does the rest.
                if let Some(session) = DocSession::upgrade(&weak) {
                    session
                        .inner
                        .observed
                        .borrow_mut()
                        .push((source_of(txn), event.update.clone()));
                    session.schedule_flush();
                }
            },
        );
        if observed.is_err() {
            self.inner.state.borrow_mut().storage_note =
                Some("This page could not follow the document's changes.".to_owned());
        }
    }

    fn schedule_flush(&self) {
        if !self.inner.flush_scheduled.replace(true) {
            let session = self.clone();
            spawn_local(async move { session.flush() });
        }
    }

    /// Sends, stores and posts what the replica did since the last flush, and publishes
    /// the latest cursor.
    fn flush(&self) {
        self.inner.flush_scheduled.set(false);
        let deferred = std::mem::take(&mut *self.inner.deferred.borrow_mut());
        for work in deferred {
            match work {
                Deferred::Apply(origin, update) => self.apply(&update, origin),
                Deferred::Frame(generation, frame) => self.on_frame(generation, &frame),
                Deferred::Step1 => self.send_step1(),
            }
        }
        let batch = std::mem::take(&mut *self.inner.observed.borrow_mut());
        let mut local = Vec::new();
        let mut to_store = Vec::new();
        for (source, update) in batch {
            match source {
                Source::Local => {
                    local.push(update.clone());
                    to_store.push(update);
                }
                Source::Remote | Source::Tab => to_store.push(update),
                Source::Stored => {}
            }
        }
        if let Some(update) = merge_updates(local) {
            let commands = {
                let mut state = self.inner.state.borrow_mut();
                if let Some(tab) = &state.tab {
                    tab.post(&update);
                }
                state.machine.handle(SyncInput::LocalChange)
            };
            self.run(
                commands,
                CommandContext {
                    update: Some(update),
                    ..CommandContext::default()
                },
            );
        }
        if let Some(update) = merge_updates(to_store) {
            self.store(update);
        }
        self.publish_cursor();
        self.emit();
    }

    fn publish_cursor(&self) {
        let Some((anchor, head)) = self.inner.state.borrow_mut().pending_cursor.take() else {
            return;
        };
        let cursor = match self.inner.doc.doc().try_transact() {
            Ok(txn) => cursor_at(&txn, self.inner.doc.text(), anchor, head),
            Err(_) => {
                // Busy: published at the next flush.
                self.inner.state.borrow_mut().pending_cursor = Some((anchor, head));
                return;
            }
        };
        let mut state = self.inner.state.borrow_mut();
        if state.presence.set_cursor(Some(cursor)) && state.machine.is_open() {
            let update = state.presence.local_update(now_ms());
            if let Some(socket) = &state.socket {
                socket.send_bytes(&protocol::awareness(update));
            }
        }
    }

    /// Feeds the machine and runs what it asks for.
    fn input(&self, input: SyncInput) {
        let commands = self.inner.state.borrow_mut().machine.handle(input);
        self.run(commands, CommandContext::default());
    }

    fn run(&self, commands: Vec<SyncCommand>, mut context: CommandContext) {
        for command in commands {
            match command {
                SyncCommand::Connect => self.connect(),
                SyncCommand::SendStep1 => self.send_step1(),
                SyncCommand::SendStep2 => {
                    if let Some(update) = context.step2.take() {
                        self.send(&protocol::step2(update));
                    }
                }
                SyncCommand::SendUpdate => {
                    if let Some(update) = context.update.take() {
                        self.send(&protocol::update(update));
                    }
                }
                SyncCommand::SendAwareness => {
                    let mut state = self.inner.state.borrow_mut();
                    let update = state.presence.local_update(now_ms());
                    if let Some(socket) = &state.socket {
                        socket.send_bytes(&protocol::awareness(update));
                    }
                }
                SyncCommand::CloseSocket => {
                    let socket = self.inner.state.borrow_mut().socket.take();
                    drop(socket);
                    if self.inner.state.borrow_mut().presence.forget_peers() {
                        self.emit();
                    }
                }
                SyncCommand::RetryIn(delay) => {
                    let weak = Rc::downgrade(&self.inner);
                    let timer = Timeout::new(delay, move || {
                        if let Some(session) = DocSession::upgrade(&weak) {
                            session.inner.state.borrow_mut().retry = None;
                            session.input(SyncInput::RetryDue);
                            session.emit();
                        }
                    });
                    self.inner.state.borrow_mut().retry = Some(timer);
                }
                SyncCommand::CancelRetry => {
                    let retry = self.inner.state.borrow_mut().retry.take();
                    drop(retry);
                }
            }
        }
    }

    fn send(&self, bytes: &[u8]) {
        if let Some(socket) = &self.inner.state.borrow().socket {
            socket.send_bytes(bytes);
        }
    }

    fn connect(&self) {
        let opened = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            state.socket = None;
            state.generation += 1;
            let generation = state.generation;
            let on_open = Rc::downgrade(&self.inner);
            let on_frame = Rc::downgrade(&self.inner);
            let on_close = Rc::downgrade(&self.inner);
            let events = SocketEvents {
                on_open: Box::new(move || {
                    if let Some(session) = DocSession::upgrade(&on_open) {
                        session.on_open(generation);
                    }
                }),
                on_frame: Box::new(move |frame| {
                    // Text frames are not part of the protocol: ignored.
                    if let (Some(session), Frame::Binary(bytes)) =
                        (DocSession::upgrade(&on_frame), frame)
                    {
                        session.on_frame(generation, &bytes);
                    }
                }),
                on_close: Box::new(move |code, reason| {
                    if let Some(session) = DocSession::upgrade(&on_close) {
                        session.on_close(generation, code, &reason);
                    }
                }),
            };
            match Socket::open(&doc_ws_url(&state.doc_id), events) {
                Ok(socket) => {
                    state.socket = Some(socket);
                    true
                }
                Err(_) => false,
            }
        };
        if !opened {
            self.input(SyncInput::Closed {
                code: ABNORMAL_CLOSURE,
                reason: "this browser refused to open the connection".to_owned(),
                jitter: browser::random_unit(),
            });
        }
    }

    fn current(&self, generation: u64) -> bool {
        let state = self.inner.state.borrow();
        !state.closed && state.generation == generation
    }

    fn on_open(&self, generation: u64) {
        if !self.current(generation) {
            return;
        }
        self.inner.state.borrow_mut().presence.reconnecting();
        self.input(SyncInput::Opened { now_ms: now_ms() });
        self.emit();
    }

    fn on_close(&self, generation: u64, code: u16, reason: &str) {
        if !self.current(generation) {
            return;
        }
        {
            let mut state = self.inner.state.borrow_mut();
            // Closed already: dropping it must not close it again.
            if let Some(socket) = state.socket.take() {
                socket.forget_closed();
            }
            state.presence.forget_peers();
        }
        self.input(SyncInput::Closed {
            code,
            reason: reason.to_owned(),
            jitter: browser::random_unit(),
        });
        self.emit();
    }

    fn on_frame(&self, generation: u64, bytes: &[u8]) {
        if !self.current(generation) {
            return;
        }
        let now = now_ms();
        self.input(SyncInput::Heard { now_ms: now });
        let Ok(frame) = decode_server_frame(bytes) else {
            // Not for this client to judge the server: nothing is applied.
            return;
        };
        match frame {
            ServerFrame::Step1(their_sv) => {
                let answer = self.inner.doc.doc().try_transact().ok().map(|txn| {
                    (
                        txn.encode_state_as_update_v1(&their_sv),
                        has_more_than(&txn.state_vector(), &their_sv),
                    )
                });
                let Some((step2, we_have_more)) = answer else {
                    self.defer(Deferred::Frame(generation, bytes.to_vec()));
                    return;
                };
                let commands = self
                    .inner
                    .state
                    .borrow_mut()
                    .machine
                    .handle(SyncInput::ServerStep1 { we_have_more });
                self.run(
                    commands,
                    CommandContext {
                        step2: Some(step2),
                        ..CommandContext::default()
                    },
                );
            }
            ServerFrame::Step2(update) => {
                self.apply(&update, REMOTE_ORIGIN);
                self.input(SyncInput::ServerStep2);
            }
            ServerFrame::Update(update) => self.apply(&update, REMOTE_ORIGIN),
            ServerFrame::Awareness(update) => {
                let mut state = self.inner.state.borrow_mut();
                let change = state.presence.apply(&update, now);
                if change.reannounce && state.machine.is_open() {
                    let update = state.presence.local_update(now);
                    if let Some(socket) = &state.socket {
                        socket.send_bytes(&protocol::awareness(update));
                    }
                }
                if !change.changed {
                    return;
                }
            }
            ServerFrame::Denied(reason) => {
                self.input(SyncInput::AuthDenied { reason });
            }
            ServerFrame::Ignored => return,
        }
        self.emit();
    }

    /// Applies an update that came from elsewhere, with its origin (no borrow held: the
    /// observer runs inside). If the replica is busy, the next flush applies it.
    fn apply(&self, bytes: &[u8], origin: &'static str) {
        let Ok(update) = Update::decode_v1(bytes) else {
            return;
        };
        if update.is_empty() {
            // Most answers to a probe: nothing new, nothing to render.
            return;
        }
        let applied = match self.inner.doc.doc().try_transact_mut_with(origin) {
            // An update whose dependencies are missing waits inside the replica.
            Ok(mut txn) => txn.apply_update(update).is_ok(),
            Err(_) => {
                self.defer(Deferred::Apply(origin, bytes.to_vec()));
                false
            }
        };
        if applied {
            self.inner.state.borrow_mut().revision += 1;
        }
    }

    /// Puts work off until the replica is free: a little later rather than in a
    /// microtask, so that whoever holds it gets to run first.
    fn defer(&self, work: Deferred) {
        self.inner.deferred.borrow_mut().push(work);
        let session = self.clone();
        spawn_local(async move {
            TimeoutFuture::new(DEFERRED_RETRY_MS).await;
            session.flush();
        });
    }

    fn send_step1(&self) {
        match self.inner.doc.doc().try_transact() {
            Ok(txn) => {
                let sv = txn.state_vector();
                drop(txn);
                self.send(&protocol::step1(&sv));
            }
            Err(_) => self.defer(Deferred::Step1),
        }
    }

    fn open_tab_channel(&self) {
        let doc_id = self.inner.state.borrow().doc_id.clone();
        let weak = Rc::downgrade(&self.inner);
        let channel = DocTabChannel::open(&doc_id, move |update| {
            if let Some(session) = DocSession::upgrade(&weak) {
                if !session.inner.state.borrow().closed {
                    session.apply(&update, TAB_ORIGIN);
                    session.emit();
                }
            }
        });
        // Without BroadcastChannel the tabs still meet through the server.
        self.inner.state.borrow_mut().tab = channel;
    }

    fn listen_to_window(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut listeners = Vec::new();
        for event in ["online", "offline", "pagehide"] {
            let weak = Rc::downgrade(&self.inner);
            let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
                let Some(session) = DocSession::upgrade(&weak) else {
                    return;
                };
                match event {
                    "online" => session.input(SyncInput::BrowserOnline),
                    "offline" => session.input(SyncInput::BrowserOffline),
                    // The tab is going away (or into the back/forward cache): its cursor
                    // leaves now. `pagehide` fires in both cases, `beforeunload` not.
                    _ => session.farewell(),
                }
                session.emit();
            });
            if let Some(listener) = WindowListener::add(&window, event, closure) {
                listeners.push(listener);
            }
        }
        self.inner.state.borrow_mut().listeners = listeners;
    }

    /// Tells the others this tab is gone (see [`PresenceTable::farewell`]).
    fn farewell(&self) {
        let mut state = self.inner.state.borrow_mut();
        if state.machine.is_open() {
            let update = state.presence.farewell();
            if let Some(socket) = &state.socket {
                socket.send_bytes(&protocol::awareness(update));
            }
        }
    }

    fn start_ticker(&self) {
        let weak = Rc::downgrade(&self.inner);
        let ticker = Interval::new(TICK_MS, move || {
            if let Some(session) = DocSession::upgrade(&weak) {
                session.tick();
            }
        });
        self.inner.state.borrow_mut().ticker = Some(ticker);
    }

    fn tick(&self) {
        let now = now_ms();
        self.input(SyncInput::Tick {
            now_ms: now,
            online: browser::navigator_online(),
        });
        {
            let mut state = self.inner.state.borrow_mut();
            if state.presence.renew_due(now) && state.machine.is_open() {
                let update = state.presence.local_update(now);
                if let Some(socket) = &state.socket {
                    socket.send_bytes(&protocol::awareness(update));
                }
            }
            state.presence.expire(now);
        }
        // Peers may have expired; the page ignores a view equal to the last one.
        self.emit();
    }

    /// Reads the stored copy into the replica (origin [`STORED_ORIGIN`]), then connects.
    fn restore_then_connect(&self) {
        let session = self.clone();
        let doc_id = self.inner.state.borrow().doc_id.clone();
        let client = self.inner.doc.doc().client_id().get();
        spawn_local(async move {
            match DocStore::open(&doc_id, client).await {
                Ok(store) => {
                    let loaded = store.load().await;
                    let count = match loaded {
                        Ok(records) => {
                            let count = records.len();
                            session.apply_stored(records.into_iter().map(|r| r.update));
                            count
                        }
                        Err(error) => {
                            session.inner.state.borrow_mut().storage_note =
                                Some(format!("Could not read this browser's copy: {error}."));
                            0
                        }
                    };
                    let unstored = {
                        let mut state = session.inner.state.borrow_mut();
                        state.storage = Storage::Open(store);
                        state.stored_records = count;
                        std::mem::take(&mut state.unstored)
                    };
                    if let Some(update) = merge_updates(unstored) {
                        session.store(update);
                    } else if count > COMPACT_AFTER {
                        session.compact();
                    }
                }
                Err(error) => {
                    let mut state = session.inner.state.borrow_mut();
                    state.storage = Storage::Unavailable;
                    state.unstored.clear();
                    state.storage_note = Some(format!(
                        "This browser cannot keep a copy of the document ({error}): edits made offline are lost when the tab closes."
                    ));
                }
            }
            let online = browser::navigator_online();
            {
                let mut state = session.inner.state.borrow_mut();
                state.restored = true;
                if state.closed {
                    return;
                }
            }
            session.input(SyncInput::Start { online });
            session.emit();
        });
    }

    fn apply_stored(&self, updates: impl Iterator<Item = Vec<u8>>) {
        let decoded: Vec<Update> = updates
            .filter_map(|bytes| Update::decode_v1(&bytes).ok())
            .collect();
        if decoded.is_empty() {
            return;
        }
        if let Ok(mut txn) = self.inner.doc.doc().try_transact_mut_with(STORED_ORIGIN) {
            for update in decoded {
                // An update this replica cannot integrate yet waits inside it as pending.
                let _ = txn.apply_update(update);
            }
        }
        self.inner.state.borrow_mut().revision += 1;
        self.emit();
    }

    /// Appends an update to the stored copy (or keeps it until storage is open), and
    /// compacts the copy when it has grown past [`COMPACT_AFTER`] records.
    fn store(&self, update: Vec<u8>) {
        let store = {
            let mut state = self.inner.state.borrow_mut();
            match &state.storage {
                Storage::Opening => {
                    state.unstored.push(update);
                    return;
                }
                Storage::Unavailable => return,
                Storage::Open(store) => store.clone(),
            }
        };
        let session = self.clone();
        spawn_local(async move {
            let written = store.append(&update).await;
            let compact = {
                let mut state = session.inner.state.borrow_mut();
                match written {
                    Ok(()) => {
                        state.stored_records += 1;
                        state.stored_records > COMPACT_AFTER && !state.compacting
                    }
                    Err(error) => {
                        state.storage_note = Some(format!(
                            "Could not save an edit in this browser ({error}); it is kept in this tab."
                        ));
                        false
                    }
                }
            };
            if compact {
                session.compact();
            }
        });
    }

    /// Replaces the stored records with one: everything they hold merged with the
    /// replica's whole state. Records another tab adds meanwhile are not touched.
    fn compact(&self) {
        let store = {
            let mut state = self.inner.state.borrow_mut();
            let Storage::Open(store) = &state.storage else {
                return;
            };
            let store = store.clone();
            if state.compacting {
                return;
            }
            state.compacting = true;
            store
        };
        let session = self.clone();
        spawn_local(async move {
            let result = async {
                let records = store.load().await?;
                let full = session
                    .inner
                    .doc
                    .doc()
                    .try_transact()
                    .map(|txn| txn.encode_state_as_update_v1(&StateVector::default()))
                    .map_err(|_| IdbError("the replica is busy".into()))?;
                let mut all: Vec<Vec<u8>> = records.iter().map(|r| r.update.clone()).collect();
                all.push(full);
                let merged = yrs::merge_updates_v1(all.iter())
                    .map_err(|error| IdbError(error.to_string()))?;
                let keys: Vec<String> = records.into_iter().map(|r| r.key).collect();
                store.replace(&keys, &merged).await?;
                Ok::<usize, IdbError>(keys.len())
            }
            .await;
            let mut state = session.inner.state.borrow_mut();
            state.compacting = false;
            match result {
                Ok(replaced) => {
                    state.stored_records = state.stored_records.saturating_sub(replaced) + 1;
                }
                Err(error) => {
                    state.storage_note = Some(format!(
                        "Could not compact this browser's copy of the document: {error}."
                    ));
                }
            }
        });
    }

    fn emit(&self) {
        if self.inner.state.borrow().closed {
            return;
        }
        let view = self.view();
        self.inner.on_change.emit(view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::docs::schema;
    use yrs::updates::encoder::Encode;
    use yrs::{Doc, GetString};

    use SyncCommand as C;
    use SyncInput as I;

    /// A machine that connected and finished its first exchange with nothing to send.
    fn synced() -> SyncMachine {
        let mut m = SyncMachine::default();
        assert_eq!(m.handle(I::Start { online: true }), vec![C::Connect]);
        assert_eq!(m.status(), SyncStatus::Connecting);
        assert_eq!(
            m.handle(I::Opened { now_ms: 0.0 }),
            vec![C::SendStep1, C::SendAwareness]
        );
        assert_eq!(m.status(), SyncStatus::Connecting);
        assert_eq!(
            m.handle(I::ServerStep1 {
                we_have_more: false
            }),
            vec![C::SendStep2]
        );
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
        m
    }

    fn closed(code: u16) -> SyncInput {
        I::Closed {
            code,
            reason: String::new(),
            jitter: 0.5,
        }
    }

    #[test]
    fn local_edits_are_saving_until_a_step_2_answers_a_later_step_1() {
        let mut m = synced();
        assert_eq!(m.handle(I::LocalChange), vec![C::SendUpdate, C::SendStep1]);
        assert_eq!(m.status(), SyncStatus::Saving);
        // A second edit goes out at once, but one probe at a time is enough.
        assert_eq!(m.handle(I::LocalChange), vec![C::SendUpdate]);
        // The first probe's answer confirms only the first edit: probe again.
        assert_eq!(m.handle(I::ServerStep2), vec![C::SendStep1]);
        assert_eq!(m.status(), SyncStatus::Saving);
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
        // A remote update changes nothing about what is saved.
        assert_eq!(m.status().as_str(), "synced");
    }

    #[test]
    fn offline_edits_wait_for_the_network_and_go_out_in_the_step_2() {
        let mut m = synced();
        assert_eq!(m.handle(I::BrowserOffline), vec![C::CloseSocket]);
        assert_eq!(m.status(), SyncStatus::Offline);
        assert!(
            m.detail().contains("kept in this browser"),
            "{}",
            m.detail()
        );
        assert!(
            m.detail().contains("Waiting for the network"),
            "{}",
            m.detail()
        );
        // Edits made offline are not sent, and nothing reconnects on its own.
        assert_eq!(m.handle(I::LocalChange), vec![]);
        assert_eq!(m.handle(I::LocalChange), vec![]);
        assert_eq!(m.handle(I::RetryDue), vec![]);
        assert_eq!(m.status(), SyncStatus::Offline);

        assert_eq!(m.handle(I::BrowserOnline), vec![C::Connect]);
        assert_eq!(
            m.handle(I::Opened { now_ms: 1.0 }),
            vec![C::SendStep1, C::SendAwareness]
        );
        // The server's step 1: our step 2 carries the offline edits.
        assert_eq!(
            m.handle(I::ServerStep1 { we_have_more: true }),
            vec![C::SendStep2]
        );
        // The answer to our first step 1 brings the server's content and confirms none
        // of ours: now a probe asks for the confirmation.
        assert_eq!(m.handle(I::ServerStep2), vec![C::SendStep1]);
        assert_eq!(m.status(), SyncStatus::Saving);
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
    }

    #[test]
    fn a_reload_with_a_copy_the_server_lacks_shows_saving_until_confirmed() {
        let mut m = SyncMachine::default();
        m.handle(I::Start { online: true });
        m.handle(I::Opened { now_ms: 0.0 });
        // Our step 1 is answered first this time.
        assert_eq!(m.handle(I::ServerStep2), vec![]);
        assert_eq!(m.status(), SyncStatus::Synced);
        assert_eq!(
            m.handle(I::ServerStep1 { we_have_more: true }),
            vec![C::SendStep2, C::SendStep1]
        );
        assert_eq!(m.status(), SyncStatus::Saving);
        m.handle(I::ServerStep2);
        assert_eq!(m.status(), SyncStatus::Synced);
    }

    #[test]
    fn a_broken_connection_reconnects_with_growing_jittered_delays() {
        let mut m = synced();
        assert_eq!(m.handle(closed(1006)), vec![C::RetryIn(250)]);
        assert_eq!(m.status(), SyncStatus::Offline);
        assert!(m.detail().contains("Retrying in 0.2 s"), "{}", m.detail());
        assert_eq!(m.handle(I::RetryDue), vec![C::Connect]);
        assert_eq!(m.handle(closed(1006)), vec![C::RetryIn(500)]);
        m.handle(I::RetryDue);
        assert_eq!(m.handle(closed(1006)), vec![C::RetryIn(1000)]);
        assert_eq!(m.failed_attempts(), 3);
        // The browser coming back online reconnects at once, forgetting the backoff.
        assert_eq!(m.handle(I::BrowserOnline), vec![C::CancelRetry, C::Connect]);
        assert_eq!(m.failed_attempts(), 0);
        // A successful exchange resets it too.
        m.handle(closed(1006));
        m.handle(I::RetryDue);
        m.handle(I::Opened { now_ms: 0.0 });
        m.handle(I::ServerStep2);
        assert_eq!(m.failed_attempts(), 0);
        assert_eq!(m.status(), SyncStatus::Synced);
        // A close reported twice is handled once.
        assert_eq!(m.handle(closed(1001)).len(), 1);
        assert_eq!(m.handle(closed(1001)), vec![]);
    }

    #[test]
    fn reconnect_delays_are_capped_at_ten_seconds() {
        let backoff = Backoff::DOCUMENT;
        assert_eq!(backoff.delay_ms(0, 0.0), 0);
        assert_eq!(backoff.delay_ms(0, 0.999_999), 499);
        assert_eq!(backoff.delay_ms(3, 1.0), 4_000);
        assert_eq!(backoff.delay_ms(5, 1.0), 10_000);
        assert_eq!(backoff.delay_ms(40, 0.5), 10_000 / 2);
        assert_eq!(backoff.delay_ms(2, f64::NAN), 0);
        // The close codes that end a session for good, and those that are retried.
        assert_eq!(after_close(close_code::READ_ONLY), AfterClose::Stop);
        assert_eq!(after_close(close_code::DELETED), AfterClose::Stop);
        assert_eq!(after_close(close_code::MALFORMED), AfterClose::Retry);
        assert_eq!(after_close(1006), AfterClose::Retry);
    }

    #[test]
    fn a_closed_offline_connection_waits_for_the_online_event() {
        let mut m = synced();
        m.handle(I::BrowserOffline);
        // A late close of the old socket is ignored; a fresh start offline does not dial.
        assert_eq!(m.handle(closed(1006)), vec![]);
        let mut fresh = SyncMachine::default();
        assert_eq!(fresh.handle(I::Start { online: false }), vec![]);
        assert_eq!(fresh.status(), SyncStatus::Offline);
        assert_eq!(fresh.handle(I::BrowserOnline), vec![C::Connect]);
        // A missed `online` event: the periodic check notices the network is back.
        m.handle(I::Tick {
            now_ms: 1.0,
            online: false,
        });
        assert_eq!(m.status(), SyncStatus::Offline);
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 2.0,
                online: true
            }),
            vec![C::Connect]
        );
    }

    #[test]
    fn read_only_and_deleted_stop_for_good() {
        let mut m = synced();
        assert_eq!(
            m.handle(I::AuthDenied {
                reason: "read-only: you are a viewer of this document".into()
            }),
            vec![C::CloseSocket]
        );
        assert_eq!(
            m.status(),
            SyncStatus::ReadOnly("read-only: you are a viewer of this document".into())
        );
        assert!(!m.status().allows_edits());
        // The close that follows, the network and the timers change nothing.
        assert_eq!(m.handle(closed(close_code::READ_ONLY)), vec![]);
        assert_eq!(m.handle(I::BrowserOnline), vec![]);
        assert_eq!(m.handle(I::LocalChange), vec![]);
        assert!(m.is_over());

        let mut revoked = synced();
        assert_eq!(revoked.handle(closed(close_code::READ_ONLY)), vec![]);
        assert_eq!(revoked.status().as_str(), "read-only");

        let mut deleted = synced();
        assert_eq!(deleted.handle(closed(close_code::DELETED)), vec![]);
        assert_eq!(deleted.status(), SyncStatus::Deleted);
        assert_eq!(deleted.handle(I::RetryDue), vec![]);
        assert_eq!(deleted.handle(I::BrowserOnline), vec![]);
    }

    #[test]
    fn a_malformed_close_is_an_error_until_the_next_sync() {
        let mut m = synced();
        m.handle(I::Closed {
            code: close_code::MALFORMED,
            reason: "malformed message: empty frame".into(),
            jitter: 0.0,
        });
        match m.status() {
            SyncStatus::Error(message) => assert!(message.contains("empty frame"), "{message}"),
            other => panic!("{other:?}"),
        }
        m.handle(I::RetryDue);
        m.handle(I::Opened { now_ms: 0.0 });
        m.handle(I::ServerStep2);
        assert_eq!(m.status(), SyncStatus::Synced);
    }

    #[test]
    fn a_silent_server_is_probed_then_given_up() {
        let mut m = synced();
        m.handle(I::Heard { now_ms: 1_000.0 });
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 10_000.0,
                online: true
            }),
            vec![]
        );
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 16_000.0,
                online: true
            }),
            vec![C::SendStep1]
        );
        // One probe at a time.
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 20_000.0,
                online: true
            }),
            vec![]
        );
        assert_eq!(
            m.handle(I::Tick {
                now_ms: 31_000.0,
                online: true
            }),
            vec![C::CloseSocket, C::RetryIn(0)]
        );
        assert_eq!(m.status(), SyncStatus::Offline);
        assert!(m.detail().contains("stopped answering"), "{}", m.detail());
    }

    #[test]
    fn stopping_closes_and_ignores_the_rest() {
        let mut m = synced();
        assert_eq!(m.handle(I::Stop), vec![C::CloseSocket]);
        assert_eq!(m.handle(I::BrowserOnline), vec![]);
        assert_eq!(m.handle(I::LocalChange), vec![]);
    }

    #[test]
    fn statuses_have_stable_names_and_labels() {
        let all = [
            (SyncStatus::Connecting, "connecting"),
            (SyncStatus::Synced, "synced"),
            (SyncStatus::Saving, "saving"),
            (SyncStatus::Offline, "offline"),
            (SyncStatus::ReadOnly("x".into()), "read-only"),
            (SyncStatus::Deleted, "deleted"),
            (SyncStatus::Error("x".into()), "error"),
        ];
        for (status, name) in all {
            assert_eq!(status.as_str(), name);
            assert!(!status.label().is_empty());
        }
        assert_eq!(
            describe_close(close_code::SLOW_CONSUMER, " too slow "),
            "This page fell behind on the document's updates. (too slow)"
        );
        assert_eq!(
            describe_close(4999, ""),
            "The connection closed (code 4999)."
        );
    }

    // -----------------------------------------------------------------------------------
    // Presence

    fn awareness(client: u64, clock: u32, json: &str) -> AwarenessUpdate {
        one_client(client, clock, json.to_owned())
    }

    fn state_json(name: &str) -> String {
        format!(r##"{{"user":{{"name":"{name}","color":"#30a46c"}},"cursor":null}}"##)
    }

    #[test]
    fn the_local_state_has_the_documented_shape() {
        let mut table = PresenceTable::new(7, "alice");
        let update = table.local_update(0.0);
        let entry = &update.clients[&ClientID::new(7)];
        let json: serde_json::Value = serde_json::from_str(&entry.json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"user": {"name": "alice", "color": user_color("alice")}, "cursor": null})
        );

        let doc = schema::new_doc_with_client(7);
        let text = doc.get_or_insert_text(schema::TEXT);
        text.insert(&mut doc.transact_mut(), 0, "hello");
        let cursor = cursor_at(&doc.transact(), &text, 1, 3);
        assert!(table.set_cursor(Some(cursor.clone())));
        assert!(
            !table.set_cursor(Some(cursor)),
            "unchanged: nothing to announce"
        );
        let update = table.local_update(0.0);
        let entry = &update.clients[&ClientID::new(7)];
        assert_eq!(entry.clock, 1);
        let json: serde_json::Value = serde_json::from_str(&entry.json).unwrap();
        // Yjs' relativePositionToJSON: {"item": {"client", "clock"}, "assoc"}.
        assert_eq!(
            json["cursor"]["anchor"],
            serde_json::json!({"item": {"client": 7, "clock": 1}, "assoc": 0})
        );
        assert_eq!(json["cursor"]["head"]["item"]["clock"], 3);
    }

    #[test]
    fn colours_are_derived_from_the_name() {
        assert_eq!(user_color("alice"), user_color("alice"));
        assert!(PRESENCE_COLORS.contains(&user_color("bob")));
        let distinct: std::collections::BTreeSet<&str> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|name| user_color(name))
            .collect();
        assert!(distinct.len() >= 3, "{distinct:?}");
        assert!(is_hex_color("#abc") && is_hex_color("#A0b1C2"));
        assert!(!is_hex_color("red") && !is_hex_color("#12345") && !is_hex_color("#ggg"));
    }

    #[test]
    fn peers_follow_y_protocols_clock_rules() {
        let mut table = PresenceTable::new(1, "me");
        let change = table.apply(&awareness(2, 1, &state_json("bob")), 0.0);
        assert!(change.changed && !change.reannounce);
        let names: Vec<(String, bool)> = table
            .present()
            .into_iter()
            .map(|p| (p.name, p.me))
            .collect();
        assert_eq!(names, vec![("me".into(), true), ("bob".into(), false)]);
        // An older or equal clock with a state is ignored.
        assert!(
            !table
                .apply(&awareness(2, 1, &state_json("robert")), 1.0)
                .changed
        );
        assert!(
            !table
                .apply(&awareness(2, 0, &state_json("robert")), 1.0)
                .changed
        );
        // A renewal (same state, higher clock) is no change, but counts as seen.
        assert!(
            !table
                .apply(&awareness(2, 2, &state_json("bob")), 20_000.0)
                .changed
        );
        assert!(!table.expire(40_000.0), "renewed at 20 s");
        // Removal at the same clock is accepted once, and is not undone by a replay.
        assert!(table.apply(&awareness(2, 2, "null"), 21_000.0).changed);
        assert!(
            !table
                .apply(&awareness(2, 2, &state_json("bob")), 21_000.0)
                .changed
        );
        assert_eq!(table.present().len(), 1);
        // A newer state brings them back.
        assert!(
            table
                .apply(&awareness(2, 3, &state_json("bob")), 22_000.0)
                .changed
        );
        assert_eq!(table.present().len(), 2);
        // Forgetting peers (a closed connection) leaves only this tab.
        assert!(table.forget_peers());
        assert_eq!(table.present().len(), 1);
    }

    #[test]
    fn silent_peers_expire_after_thirty_seconds() {
        let mut table = PresenceTable::new(1, "me");
        table.apply(&awareness(2, 1, &state_json("bob")), 1_000.0);
        table.apply(&awareness(3, 1, &state_json("carol")), 10_000.0);
        assert!(!table.expire(30_999.0));
        assert!(table.expire(31_000.0));
        let names: Vec<String> = table.present().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["me", "carol"]);
        assert!(table.expire(40_000.0));
        assert_eq!(table.present().len(), 1);
    }

    #[test]
    fn this_client_is_renewed_and_never_removed_by_others() {
        let mut table = PresenceTable::new(1, "me");
        table.local_update(0.0);
        assert!(!table.renew_due(14_999.0));
        assert!(table.renew_due(15_000.0));
        assert_eq!(
            table.local_update(15_000.0).clients[&ClientID::new(1)].clock,
            1
        );
        // The server removed us (clock + 1) when a connection closed: announce above it.
        let change = table.apply(&awareness(1, 2, "null"), 16_000.0);
        assert!(change.reannounce && !change.changed);
        assert_eq!(
            table.local_update(16_000.0).clients[&ClientID::new(1)].clock,
            3
        );
        // Our own state echoed back is not a peer.
        table.apply(&awareness(1, 3, &state_json("me")), 16_000.0);
        assert_eq!(table.present().len(), 1);
        // A reconnect announces two steps up: above the removal the close will cause.
        table.reconnecting();
        assert_eq!(
            table.local_update(17_000.0).clients[&ClientID::new(1)].clock,
            5
        );
        // The goodbye removes for good: no renewal after it.
        let goodbye = table.goodbye();
        assert_eq!(&*goodbye.clients[&ClientID::new(1)].json, "null");
        assert_eq!(goodbye.clients[&ClientID::new(1)].clock, 6);
        assert!(!table.renew_due(100_000.0));
        assert!(table.present().is_empty());
    }

    #[test]
    fn a_farewell_keeps_the_state_for_a_return() {
        let mut table = PresenceTable::new(1, "me");
        table.local_update(0.0);
        let farewell = table.farewell();
        assert_eq!(farewell.clients[&ClientID::new(1)].clock, 1);
        assert_eq!(&*farewell.clients[&ClientID::new(1)].json, "null");
        // Back from the back/forward cache: the next tick announces above the removal.
        assert!(table.renew_due(1.0));
        assert_eq!(table.local_update(1.0).clients[&ClientID::new(1)].clock, 2);
    }

    #[test]
    fn loosely_shaped_states_are_read_safely() {
        let state = PeerState::parse(r#"{"user":{"name":"  zoe  ","color":"url(x)"}}"#).unwrap();
        assert_eq!(state.name, "zoe");
        assert_eq!(state.color, user_color("zoe"));
        assert_eq!(state.cursor, None);
        let anonymous = PeerState::parse("{}").unwrap();
        assert_eq!(anonymous.name, "Anonymous");
        let long =
            PeerState::parse(&format!(r#"{{"user":{{"name":"{}"}}}}"#, "x".repeat(99))).unwrap();
        assert_eq!(long.name.chars().count(), MAX_PEER_NAME_CHARS);
        // A cursor in a shape we do not know is dropped, the peer is kept.
        let odd = PeerState::parse(r#"{"user":{"name":"a"},"cursor":{"index":3}}"#).unwrap();
        assert_eq!(odd.cursor, None);
        assert_eq!(PeerState::parse("[1,2]"), None);
        assert_eq!(PeerState::parse("not json"), None);
    }

    /// A replica and a peer's state (written by the JavaScript client's shape) resolve to
    /// offsets that move with the text.
    #[test]
    fn peer_cursors_resolve_against_the_replica_and_move_with_edits() {
        let theirs = schema::new_doc_with_client(2);
        let their_text = theirs.get_or_insert_text(schema::TEXT);
        their_text.insert(&mut theirs.transact_mut(), 0, "hello world");
        let cursor = cursor_at(&theirs.transact(), &their_text, 6, 11);
        let state = serde_json::json!({
            "user": {"name": "bob", "color": "#0091ff"},
            "cursor": {"anchor": cursor.anchor, "head": cursor.head},
        })
        .to_string();

        let ours = schema::new_doc_with_client(1);
        let text = ours.get_or_insert_text(schema::TEXT);
        let mut table = PresenceTable::new(1, "me");
        table.apply(&awareness(2, 1, &state), 0.0);
        // Their text has not arrived yet: no cursor to show.
        assert!(table.cursors(&ours.transact(), &text).is_empty());

        let update = theirs
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        ours.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        let cursors = table.cursors(&ours.transact(), &text);
        assert_eq!(
            cursors,
            vec![PeerCursor {
                client_id: 2,
                name: "bob".into(),
                color: "#0091ff".into(),
                anchor: 6,
                head: 11,
            }]
        );
        // An insertion before the cursor moves it; text after it does not.
        text.insert(&mut ours.transact_mut(), 0, ">> ");
        text.insert(&mut ours.transact_mut(), 14, "!");
        assert_eq!(text.get_string(&ours.transact()), ">> hello world!");
        let moved = &table.cursors(&ours.transact(), &text)[0];
        // The head was at the end: it stays at the end.
        assert_eq!((moved.anchor, moved.head), (9, 15));
        // Our own client's state never becomes a peer cursor.
        let mine = serde_json::json!({"user": {"name": "me"}, "cursor": {"anchor": cursor.anchor, "head": cursor.head}});
        table.apply(&awareness(1, 9, &mine.to_string()), 0.0);
        assert_eq!(table.cursors(&ours.transact(), &text).len(), 1);
    }

    // -----------------------------------------------------------------------------------
    // Codecs

    #[test]
    fn server_frames_keep_step_2_and_update_apart() {
        let doc = Doc::new();
        let sv = doc.transact().state_vector();
        assert!(matches!(
            decode_server_frame(&protocol::step1(&sv)).unwrap(),
            ServerFrame::Step1(_)
        ));
        assert!(matches!(
            decode_server_frame(&protocol::step2(vec![0, 0])).unwrap(),
            ServerFrame::Step2(u) if u == vec![0, 0]
        ));
        assert!(matches!(
            decode_server_frame(&protocol::update(vec![0, 0])).unwrap(),
            ServerFrame::Update(u) if u == vec![0, 0]
        ));
        assert!(matches!(
            decode_server_frame(&protocol::permission_denied("no")).unwrap(),
            ServerFrame::Denied(r) if r == "no"
        ));
        assert!(matches!(
            decode_server_frame(&protocol::awareness(awareness(3, 1, "{}"))).unwrap(),
            ServerFrame::Awareness(u) if u.clients.len() == 1
        ));
        assert!(matches!(
            decode_server_frame(&protocol::query_awareness()).unwrap(),
            ServerFrame::Ignored
        ));
        assert!(decode_server_frame(&[]).is_err());
        assert!(decode_server_frame(&[0, 1, 10, 0]).is_err());
    }

    #[test]
    fn a_replica_with_offline_edits_has_more_than_the_server() {
        let server = schema::new_doc_with_client(1);
        let text = server.get_or_insert_text(schema::TEXT);
        text.insert(&mut server.transact_mut(), 0, "shared");
        let client = schema::new_doc_with_client(2);
        let shared = server
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        client
            .transact_mut()
            .apply_update(Update::decode_v1(&shared).unwrap())
            .unwrap();
        let server_sv = server.transact().state_vector();
        assert!(!has_more_than(
            &client.transact().state_vector(),
            &server_sv
        ));
        let client_text = client.get_or_insert_text(schema::TEXT);
        client_text.insert(&mut client.transact_mut(), 6, " offline");
        assert!(has_more_than(&client.transact().state_vector(), &server_sv));
        // The step 2 the client answers with brings the server up to date.
        let step2 = client.transact().encode_state_as_update_v1(&server_sv);
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&step2).unwrap())
            .unwrap();
        assert_eq!(text.get_string(&server.transact()), "shared offline");
        assert_eq!(
            server.transact().state_vector().encode_v1(),
            client.transact().state_vector().encode_v1()
        );
    }

    #[test]
    fn base64_matches_rfc_4648() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64::encode(plain.as_bytes()), encoded);
            assert_eq!(base64::decode(encoded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64::decode(&base64::encode(&all)).unwrap(), all);
        assert_eq!(base64::decode("Zm9v!"), None);
        assert_eq!(base64::decode("Z"), None);
        assert_eq!(base64::decode("Zh=="), None, "non-zero padding bits");
    }

    #[test]
    fn tab_messages_carry_updates_as_base64_json() {
        let message = TabMessage::update(&[0, 1, 2, 250]);
        assert_eq!(message.encode(), r#"{"type":"update","update":"AAEC+g=="}"#);
        assert_eq!(
            TabMessage::decode_update(&message.encode()),
            Some(vec![0, 1, 2, 250])
        );
        assert_eq!(TabMessage::decode_update(r#"{"type":"hello"}"#), None);
        assert_eq!(TabMessage::decode_update("nope"), None);
        assert_eq!(tab_channel_name("d1"), "meridian-docs-d1");
        assert_eq!(sync_path("a/b"), "/yjs/a%2Fb");
    }
}
