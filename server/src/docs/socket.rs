//! The y-websocket endpoint `/yjs/{doc_id}`: one connection's task, between its socket
//! and its document's room.
//!
//! Invariants:
//! - Access is decided before the upgrade (cookie session, membership); a refused
//!   request gets an HTTP error with the usual JSON body, never a half-open socket.
//! - One protocol message per frame; a frame that is not exactly one valid message
//!   closes this connection only (4400 with the reason), and reaches no room.
//! - Frames go to the room in the order they arrived; what the room sends goes out in
//!   the order it was queued.
//! - Every connection ends with a close frame saying why, and leaves its room (which
//!   removes its awareness clients).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::docs::protocol::decode_frame;
use meridian_shared::docs::{close_code, Role};
use tokio::sync::{mpsc, oneshot};

use super::room::{ClientFrame, ConnLink, RoomError, RoomMsg, Rooms};
use super::{doc_not_found, open_access};
use crate::auth::Session;
use crate::error::{ApiError, Path};
use crate::realtime::{same_origin, truncate_reason, Bucket};
use crate::AppState;

/// The largest frame accepted (a large paste or an offline session's step 2).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// The read buffer each connection starts with (tungstenite's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Frames one connection may send per second (sustained) and in a burst: far above
/// typing, cursor moves and reconnects, far below a flood.
const FRAMES_PER_SEC: f64 = 500.0;
const FRAME_BURST: f64 = 2_000.0;
/// A write to a client that takes longer than this drops the client.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The y-websocket protocol for one document.
#[utoipa::path(
    get,
    path = "/yjs/{doc_id}",
    tag = "docs",
    params(("doc_id" = String, Path, description = "The document")),
    responses(
        (status = 101, description = "Switching to the y-websocket protocol (binary frames, one message each: sync step 1/2/update, awareness, auth, query awareness)"),
        (status = 400, description = "`not_websocket`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`cross_origin`", body = ApiErrorBody),
        (status = 404, description = "`doc_not_found`: no such document, or not yours to open", body = ApiErrorBody),
        (status = 503, description = "`unavailable`: the server is shutting down, or its database is busy", body = ApiErrorBody),
    )
)]
pub async fn yjs_socket(
    State(state): State<AppState>,
    session: Option<Session>,
    Path(doc_id): Path<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(rejection.status(), "not_websocket", rejection.body_text())
    })?;
    let Some(user) = session.and_then(|s| s.user) else {
        return Err(ApiError::unauthorized(
            "sign_in_required",
            "documents are for signed-in accounts: connect with your session cookie",
        ));
    };
    if !same_origin(&headers) {
        return Err(ApiError::forbidden(
            "cross_origin",
            "documents accept only pages served by this server",
        ));
    }
    let Some((_, role)) = open_access(&state, &doc_id, &user.id).await? else {
        return Err(doc_not_found(&doc_id));
    };
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let guard = state.tasks.token();
    Ok(upgrade
        // Small initial buffers: thousands of idle editors should cost little memory;
        // buffers grow for large frames.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            run(state, doc_id, user.id, role, socket).await;
            drop(guard);
        })
        .into_response())
}

type Close = (u16, String);

/// Joins the room, retrying if it was unloading at that moment.
async fn join(
    rooms: &Arc<Rooms>,
    doc_id: &str,
    conn: u64,
    user_id: &str,
    role: Role,
) -> Result<
    (
        mpsc::Sender<RoomMsg>,
        mpsc::Receiver<axum::body::Bytes>,
        super::room::CloseReason,
    ),
    RoomError,
> {
    for _ in 0..5 {
        let room = rooms.get_or_load(doc_id);
        let (out, queue) = mpsc::channel(super::room::conn_queue_len());
        let close_reason = super::room::CloseReason::default();
        let (reply, answer) = oneshot::channel();
        let msg = RoomMsg::Join {
            conn,
            user_id: user_id.to_owned(),
            role,
            link: ConnLink {
                out,
                close_reason: close_reason.clone(),
            },
            reply,
        };
        if room.tx.send(msg).await.is_err() {
            continue;
        }
        match answer.await {
            Ok(Ok(())) => return Ok((room.tx, queue, close_reason)),
            Ok(Err(RoomError::Retry)) | Err(_) => continue,
            Ok(Err(err)) => return Err(err),
        }
    }
    Err(RoomError::Retry)
}

async fn run(state: AppState, doc_id: String, user_id: String, role: Role, socket: WebSocket) {
    let rooms = state.docs.clone();
    let conn = rooms.next_conn_id();
    let (mut sink, mut stream) = socket.split();
    let (room, mut queue, close_reason) = match join(&rooms, &doc_id, conn, &user_id, role).await {
        Ok(joined) => joined,
        Err(err) => {
            let close = match err {
                RoomError::Gone => (close_code::DELETED, "the document was deleted".to_owned()),
                other => (1011, format!("could not open the document: {other}")),
            };
            close_with(&mut sink, close).await;
            return;
        }
    };
    tracing::debug!(conn, doc = %doc_id, "document connection open");
    let shutdown = state.shutdown.clone();
    let heartbeat_every = state.config.heartbeat;
    let client_timeout = state.config.client_timeout;
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let mut last_heard = Instant::now();
    let mut bucket = Bucket::new(FRAMES_PER_SEC, FRAME_BURST);
    let close: Option<Close> = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Some((1001, "server shutting down".into())),
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > client_timeout {
                    break Some((close_code::TIMEOUT, "no answer to pings".into()));
                }
                if send(&mut sink, Message::Ping(Default::default())).await.is_err() {
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
                    Message::Binary(_) | Message::Text(_) if !bucket.take() => break Some((
                        close_code::RATE_LIMITED,
                        format!("more than {FRAMES_PER_SEC} messages per second"),
                    )),
                    Message::Binary(bytes) => {
                        // Converted at once: a decoded yrs `Update` is not `Send`.
                        let frame = decode_frame(&bytes).map(ClientFrame::from);
                        match frame {
                            Ok(frame) => {
                                if room.send(RoomMsg::Frame { conn, frame }).await.is_err() {
                                    break Some((1011, "the document closed; reconnect".into()));
                                }
                            }
                            Err(err) => break Some((close_code::MALFORMED, format!("malformed message: {err}"))),
                        }
                    }
                    Message::Text(_) => break Some((
                        close_code::MALFORMED,
                        "malformed message: text frames are not part of the y-websocket protocol".into(),
                    )),
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            out = queue.recv() => match out {
                Some(bytes) => {
                    if send(&mut sink, Message::Binary(bytes)).await.is_err() {
                        break None;
                    }
                }
                None => break Some(close_reason.get().cloned().unwrap_or((
                    close_code::SLOW_CONSUMER,
                    "dropped by the server".into(),
                ))),
            },
        }
    };
    let _ = room.send(RoomMsg::Leave { conn }).await;
    // What the room queued before dropping us (e.g. the auth message) goes out first.
    while let Ok(bytes) = queue.try_recv() {
        if send(&mut sink, Message::Binary(bytes)).await.is_err() {
            break;
        }
    }
    if let Some(close) = close {
        tracing::debug!(conn, doc = %doc_id, code = close.0, reason = %close.1, "closing document connection");
        close_with(&mut sink, close).await;
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn close_with(sink: &mut Sink, (code, reason): Close) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate_reason(&reason)),
    };
    let _ = send(sink, Message::Close(Some(frame))).await;
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
}

fn frame_error(err: &axum::Error) -> Close {
    let text = err.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        (
            close_code::TOO_BIG,
            format!("frame larger than {MAX_FRAME_BYTES} bytes"),
        )
    } else {
        (
            close_code::MALFORMED,
            format!("malformed WebSocket frame: {text}"),
        )
    }
}
