//! The y-websocket endpoint `/yjs/{doc_id}`: one connection between its socket and its
//! document's room, as an [`Endpoint`] of the server's one socket loop
//! (`realtime::socket`: heartbeat, rate limit, bounded queue, close codes).
//!
//! Invariants:
//! - Access is decided before the upgrade (cookie session, membership); a refused
//!   request gets an HTTP error with the usual JSON body, never a half-open socket.
//! - One protocol message per frame; a frame that is not exactly one valid message
//!   closes this connection only (4400 with the reason), and reaches no room.
//! - Frames go to the room in the order they arrived; what the room sends goes out in
//!   the order it was queued, including what it queued just before dropping the
//!   connection (e.g. the auth message before a 4403).
//! - Every connection leaves its room (which removes its awareness clients).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::docs::protocol::decode_frame;
use meridian_shared::docs::Role;
use meridian_shared::realtime::close_code;
use tokio::sync::{mpsc, oneshot};

use super::room::{ClientFrame, ConnId, RoomError, RoomMsg, Rooms};
use super::{doc_not_found, open_access};
use crate::auth::Session;
use crate::error::{ApiError, Path};
use crate::realtime::socket::{
    self, Close, End, Endpoint, Flow, Outbound, Queue, Rate, SocketContext, SocketSettings,
};
use crate::AppState;

/// The largest frame accepted (a large paste or an offline session's step 2).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// The read buffer each connection starts with (tungstenite's default is 128 KiB):
/// thousands of idle editors should cost little memory; buffers grow for large frames.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Frames one connection may send: far above typing, cursor moves and reconnects, far
/// below a flood.
const FRAME_RATE: Rate = Rate {
    per_sec: 500.0,
    burst: 2_000.0,
};

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
    let upgrade = socket::websocket_upgrade(upgrade)?;
    let Some(user) = session.and_then(|s| s.user) else {
        return Err(ApiError::unauthorized(
            "sign_in_required",
            "documents are for signed-in accounts: connect with your session cookie",
        ));
    };
    socket::require_same_origin(&headers, "documents")?;
    let Some((_, role)) = open_access(&state, &doc_id, &user.id).await? else {
        return Err(doc_not_found(&doc_id));
    };
    let settings = SocketSettings {
        max_frame_bytes: MAX_FRAME_BYTES,
        read_buffer_bytes: Some(READ_BUFFER_BYTES),
        // Tungstenite's default: a batch of queued frames is written with one flush.
        write_buffer_bytes: None,
        heartbeat: state.config.heartbeat,
        client_timeout: state.config.client_timeout,
        frame_rate: Some(FRAME_RATE),
        protocol_error: close_code::MALFORMED,
    };
    let context = SocketContext {
        shutdown: state.shutdown.clone(),
        tasks: state.tasks.clone(),
        clock: state.clock.clone(),
    };
    let rooms = state.docs.clone();
    let connection = DocConnection {
        conn: rooms.next_conn_id(),
        rooms,
        doc_id,
        user_id: user.id,
        role,
        room: None,
    };
    socket::accept(upgrade, context, settings, connection)
}

/// One y-websocket connection.
struct DocConnection {
    rooms: Arc<Rooms>,
    conn: ConnId,
    doc_id: String,
    user_id: String,
    role: Role,
    /// The room it joined (once open).
    room: Option<mpsc::Sender<RoomMsg>>,
}

impl DocConnection {
    /// Joins the room, retrying if it was unloading at that moment.
    async fn join(&self) -> Result<(mpsc::Sender<RoomMsg>, Queue<Bytes>), RoomError> {
        for _ in 0..5 {
            let room = self.rooms.get_or_load(&self.doc_id);
            let (link, queue) = socket::queue(super::room::conn_queue_len());
            let (reply, answer) = oneshot::channel();
            let msg = RoomMsg::Join {
                conn: self.conn,
                user_id: self.user_id.clone(),
                role: self.role,
                link,
                reply,
            };
            if room.tx.send(msg).await.is_err() {
                continue;
            }
            match answer.await {
                Ok(Ok(())) => return Ok((room.tx, queue)),
                Ok(Err(RoomError::Retry)) | Err(_) => continue,
                Ok(Err(err)) => return Err(err),
            }
        }
        Err(RoomError::Retry)
    }
}

impl Endpoint for DocConnection {
    type Item = Bytes;

    async fn open(&mut self, _: &mut Outbound) -> Result<Queue<Bytes>, End> {
        match self.join().await {
            Ok((room, queue)) => {
                tracing::debug!(conn = self.conn, doc = %self.doc_id, "document connection open");
                self.room = Some(room);
                Ok(queue)
            }
            Err(RoomError::Gone) => {
                Err(Close::new(close_code::DELETED, "the document was deleted").into())
            }
            Err(err) => Err(Close::new(
                close_code::STORAGE_FAILED,
                format!("could not open the document: {err}"),
            )
            .into()),
        }
    }

    async fn on_binary(&mut self, bytes: Bytes, _: &mut Outbound) -> Flow {
        // Converted at once: a decoded yrs `Update` is not `Send`.
        let frame = decode_frame(&bytes).map(ClientFrame::from).map_err(|err| {
            Close::new(close_code::MALFORMED, format!("malformed message: {err}"))
        })?;
        let room = self.room.as_ref().ok_or(End::Gone)?;
        let msg = RoomMsg::Frame {
            conn: self.conn,
            frame,
        };
        if room.send(msg).await.is_err() {
            return Err(
                Close::new(close_code::STORAGE_FAILED, "the document closed; reconnect").into(),
            );
        }
        Ok(())
    }

    async fn on_text(&mut self, _: Utf8Bytes, _: &mut Outbound) -> Flow {
        Err(Close::new(
            close_code::MALFORMED,
            "malformed message: text frames are not part of the y-websocket protocol",
        )
        .into())
    }

    async fn on_outgoing(&mut self, frame: Bytes, out: &mut Outbound) -> Flow {
        out.binary(frame).await
    }

    async fn on_close(&mut self, queue: &mut Queue<Bytes>, out: &mut Outbound) {
        if let Some(room) = self.room.take() {
            let _ = room.send(RoomMsg::Leave { conn: self.conn }).await;
        }
        // What the room queued before dropping us (e.g. the auth message) goes out
        // first, within the time one send may take.
        let _ = tokio::time::timeout(socket::SEND_TIMEOUT, async {
            while let Some(frame) = queue.try_recv() {
                if out.binary(frame).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
}
