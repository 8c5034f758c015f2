//! The one reconnecting browser socket, under the realtime client
//! ([`super::realtime`]) and the document session (`crate::docs::session`):
//!
//! - [`Backoff`]: exponential backoff with full jitter, the one delay function every
//!   retry in the app uses (sockets, the flags' stream, the cart's requests).
//! - [`Link`]: the connection's pure state machine: inputs in ([`LinkInput`]: started,
//!   opened, ready, closed, lost, the browser's `online`/`offline`, a retry due),
//!   commands out ([`LinkCommand`]: connect, close, retry in so long, cancel the retry).
//!   What a close code means is the protocol's to say ([`AfterClose`]); the link does the
//!   rest: back off, wait for the network, reconnect at once, or stop for good. Its
//!   randomness (the jitter) comes in with the inputs, so it is tested natively.
//! - [`Socket`]: the browser glue of one WebSocket: its handlers, sending text or bytes,
//!   and a `Drop` that removes the handlers before closing it, so a replaced socket is
//!   never heard again.
//!
//! Invariants:
//! - A close reported twice is handled once (a link that is down ignores it).
//! - While the browser says it is offline, nothing is scheduled: the `online` event (or
//!   the owner's periodic [`LinkInput::NetworkCheck`]) reconnects at once, with the
//!   backoff forgotten.
//! - A stopped link never asks for anything again.
//! - No delay exceeds the backoff's cap.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// Close code of a socket closed by this page (normal closure).
pub const NORMAL_CLOSURE: u16 = 1000;
/// Close code the browser reports for a connection that failed or dropped without a
/// close frame.
pub const ABNORMAL_CLOSURE: u16 = 1006;

/// Exponential backoff with full jitter: attempt `n` (0 for the first retry after a
/// failure) waits a uniformly random time between zero and `base_ms · 2ⁿ`, capped at
/// `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u32,
    pub max_ms: u32,
}

impl Backoff {
    /// The realtime channel, the flags' stream and the cart's requests: 500 ms doubling
    /// to 30 s.
    pub const REALTIME: Backoff = Backoff {
        base_ms: 500,
        max_ms: 30_000,
    };
    /// A document's sync socket: 500 ms doubling to 10 s (an editor wants its document
    /// back soon).
    pub const DOCUMENT: Backoff = Backoff {
        base_ms: 500,
        max_ms: 10_000,
    };

    /// The delay before attempt `attempt`; `unit` is a random number in `[0, 1)`
    /// (anything else is clamped, a NaN counts as 0).
    pub fn delay_ms(&self, attempt: u32, unit: f64) -> u32 {
        let cap = self
            .base_ms
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_ms);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ((cap as f64) * unit).floor().min(cap as f64) as u32
    }
}

/// What a protocol wants after its socket closed (decided from the close code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterClose {
    /// Reconnect after the backoff (a failure is counted).
    Retry,
    /// Reconnect at once (the server asked for a fresh connection).
    Now,
    /// Do not reconnect until the owner says so ([`LinkInput::Connect`] or
    /// [`LinkInput::Resume`]): it has something to learn first (who the session is).
    Hold,
    /// Never reconnect: the resource is gone or refuses this page.
    Stop,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No socket: a retry is scheduled, or waits for the network or the owner.
    Down,
    /// A socket is being opened (or opened and not yet confirmed by its protocol).
    Opening,
    /// The socket is open.
    Open,
}

/// What happened, as the owner reports it to [`Link::handle`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkInput {
    /// The owner is ready: connect if the browser is online (else wait for it).
    Start {
        online: bool,
    },
    /// Connect now, replacing any socket (the session changed, or was learned); the
    /// failures counted so far stay counted.
    Connect,
    /// Connect now and forget the backoff (the user asked).
    ReconnectNow,
    /// Forget a scheduled retry: the owner reconnects when it is ready.
    Hold,
    /// After a [`AfterClose::Hold`] for a revoked session: the first resumes at once,
    /// repeated ones back off.
    Resume {
        jitter: f64,
    },
    /// The socket opened.
    Opened,
    /// The protocol confirmed the connection (a greeting, a first sync): failures are
    /// forgotten.
    Ready,
    /// The socket closed; `after` is what the protocol makes of its code; `jitter` a
    /// random number in `[0, 1)`.
    Closed {
        after: AfterClose,
        jitter: f64,
    },
    /// The owner gave the connection up (no greeting, silence): close it and retry after
    /// the backoff.
    Lost {
        jitter: f64,
    },
    BrowserOnline,
    BrowserOffline,
    /// The owner's periodic look at `navigator.onLine`, in case an `online` event was
    /// missed.
    NetworkCheck {
        online: bool,
    },
    /// The retry timer fired.
    RetryDue,
    /// Stop for good.
    Stop,
}

/// What the owner must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkCommand {
    /// Open a new socket, replacing (and closing) any.
    Connect,
    /// Close the socket, its handlers removed first.
    Close,
    /// Schedule [`LinkInput::RetryDue`] in this many milliseconds.
    RetryIn(u32),
    /// Forget the scheduled retry.
    CancelRetry,
}

/// The connection's state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    backoff: Backoff,
    phase: Phase,
    browser_online: bool,
    failed_attempts: u32,
    retry_in_ms: Option<u32>,
    stopped: bool,
}

impl Link {
    /// A link that is down and believes the browser is online.
    pub fn new(backoff: Backoff) -> Link {
        Link {
            backoff,
            phase: Phase::Down,
            browser_online: true,
            failed_attempts: 0,
            retry_in_ms: None,
            stopped: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the browser last said it was online.
    pub fn browser_online(&self) -> bool {
        self.browser_online
    }

    /// Attempts that failed since the connection was last confirmed.
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// The delay of the scheduled retry, while one is scheduled.
    pub fn retry_in_ms(&self) -> Option<u32> {
        self.retry_in_ms
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn handle(&mut self, input: LinkInput) -> Vec<LinkCommand> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        match input {
            LinkInput::Start { online } => {
                self.browser_online = online;
                if online {
                    self.connect(&mut out);
                }
            }
            LinkInput::Connect => self.connect(&mut out),
            LinkInput::ReconnectNow => {
                self.failed_attempts = 0;
                self.connect(&mut out);
            }
            LinkInput::Hold => self.cancel_retry(&mut out),
            LinkInput::Resume { jitter } => {
                self.failed_attempts = self.failed_attempts.saturating_add(1);
                if self.failed_attempts > 1 {
                    self.schedule_retry(jitter, &mut out);
                } else {
                    self.connect(&mut out);
                }
            }
            LinkInput::Opened => {
                if self.phase == Phase::Opening {
                    self.phase = Phase::Open;
                }
            }
            LinkInput::Ready => {
                if self.phase != Phase::Down {
                    self.phase = Phase::Open;
                    self.failed_attempts = 0;
                    self.cancel_retry(&mut out);
                }
            }
            LinkInput::Closed { after, jitter } => {
                if self.phase == Phase::Down {
                    return out;
                }
                self.phase = Phase::Down;
                match after {
                    AfterClose::Retry => self.schedule_retry(jitter, &mut out),
                    AfterClose::Now => self.connect(&mut out),
                    AfterClose::Hold => {}
                    AfterClose::Stop => self.stopped = true,
                }
            }
            LinkInput::Lost { jitter } => {
                self.go_down(&mut out);
                self.schedule_retry(jitter, &mut out);
            }
            LinkInput::BrowserOffline => {
                self.browser_online = false;
                self.go_down(&mut out);
            }
            LinkInput::BrowserOnline => {
                self.browser_online = true;
                self.failed_attempts = 0;
                if self.phase == Phase::Down {
                    self.connect(&mut out);
                }
            }
            LinkInput::NetworkCheck { online } => {
                if online && !self.browser_online {
                    return self.handle(LinkInput::BrowserOnline);
                }
            }
            LinkInput::RetryDue => {
                self.retry_in_ms = None;
                if self.phase == Phase::Down && self.browser_online {
                    self.connect(&mut out);
                }
            }
            LinkInput::Stop => {
                self.go_down(&mut out);
                self.stopped = true;
            }
        }
        out
    }

    fn connect(&mut self, out: &mut Vec<LinkCommand>) {
        self.cancel_retry(out);
        self.phase = Phase::Opening;
        out.push(LinkCommand::Connect);
    }

    fn cancel_retry(&mut self, out: &mut Vec<LinkCommand>) {
        if self.retry_in_ms.take().is_some() {
            out.push(LinkCommand::CancelRetry);
        }
    }

    /// Closes the socket (if any) without scheduling a retry.
    fn go_down(&mut self, out: &mut Vec<LinkCommand>) {
        if self.phase != Phase::Down {
            out.push(LinkCommand::Close);
        }
        self.cancel_retry(out);
        self.phase = Phase::Down;
    }

    fn schedule_retry(&mut self, jitter: f64, out: &mut Vec<LinkCommand>) {
        if !self.browser_online {
            // The `online` event reconnects.
            return;
        }
        self.cancel_retry(out);
        let delay = self.backoff.delay_ms(self.failed_attempts, jitter);
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        self.retry_in_ms = Some(delay);
        out.push(LinkCommand::RetryIn(delay));
    }
}

// ---------------------------------------------------------------------------------------
// The browser glue

/// A frame received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// What one socket reports. The handlers are called from the browser's event loop,
/// never from inside [`Socket::open`].
pub struct SocketEvents {
    pub on_open: Box<dyn FnMut()>,
    pub on_frame: Box<dyn FnMut(Frame)>,
    /// The close code and reason.
    pub on_close: Box<dyn FnMut(u16, String)>,
}

/// One open WebSocket and its handlers. Dropping it removes the handlers, then closes
/// it if it is still connecting or open.
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Opens a socket to `url`; binary frames arrive as bytes (`binaryType =
    /// arraybuffer`). `Err` when the browser refuses to open it (a bad URL, a blocked
    /// port): the caller treats it as a close.
    pub fn open(url: &str, events: SocketEvents) -> Result<Socket, String> {
        let ws = WebSocket::new(url).map_err(|error| format!("{error:?}"))?;
        let _ = js_sys::Reflect::set(
            &ws,
            &JsValue::from_str("binaryType"),
            &JsValue::from_str("arraybuffer"),
        );
        let SocketEvents {
            mut on_open,
            mut on_frame,
            mut on_close,
        } = events;
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| on_open());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data();
            if let Some(text) = data.as_string() {
                on_frame(Frame::Text(text));
            } else if let Ok(buffer) = data.dyn_into::<js_sys::ArrayBuffer>() {
                on_frame(Frame::Binary(js_sys::Uint8Array::new(&buffer).to_vec()));
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            on_close(event.code(), event.reason())
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    /// Sends a text frame if the socket is open (else nothing: the protocol resends
    /// what matters on its next connection).
    pub fn send_text(&self, text: &str) {
        if self.is_open() {
            let _ = self.ws.send_with_str(text);
        }
    }

    /// Sends a binary frame if the socket is open.
    pub fn send_bytes(&self, bytes: &[u8]) {
        if self.is_open() {
            let _ = self.ws.send_with_u8_array(bytes);
        }
    }

    /// The socket closed by itself: forget it without closing it again.
    pub fn forget_closed(self) {
        self.detach();
    }

    fn detach(&self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.detach();
        if self.ws.ready_state() <= WebSocket::OPEN {
            let _ = self.ws.close_with_code(NORMAL_CLOSURE);
        }
    }
}

/// A sentence about a closed connection: what happened, and the server's reason when it
/// gave one (`"The document was deleted. (by alice)"`).
pub fn close_sentence(what: String, reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() {
        what
    } else {
        format!("{what} ({reason})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use AfterClose as A;
    use LinkCommand as C;
    use LinkInput as I;

    fn closed(after: AfterClose) -> LinkInput {
        I::Closed { after, jitter: 0.5 }
    }

    /// A link that connected and was confirmed.
    fn ready(backoff: Backoff) -> Link {
        let mut link = Link::new(backoff);
        assert_eq!(link.handle(I::Start { online: true }), vec![C::Connect]);
        assert_eq!(link.phase(), Phase::Opening);
        assert_eq!(link.handle(I::Opened), vec![]);
        assert!(link.is_open());
        assert_eq!(link.handle(I::Ready), vec![]);
        link
    }

    #[test]
    fn the_realtime_backoff_doubles_to_thirty_seconds_with_full_jitter() {
        let backoff = Backoff::REALTIME;
        assert_eq!(backoff.delay_ms(0, 0.0), 0);
        assert_eq!(backoff.delay_ms(0, 0.999_999), 499);
        assert_eq!(backoff.delay_ms(1, 0.5), 500);
        assert_eq!(backoff.delay_ms(2, 0.5), 1_000);
        assert_eq!(backoff.delay_ms(5, 0.999_999), 15_999);
        assert_eq!(backoff.delay_ms(6, 0.999_999), 29_999);
        assert_eq!(backoff.delay_ms(7, 0.999_999), 29_999);
        assert_eq!(backoff.delay_ms(40, 0.5), 15_000);
        assert_eq!(backoff.delay_ms(u32::MAX, 0.5), 15_000);
        assert_eq!(backoff.delay_ms(3, f64::NAN), 0);
        assert_eq!(backoff.delay_ms(3, 7.0), 4_000);
        for attempt in 0..64 {
            for step in 0..10 {
                let delay = backoff.delay_ms(attempt, step as f64 / 10.0);
                assert!(delay <= backoff.max_ms);
            }
        }
    }

    #[test]
    fn the_document_backoff_is_capped_at_ten_seconds() {
        let backoff = Backoff::DOCUMENT;
        assert_eq!(backoff.delay_ms(0, 0.0), 0);
        assert_eq!(backoff.delay_ms(0, 0.999_999), 499);
        assert_eq!(backoff.delay_ms(3, 1.0), 4_000);
        assert_eq!(backoff.delay_ms(5, 1.0), 10_000);
        assert_eq!(backoff.delay_ms(40, 0.5), 5_000);
        assert_eq!(backoff.delay_ms(2, f64::NAN), 0);
    }

    /// Delays of a seeded run stay under their attempt's cap and grow with it.
    #[test]
    fn seeded_jitter_stays_under_each_attempts_cap() {
        let seed: u64 = 0x5eed_1234;
        println!("seed {seed:#x}");
        let mut state = seed;
        let mut unit = move || {
            // xorshift64*: deterministic, good enough for jitter.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut link = ready(Backoff::REALTIME);
        for attempt in 0..12u32 {
            let commands = if attempt == 0 {
                link.handle(I::Closed {
                    after: A::Retry,
                    jitter: unit(),
                })
            } else {
                assert_eq!(link.handle(I::RetryDue), vec![C::Connect]);
                link.handle(I::Closed {
                    after: A::Retry,
                    jitter: unit(),
                })
            };
            let [C::RetryIn(delay)] = commands[..] else {
                panic!("attempt {attempt}: {commands:?}");
            };
            let cap = (500u32 << attempt.min(10)).min(30_000);
            assert!(delay < cap, "attempt {attempt}: {delay} ms over {cap} ms");
            assert_eq!(link.failed_attempts(), attempt + 1);
        }
    }

    #[test]
    fn a_broken_connection_retries_with_growing_delays_and_forgets_them_when_ready() {
        let mut link = ready(Backoff::DOCUMENT);
        assert_eq!(link.handle(closed(A::Retry)), vec![C::RetryIn(250)]);
        assert_eq!(link.retry_in_ms(), Some(250));
        assert_eq!(link.handle(I::RetryDue), vec![C::Connect]);
        assert_eq!(link.retry_in_ms(), None);
        assert_eq!(link.handle(closed(A::Retry)), vec![C::RetryIn(500)]);
        link.handle(I::RetryDue);
        assert_eq!(link.handle(closed(A::Retry)), vec![C::RetryIn(1_000)]);
        assert_eq!(link.failed_attempts(), 3);
        // The browser coming back online reconnects at once, forgetting the backoff.
        assert_eq!(
            link.handle(I::BrowserOnline),
            vec![C::CancelRetry, C::Connect]
        );
        assert_eq!(link.failed_attempts(), 0);
        link.handle(closed(A::Retry));
        link.handle(I::RetryDue);
        assert_eq!(link.failed_attempts(), 1);
        link.handle(I::Opened);
        link.handle(I::Ready);
        assert_eq!(link.failed_attempts(), 0);
        // A close reported twice is handled once.
        assert_eq!(link.handle(closed(A::Retry)).len(), 1);
        assert_eq!(link.handle(closed(A::Retry)), vec![]);
    }

    #[test]
    fn offline_nothing_is_scheduled_until_the_network_is_back() {
        let mut link = ready(Backoff::REALTIME);
        assert_eq!(link.handle(I::BrowserOffline), vec![C::Close]);
        assert!(!link.browser_online());
        // A late close of the old socket, the timer and a retry: nothing.
        assert_eq!(link.handle(closed(A::Retry)), vec![]);
        assert_eq!(link.handle(I::RetryDue), vec![]);
        assert_eq!(link.handle(I::NetworkCheck { online: false }), vec![]);
        // A missed `online` event: the periodic check notices.
        assert_eq!(
            link.handle(I::NetworkCheck { online: true }),
            vec![C::Connect]
        );
        // A socket that fails while the browser is offline waits too.
        link.handle(I::BrowserOffline);
        link.handle(I::Connect);
        assert_eq!(link.handle(closed(A::Retry)), vec![]);
        assert_eq!(link.retry_in_ms(), None);
        // A fresh start offline does not dial.
        let mut fresh = Link::new(Backoff::DOCUMENT);
        assert_eq!(fresh.handle(I::Start { online: false }), vec![]);
        assert_eq!(fresh.handle(I::BrowserOnline), vec![C::Connect]);
        // Going offline with a retry scheduled cancels it.
        let mut scheduled = ready(Backoff::DOCUMENT);
        scheduled.handle(closed(A::Retry));
        assert_eq!(scheduled.handle(I::BrowserOffline), vec![C::CancelRetry]);
    }

    #[test]
    fn close_codes_decide_through_the_protocol() {
        // Now: straight back, without counting a failure.
        let mut link = ready(Backoff::REALTIME);
        assert_eq!(link.handle(closed(A::Now)), vec![C::Connect]);
        assert_eq!(link.failed_attempts(), 0);
        // Hold: nothing until the owner resumes; the first resume connects at once,
        // the next ones back off.
        let mut link = ready(Backoff::REALTIME);
        assert_eq!(link.handle(closed(A::Hold)), vec![]);
        assert_eq!(link.phase(), Phase::Down);
        assert_eq!(link.handle(I::RetryDue), vec![C::Connect]);
        link.handle(closed(A::Hold));
        assert_eq!(link.handle(I::Resume { jitter: 0.5 }), vec![C::Connect]);
        link.handle(closed(A::Hold));
        assert_eq!(
            link.handle(I::Resume { jitter: 0.5 }),
            vec![C::RetryIn(1_000)]
        );
        // Stop: for good.
        let mut link = ready(Backoff::REALTIME);
        assert_eq!(link.handle(closed(A::Stop)), vec![]);
        assert!(link.is_stopped());
        assert_eq!(link.handle(I::BrowserOnline), vec![]);
        assert_eq!(link.handle(I::ReconnectNow), vec![]);
    }

    #[test]
    fn a_lost_connection_closes_and_retries_and_hold_cancels_a_retry() {
        let mut link = ready(Backoff::DOCUMENT);
        assert_eq!(
            link.handle(I::Lost { jitter: 0.0 }),
            vec![C::Close, C::RetryIn(0)]
        );
        assert_eq!(link.handle(I::Hold), vec![C::CancelRetry]);
        assert_eq!(link.handle(I::Hold), vec![]);
        // Connecting over a scheduled retry cancels it; the user's reconnect also
        // forgets the failures.
        link.handle(I::Lost { jitter: 0.0 });
        assert_eq!(link.handle(I::Connect), vec![C::CancelRetry, C::Connect]);
        assert_eq!(link.failed_attempts(), 2);
        assert_eq!(link.handle(I::ReconnectNow), vec![C::Connect]);
        assert_eq!(link.failed_attempts(), 0);
        // A greeting without an open event (a protocol that waits for its welcome)
        // confirms the connection too.
        assert_eq!(link.handle(I::Ready), vec![]);
        assert!(link.is_open());
        // Stopping closes and ignores the rest.
        assert_eq!(link.handle(I::Stop), vec![C::Close]);
        assert_eq!(link.handle(I::Start { online: true }), vec![]);
    }
}
