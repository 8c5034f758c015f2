//! The one server WebSocket loop, under the realtime channel (`/api/realtime`), the
//! documents' y-websocket endpoint (`/yjs/{doc_id}`) and the systems to come. An
//! endpoint implements [`Endpoint`] (what to do with a text or binary frame and with
//! what its producer queued); the loop does the rest: the upgrade with size limits, the
//! origin check, heartbeat pings and their timeout, the token-bucket rate limit, the
//! bounded outgoing [`Queue`] with a send timeout, and the close with a code from
//! `meridian_shared::realtime::close_code` and a reason cut to fit.
//!
//! Invariants:
//! - Access is decided before the upgrade; a refused request gets an HTTP error with the
//!   usual JSON body, never a half-open socket.
//! - Frames reach the endpoint in the order they arrived, one at a time; what its
//!   producer queued goes out in queue order, a backlog in batches of up to
//!   [`MAX_BATCH`] items with one flush (one write to the socket). The queue is served
//!   first, but after a full batch it waits one turn: a producer cannot starve the
//!   client's frames, the heartbeat or shutdown.
//! - Memory per connection is bounded: the producer never waits on a connection's queue
//!   (a full queue drops the connection, `SLOW_CONSUMER`), and a write the client does
//!   not take within [`SEND_TIMEOUT`] ends the connection.
//! - Every connection ends with a close frame saying why, unless the socket already
//!   failed or the client closed it first.
//! - A client is given up on after `client_timeout` without a frame (any frame, pongs
//!   included). Silence is counted in heartbeat ticks, not read from a clock, so a step
//!   of the wall clock (or a test moving its clock) never closes every connection at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, Stream, StreamExt};
use meridian_shared::realtime::close_code;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::error::ApiError;

/// A write to a client that takes longer than this ends the connection.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Queued items written in one batch (one flush, one write to the socket) at most.
const MAX_BATCH: usize = 64;
/// The longest close reason a close frame carries, in bytes.
const MAX_REASON_BYTES: usize = 123;

/// Why a connection closes: a code from `close_code` and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    pub fn new(code: u16, reason: impl Into<String>) -> Close {
        Close {
            code,
            reason: reason.into(),
        }
    }
}

/// How a step of a connection ended it.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Close with this code and reason.
    Close(Close),
    /// The socket failed or the client closed it: nothing more is sent.
    Gone,
}

impl From<Close> for End {
    fn from(close: Close) -> End {
        End::Close(close)
    }
}

/// What a step of a connection comes to: go on, or end.
pub type Flow = Result<(), End>;

/// The producer's end of a connection's [`Queue`].
pub struct QueueSender<T> {
    tx: mpsc::Sender<T>,
    ended: Arc<OnceLock<Close>>,
}

impl<T> QueueSender<T> {
    /// Queues without waiting; false when the queue is full (the client is too slow) or
    /// the connection is gone.
    pub fn try_send(&self, item: T) -> bool {
        self.tx.try_send(item).is_ok()
    }

    /// Ends the queue: the connection sends what was queued before, then closes with
    /// `close`.
    pub fn close(self, close: Close) {
        let _ = self.ended.set(close);
    }
}

/// The bounded queue of what one connection is sent. Its producer (the hub, a room)
/// holds the only [`QueueSender`]; when the producer drops it, the connection closes.
pub struct Queue<T> {
    rx: mpsc::Receiver<T>,
    ended: Arc<OnceLock<Close>>,
}

/// A connection's queue of `capacity` items.
pub fn queue<T>(capacity: usize) -> (QueueSender<T>, Queue<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let ended = Arc::new(OnceLock::new());
    (
        QueueSender {
            tx,
            ended: ended.clone(),
        },
        Queue { rx, ended },
    )
}

impl<T> Queue<T> {
    /// The next item; `None` once the producer dropped the connection.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Why the producer dropped the connection (a full queue unless it said otherwise).
    pub fn close_reason(&self) -> Close {
        self.ended
            .get()
            .cloned()
            .unwrap_or_else(|| Close::new(close_code::SLOW_CONSUMER, "dropped by the server"))
    }
}

/// The sending half of a connection, each write bounded by [`SEND_TIMEOUT`].
pub struct Outbound {
    sink: SplitSink<WebSocket, Message>,
    /// While the loop writes a batch of queued items: messages are buffered, and the
    /// loop flushes once at the end of the batch.
    batching: bool,
}

impl Outbound {
    async fn send(&mut self, message: Message) -> Flow {
        let write = async {
            if self.batching {
                self.sink.feed(message).await
            } else {
                self.sink.send(message).await
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn flush(&mut self) -> Flow {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    pub async fn text(&mut self, text: impl Into<Utf8Bytes>) -> Flow {
        self.send(Message::Text(text.into())).await
    }

    /// One message as a JSON text frame.
    pub async fn json(&mut self, message: &impl Serialize) -> Flow {
        let text = serde_json::to_string(message).expect("server messages serialise");
        self.text(text).await
    }

    pub async fn binary(&mut self, bytes: Bytes) -> Flow {
        self.send(Message::Binary(bytes)).await
    }

    /// Sends the close frame (if the connection ends with one) and closes the socket.
    async fn finish(mut self, end: End) {
        if let End::Close(close) = end {
            let frame = CloseFrame {
                code: close.code,
                reason: Utf8Bytes::from(truncate_reason(&close.reason)),
            };
            let _ = self.send(Message::Close(Some(frame))).await;
        }
        let _ = tokio::time::timeout(SEND_TIMEOUT, self.sink.close()).await;
    }
}

/// What differs between WebSocket endpoints. Each method is one step of one connection;
/// `Err` ends the connection.
pub trait Endpoint: Send + 'static {
    /// What the connection's producer queues for it.
    type Item: Send + 'static;

    /// Joins the producer (the hub, a room), sends what comes first, and returns the
    /// connection's queue.
    fn open(
        &mut self,
        out: &mut Outbound,
    ) -> impl Future<Output = Result<Queue<Self::Item>, End>> + Send;

    /// A text frame from the client.
    fn on_text(&mut self, text: Utf8Bytes, out: &mut Outbound)
        -> impl Future<Output = Flow> + Send;

    /// A binary frame from the client.
    fn on_binary(&mut self, bytes: Bytes, out: &mut Outbound) -> impl Future<Output = Flow> + Send;

    /// Something the producer queued for the client.
    fn on_outgoing(
        &mut self,
        item: Self::Item,
        out: &mut Outbound,
    ) -> impl Future<Output = Flow> + Send;

    /// The connection is ending (its close frame not sent yet): leave the producer.
    /// `queue` still holds what the producer queued before it let go.
    fn on_close(
        &mut self,
        queue: &mut Queue<Self::Item>,
        out: &mut Outbound,
    ) -> impl Future<Output = ()> + Send;
}

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

/// An endpoint's limits and codes.
#[derive(Debug, Clone, Copy)]
pub struct SocketSettings {
    /// The largest frame (and message) accepted; larger ones close with `TOO_BIG`.
    pub max_frame_bytes: usize,
    /// The read buffer a connection starts with (`None`: tungstenite's 128 KiB).
    pub read_buffer_bytes: Option<usize>,
    /// The write buffer before a flush (`None`: tungstenite's default).
    pub write_buffer_bytes: Option<usize>,
    /// How often the server pings.
    pub heartbeat: Duration,
    /// Silence after which the client is given up on (`HEARTBEAT_TIMEOUT`).
    pub client_timeout: Duration,
    /// Data frames a client may send; beyond it the connection closes with
    /// `RATE_LIMITED`. `None`: the endpoint limits what it needs itself.
    pub frame_rate: Option<Rate>,
    /// The close code of a frame that breaks the endpoint's protocol.
    pub protocol_error: u16,
}

/// What the loop needs of the server.
#[derive(Clone)]
pub struct SocketContext {
    /// Cancelled when the server shuts down: every connection closes with `GOING_AWAY`.
    pub shutdown: CancellationToken,
    /// The server's tasks, which shutdown waits for.
    pub tasks: TaskTracker,
    pub clock: Arc<dyn Clock>,
}

/// The upgrade request, or `not_websocket`.
pub fn websocket_upgrade(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    upgrade.map_err(|rejection| {
        ApiError::new(rejection.status(), "not_websocket", rejection.body_text())
    })
}

/// Refuses (`cross_origin`) a browser page of another origin: its `Origin`, when it
/// sends one, must name the host it connected to.
pub fn require_same_origin(headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    if same_origin(headers) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "cross_origin",
            format!("{what} accepts only pages served by this server"),
        ))
    }
}

fn same_origin(headers: &HeaderMap) -> bool {
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

/// Accepts the upgrade and runs `endpoint` on the connection as one of the server's
/// tasks; refused while the server shuts down.
pub fn accept<E: Endpoint>(
    upgrade: WebSocketUpgrade,
    context: SocketContext,
    settings: SocketSettings,
    endpoint: E,
) -> Result<Response, ApiError> {
    if context.shutdown.is_cancelled() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let guard = context.tasks.token();
    let mut upgrade = upgrade
        .max_message_size(settings.max_frame_bytes)
        .max_frame_size(settings.max_frame_bytes);
    if let Some(bytes) = settings.read_buffer_bytes {
        upgrade = upgrade.read_buffer_size(bytes);
    }
    if let Some(bytes) = settings.write_buffer_bytes {
        upgrade = upgrade.write_buffer_size(bytes);
    }
    Ok(upgrade
        .on_upgrade(move |socket| async move {
            run(socket, endpoint, context, settings).await;
            drop(guard);
        })
        .into_response())
}

/// How many heartbeat ticks of silence end a connection.
fn silent_ticks_allowed(settings: &SocketSettings) -> u32 {
    let heartbeat = settings.heartbeat.as_micros().max(1);
    (settings.client_timeout.as_micros() / heartbeat).min(u32::MAX as u128) as u32
}

async fn run<E: Endpoint>(
    socket: WebSocket,
    mut endpoint: E,
    context: SocketContext,
    settings: SocketSettings,
) {
    let (sink, stream) = socket.split();
    let mut stream = Incoming::new(stream);
    let mut out = Outbound {
        sink,
        batching: false,
    };
    let mut queue = match endpoint.open(&mut out).await {
        Ok(queue) => queue,
        Err(end) => {
            out.finish(end).await;
            return;
        }
    };
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.heartbeat,
        settings.heartbeat,
    );
    let allowed = silent_ticks_allowed(&settings);
    let mut silent_ticks = 0u32;
    let mut bucket = settings
        .frame_rate
        .map(|rate| Bucket::new(rate, context.clock.now_ms()));
    let shutdown = context.shutdown.cancelled();
    tokio::pin!(shutdown);
    // After a batch that stopped at `MAX_BATCH` the queue waits one turn.
    let mut yield_to_client = false;
    let end = loop {
        let after_full_batch = std::mem::take(&mut yield_to_client);
        let step = tokio::select! {
            // What the producer queued comes first, and a wake-up for it polls nothing
            // else: most wake-ups of a busy connection are deliveries, and polling the
            // socket's read side costs (tungstenite zeroes its read buffer on each try).
            biased;
            item = queue.recv(), if !after_full_batch => match item {
                Some(item) => {
                    let (step, full) = send_queued(&mut endpoint, &mut queue, item, &mut out).await;
                    yield_to_client = full;
                    step
                }
                None => Err(queue.close_reason().into()),
            },
            _ = &mut shutdown => {
                Err(Close::new(close_code::GOING_AWAY, "server shutting down").into())
            }
            _ = heartbeat.tick() => {
                silent_ticks += 1;
                if silent_ticks > allowed {
                    Err(Close::new(close_code::HEARTBEAT_TIMEOUT, "no heartbeat from the client").into())
                } else {
                    out.send(Message::Ping(Bytes::new())).await
                }
            }
            frame = stream.next() => match frame {
                None => Err(End::Gone),
                Some(Err(err)) => Err(frame_error(&err, &settings).into()),
                Some(Ok(message)) => {
                    silent_ticks = 0;
                    match message {
                        Message::Text(_) | Message::Binary(_)
                            if bucket
                                .as_mut()
                                .is_some_and(|b| !b.take(context.clock.now_ms())) =>
                        {
                            let per_sec = settings.frame_rate.map_or(0.0, |r| r.per_sec);
                            Err(Close::new(
                                close_code::RATE_LIMITED,
                                format!("more than {per_sec} messages per second"),
                            )
                            .into())
                        }
                        Message::Text(text) => endpoint.on_text(text, &mut out).await,
                        Message::Binary(bytes) => endpoint.on_binary(bytes, &mut out).await,
                        Message::Close(_) => Err(End::Gone),
                        Message::Ping(_) | Message::Pong(_) => Ok(()),
                    }
                }
            },
            // The turn the queue waits after a full batch: the client's frames, the
            // heartbeat and shutdown were looked at (and their wake-ups registered), so
            // a producer that keeps the queue full cannot starve them.
            () = std::future::ready(()), if after_full_batch => Ok(()),
        };
        if let Err(end) = step {
            break end;
        }
    };
    endpoint.on_close(&mut queue, &mut out).await;
    if let End::Close(close) = &end {
        tracing::debug!(code = close.code, reason = %close.reason, "closing a WebSocket");
    }
    out.finish(end).await;
}

/// The client's half of a socket, polled only when its own wake-up came. `select!` polls
/// every branch each time the loop goes to wait, and a read attempt on a WebSocket is
/// not free (a lock shared with the sending half, a readiness check, tungstenite zeroing
/// its read buffer): without this, a connection busy sending would try to read once per
/// message sent.
struct Incoming<S> {
    stream: S,
    wake: Arc<ReadWake>,
    /// The waker the stream is polled with (it sets `wake.woken`).
    waker: Waker,
}

/// Set when the stream's waker fired (or it has not been polled yet); then wakes the
/// connection's task.
struct ReadWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<S> Incoming<S> {
    fn new(stream: S) -> Incoming<S> {
        let wake = Arc::new(ReadWake {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Incoming {
            stream,
            waker: Waker::from(wake.clone()),
            wake,
        }
    }
}

impl<S: Stream + Unpin> Stream for Incoming<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        // Registered before the flag is read: a wake-up in between is not lost.
        this.wake.task.register(cx.waker());
        if !this.wake.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let poll = this
            .stream
            .poll_next_unpin(&mut Context::from_waker(&this.waker));
        if poll.is_ready() {
            // More may be buffered already: the next call reads again.
            this.wake.woken.store(true, Ordering::Release);
        }
        poll
    }
}

/// Writes `first` and what else the producer queued meanwhile (up to [`MAX_BATCH`]
/// items) with one flush: one write to the socket for a backlog, not one per item.
/// Also says whether it stopped at the limit.
async fn send_queued<E: Endpoint>(
    endpoint: &mut E,
    queue: &mut Queue<E::Item>,
    first: E::Item,
    out: &mut Outbound,
) -> (Flow, bool) {
    out.batching = true;
    let mut step = endpoint.on_outgoing(first, out).await;
    let mut sent = 1;
    while step.is_ok() && sent < MAX_BATCH {
        let Some(item) = queue.try_recv() else { break };
        step = endpoint.on_outgoing(item, out).await;
        sent += 1;
    }
    out.batching = false;
    let step = match step {
        Ok(()) => out.flush().await,
        // Ending anyway: the close frame is sent (and everything buffered flushed) by
        // `Outbound::finish`.
        Err(end) => Err(end),
    };
    (step, sent == MAX_BATCH)
}

fn frame_error(err: &axum::Error, settings: &SocketSettings) -> Close {
    let text = err.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        Close::new(
            close_code::TOO_BIG,
            format!("frame larger than {} bytes", settings.max_frame_bytes),
        )
    } else {
        Close::new(
            settings.protocol_error,
            format!("malformed WebSocket frame: {text}"),
        )
    }
}

/// A close reason has at most 123 bytes (cut at a character boundary).
pub fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A token bucket: `burst` tokens at most, refilled at `per_sec`, on the injected clock
/// (a clock that steps back refills nothing until it passes its old reading again).
pub struct Bucket {
    rate: Rate,
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    pub fn new(rate: Rate, now_ms: i64) -> Bucket {
        Bucket {
            rate,
            tokens: rate.burst,
            at_ms: now_ms,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now_ms: i64) -> bool {
        if now_ms > self.at_ms {
            let refill = (now_ms - self.at_ms) as f64 / 1000.0 * self.rate.per_sec;
            self.tokens = (self.tokens + refill).min(self.rate.burst);
            self.at_ms = now_ms;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
        assert!(require_same_origin(&headers, "this").is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(!same_origin(&headers));
        assert!(require_same_origin(&headers, "this").is_err());
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        assert_eq!(truncate_reason(&"é".repeat(100)).len(), 122);
        assert_eq!(truncate_reason("short"), "short");
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate {
            per_sec: 10.0,
            burst: 3.0,
        };
        let mut bucket = Bucket::new(rate, 1_000);
        assert!((0..3).all(|_| bucket.take(1_000)));
        assert!(!bucket.take(1_000), "the burst is spent");
        assert!(!bucket.take(1_050), "half a token");
        assert!(bucket.take(1_100), "one token per 100 ms");
        assert!(!bucket.take(1_100));
        // A clock that steps back refills nothing; a long pause refills the burst only.
        assert!(!bucket.take(500));
        assert!(!bucket.take(1_100));
        assert!((0..3).all(|_| bucket.take(60_000)));
        assert!(!bucket.take(60_000));
    }

    #[test]
    fn silence_is_counted_in_heartbeats() {
        let settings = SocketSettings {
            max_frame_bytes: 1,
            read_buffer_bytes: None,
            write_buffer_bytes: None,
            heartbeat: Duration::from_millis(100),
            client_timeout: Duration::from_millis(2_000),
            frame_rate: None,
            protocol_error: close_code::PROTOCOL_ERROR,
        };
        // Closed at the 21st silent tick: 2.1 s, the first tick past the timeout.
        assert_eq!(silent_ticks_allowed(&settings), 20);
    }

    /// A stream that counts its polls and is ready once per `open`.
    #[derive(Default)]
    struct Gate {
        polls: usize,
        open: bool,
        waker: Option<Waker>,
    }

    struct GatedStream(Arc<std::sync::Mutex<Gate>>);

    impl Stream for GatedStream {
        type Item = usize;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<usize>> {
            let mut gate = self.0.lock().unwrap();
            gate.polls += 1;
            if std::mem::take(&mut gate.open) {
                Poll::Ready(Some(gate.polls))
            } else {
                gate.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_read_side_is_polled_only_after_its_own_wake_up() {
        let gate = Arc::new(std::sync::Mutex::new(Gate::default()));
        let mut incoming = Incoming::new(GatedStream(gate.clone()));
        let task = Arc::new(CountingWaker::default());
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let polls = || gate.lock().unwrap().polls;
        assert!(incoming.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(polls(), 1, "the first poll reaches the stream");
        for _ in 0..3 {
            assert!(incoming.poll_next_unpin(&mut cx).is_pending());
        }
        assert_eq!(polls(), 1, "not woken: the stream is left alone");
        let stream_waker = {
            let mut gate = gate.lock().unwrap();
            gate.open = true;
            gate.waker.take().unwrap()
        };
        stream_waker.wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert_eq!(incoming.poll_next_unpin(&mut cx), Poll::Ready(Some(2)));
        // After an item the stream is read again: more may be buffered.
        assert!(incoming.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(polls(), 3);
        assert!(incoming.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(polls(), 3);
    }

    #[tokio::test]
    async fn a_queue_ends_with_its_reason() {
        let (tx, mut rx) = queue::<u32>(2);
        assert!(tx.try_send(1));
        assert!(tx.try_send(2));
        assert!(!tx.try_send(3), "full");
        tx.close(Close::new(close_code::SESSION_REVOKED, "revoked"));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.recv().await, None);
        assert_eq!(
            rx.close_reason(),
            Close::new(close_code::SESSION_REVOKED, "revoked")
        );
        let (tx, rx) = queue::<u32>(1);
        drop(tx);
        assert_eq!(rx.close_reason().code, close_code::SLOW_CONSUMER);
    }
}
