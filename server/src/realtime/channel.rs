//! The realtime channel: a WebSocket at `/api/realtime`, authenticated by the session
//! cookie, over which browsers subscribe to topics and publish events (the protocol is
//! in `meridian_shared::realtime`). It is one [`Endpoint`] of the server's one socket
//! loop (`super::socket`), fed by the hub.
//!
//! Invariants:
//! - A publish is acknowledged only once its event is committed; a publish with an op id
//!   already applied to the topic is acknowledged with its original sequence number.
//! - Per topic, a connection sends events in sequence order and at most once: it skips
//!   what it already sent (a replay overlapping live events), and fills a gap from the
//!   durable log (every event below a committed one is committed too).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::realtime::{
    close_code, error_code, valid_op_id, ClientMessage, Event, ServerMessage, Topic,
    MAX_FRAME_BYTES, MAX_PAYLOAD_BYTES, MAX_REPLAY, MAX_SUBSCRIPTIONS,
};

use super::hub::{ConnId, Hub};
use super::socket::{
    self, Bucket, Close, End, Endpoint, Flow, Outbound, Queue, Rate, SocketContext, SocketSettings,
};
use super::{store, Events, Published};
use crate::auth::Session;
use crate::db::Db;
use crate::error::ApiError;

/// Publishes one connection may make (sustained per second, and in a burst).
const PUBLISH_RATE: Rate = Rate {
    per_sec: 50.0,
    burst: 100.0,
};

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
pub async fn realtime_socket(
    State(state): State<super::Realtime>,
    session: Option<Session>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = socket::websocket_upgrade(upgrade)?;
    let Some(session) = session else {
        return Err(ApiError::unauthorized(
            "no_session",
            "open the realtime channel with the session cookie the server gave you",
        ));
    };
    socket::require_same_origin(&headers, "the realtime channel")?;
    let settings = SocketSettings {
        max_frame_bytes: MAX_FRAME_BYTES,
        read_buffer_bytes: None,
        write_buffer_bytes: None,
        heartbeat: state.heartbeat,
        client_timeout: state.client_timeout,
        frame_rate: None,
        protocol_error: close_code::PROTOCOL_ERROR,
    };
    let context = SocketContext {
        shutdown: state.shutdown.clone(),
        tasks: state.tasks.clone(),
        clock: state.clock.clone(),
    };
    let channel = Channel {
        bucket: Bucket::new(PUBLISH_RATE, state.clock.now_ms()),
        hub: state.hub.clone(),
        db: state.db.clone(),
        instance_id: state.instance_id.clone(),
        heartbeat: state.heartbeat,
        session,
        conn_id: 0,
        sent: HashMap::new(),
    };
    socket::accept(upgrade, context, settings, channel)
}

/// One realtime connection.
struct Channel {
    hub: Hub,
    db: Db,
    instance_id: Arc<str>,
    heartbeat: Duration,
    session: Session,
    /// Its id in the hub (once open).
    conn_id: ConnId,
    /// Per topic, the highest sequence number sent (or skipped as already known).
    sent: HashMap<String, u64>,
    /// Publishes.
    bucket: Bucket,
}

/// A client request that was refused: answered with an error, or ending the connection.
enum Refusal {
    Answer(ServerMessage),
    End(End),
}

impl From<End> for Refusal {
    fn from(end: End) -> Refusal {
        Refusal::End(end)
    }
}

impl Endpoint for Channel {
    type Item = Arc<Event>;

    async fn open(&mut self, out: &mut Outbound) -> Result<Queue<Arc<Event>>, End> {
        let user_id = self.session.user.as_ref().map(|u| u.id.as_str());
        let registration = self.hub.register(&self.session.id, user_id);
        self.conn_id = registration.id;
        tracing::debug!(conn = self.conn_id, session = %self.session.id, "realtime connected");
        let welcome = ServerMessage::Welcome {
            connection_id: self.conn_id.to_string(),
            session_id: self.session.id.clone(),
            instance_id: self.instance_id.to_string(),
            heartbeat_ms: self.heartbeat.as_millis() as u64,
        };
        if let Err(end) = out.json(&welcome).await {
            self.hub.unregister(self.conn_id);
            return Err(end);
        }
        Ok(registration.queue)
    }

    async fn on_text(&mut self, text: Utf8Bytes, out: &mut Outbound) -> Flow {
        let request = serde_json::from_str::<ClientMessage>(&text).map_err(|err| {
            Close::new(
                close_code::PROTOCOL_ERROR,
                format!("not a protocol message: {err}"),
            )
        })?;
        self.handle(request, out).await
    }

    async fn on_binary(&mut self, _: Bytes, _: &mut Outbound) -> Flow {
        Err(Close::new(
            close_code::UNSUPPORTED_DATA,
            "binary frames are not part of this protocol",
        )
        .into())
    }

    async fn on_outgoing(&mut self, event: Arc<Event>, out: &mut Outbound) -> Flow {
        self.forward(&event, out).await
    }

    async fn on_close(&mut self, _: &mut Queue<Arc<Event>>, _: &mut Outbound) {
        self.hub.unregister(self.conn_id);
    }
}

impl Channel {
    /// Sends a live event unless this connection already sent it. Events of one topic
    /// leave the hub in order, but one the hub gave up waiting for leaves a gap; it is
    /// filled from the durable log first, since every event below a committed one is
    /// committed too.
    async fn forward(&mut self, event: &Event, out: &mut Outbound) -> Flow {
        let sent = *self
            .sent
            .entry(event.topic.clone())
            .or_insert(event.seq.saturating_sub(1));
        if event.seq <= sent {
            return Ok(());
        }
        if event.seq > sent + 1 {
            let missing =
                store::events_between(&self.db.pool, &event.topic, sent, event.seq - 1, MAX_REPLAY)
                    .await;
            match missing {
                Ok(missing) => {
                    for earlier in missing {
                        out.json(&ServerMessage::Event(earlier)).await?;
                    }
                }
                Err(err) => tracing::warn!(%err, topic = %event.topic, "could not fill a gap"),
            }
        }
        self.sent.insert(event.topic.clone(), event.seq);
        out.json(&ServerMessage::Event(event.clone())).await
    }

    /// Answers one client message.
    async fn handle(&mut self, request: ClientMessage, out: &mut Outbound) -> Flow {
        let reply = match request {
            ClientMessage::Ping { nonce } => ServerMessage::Pong { nonce },
            ClientMessage::Subscribe { topic, since } => {
                match self.subscribe(&topic, since, out).await {
                    Ok(()) => return Ok(()),
                    Err(Refusal::Answer(reply)) => reply,
                    Err(Refusal::End(end)) => return Err(end),
                }
            }
            ClientMessage::Unsubscribe { topic } => {
                self.hub.unsubscribe(self.conn_id, &topic);
                self.sent.remove(&topic);
                ServerMessage::Unsubscribed { topic }
            }
            ClientMessage::Publish {
                op_id,
                topic,
                payload,
            } => self.publish(op_id, topic, payload).await,
        };
        out.json(&reply).await
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
        topic: &str,
        since: Option<u64>,
        out: &mut Outbound,
    ) -> Result<(), Refusal> {
        let refuse = |code: &str, message: String| {
            Refusal::Answer(ServerMessage::Error {
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
        if self.hub.subscription_count(self.conn_id) >= MAX_SUBSCRIPTIONS {
            return Err(refuse(
                error_code::TOO_MANY_SUBSCRIPTIONS,
                format!("a connection may hold {MAX_SUBSCRIPTIONS} subscriptions"),
            ));
        }
        // Subscribe first, then read: every event is either in the replay or delivered
        // live, and `sent` skips the overlap.
        if !self.hub.subscribe(self.conn_id, topic) {
            return Err(End::Gone.into());
        }
        let pool = &self.db.pool;
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
                self.hub.unsubscribe(self.conn_id, topic);
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
        out.json(&subscribed).await?;
        for event in replay {
            out.json(&ServerMessage::Event(event)).await?;
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
        if serde_json::to_vec(&payload).map_or(0, |text| text.len()) > MAX_PAYLOAD_BYTES {
            return error(
                error_code::INVALID_PAYLOAD,
                format!("a payload has at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
                op_id,
                topic,
            );
        }
        if !self.bucket.take(self.hub.clock().now_ms()) {
            return error(
                error_code::RATE_LIMITED,
                format!(
                    "at most {} publishes per second; retry",
                    PUBLISH_RATE.per_sec
                ),
                op_id,
                topic,
            );
        }
        let published = Events::publish(
            &self.db,
            &self.hub,
            &topic,
            &op_id,
            payload,
            Some(&self.session.id),
        )
        .await;
        match published {
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
