//! A loaded document: one task (the room) owns the yrs `Doc`, the awareness table and
//! the connections watching it; everything reaches it as a message, in order.
//!
//! Invariants:
//! - Forward at once, acknowledge when durable: an update is applied to the in-memory
//!   doc and forwarded to the room's other connections at once; it is stored in a batch
//!   with the updates that arrived meanwhile (handed to the instance's writer: one
//!   transaction, one fsync), without holding up the room. A client's sync step 1 is
//!   answered only once every update that client sent before it is stored (`Acks`
//!   holds it back): the step 2 is the acknowledgement clients rely on.
//!   Other instances hear of updates only from the commit (they read the store).
//! - Nothing acknowledged is lost by forwarding early. If the server dies (or a batch
//!   fails) before an update is stored, its sender has not been acknowledged, still
//!   holds the update, and sends it again on reconnect (the y-websocket client answers
//!   the server's step 1 with everything the server lacks); every peer that received it
//!   early holds it too and resends it the same way. Replicas merge a repeated update
//!   idempotently, so every replica converges whoever resends first.
//! - Batches are answered in the order submitted. `seq` is the highest stored update
//!   number such that every update up to it is in the in-memory doc; compaction,
//!   versions and statistics first wait until nothing is unstored (`settle`), so a
//!   snapshot through `seq` holds exactly the updates through `seq`.
//! - An update that changes nothing (already known) is neither stored nor forwarded; a
//!   viewer's update that would change something is refused and never applied.
//! - If storing fails, the room closes every connection (1011) and ends without keeping
//!   its memory: clients reconnect and resend what the server did not confirm.
//! - A room with no connections unloads after `doc_idle_unload` (compacting first); the
//!   registry entry is removed before its queue is closed, and a join that raced with
//!   the unload is told to retry, which loads the room again.
//! - Time is the instance's injected `Clock` (idle unload, compaction's pause, awareness
//!   expiry); a timer tick only says when to look.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use meridian_shared::api::DatabaseBackend;
use meridian_shared::docs::protocol::{self, Frame};
use meridian_shared::docs::rich::{self, Block};
use meridian_shared::docs::{schema, Restored, Role, RoomInfo, RoomStats, Version, VersionKind};
use meridian_shared::realtime::close_code;
use tokio::sync::{mpsc, oneshot};
use yrs::sync::awareness::AwarenessUpdate;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use super::awareness::{AwarenessTable, Owner};
use super::writer::{self, Writer};
use super::{cluster, store};
use crate::ids::IdError;
use crate::realtime::socket::{Close, QueueSender};
use crate::{AppState, Config};

mod acks;
mod registry;
mod storage;

use self::acks::{Acks, InFlight};
pub use self::registry::{conn_queue_len, RoomHandle, Rooms};

pub type ConnId = u64;

/// The room's end of a connection's queue (closing it gives the connection its reason).
pub type ConnLink = QueueSender<Bytes>;

/// Why a room could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("the document is being unloaded; retry")]
    Retry,
    #[error("the document no longer exists")]
    Gone,
    #[error("storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    /// No id for a new version (the generator has no lease, or its clock is behind).
    #[error("no id for the version: {0}")]
    Ids(#[from] IdError),
}

/// A client's frame as the room receives it: already validated by the connection
/// (`protocol::decode_frame`). Updates travel as bytes (a decoded yrs `Update` is not
/// `Send`) and are decoded again by the room.
pub enum ClientFrame {
    Step1(StateVector),
    Update(Vec<u8>),
    Awareness(AwarenessUpdate),
    QueryAwareness,
    /// Clients have nothing to say with an auth message; it is ignored.
    Auth,
}

impl From<Frame> for ClientFrame {
    fn from(frame: Frame) -> ClientFrame {
        match frame {
            Frame::Step1(sv) => ClientFrame::Step1(sv),
            Frame::Update { raw, .. } => ClientFrame::Update(raw),
            Frame::Awareness(update) => ClientFrame::Awareness(update),
            Frame::QueryAwareness => ClientFrame::QueryAwareness,
            Frame::Auth(_) => ClientFrame::Auth,
        }
    }
}

pub enum RoomMsg {
    Join {
        conn: ConnId,
        user_id: String,
        role: Role,
        link: ConnLink,
        reply: oneshot::Sender<Result<(), RoomError>>,
    },
    Frame {
        conn: ConnId,
        frame: ClientFrame,
    },
    Leave {
        conn: ConnId,
    },
    /// Another instance stored updates through `seq`.
    RemoteStored {
        seq: i64,
    },
    RemoteAwareness {
        update: AwarenessUpdate,
    },
    /// A member's role changed (`None`: removed).
    SetRole {
        user_id: String,
        role: Option<Role>,
    },
    Deleted,
    SaveVersion {
        kind: VersionKind,
        name: Option<String>,
        by: Option<String>,
        reply: oneshot::Sender<Result<Version, RoomError>>,
    },
    Restore {
        blocks: Vec<Block>,
        final_line_end: bool,
        by: String,
        reply: oneshot::Sender<Result<Restored, RoomError>>,
    },
    Stats {
        reply: oneshot::Sender<RoomInfo>,
    },
}

/// Messages a room queues before its senders wait.
const ROOM_QUEUE: usize = 4096;
/// Frames queued for one connection before it counts as too slow.
const CONN_QUEUE: usize = 2048;
/// Updates handed to the writer in one batch at most.
const MAX_BATCH: usize = 512;
/// Batches a room has at the writer at most; past that, new updates wait in `pending`
/// and, once `pending` is full too, the room waits for the writer (backpressure).
const MAX_IN_FLIGHT: usize = 16;
/// How often a room looks at its timers.
const TICK: Duration = Duration::from_millis(250);
/// How often (in ticks: 2 s) a room on PostgreSQL checks it has not missed another
/// instance's update.
const CLUSTER_CHECK_TICKS: u32 = 8;
/// A document due for compaction is compacted once no update arrived for this long...
const COMPACT_WHEN_QUIET_FOR: Duration = Duration::from_secs(2);
/// ...or, under continuous typing, once its log is this many times the threshold.
const COMPACT_ANYWAY_FACTOR: i64 = 10;
/// Characters of a version's preview.
const PREVIEW_CHARS: usize = 120;

struct Conn {
    user_id: String,
    role: Role,
    link: ConnLink,
    /// The number of this connection's latest update (0: none yet; see [`Acks`]).
    last_update: u64,
}

/// The room's replica.
///
/// yrs makes `Doc` `Send` only with its `sync` feature, which would also require every
/// observer closure of the browser build (same workspace, unified features) to be
/// `Send + Sync`. The server never registers an observer on a room's doc, and the doc
/// (with every `TextRef` taken from it) is used only by the room's own task, one poll at
/// a time.
struct RoomDoc(Doc);

// SAFETY: see above — no observers (the only non-`Send` parts of a `Doc` without the
// `sync` feature) are ever registered on it, and no reference to it leaves the room's
// task, so moving it between worker threads between polls is sound.
unsafe impl Send for RoomDoc {}

impl std::ops::Deref for RoomDoc {
    type Target = Doc;
    fn deref(&self) -> &Doc {
        &self.0
    }
}

struct Room {
    state: AppState,
    rooms: Arc<Rooms>,
    doc_id: String,
    generation: u64,
    doc: RoomDoc,
    seq: i64,
    snapshot_seq: i64,
    conns: HashMap<ConnId, Conn>,
    awareness: AwarenessTable,
    /// Applied in memory and forwarded, not handed to the writer yet: the updates
    /// numbered `acks.applied - pending.len() + 1 ..= acks.applied`.
    pending: Vec<Vec<u8>>,
    /// Batches at the writer, oldest first.
    in_flight: VecDeque<InFlight>,
    acks: Acks,
    /// Since when the room has had no connection (ms on the instance's clock).
    idle_since: Option<i64>,
    /// When the room last stored an update (compaction waits for a pause).
    last_stored: i64,
    /// Ticks since the last cluster check.
    ticks_since_cluster_check: u32,
    last_auto_version: Option<(i64, i64)>,
    /// Set when the room must end (storage failed, document deleted).
    ending: bool,
}

impl Room {
    fn new(state: AppState, rooms: Arc<Rooms>, doc_id: &str, generation: u64) -> Room {
        let now = state.clock.now_ms();
        Room {
            state,
            rooms,
            doc_id: doc_id.to_owned(),
            generation,
            doc: RoomDoc(schema::new_doc_with_client(0)),
            seq: 0,
            snapshot_seq: 0,
            conns: HashMap::new(),
            awareness: AwarenessTable::default(),
            pending: Vec::new(),
            in_flight: VecDeque::new(),
            acks: Acks::default(),
            idle_since: Some(now),
            last_stored: now,
            ticks_since_cluster_check: 0,
            last_auto_version: None,
            ending: false,
        }
    }

    fn config(&self) -> &Config {
        &self.state.config
    }

    fn now_ms(&self) -> i64 {
        self.state.clock.now_ms()
    }

    /// How long ago `at_ms` was on the instance's clock (zero if the clock stepped back).
    fn since(&self, at_ms: i64) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(at_ms).max(0) as u64)
    }

    fn on_postgres(&self) -> bool {
        self.state.db.backend == DatabaseBackend::Postgres
    }

    async fn load(&mut self) -> Result<(), RoomError> {
        let pool = self.state.db.pool.clone();
        if store::head_seq(&pool, &self.doc_id).await?.is_none() {
            return Err(RoomError::Gone);
        }
        let stored = store::state_after(&pool, &self.doc_id, 0).await?;
        self.snapshot_seq = stored.snapshot.as_ref().map_or(0, |(seq, _)| *seq);
        self.apply_stored(&stored, false);
        self.seq = stored.seq().unwrap_or(0);
        self.last_auto_version = store::latest_auto_version(&pool, &self.doc_id).await?;
        tracing::debug!(doc = %self.doc_id, seq = self.seq, "room loaded");
        Ok(())
    }

    /// Applies stored state to the doc; with `broadcast`, forwards it to every connection.
    fn apply_stored(&mut self, stored: &store::StoredState, broadcast: bool) {
        let parts = stored
            .snapshot
            .iter()
            .map(|(seq, data)| (*seq, data))
            .chain(stored.updates.iter().map(|(seq, data)| (*seq, data)));
        let mut frames = Vec::new();
        for (seq, data) in parts {
            match Update::decode_v1(data) {
                Ok(update) => {
                    // Updates this room forwarded itself (its own, stored meanwhile) are
                    // not sent again.
                    let forward = broadcast && changes_something(&self.doc, &update);
                    if let Err(err) = self.doc.transact_mut().apply_update(update) {
                        tracing::error!(doc = %self.doc_id, seq, %err, "stored update does not apply");
                        continue;
                    }
                    if forward {
                        frames.push(Bytes::from(protocol::update(data)));
                    }
                }
                Err(err) => {
                    tracing::error!(doc = %self.doc_id, seq, %err, "stored update does not decode")
                }
            }
        }
        for frame in frames {
            self.broadcast(frame, None);
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<RoomMsg>) {
        if let Err(err) = self.load().await {
            tracing::warn!(doc = %self.doc_id, %err, "could not load a document");
            self.rooms.remove_if(&self.doc_id, self.generation);
            rx.close();
            while let Some(msg) = rx.recv().await {
                refuse(msg, || match &err {
                    RoomError::Gone => RoomError::Gone,
                    _ => RoomError::Retry,
                });
            }
            return;
        }
        let shutdown = self.state.shutdown.clone();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg).await;
                    while !self.ending {
                        let Ok(msg) = rx.try_recv() else { break };
                        self.handle(msg).await;
                        if self.pending.len() >= MAX_BATCH {
                            self.submit().await;
                        }
                    }
                    self.submit().await;
                }
                stored = next_answer(&mut self.in_flight) => {
                    self.on_stored(stored).await;
                }
                _ = tick.tick() => {
                    self.submit().await;
                    self.on_tick().await;
                    if !self.ending && self.idle_for_long() && self.unload(&mut rx).await {
                        return;
                    }
                }
                _ = shutdown.cancelled() => {
                    self.settle().await;
                    self.compact().await;
                    self.close_all(close_code::GOING_AWAY, "server shutting down");
                    break;
                }
            }
            if self.ending {
                break;
            }
        }
        self.rooms.remove_if(&self.doc_id, self.generation);
        rx.close();
        while let Some(msg) = rx.recv().await {
            refuse(msg, || RoomError::Retry);
        }
    }

    async fn handle(&mut self, msg: RoomMsg) {
        // What reads `seq` or writes the whole state waits until everything is stored.
        if matches!(
            msg,
            RoomMsg::SaveVersion { .. } | RoomMsg::Restore { .. } | RoomMsg::Stats { .. }
        ) {
            self.settle().await;
        }
        match msg {
            RoomMsg::Join {
                conn,
                user_id,
                role,
                link,
                reply,
            } => {
                if self.ending {
                    let _ = reply.send(Err(RoomError::Retry));
                    return;
                }
                let sv = self.doc.transact().state_vector();
                link.try_send(Bytes::from(protocol::step1(&sv)));
                let present = self.awareness.present();
                if !present.clients.is_empty() {
                    link.try_send(Bytes::from(protocol::awareness(present)));
                }
                self.conns.insert(
                    conn,
                    Conn {
                        user_id,
                        role,
                        link,
                        last_update: 0,
                    },
                );
                self.idle_since = None;
                let _ = reply.send(Ok(()));
            }
            RoomMsg::Frame { conn, frame } => self.on_frame(conn, frame),
            RoomMsg::Leave { conn } => self.drop_conn(conn, None),
            RoomMsg::RemoteStored { seq } => {
                if seq > self.seq {
                    self.catch_up(None).await;
                }
            }
            RoomMsg::RemoteAwareness { update } => {
                let now = self.now_ms();
                let changed = self.awareness.apply(&update, Owner::Remote, now);
                if !changed.clients.is_empty() {
                    self.broadcast(Bytes::from(protocol::awareness(changed)), None);
                }
            }
            RoomMsg::SetRole { user_id, role } => {
                let affected: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.user_id == user_id)
                    .map(|(id, _)| *id)
                    .collect();
                for conn in affected {
                    match role {
                        Some(role) => {
                            if let Some(c) = self.conns.get_mut(&conn) {
                                c.role = role;
                            }
                        }
                        None => self.drop_conn(
                            conn,
                            Some(Close::new(
                                close_code::READ_ONLY,
                                "your access to this document was removed",
                            )),
                        ),
                    }
                }
            }
            RoomMsg::Deleted => {
                self.close_all(close_code::DELETED, "the document was deleted");
                self.ending = true;
            }
            RoomMsg::SaveVersion {
                kind,
                name,
                by,
                reply,
            } => {
                let _ = reply.send(self.save_version(kind, name, by).await);
            }
            RoomMsg::Restore {
                blocks,
                final_line_end,
                by,
                reply,
            } => {
                let _ = reply.send(self.restore(&blocks, final_line_end, by).await);
            }
            RoomMsg::Stats { reply } => {
                let state_bytes = self
                    .doc
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default())
                    .len();
                let _ = reply.send(RoomInfo {
                    doc_id: self.doc_id.clone(),
                    connections: self.conns.len(),
                    seq: self.seq,
                    since_snapshot: self.seq - self.snapshot_seq,
                    state_bytes,
                });
            }
        }
    }

    fn send_to(&mut self, conn: ConnId, frame: Bytes) {
        let full = match self.conns.get(&conn) {
            Some(c) => !c.link.try_send(frame),
            None => return,
        };
        if full {
            self.drop_conn(
                conn,
                Some(Close::new(
                    close_code::SLOW_CONSUMER,
                    "too slow to receive the document's updates",
                )),
            );
        }
    }

    /// Sends a frame to every connection but `except`.
    fn broadcast(&mut self, frame: Bytes, except: Option<ConnId>) {
        let mut slow = Vec::new();
        for (id, conn) in &self.conns {
            if Some(*id) == except {
                continue;
            }
            if !conn.link.try_send(frame.clone()) {
                slow.push(*id);
            }
        }
        for id in slow {
            self.drop_conn(
                id,
                Some(Close::new(
                    close_code::SLOW_CONSUMER,
                    "too slow to receive the document's updates",
                )),
            );
        }
    }

    /// Forgets a connection (closing it with `close` if given) and removes its awareness
    /// clients for everyone.
    fn drop_conn(&mut self, conn: ConnId, close: Option<Close>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.acks.forget(conn);
        if let Some(close) = close {
            c.link.close(close);
        }
        let now = self.now_ms();
        let removed = self.awareness.remove_owned_by(conn, now);
        self.share_awareness(removed, None);
        if self.conns.is_empty() {
            self.idle_since = Some(self.now_ms());
        }
    }

    fn close_all(&mut self, code: u16, reason: &str) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.drop_conn(conn, Some(Close::new(code, reason)));
        }
    }

    /// Passes changed awareness states to local connections and other instances.
    fn share_awareness(&mut self, changed: AwarenessUpdate, except: Option<ConnId>) {
        if changed.clients.is_empty() {
            return;
        }
        cluster::publish_awareness(&self.state.hub, &self.doc_id, &changed);
        self.broadcast(Bytes::from(protocol::awareness(changed)), except);
    }

    fn on_frame(&mut self, conn: ConnId, frame: ClientFrame) {
        let Some((role, last_update)) = self.conns.get(&conn).map(|c| (c.role, c.last_update))
        else {
            return;
        };
        match frame {
            ClientFrame::Step1(sv) => {
                // Held back (and answered in `on_stored`) while this connection has
                // updates that are not stored yet.
                if let Some(sv) = self.acks.step1(conn, sv, last_update) {
                    self.answer_step1(conn, &sv);
                }
            }
            ClientFrame::Update(raw) => {
                let update = match Update::decode_v1(&raw) {
                    Ok(update) => update,
                    Err(err) => {
                        let reason = format!("malformed message: update does not decode: {err}");
                        self.drop_conn(conn, Some(Close::new(close_code::MALFORMED, reason)));
                        return;
                    }
                };
                if !changes_something(&self.doc, &update) {
                    return;
                }
                if !role.can_edit() {
                    self.send_to(
                        conn,
                        Bytes::from(protocol::permission_denied(
                            "read-only: you are a viewer of this document",
                        )),
                    );
                    self.drop_conn(
                        conn,
                        Some(Close::new(
                            close_code::READ_ONLY,
                            "viewers cannot edit this document",
                        )),
                    );
                    return;
                }
                let applied = self.doc.transact_mut().apply_update(update);
                if let Err(err) = applied {
                    self.drop_conn(
                        conn,
                        Some(Close::new(
                            close_code::MALFORMED,
                            format!("update cannot be applied: {err}"),
                        )),
                    );
                    return;
                }
                self.broadcast(Bytes::from(protocol::update(&raw)), Some(conn));
                let number = self.push_pending(raw);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.last_update = number;
                }
            }
            ClientFrame::Awareness(update) => {
                let now = self.now_ms();
                let changed = self.awareness.apply(&update, Owner::Local(conn), now);
                // Back to the sender too, as the reference server does: the JavaScript
                // client counts it as a sign of life.
                self.share_awareness(changed, None);
            }
            ClientFrame::QueryAwareness => {
                let present = self.awareness.present();
                self.send_to(conn, Bytes::from(protocol::awareness(present)));
            }
            ClientFrame::Auth => {}
        }
    }

    fn answer_step1(&mut self, conn: ConnId, sv: &StateVector) {
        let diff = self.doc.transact().encode_state_as_update_v1(sv);
        self.send_to(conn, Bytes::from(protocol::step2(diff)));
    }

    /// Hands the pending updates to the writer as one batch. With `MAX_IN_FLIGHT`
    /// batches already there, it waits for the oldest answer first only when `pending`
    /// is full; otherwise the updates wait for a later call.
    async fn submit(&mut self) {
        while !self.pending.is_empty() && !self.ending {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                if self.pending.len() < MAX_BATCH {
                    return;
                }
                let stored = next_answer(&mut self.in_flight).await;
                self.on_stored(stored).await;
                continue;
            }
            let take = self.pending.len().min(MAX_BATCH);
            let updates: Vec<Vec<u8>> = if take == self.pending.len() {
                std::mem::take(&mut self.pending)
            } else {
                self.pending.drain(..take).collect()
            };
            let through = self.acks.applied - self.pending.len() as u64;
            let answer = self.rooms.writer().submit(&self.doc_id, updates).await;
            self.in_flight.push_back(InFlight { through, answer });
        }
    }

    /// Queues an update applied (and forwarded) for storage; returns its number.
    fn push_pending(&mut self, update: Vec<u8>) -> u64 {
        self.pending.push(update);
        self.acks.applied()
    }

    /// The writer's answer for the oldest batch in flight.
    async fn on_stored(&mut self, stored: writer::WriteOutcome) {
        let Some(done) = self.in_flight.pop_front() else {
            return;
        };
        if self.ending {
            return;
        }
        match stored {
            Ok(Some((first, last))) => {
                if first > self.seq + 1 {
                    // Another instance stored updates in between: take them first.
                    self.catch_up(Some(first - 1)).await;
                }
                // A catch-up meanwhile may have read this batch already.
                self.seq = self.seq.max(last);
                self.last_stored = self.now_ms();
                for (conn, sv) in self.acks.stored(done.through) {
                    self.answer_step1(conn, &sv);
                }
            }
            Ok(None) => {
                self.close_all(close_code::DELETED, "the document was deleted");
                self.ending = true;
            }
            Err(err) => {
                tracing::error!(doc = %self.doc_id, %err, "could not store document updates");
                self.close_all(
                    close_code::STORAGE_FAILED,
                    "the server could not store your changes; reconnect to resend them",
                );
                self.ending = true;
            }
        }
    }

    /// Stores everything applied so far and waits until it is (or the room ends).
    async fn settle(&mut self) {
        loop {
            self.submit().await;
            if self.ending || self.in_flight.is_empty() {
                return;
            }
            let stored = next_answer(&mut self.in_flight).await;
            self.on_stored(stored).await;
        }
    }

    /// Applies and forwards updates other instances stored after `seq` (through
    /// `until`, or all).
    async fn catch_up(&mut self, until: Option<i64>) {
        let stored = match store::state_after(&self.state.db.pool, &self.doc_id, self.seq).await {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(doc = %self.doc_id, %err, "could not read other instances' updates");
                return;
            }
        };
        let mut stored = stored;
        if let Some(until) = until {
            stored.updates.retain(|(seq, _)| *seq <= until);
            if stored
                .snapshot
                .as_ref()
                .is_some_and(|(seq, _)| *seq > until)
            {
                stored.snapshot = None;
            }
        }
        let Some(seq) = stored.seq() else { return };
        self.apply_stored(&stored, true);
        self.seq = self.seq.max(seq);
    }

    async fn on_tick(&mut self) {
        let now = self.now_ms();
        let timeout = self.config().doc_awareness_timeout.as_millis() as i64;
        let expired = self.awareness.expire(now, timeout);
        self.share_awareness(expired, None);
        self.ticks_since_cluster_check += 1;
        if self.on_postgres()
            && !self.conns.is_empty()
            && self.ticks_since_cluster_check >= CLUSTER_CHECK_TICKS
        {
            self.ticks_since_cluster_check = 0;
            match store::head_seq(&self.state.db.pool, &self.doc_id).await {
                Ok(Some(head)) if head > self.seq => self.catch_up(None).await,
                Ok(None) => {
                    self.close_all(close_code::DELETED, "the document was deleted");
                    self.ending = true;
                }
                Ok(Some(_)) => {}
                Err(err) => tracing::warn!(doc = %self.doc_id, %err, "cluster check failed"),
            }
        }
        // Compaction writes the whole state: done while the document rests, unless its
        // log grows far past the threshold under continuous typing.
        let since = self.seq - self.snapshot_seq;
        let every = self.config().doc_compact_every as i64;
        let resting = self.since(self.last_stored) >= COMPACT_WHEN_QUIET_FOR;
        if since >= every && (resting || since >= every * COMPACT_ANYWAY_FACTOR) {
            self.compact().await;
        }
    }

    fn idle_for_long(&self) -> bool {
        self.conns.is_empty()
            && self
                .idle_since
                .is_some_and(|since| self.since(since) >= self.config().doc_idle_unload)
    }

    /// Compacts and leaves the registry; false if someone arrived meanwhile.
    async fn unload(&mut self, rx: &mut mpsc::Receiver<RoomMsg>) -> bool {
        self.compact().await;
        {
            let mut map = self.rooms.map();
            if !rx.is_empty() {
                return false;
            }
            if map
                .get(&self.doc_id)
                .is_some_and(|h| h.generation == self.generation)
            {
                map.remove(&self.doc_id);
            }
        }
        rx.close();
        while let Some(msg) = rx.recv().await {
            refuse(msg, || RoomError::Retry);
        }
        tracing::debug!(doc = %self.doc_id, seq = self.seq, "room unloaded");
        true
    }
}

/// Whether applying `update` would change `doc`: new content, or deletions of content
/// not deleted yet.
pub fn changes_something(doc: &Doc, update: &Update) -> bool {
    if update.is_empty() {
        return false;
    }
    let txn = doc.transact();
    if update.extends(&txn.state_vector()) {
        return true;
    }
    if update.delete_set().is_empty() {
        return false;
    }
    let deleted = txn.snapshot().delete_set;
    !update.delete_set().diff(&deleted).is_empty()
}

/// The answer for the oldest batch in flight; never ready when none is.
async fn next_answer(in_flight: &mut VecDeque<InFlight>) -> writer::WriteOutcome {
    match in_flight.front_mut() {
        Some(oldest) => (&mut oldest.answer).await,
        None => std::future::pending().await,
    }
}

fn refuse(msg: RoomMsg, err: impl Fn() -> RoomError) {
    match msg {
        RoomMsg::Join { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        RoomMsg::SaveVersion { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        RoomMsg::Restore { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, Text};

    fn edit(doc: &Doc, at: u32, s: &str) -> Vec<u8> {
        let text = doc.get_or_insert_text(schema::TEXT);
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, at, s);
        txn.encode_update_v1()
    }

    fn apply(doc: &Doc, bytes: &[u8]) {
        doc.transact_mut()
            .apply_update(Update::decode_v1(bytes).unwrap())
            .unwrap();
    }

    #[test]
    fn known_updates_change_nothing() {
        let server = schema::new_doc_with_client(0);
        let client = schema::new_doc_with_client(1);
        let first = edit(&client, 0, "hello");
        assert!(changes_something(
            &server,
            &Update::decode_v1(&first).unwrap()
        ));
        apply(&server, &first);
        // The same update again, and an empty update: nothing.
        assert!(!changes_something(
            &server,
            &Update::decode_v1(&first).unwrap()
        ));
        assert!(!changes_something(
            &server,
            &Update::decode_v1(&[0, 0]).unwrap()
        ));
        // A deletion is a change once, then known.
        let text = client.get_or_insert_text(schema::TEXT);
        let delete = {
            let mut txn = client.transact_mut();
            text.remove_range(&mut txn, 0, 2);
            txn.encode_update_v1()
        };
        assert!(changes_something(
            &server,
            &Update::decode_v1(&delete).unwrap()
        ));
        apply(&server, &delete);
        assert!(!changes_something(
            &server,
            &Update::decode_v1(&delete).unwrap()
        ));
        // A reconnecting replica's step 2 carries its whole delete set: known, so nothing.
        let step2 = client
            .transact()
            .encode_state_as_update_v1(&server.transact().state_vector());
        assert!(!changes_something(
            &server,
            &Update::decode_v1(&step2).unwrap()
        ));
        let stext = server.get_or_insert_text(schema::TEXT);
        assert_eq!(stext.get_string(&server.transact()), "llo");
    }
}
