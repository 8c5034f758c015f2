//! A y-websocket client in Rust for tests of `/yjs/{doc_id}`: a yrs replica of one
//! document (made with [`schema::new_doc_with_client`], so offsets are UTF-16 as in Yjs)
//! and the WebSocket that keeps it in sync, authenticated by a [`Client`]'s session
//! cookie.
//!
//! It behaves as the stock JavaScript client does: it answers the server's sync step 1
//! with a step 2, applies every update it receives, sends each local edit as one
//! `update` message, one message per frame, and publishes and collects awareness states.
//! Everything is driven by the test: frames are read only inside the async methods
//! ([`YClient::sync`], [`YClient::recv_until`], [`YClient::drain`]...), never in the
//! background, so a test decides exactly when a replica sees the others.
//!
//! Invariants:
//! - The server sends a sync step 2 only in answer to a step 1, and handles one
//!   connection's messages in order. So once [`YClient::sync`] returns (the step 2
//!   answering its step 1 has arrived), every update this client sent before it is stored
//!   on the server: the acknowledgement barrier of the durability tests.
//! - Every frame the server sends must be exactly one valid y-websocket message (it is
//!   checked with the server's own decoder); anything else fails the test.
//! - Every wait is bounded by [`RECV_TIMEOUT`]: a missing message is a failure, never a
//!   hang.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use meridian_shared::docs::rich::{self, Block};
use meridian_shared::docs::{protocol, schema};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::block::ClientID;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, SyncMessage};
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::{
    Assoc, Doc, GetString, IndexedSequence, ReadTxn, StickyIndex, Text, TextRef, Transact, Update,
};

use crate::client::{Client, Refused, RECV_TIMEOUT};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one frame from the server was, as far as a test cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Step1,
    Step2,
    Update,
    /// The client ids whose awareness entries it carried.
    Awareness(Vec<u64>),
    QueryAwareness,
    /// An auth message; `Some(reason)` is "permission denied".
    Auth(Option<String>),
}

/// One awareness entry as received: a client's state at a clock (`None`: removed).
#[derive(Debug, Clone, PartialEq)]
pub struct AwarenessSeen {
    pub client_id: u64,
    pub clock: u32,
    pub state: Option<Value>,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A close frame: its code (1005 when it had none) and reason.
    Close(u16, String),
    /// The connection ended without a close frame.
    Dropped(String),
}

/// A y-websocket client with its own replica of one document.
pub struct YClient {
    doc_id: String,
    doc: Doc,
    text: TextRef,
    client_id: u64,
    socket: Option<Socket>,
    /// Step 1 messages sent on the current connection, and step 2 messages received on
    /// it: equal when every `sync` has been answered.
    step1_sent: u64,
    step2_received: u64,
    /// Whether the server's step 1 of the current connection has arrived (and was
    /// answered).
    server_step1_seen: bool,
    /// Our own awareness clock and state.
    local_clock: u32,
    local_state: Option<Value>,
    /// The latest awareness entry of every other client, removed ones included.
    peers: HashMap<u64, AwarenessSeen>,
    /// Every awareness entry received, in order.
    awareness_log: Vec<AwarenessSeen>,
    /// Every frame received, in order (of all connections of this client).
    received: Vec<Received>,
    /// The reason of an auth "permission denied" message, if one arrived.
    denied: Option<String>,
    /// How the last connection ended, once it did.
    ended: Option<Ended>,
}

impl YClient {
    /// Connects as `client` to `/yjs/{doc_id}` with a fresh replica whose yrs client id
    /// is random, and syncs (see [`YClient::connect_with_id`]).
    pub async fn connect(client: &Client, doc_id: &str) -> Result<YClient, Refused> {
        YClient::connect_with_id(client, doc_id, random_client_id()).await
    }

    /// Connects with a fresh replica of yrs client id `client_id`. Returns once the
    /// server's step 1 was answered and our own step 1 was answered with a step 2: the
    /// replica holds the whole document and the server holds everything the replica had.
    /// A refused upgrade (an HTTP answer instead of `101`) is `Err`.
    pub async fn connect_with_id(
        client: &Client,
        doc_id: &str,
        client_id: u64,
    ) -> Result<YClient, Refused> {
        let doc = schema::new_doc_with_client(client_id);
        let text = doc.get_or_insert_text(schema::TEXT);
        let mut this = YClient {
            doc_id: doc_id.to_owned(),
            doc,
            text,
            client_id,
            socket: None,
            step1_sent: 0,
            step2_received: 0,
            server_step1_seen: false,
            local_clock: 0,
            local_state: None,
            peers: HashMap::new(),
            awareness_log: Vec::new(),
            received: Vec::new(),
            denied: None,
            ended: None,
        };
        this.reconnect(client).await?;
        Ok(this)
    }

    /// Opens a new connection for this replica (after [`YClient::close`] or
    /// [`YClient::disconnect`]), as the JavaScript client does after being offline: the
    /// server's step 1 is answered with everything the server lacks (edits made offline
    /// included), and our step 1 brings what others wrote meanwhile. Returns once both
    /// have happened; a published awareness state is published again.
    pub async fn reconnect(&mut self, client: &Client) -> Result<(), Refused> {
        assert!(self.socket.is_none(), "already connected");
        let url = format!("ws://{}/yjs/{}", client.authority(), self.doc_id);
        let cookie = client
            .cookie_header()
            .expect("the client has a session cookie: make a request first");
        self.socket = Some(open(&url, &cookie).await?);
        self.step1_sent = 0;
        self.step2_received = 0;
        self.server_step1_seen = false;
        self.ended = None;
        // Remote states are not known on a new connection until the server sends them.
        self.peers.clear();
        self.recv_until("the server's sync step 1", |c| c.server_step1_seen)
            .await;
        self.sync().await;
        if let Some(state) = self.local_state.clone() {
            self.set_awareness(state).await;
        }
        Ok(())
    }

    /// This replica's yrs client id (also its awareness client id).
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    pub fn doc_id(&self) -> &str {
        &self.doc_id
    }

    /// The replica (for reading it with yrs directly).
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }

    /// The document's plain text.
    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// The document's paragraphs.
    pub fn blocks(&self) -> Vec<Block> {
        rich::blocks(&self.doc.transact(), &self.text)
    }

    /// Length in UTF-16 code units.
    pub fn len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts `chunk` at UTF-16 offset `index`, locally at once, and sends the edit as
    /// one `update` message when connected (offline it waits for [`YClient::reconnect`]).
    pub async fn insert(&mut self, index: u32, chunk: &str) {
        let text = self.text.clone();
        self.edit(|txn| text.insert(txn, index, chunk)).await;
    }

    /// Deletes `len` UTF-16 code units from `index`.
    pub async fn delete(&mut self, index: u32, len: u32) {
        let text = self.text.clone();
        self.edit(|txn| text.remove_range(txn, index, len)).await;
    }

    /// Sets formatting attributes (`schema::BOLD`, `schema::HEADER`...) on a range.
    pub async fn format(&mut self, index: u32, len: u32, attrs: Attrs) {
        let text = self.text.clone();
        self.edit(|txn| text.format(txn, index, len, attrs)).await;
    }

    /// Runs one local transaction and sends what it changed as one `update` message.
    pub async fn edit(&mut self, change: impl FnOnce(&mut yrs::TransactionMut)) {
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            change(&mut txn);
        }
        let update = self.doc.transact().encode_diff_v1(&before);
        if self.socket.is_some() {
            self.send_raw(protocol::update(update)).await;
        }
    }

    /// The acknowledgement barrier: sends a step 1 with our state vector and reads (and
    /// applies) everything until the step 2 answering it. Afterwards every update sent
    /// before is stored on the server, and the replica has everything the server had
    /// when it answered. A close or the end of the connection meanwhile fails the test.
    pub async fn sync(&mut self) {
        let sv = self.doc.transact().state_vector();
        self.send_raw(protocol::step1(&sv)).await;
        self.step1_sent += 1;
        self.recv_until("the sync step 2 answering our step 1", |c| {
            c.step2_received >= c.step1_sent
        })
        .await;
    }

    /// Reads and applies frames until `condition` holds (checked first, then after every
    /// frame). [`RECV_TIMEOUT`] passing, a close or the end of the connection fails the
    /// test, naming `what`.
    pub async fn recv_until(&mut self, what: &str, mut condition: impl FnMut(&YClient) -> bool) {
        let deadline = Instant::now() + RECV_TIMEOUT;
        while !condition(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Some(Ok(())) => {}
                Some(Err(ended)) => panic!(
                    "waiting for {what}: the connection ended ({ended:?}); received {:?}; text {:?}",
                    self.received,
                    self.text()
                ),
                None => panic!(
                    "timed out after {RECV_TIMEOUT:?} waiting for {what}; received {:?}; text {:?}",
                    self.received,
                    self.text()
                ),
            }
        }
    }

    /// Applies every frame that has already arrived, without waiting for more. A close
    /// or the end of the connection fails the test.
    pub async fn drain(&mut self) {
        loop {
            match self.next_frame(Duration::ZERO).await {
                Some(Ok(())) => continue,
                Some(Err(ended)) => panic!("the connection ended: {ended:?}"),
                None => return,
            }
        }
    }

    /// Reads frames until the server's close frame and returns `(code, reason)`; frames
    /// before it are applied (an auth message is kept: see [`YClient::denied`]). The
    /// close is answered and the connection is gone afterwards. The end of the
    /// connection without a close frame, or [`RECV_TIMEOUT`] passing, fails the test.
    pub async fn recv_close(&mut self) -> (u16, String) {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Some(Ok(())) => continue,
                Some(Err(Ended::Close(code, reason))) => return (code, reason),
                Some(Err(Ended::Dropped(why))) => {
                    panic!("the connection ended without a close frame: {why}")
                }
                None => panic!(
                    "no close frame within {RECV_TIMEOUT:?}; received {:?}",
                    self.received
                ),
            }
        }
    }

    /// Sends any binary frame, valid or not.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.send_frame(Message::binary(bytes)).await;
    }

    /// Sends the same frame `count` times as fast as the socket takes them, stopping at the
    /// first failure (the server may close the connection meanwhile); returns how many
    /// were sent.
    pub async fn flood(&mut self, bytes: Vec<u8>, count: usize) -> usize {
        let socket = self.socket.as_mut().expect("the client is connected");
        for sent in 0..count {
            let frame = Message::binary(bytes.clone());
            match tokio::time::timeout(RECV_TIMEOUT, socket.send(frame)).await {
                Ok(Ok(())) => {}
                _ => return sent,
            }
        }
        count
    }

    /// Sends a text frame (which the protocol does not allow).
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(Message::text(text)).await;
    }

    async fn send_frame(&mut self, message: Message) {
        let socket = self.socket.as_mut().expect("the client is connected");
        tokio::time::timeout(RECV_TIMEOUT, socket.send(message))
            .await
            .expect("sending took too long")
            .expect("send a frame");
    }

    /// Publishes our awareness state (any JSON; see [`cursor_state`]).
    pub async fn set_awareness(&mut self, state: Value) {
        self.local_clock += 1;
        self.local_state = Some(state.clone());
        let json = serde_json::to_string(&state).expect("JSON serialises");
        self.send_awareness(json).await;
    }

    /// Withdraws our awareness state (a `null` state at the next clock), as the
    /// JavaScript client does when its page unloads.
    pub async fn clear_awareness(&mut self) {
        self.local_clock += 1;
        self.local_state = None;
        self.send_awareness("null".to_owned()).await;
    }

    async fn send_awareness(&mut self, json: String) {
        if self.socket.is_none() {
            return;
        }
        let mut clients = HashMap::new();
        clients.insert(
            ClientID::new(self.client_id),
            AwarenessUpdateEntry {
                clock: self.local_clock,
                json: json.into(),
            },
        );
        self.send_raw(protocol::awareness(AwarenessUpdate { clients }))
            .await;
    }

    /// The awareness states of the other clients that are present: `(client_id, state)`,
    /// sorted by client id.
    pub fn peers(&self) -> Vec<(u64, Value)> {
        let mut present: Vec<(u64, Value)> = self
            .peers
            .values()
            .filter_map(|seen| Some((seen.client_id, seen.state.clone()?)))
            .collect();
        present.sort_by_key(|(id, _)| *id);
        present
    }

    /// The present state of another client.
    pub fn peer(&self, client_id: u64) -> Option<&Value> {
        self.peers.get(&client_id)?.state.as_ref()
    }

    /// Whether a `null` state of `client_id` arrived after a present one, with nothing
    /// present since: that client was removed.
    pub fn saw_removed(&self, client_id: u64) -> bool {
        let mut was_present = false;
        let mut removed = false;
        for seen in self
            .awareness_log
            .iter()
            .filter(|s| s.client_id == client_id)
        {
            match seen.state {
                Some(_) => {
                    was_present = true;
                    removed = false;
                }
                None => removed = was_present,
            }
        }
        removed
    }

    /// Every awareness entry received, in order.
    pub fn awareness_log(&self) -> &[AwarenessSeen] {
        &self.awareness_log
    }

    /// Every frame received, in order.
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// The reason of an auth "permission denied" message, if one arrived.
    pub fn denied(&self) -> Option<&str> {
        self.denied.as_deref()
    }

    /// How the connection ended, if it did.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    /// A sticky (relative) position at UTF-16 offset `index` of the text, as the JSON
    /// that Yjs' `Y.relativePositionToJSON` makes.
    pub fn sticky_json(&self, index: u32) -> Value {
        let txn = self.doc.transact();
        let sticky = self
            .text
            .sticky_index(&txn, index, Assoc::After)
            .unwrap_or_else(|| panic!("offset {index} is inside the text"));
        serde_json::to_value(&sticky).expect("a sticky index serialises")
    }

    /// Where a sticky position (as JSON) points in this replica, if it resolves.
    pub fn resolve_sticky(&self, json: &Value) -> Option<u32> {
        let sticky: StickyIndex = serde_json::from_value(json.clone()).ok()?;
        let txn = self.doc.transact();
        sticky.get_offset(&txn).map(|offset| offset.index)
    }

    /// Closes the connection cleanly (a close frame, answered) and keeps the replica for
    /// a later [`YClient::reconnect`].
    pub async fn disconnect(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = tokio::time::timeout(RECV_TIMEOUT, async {
                socket.close(None).await?;
                // Read until the server answers the close.
                while let Some(frame) = socket.next().await {
                    frame?;
                }
                Ok::<_, tungstenite::Error>(())
            })
            .await;
            self.ended = Some(Ended::Close(1000, String::new()));
        }
    }

    /// Closes the connection cleanly and drops the client.
    pub async fn close(mut self) {
        self.disconnect().await;
    }

    /// A crash: the TCP connection is dropped without a close frame (the operating system
    /// closes it, as when a browser process is killed). The replica is kept.
    pub fn crash(&mut self) {
        self.socket = None;
        self.ended = Some(Ended::Dropped("crashed".into()));
    }

    /// A frozen client: the connection stays open but nothing is read or written on it
    /// again (no pong, no awareness renewal), as with a frozen tab or a vanished network.
    /// The returned value holds the socket open until dropped.
    pub fn freeze(mut self) -> Frozen {
        Frozen {
            _socket: self.socket.take().expect("the client is connected"),
        }
    }

    /// Reads one frame, waiting at most `wait`: `None` when nothing arrived in time,
    /// `Some(Err(..))` when the connection ended (also recorded in `ended`).
    async fn next_frame(&mut self, wait: Duration) -> Option<Result<(), Ended>> {
        let socket = match self.socket.as_mut() {
            Some(socket) => socket,
            None => {
                return Some(Err(self
                    .ended
                    .clone()
                    .unwrap_or(Ended::Dropped("not connected".into()))))
            }
        };
        // `timeout` polls the stream once before looking at the clock, so a zero wait
        // still reads what has already arrived.
        let frame = match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => return None,
            Ok(frame) => frame,
        };
        let ended = match frame {
            Some(Ok(Message::Binary(bytes))) => {
                self.handle(&bytes).await;
                return Some(Ok(()));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                return Some(Ok(()))
            }
            Some(Ok(Message::Text(text))) => {
                panic!("the server sent a text frame: {text}")
            }
            Some(Ok(Message::Close(frame))) => {
                let ended = match frame {
                    Some(frame) => Ended::Close(frame.code.into(), frame.reason.to_string()),
                    None => Ended::Close(1005, String::new()),
                };
                // tungstenite answers the close on the next read; read to the end.
                let socket = self.socket.as_mut().expect("still held");
                let _ = tokio::time::timeout(RECV_TIMEOUT, async {
                    while let Some(Ok(_)) = socket.next().await {}
                })
                .await;
                ended
            }
            Some(Err(err)) => Ended::Dropped(err.to_string()),
            None => Ended::Dropped("the stream ended".into()),
        };
        self.socket = None;
        self.ended = Some(ended.clone());
        Some(Err(ended))
    }

    /// Applies one server frame and answers it where the protocol says so.
    async fn handle(&mut self, bytes: &[u8]) {
        // The server's own codec checks that the frame holds exactly one message (the
        // JavaScript client reads only the first).
        if let Err(err) = protocol::decode_frame(bytes) {
            panic!("the server sent a malformed frame ({err}): {bytes:?}");
        }
        let message = yrs::sync::Message::decode_v1(bytes).expect("decoded just above");
        match message {
            yrs::sync::Message::Sync(SyncMessage::SyncStep1(sv)) => {
                self.received.push(Received::Step1);
                self.server_step1_seen = true;
                let answer = self.doc.transact().encode_diff_v1(&sv);
                self.send_raw(protocol::step2(answer)).await;
            }
            yrs::sync::Message::Sync(SyncMessage::SyncStep2(update)) => {
                self.received.push(Received::Step2);
                self.step2_received += 1;
                self.apply(&update);
            }
            yrs::sync::Message::Sync(SyncMessage::Update(update)) => {
                self.received.push(Received::Update);
                self.apply(&update);
            }
            yrs::sync::Message::Awareness(update) => {
                let mut ids: Vec<u64> = update.clients.keys().map(|id| id.get()).collect();
                ids.sort_unstable();
                self.received.push(Received::Awareness(ids));
                if self.apply_awareness(update) {
                    // Yjs' rule: a remote never removes the local state; the client
                    // answers with its state at a newer clock.
                    self.local_clock += 1;
                    let state = self.local_state.clone().expect("we have a state");
                    let json = serde_json::to_string(&state).expect("JSON serialises");
                    self.send_awareness(json).await;
                }
            }
            yrs::sync::Message::AwarenessQuery => {
                self.received.push(Received::QueryAwareness);
                if let Some(state) = self.local_state.clone() {
                    let json = serde_json::to_string(&state).expect("JSON serialises");
                    self.send_awareness(json).await;
                }
            }
            yrs::sync::Message::Auth(reason) => {
                self.received.push(Received::Auth(reason.clone()));
                if reason.is_some() {
                    self.denied = reason;
                }
            }
            yrs::sync::Message::Custom(tag, _) => {
                panic!("the server sent a custom message of type {tag}")
            }
        }
    }

    fn apply(&mut self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("the server's update decodes");
        self.doc
            .transact_mut()
            .apply_update(update)
            .expect("the server's update applies");
    }

    /// Records an awareness update; true when it removed our own present state (which
    /// must then be announced again).
    fn apply_awareness(&mut self, update: AwarenessUpdate) -> bool {
        let mut reassert = false;
        let mut entries: Vec<(u64, AwarenessUpdateEntry)> = update
            .clients
            .into_iter()
            .map(|(id, entry)| (id.get(), entry))
            .collect();
        entries.sort_by_key(|(id, _)| *id);
        for (client_id, entry) in entries {
            let state = match &*entry.json {
                "null" => None,
                json => Some(serde_json::from_str::<Value>(json).unwrap_or_else(|e| {
                    panic!("awareness state of {client_id} is not JSON ({e}): {json}")
                })),
            };
            let seen = AwarenessSeen {
                client_id,
                clock: entry.clock,
                state,
            };
            self.awareness_log.push(seen.clone());
            if client_id == self.client_id {
                if seen.clock >= self.local_clock {
                    reassert = seen.state.is_none() && self.local_state.is_some();
                    self.local_clock = seen.clock;
                }
                continue;
            }
            // Yjs' rule: a newer clock wins; a `null` at the same clock removes.
            let newer = match self.peers.get(&client_id) {
                None => true,
                Some(known) => {
                    known.clock < seen.clock || (known.clock == seen.clock && seen.state.is_none())
                }
            };
            if newer {
                self.peers.insert(client_id, seen);
            }
        }
        reassert
    }
}

/// A connection whose client froze (see [`YClient::freeze`]).
pub struct Frozen {
    _socket: Socket,
}

/// The awareness state every client publishes: `{"user": {"name", "color"}, "cursor":
/// {"anchor", "head"} | null}`.
pub fn cursor_state(name: &str, color: &str, cursor: Option<(Value, Value)>) -> Value {
    let cursor = match cursor {
        Some((anchor, head)) => serde_json::json!({ "anchor": anchor, "head": head }),
        None => Value::Null,
    };
    serde_json::json!({ "user": { "name": name, "color": color }, "cursor": cursor })
}

/// A random 53-bit client id (safe for JavaScript), as Yjs picks them.
pub fn random_client_id() -> u64 {
    rand::random::<u64>() >> 11
}

/// The text of a whole-document v1 update (a version's content), read into a fresh
/// replica.
pub fn text_of_update(update: &[u8]) -> String {
    let doc = schema::new_doc();
    let text = doc.get_or_insert_text(schema::TEXT);
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).expect("the update decodes"))
        .expect("the update applies");
    let txn = doc.transact();
    text.get_string(&txn)
}

/// Opens the WebSocket with the session cookie; an HTTP answer instead of `101` is
/// `Err`, any other failure fails the test.
async fn open(url: &str, cookie: &str) -> Result<Socket, Refused> {
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request.headers_mut().append(
        HeaderName::from_static("cookie"),
        HeaderValue::from_str(cookie).expect("a header value"),
    );
    let connecting = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(RECV_TIMEOUT, connecting).await {
        Err(_) => panic!("the WebSocket handshake took over {RECV_TIMEOUT:?}"),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .filter(|b| !b.is_empty())
                .map(|b| {
                    serde_json::from_slice(b).unwrap_or_else(|e| {
                        panic!(
                            "a refusal has a JSON body ({e}): {}",
                            String::from_utf8_lossy(b)
                        )
                    })
                })
                .unwrap_or(Value::Null);
            Err(Refused { status, body })
        }
        Ok(Err(err)) => panic!("the WebSocket handshake failed: {err}"),
    }
}

/// The seed of a randomised test: `MERIDIAN_TEST_SEED`, or a fresh one; printed.
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("MERIDIAN_TEST_SEED") {
        Ok(text) => text.parse().expect("MERIDIAN_TEST_SEED is a u64"),
        Err(_) => rand::random(),
    };
    println!("{test}: seed {seed} (replay with MERIDIAN_TEST_SEED={seed})");
    seed
}

/// The characters of `text`, sorted: equal for two texts holding the same characters.
pub fn sorted_chars(text: &str) -> Vec<char> {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars
}

/// One formatting attribute.
pub fn attrs(key: &str, value: yrs::Any) -> yrs::types::Attrs {
    let mut attrs = yrs::types::Attrs::new();
    attrs.insert(key.into(), value);
    attrs
}
