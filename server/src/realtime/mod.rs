//! The realtime channel: a WebSocket at `/api/realtime`, authenticated by the session
//! cookie, over which browsers subscribe to topics and publish events (the protocol is
//! in `meridian_shared::realtime`), and [`publish`], which the other systems call to push
//! changes to every watching session on every instance.
//!
//! Invariants:
//! - An event is durable (committed) before anyone receives it or its publisher gets its
//!   `ack`; a publish with an op id already applied to the topic is acknowledged with its
//!   original sequence number and not stored again.
//! - Per topic, events are delivered in sequence order and at most once per connection
//!   (a connection skips what it already sent after a replay).
//! - Every connection ends with a close frame that says why: the server shutting down,
//!   a protocol error, a missed heartbeat, a slow consumer, a revoked session.

pub mod hub;
pub mod pg;
pub mod store;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use meridian_shared::api::{ApiErrorBody, DatabaseBackend};
use meridian_shared::realtime::{
    close_code, error_code, valid_op_id, ClientMessage, Event, ServerMessage, Topic,
    MAX_FRAME_BYTES, MAX_PAYLOAD_BYTES, MAX_REPLAY, MAX_SUBSCRIPTIONS,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Session;
use crate::error::ApiError;
use crate::openapi::with_platform_errors;
use crate::AppState;

/// How many events each topic keeps for replay.
pub const RETAINED_EVENTS_PER_TOPIC: u64 = 10_000;
/// Publishes one connection may make per second (sustained) and in a burst.
const PUBLISH_RATE_PER_SEC: f64 = 50.0;
const PUBLISH_BURST: f64 = 100.0;
/// A write to a client that takes longer than this drops the client.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(OpenApiRouter::new().routes(routes!(realtime_socket)))
}

/// Publish locks: publishes to one topic are serialised within an instance, so that their
/// local delivery follows sequence order. Striped to bound memory.
pub struct PublishLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for PublishLocks {
    fn default() -> PublishLocks {
        PublishLocks((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl PublishLocks {
    pub fn for_topic(&self, topic: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut hasher);
        &self.0[hasher.finish() as usize % self.0.len()]
    }
}

/// The outcome of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    /// The op had been applied before; nothing was stored or sent this time.
    pub duplicate: bool,
}

/// Appends an event to a topic durably, then delivers it to every subscriber on every
/// instance. Idempotent per `(topic, op_id)`.
pub async fn publish(
    state: &AppState,
    topic: &str,
    op_id: &str,
    payload: serde_json::Value,
    session_id: Option<&str>,
) -> Result<Published, sqlx::Error> {
    let _order = state.publish_locks.for_topic(topic).lock().await;
    let mut tx = state.db.pool.begin().await?;
    let seq = store::next_seq(&mut tx, topic).await?;
    if let Some(seq) = store::seq_of_op(&mut tx, topic, op_id).await? {
        tx.rollback().await?;
        return Ok(Published {
            seq,
            duplicate: true,
        });
    }
    let event = append_in_tx(state, &mut tx, seq, topic, op_id, payload, session_id).await?;
    tx.commit().await?;
    state.hub.deliver_local(Arc::new(event));
    Ok(Published {
        seq,
        duplicate: false,
    })
}

/// Stores an event with sequence number `seq` (from [`store::next_seq`]) in a
/// transaction the caller owns, and queues its cross-instance notification. The caller
/// holds the topic's publish lock, commits, and then hands the event to
/// `state.hub.deliver_local`: so a system's own write and its event commit together.
pub async fn append_in_tx(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    seq: u64,
    topic: &str,
    op_id: &str,
    payload: serde_json::Value,
    session_id: Option<&str>,
) -> Result<Event, sqlx::Error> {
    let payload_json = payload.to_string();
    let event = Event {
        topic: topic.to_owned(),
        seq,
        op_id: op_id.to_owned(),
        payload,
        at_ms: state.clock.now_ms(),
    };
    store::insert_event(conn, &event, &payload_json, session_id).await?;
    if state.db.backend == DatabaseBackend::Postgres {
        let notice = pg::event_notice(&state.instance_id, &event);
        store::notify(conn, pg::CHANNEL, &notice).await?;
    }
    Ok(event)
}

/// The realtime channel (WebSocket upgrade). Requires an existing session cookie.
#[utoipa::path(
    get,
    path = "/api/realtime",
    tag = "realtime",
    responses(
        (status = 101, description = "Switching to the realtime WebSocket protocol (JSON text frames: see `ClientMessage` and `ServerMessage` in meridian-shared)"),
        (status = 400, description = "`not_websocket`: not a WebSocket upgrade request", body = ApiErrorBody),
        (status = 401, description = "`no_session`: the request carried no valid session cookie", body = ApiErrorBody),
        (status = 403, description = "`cross_origin`: the Origin is not this server", body = ApiErrorBody),
        (status = 503, description = "`unavailable`: the server is shutting down, or its database is busy", body = ApiErrorBody),
    )
)]
async fn realtime_socket(
    State(state): State<AppState>,
    session: Option<Session>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(rejection.status(), "not_websocket", rejection.body_text())
    })?;
    let Some(session) = session else {
        return Err(ApiError::unauthorized(
            "no_session",
            "open the realtime channel with the session cookie the server gave you",
        ));
    };
    if !same_origin(&headers) {
        return Err(ApiError::forbidden(
            "cross_origin",
            "the realtime channel accepts only pages served by this server",
        ));
    }
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let guard = state.tasks.token();
    Ok(upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            Connection::new(state, session).run(socket).await;
            drop(guard);
        })
        .into_response())
}

/// A browser's `Origin`, when it sends one, must name the host it connected to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

/// A token bucket: `burst` tokens at most, refilled at `rate_per_sec`.
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
    rate_per_sec: f64,
    burst: f64,
}

impl Bucket {
    pub(crate) fn new(rate_per_sec: f64, burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: Instant::now(),
            rate_per_sec,
            burst,
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate_per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

type Close = (u16, String);

struct Connection {
    state: AppState,
    session: Session,
    /// Per topic, the highest sequence number sent (or skipped as already known).
    sent: HashMap<String, u64>,
    bucket: Bucket,
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

impl Connection {
    fn new(state: AppState, session: Session) -> Connection {
        Connection {
            state,
            session,
            sent: HashMap::new(),
            bucket: Bucket::new(PUBLISH_RATE_PER_SEC, PUBLISH_BURST),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let hub = self.state.hub.clone();
        let mut registration = hub.register(&self.session.id);
        let conn_id = registration.id;
        let (mut sink, mut stream) = socket.split();
        let shutdown = self.state.shutdown.clone();
        let heartbeat_every = self.state.config.heartbeat;
        let client_timeout = self.state.config.client_timeout;
        let welcome = ServerMessage::Welcome {
            connection_id: conn_id.to_string(),
            session_id: self.session.id.clone(),
            instance_id: self.state.instance_id.to_string(),
            heartbeat_ms: heartbeat_every.as_millis() as u64,
        };
        tracing::debug!(conn = conn_id, session = %self.session.id, "realtime connected");
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + heartbeat_every,
            heartbeat_every,
        );
        let mut last_heard = Instant::now();
        let close: Option<Close> = 'conn: {
            if send(&mut sink, &welcome).await.is_err() {
                break 'conn None;
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        break Some((close_code::GOING_AWAY, "server shutting down".into()));
                    }
                    _ = heartbeat.tick() => {
                        if last_heard.elapsed() > client_timeout {
                            break Some((close_code::HEARTBEAT_TIMEOUT, "no heartbeat from the client".into()));
                        }
                        if send_raw(&mut sink, Message::Ping(Default::default())).await.is_err() {
                            break None;
                        }
                    }
                    frame = stream.next() => {
                        let message = match frame {
                            None => break None,
                            Some(Err(err)) => break Some(frame_error(&err)),
                            Some(Ok(message)) => message,
                        };
                        last_heard = Instant::now();
                        match message {
                            Message::Text(text) => {
                                let request = match serde_json::from_str::<ClientMessage>(&text) {
                                    Ok(request) => request,
                                    Err(err) => break Some((
                                        close_code::PROTOCOL_ERROR,
                                        format!("not a protocol message: {err}"),
                                    )),
                                };
                                match self.handle(conn_id, request, &mut sink).await {
                                    Ok(()) => {}
                                    Err(close) => break close,
                                }
                            }
                            Message::Binary(_) => break Some((
                                1003,
                                "binary frames are not part of this protocol".into(),
                            )),
                            Message::Close(_) => break None,
                            Message::Ping(_) | Message::Pong(_) => {}
                        }
                    }
                    event = registration.queue.recv() => {
                        match event {
                            Some(event) => {
                                if self.forward(&event, &mut sink).await.is_err() {
                                    break None;
                                }
                            }
                            None => break Some(registration.close_reason.get().cloned().unwrap_or((
                                close_code::SLOW_CONSUMER,
                                "dropped by the server".into(),
                            ))),
                        }
                    }
                }
            }
        };
        hub.unregister(conn_id);
        if let Some((code, reason)) = close {
            tracing::debug!(conn = conn_id, code, %reason, "closing realtime connection");
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from(truncate_reason(&reason)),
            };
            let _ = send_raw(&mut sink, Message::Close(Some(frame))).await;
        }
        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
    }

    /// Sends a live event unless this connection already sent it. Events of one topic
    /// can arrive out of order (a local publish overtaking another instance's NOTIFY);
    /// a gap is filled from the durable log first, since every event below a committed
    /// one is committed too.
    async fn forward(&mut self, event: &Event, sink: &mut Sink) -> Result<(), ()> {
        let sent = *self
            .sent
            .entry(event.topic.clone())
            .or_insert(event.seq.saturating_sub(1));
        if event.seq <= sent {
            return Ok(());
        }
        if event.seq > sent + 1 {
            let missing = store::events_between(
                &self.state.db.pool,
                &event.topic,
                sent,
                event.seq - 1,
                MAX_REPLAY,
            )
            .await;
            match missing {
                Ok(missing) => {
                    for earlier in missing {
                        send(sink, &ServerMessage::Event(earlier)).await?;
                    }
                }
                Err(err) => tracing::warn!(%err, topic = %event.topic, "could not fill a gap"),
            }
        }
        self.sent.insert(event.topic.clone(), event.seq);
        send(sink, &ServerMessage::Event(event.clone())).await
    }

    /// Answers one client message. `Err(Some(close))` ends the connection with a reason;
    /// `Err(None)` ends it because the socket failed.
    async fn handle(
        &mut self,
        conn_id: hub::ConnId,
        request: ClientMessage,
        sink: &mut Sink,
    ) -> Result<(), Option<Close>> {
        let reply = match request {
            ClientMessage::Ping { nonce } => ServerMessage::Pong { nonce },
            ClientMessage::Subscribe { topic, since } => {
                match self.subscribe(conn_id, &topic, since, sink).await {
                    Ok(()) => return Ok(()),
                    Err(Reply::Refused(reply)) => reply,
                    Err(Reply::Fail(close)) => return Err(close),
                }
            }
            ClientMessage::Unsubscribe { topic } => {
                self.state.hub.unsubscribe(conn_id, &topic);
                self.sent.remove(&topic);
                ServerMessage::Unsubscribed { topic }
            }
            ClientMessage::Publish {
                op_id,
                topic,
                payload,
            } => self.publish(op_id, topic, payload).await,
        };
        send(sink, &reply).await.map_err(|()| None)
    }

    fn may_subscribe(&self, topic: &Topic<'_>) -> bool {
        match topic {
            Topic::Public(_) => true,
            Topic::User(id) => self.session.user.as_ref().is_some_and(|u| u.id == *id),
            Topic::Session(id) => self.session.id == *id,
        }
    }

    async fn subscribe(
        &mut self,
        conn_id: hub::ConnId,
        topic: &str,
        since: Option<u64>,
        sink: &mut Sink,
    ) -> Result<(), Reply> {
        let refuse = |code: &str, message: String| {
            Reply::Refused(ServerMessage::Error {
                code: code.into(),
                message,
                op_id: None,
                topic: Some(topic.to_owned()),
            })
        };
        let parsed =
            Topic::parse(topic).map_err(|e| refuse(error_code::INVALID_TOPIC, e.0.into()))?;
        if !self.may_subscribe(&parsed) {
            return Err(refuse(
                error_code::FORBIDDEN_TOPIC,
                format!("this session may not subscribe to {topic}"),
            ));
        }
        let hub = &self.state.hub;
        if hub.subscription_count(conn_id) >= MAX_SUBSCRIPTIONS {
            return Err(refuse(
                error_code::TOO_MANY_SUBSCRIPTIONS,
                format!("a connection may hold {MAX_SUBSCRIPTIONS} subscriptions"),
            ));
        }
        // Subscribe first, then read: every event is either in the replay or delivered
        // live, and `sent` skips the overlap.
        if !hub.subscribe(conn_id, topic) {
            return Err(Reply::Fail(None));
        }
        let pool = &self.state.db.pool;
        let loaded = async {
            let head = store::head(pool, topic).await?;
            let replay = match since {
                Some(since) if since < head => {
                    store::events_between(pool, topic, since, head, MAX_REPLAY).await?
                }
                _ => Vec::new(),
            };
            Ok::<_, sqlx::Error>((head, replay))
        }
        .await;
        let (head, replay) = match loaded {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::error!(%err, %topic, "could not load a topic");
                hub.unsubscribe(conn_id, topic);
                return Err(refuse(
                    error_code::UNAVAILABLE,
                    "the topic could not be loaded; retry".into(),
                ));
            }
        };
        let truncated = match since {
            Some(since) if since < head => replay.first().is_none_or(|e| e.seq > since + 1),
            _ => false,
        };
        self.sent.insert(topic.to_owned(), head);
        let subscribed = ServerMessage::Subscribed {
            topic: topic.to_owned(),
            head,
            truncated,
        };
        send(sink, &subscribed)
            .await
            .map_err(|()| Reply::Fail(None))?;
        for event in replay {
            send(sink, &ServerMessage::Event(event))
                .await
                .map_err(|()| Reply::Fail(None))?;
        }
        Ok(())
    }

    async fn publish(
        &mut self,
        op_id: String,
        topic: String,
        payload: serde_json::Value,
    ) -> ServerMessage {
        let error =
            |code: &str, message: String, op_id: String, topic: String| ServerMessage::Error {
                code: code.into(),
                message,
                op_id: Some(op_id),
                topic: Some(topic),
            };
        if !valid_op_id(&op_id) {
            return error(
                error_code::INVALID_OP_ID,
                "an op id is 1 to 128 printable ASCII characters".into(),
                op_id,
                topic,
            );
        }
        match Topic::parse(&topic) {
            Err(e) => return error(error_code::INVALID_TOPIC, e.0.into(), op_id, topic),
            Ok(Topic::Public(_)) => {}
            Ok(_) => {
                return error(
                    error_code::FORBIDDEN_TOPIC,
                    "clients publish only to public topics".into(),
                    op_id,
                    topic,
                )
            }
        }
        if payload.to_string().len() > MAX_PAYLOAD_BYTES {
            return error(
                error_code::INVALID_PAYLOAD,
                format!("a payload has at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
                op_id,
                topic,
            );
        }
        if !self.bucket.take() {
            return error(
                error_code::RATE_LIMITED,
                format!("at most {PUBLISH_RATE_PER_SEC} publishes per second; retry"),
                op_id,
                topic,
            );
        }
        match publish(&self.state, &topic, &op_id, payload, Some(&self.session.id)).await {
            Ok(Published { seq, duplicate }) => ServerMessage::Ack {
                op_id,
                topic,
                seq,
                duplicate,
            },
            Err(err) => {
                tracing::error!(%err, %topic, "publish failed");
                error(
                    error_code::UNAVAILABLE,
                    "the event was not stored; retry with the same op id".into(),
                    op_id,
                    topic,
                )
            }
        }
    }
}

enum Reply {
    /// Answer with this error and keep the connection.
    Refused(ServerMessage),
    /// End the connection.
    Fail(Option<Close>),
}

async fn send(sink: &mut Sink, message: &ServerMessage) -> Result<(), ()> {
    let text = serde_json::to_string(message).expect("server messages serialise");
    send_raw(sink, Message::Text(text.into())).await
}

async fn send_raw(sink: &mut Sink, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

fn frame_error(err: &axum::Error) -> Close {
    let text = err.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        (
            close_code::TOO_BIG,
            format!("frame larger than {MAX_FRAME_BYTES} bytes"),
        )
    } else {
        (close_code::PROTOCOL_ERROR, format!("bad frame: {text}"))
    }
}

/// A close reason has at most 123 bytes.
pub(crate) fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origin_must_match_host() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers));
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        assert_eq!(truncate_reason(&"é".repeat(100)).len(), 122);
        assert_eq!(truncate_reason("short"), "short");
    }
}
