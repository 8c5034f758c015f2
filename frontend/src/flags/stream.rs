//! The feature flags' live configuration in the browser: one environment's
//! [`FlagSnapshot`], followed over `GET /api/flags/stream` (Server-Sent Events, through
//! `EventSource`), compiled with the very evaluator the server and the SDKs run
//! (`meridian_shared::flags::CompiledFlag`), and kept in localStorage so that the page
//! still evaluates with the last known configuration when the server cannot be reached.
//!
//! Layout:
//! - [`LiveConfig`]: a snapshot with every flag compiled once; evaluates without the
//!   network.
//! - [`StreamModel`]: the pure bookkeeping (which snapshot is current, the connection's
//!   state, reconnect attempts), tested natively; [`LiveView`] is what it shows.
//! - [`FlagStream`]: the browser glue: the `EventSource`, localStorage, the reconnect
//!   timer, and the window's `online`/`offline` events.
//!
//! Invariants:
//! - A snapshot the stream sent in this session is replaced only by one of the same
//!   environment and at least its version (a lagging instance cannot roll it back); a
//!   snapshot restored from storage is replaced by the first one the stream sends.
//! - The state is `live` only while the `EventSource` is open; a dropped connection that
//!   the browser is re-opening is `connecting`, and `offline` once a reconnect has failed
//!   or the browser says it has no network; one the browser gave up on (an error status)
//!   is `offline` until our own retry, with backoff.
//! - No `RefCell` borrow is held while the page's callback runs.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use meridian_shared::flags::admin::FlagSnapshot;
use meridian_shared::flags::{
    CompiledFlag, ErrorCode, Evaluation, EvaluationContext, FlagConfig, Segments,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{EventSource, MessageEvent};
use yew::Callback;

use super::api::flag_stream_path;
use crate::browser::{self, WindowListener};
use crate::net::socket::Backoff;

/// The SSE event that carries a whole environment.
pub const PUT_EVENT: &str = "put";

/// The localStorage key of the last known configuration of `environment`.
pub fn storage_key(environment: &str) -> String {
    format!("meridian.flags.snapshot.{environment}")
}

// ---------------------------------------------------------------------------------------
// Pure model

/// One environment's configuration with every flag compiled.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub snapshot: FlagSnapshot,
    /// By flag key: the compiled flag, or why it does not compile.
    compiled: BTreeMap<String, Result<CompiledFlag, String>>,
}

impl PartialEq for LiveConfig {
    fn eq(&self, other: &LiveConfig) -> bool {
        self.snapshot == other.snapshot
    }
}

impl LiveConfig {
    /// Compiles every flag of `snapshot` against its segments.
    pub fn new(snapshot: FlagSnapshot) -> LiveConfig {
        let segments: Segments = snapshot.segments.iter().cloned().collect();
        let compiled = snapshot
            .flags
            .iter()
            .map(|flag| {
                let compiled =
                    CompiledFlag::compile(flag, &segments).map_err(|error| error.to_string());
                (flag.key.clone(), compiled)
            })
            .collect();
        LiveConfig { snapshot, compiled }
    }

    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    pub fn environment(&self) -> &str {
        &self.snapshot.environment
    }

    /// The flags' keys, in the snapshot's order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.snapshot.flags.iter().map(|flag| flag.key.as_str())
    }

    pub fn flag(&self, key: &str) -> Option<&FlagConfig> {
        self.snapshot.flags.iter().find(|flag| flag.key == key)
    }

    /// Evaluates the flag `key` for `context`, here; `None` when there is no such flag.
    /// A flag that does not compile (which the server never sends) answers
    /// `PARSE_ERROR`, as `meridian_shared::flags::evaluate` does.
    pub fn evaluate(&self, key: &str, context: &EvaluationContext) -> Option<Evaluation> {
        Some(match self.compiled.get(key)? {
            Ok(flag) => flag.evaluate(context).into_owned(),
            Err(error) => Evaluation::error(ErrorCode::ParseError, error.clone()),
        })
    }
}

/// The stream's connection, as the page shows it (`data-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamState {
    /// Open: changes arrive as they are made.
    Live,
    /// Opening, or re-opening after a drop.
    #[default]
    Connecting,
    /// No connection; the page evaluates with the last known configuration.
    Offline,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Live => "live",
            StreamState::Connecting => "connecting",
            StreamState::Offline => "offline",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StreamState::Live => "Live",
            StreamState::Connecting => "Connecting…",
            StreamState::Offline => "Offline",
        }
    }
}

/// What became of a `put` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Accepted,
    /// Older than what the stream already sent.
    Stale,
    /// For another environment than the one followed.
    WrongEnvironment,
}

/// Everything the page shows about the live configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveView {
    pub environment: String,
    pub state: StreamState,
    pub config: Option<Rc<LiveConfig>>,
    /// `config` came from the stream in this session (not only from storage).
    pub confirmed: bool,
    /// Why the connection is not live, when known.
    pub error: Option<String>,
    /// When our own reconnect is due, if one is scheduled.
    pub retry_in_ms: Option<u32>,
}

impl LiveView {
    /// The configuration's version, 0 without one.
    pub fn version(&self) -> u64 {
        self.config.as_ref().map_or(0, |config| config.version())
    }
}

/// Reads a `put` event's data.
pub fn parse_put(data: &str) -> Result<FlagSnapshot, String> {
    serde_json::from_str(data).map_err(|error| format!("unreadable configuration: {error}"))
}

/// The stream's bookkeeping for one environment.
#[derive(Debug, Clone)]
pub struct StreamModel {
    environment: String,
    config: Option<Rc<LiveConfig>>,
    confirmed: bool,
    state: StreamState,
    /// Connections the browser gave up on since the last open.
    attempts: u32,
    /// Errors since the last open: the first is the drop, the next ones failed reconnects.
    errors_since_open: u32,
    error: Option<String>,
    retry_in_ms: Option<u32>,
}

impl StreamModel {
    pub fn new(environment: impl Into<String>) -> StreamModel {
        StreamModel {
            environment: environment.into(),
            config: None,
            confirmed: false,
            state: StreamState::Connecting,
            attempts: 0,
            errors_since_open: 0,
            error: None,
            retry_in_ms: None,
        }
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Takes the last known configuration from storage, unless the stream was first.
    pub fn restore(&mut self, stored: &str) -> bool {
        if self.config.is_some() {
            return false;
        }
        match parse_put(stored) {
            Ok(snapshot) if snapshot.environment == self.environment => {
                self.config = Some(Rc::new(LiveConfig::new(snapshot)));
                true
            }
            _ => false,
        }
    }

    /// The connection is open.
    pub fn opened(&mut self) {
        self.state = StreamState::Live;
        self.attempts = 0;
        self.errors_since_open = 0;
        self.error = None;
        self.retry_in_ms = None;
    }

    /// A `put` event arrived.
    pub fn put(&mut self, snapshot: FlagSnapshot) -> PutOutcome {
        if snapshot.environment != self.environment {
            return PutOutcome::WrongEnvironment;
        }
        if self.confirmed
            && self
                .config
                .as_ref()
                .is_some_and(|current| snapshot.version < current.version())
        {
            return PutOutcome::Stale;
        }
        self.state = StreamState::Live;
        self.error = None;
        let unchanged = self
            .config
            .as_ref()
            .is_some_and(|current| current.snapshot == snapshot);
        if !unchanged {
            self.config = Some(Rc::new(LiveConfig::new(snapshot)));
        }
        self.confirmed = true;
        PutOutcome::Accepted
    }

    /// A `put` event that could not be read.
    pub fn unreadable(&mut self, why: String) {
        self.error = Some(why);
    }

    /// The connection failed. `closed`: the browser gave up on it (it will not retry by
    /// itself); `online`: the browser believes it has a network. A drop is `connecting`
    /// while the browser reconnects; once a reconnect has failed too, `offline`. Returns
    /// the attempt number of the reconnect to schedule when `closed`.
    pub fn failed(&mut self, closed: bool, online: bool) -> Option<u32> {
        self.errors_since_open = self.errors_since_open.saturating_add(1);
        self.state = if closed || !online || self.errors_since_open > 1 {
            StreamState::Offline
        } else {
            StreamState::Connecting
        };
        self.error = Some(if !online {
            "This browser is offline.".to_owned()
        } else if closed {
            "The server refused the stream.".to_owned()
        } else if self.errors_since_open > 1 {
            "The server cannot be reached; the browser keeps trying.".to_owned()
        } else {
            "The connection dropped; the browser is reconnecting.".to_owned()
        });
        if closed {
            let attempt = self.attempts;
            self.attempts = self.attempts.saturating_add(1);
            Some(attempt)
        } else {
            None
        }
    }

    /// Our own reconnect is scheduled in `delay_ms`.
    pub fn retrying(&mut self, delay_ms: u32) {
        self.retry_in_ms = Some(delay_ms);
    }

    /// A new connection is being opened.
    pub fn connecting(&mut self, online: bool) {
        self.retry_in_ms = None;
        self.state = if online {
            StreamState::Connecting
        } else {
            StreamState::Offline
        };
    }

    pub fn view(&self) -> LiveView {
        LiveView {
            environment: self.environment.clone(),
            state: self.state,
            config: self.config.clone(),
            confirmed: self.confirmed,
            error: self.error.clone(),
            retry_in_ms: self.retry_in_ms,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Browser glue

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The last known configuration of `environment`, as stored.
fn load_stored(environment: &str) -> Option<String> {
    local_storage()?.get_item(&storage_key(environment)).ok()?
}

fn store(environment: &str, data: &str) {
    if let Some(storage) = local_storage() {
        // A full or refused storage only costs the offline copy.
        let _ = storage.set_item(&storage_key(environment), data);
    }
}

/// An open `EventSource` with its handlers; dropping it closes the connection.
struct Source {
    source: EventSource,
    on_put: Closure<dyn FnMut(MessageEvent)>,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.source.set_onopen(None);
        self.source.set_onerror(None);
        let _ = self
            .source
            .remove_event_listener_with_callback(PUT_EVENT, self.on_put.as_ref().unchecked_ref());
        self.source.close();
    }
}

struct Inner {
    model: RefCell<StreamModel>,
    source: RefCell<Option<Source>>,
    retry: RefCell<Option<Timeout>>,
    listeners: RefCell<Vec<WindowListener>>,
    stopped: Cell<bool>,
    on_change: Callback<LiveView>,
}

/// The live configuration of one environment, for as long as the handle's page wants it.
/// Clones share one connection.
#[derive(Clone)]
pub struct FlagStream {
    inner: Rc<Inner>,
}

impl PartialEq for FlagStream {
    fn eq(&self, other: &FlagStream) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl FlagStream {
    /// Restores the last known configuration of `environment`, then follows the stream;
    /// every change is reported to `on_change`.
    pub fn start(environment: &str, on_change: Callback<LiveView>) -> FlagStream {
        let mut model = StreamModel::new(environment);
        if let Some(stored) = load_stored(environment) {
            model.restore(&stored);
        }
        let stream = FlagStream {
            inner: Rc::new(Inner {
                model: RefCell::new(model),
                source: RefCell::new(None),
                retry: RefCell::new(None),
                listeners: RefCell::new(Vec::new()),
                stopped: Cell::new(false),
                on_change,
            }),
        };
        stream.listen_to_window();
        stream.connect();
        stream
    }

    /// Closes the connection and forgets every timer and listener.
    pub fn stop(&self) {
        self.inner.stopped.set(true);
        let source = self.inner.source.borrow_mut().take();
        let retry = self.inner.retry.borrow_mut().take();
        let listeners = std::mem::take(&mut *self.inner.listeners.borrow_mut());
        drop((source, retry, listeners));
    }

    fn upgrade(weak: &Weak<Inner>) -> Option<FlagStream> {
        let inner = weak.upgrade()?;
        (!inner.stopped.get()).then_some(FlagStream { inner })
    }

    fn emit(&self) {
        let view = self.inner.model.borrow().view();
        self.inner.on_change.emit(view);
    }

    fn connect(&self) {
        if self.inner.stopped.get() {
            return;
        }
        // (`retry` is left alone: this may run inside its timer's callback. The next
        // failure replaces it.)
        drop(self.inner.source.borrow_mut().take());
        let environment = self.inner.model.borrow().environment().to_owned();
        self.inner
            .model
            .borrow_mut()
            .connecting(browser::navigator_online());
        let source = match EventSource::new(&flag_stream_path(&environment)) {
            Ok(source) => source,
            Err(_) => {
                // Only an invalid URL does this: retrying would not help.
                self.inner
                    .model
                    .borrow_mut()
                    .failed(true, browser::navigator_online());
                self.emit();
                return;
            }
        };
        let weak = Rc::downgrade(&self.inner);
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            if let Some(stream) = FlagStream::upgrade(&weak) {
                stream.inner.model.borrow_mut().opened();
                stream.emit();
            }
        });
        let weak = Rc::downgrade(&self.inner);
        let on_error =
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
                if let Some(stream) = FlagStream::upgrade(&weak) {
                    let closed =
                        stream.inner.source.borrow().as_ref().is_none_or(|source| {
                            source.source.ready_state() == EventSource::CLOSED
                        });
                    stream.failed(closed);
                }
            });
        let weak = Rc::downgrade(&self.inner);
        let on_put = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(stream) = FlagStream::upgrade(&weak) {
                if let Some(data) = event.data().as_string() {
                    stream.put(&data);
                }
            }
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let _ = source.add_event_listener_with_callback(PUT_EVENT, on_put.as_ref().unchecked_ref());
        *self.inner.source.borrow_mut() = Some(Source {
            source,
            on_put,
            _on_open: on_open,
            _on_error: on_error,
        });
        self.emit();
    }

    fn put(&self, data: &str) {
        let outcome = {
            let mut model = self.inner.model.borrow_mut();
            match parse_put(data) {
                Ok(snapshot) => Some((model.put(snapshot), model.environment().to_owned())),
                Err(why) => {
                    model.unreadable(why);
                    None
                }
            }
        };
        if let Some((PutOutcome::Accepted, environment)) = outcome {
            store(&environment, data);
        }
        self.emit();
    }

    fn failed(&self, closed: bool) {
        let attempt = self
            .inner
            .model
            .borrow_mut()
            .failed(closed, browser::navigator_online());
        if let Some(attempt) = attempt {
            // The browser gave up: ours is the only retry. The source is closed but kept
            // (this runs inside its error handler, which must outlive the call); the
            // reconnect replaces it.
            if let Some(source) = self.inner.source.borrow().as_ref() {
                source.source.close();
            }
            let delay = Backoff::REALTIME
                .delay_ms(attempt, browser::random_unit())
                .max(250);
            self.inner.model.borrow_mut().retrying(delay);
            let weak = Rc::downgrade(&self.inner);
            let timer = Timeout::new(delay, move || {
                if let Some(stream) = FlagStream::upgrade(&weak) {
                    stream.connect();
                }
            });
            *self.inner.retry.borrow_mut() = Some(timer);
        }
        self.emit();
    }

    /// `offline`: says so at once. `online`: reconnects now if no connection is open or
    /// being opened.
    fn listen_to_window(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut listeners = Vec::new();
        for event in ["online", "offline"] {
            let weak = Rc::downgrade(&self.inner);
            let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
                let Some(stream) = FlagStream::upgrade(&weak) else {
                    return;
                };
                let ready_state = stream
                    .inner
                    .source
                    .borrow()
                    .as_ref()
                    .map(|source| source.source.ready_state());
                if event == "offline" {
                    stream.inner.model.borrow_mut().failed(false, false);
                    stream.emit();
                } else if ready_state == Some(EventSource::OPEN) {
                    stream.inner.model.borrow_mut().opened();
                    stream.emit();
                } else if ready_state != Some(EventSource::CONNECTING) {
                    stream.connect();
                }
            });
            if let Some(listener) = WindowListener::add(&window, event, closure) {
                listeners.push(listener);
            }
        }
        *self.inner.listeners.borrow_mut() = listeners;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::flags::{FlagEnvironmentConfig, FlagKind, Reason, Serve, Variation};
    use serde_json::json;

    fn boolean_flag(key: &str, enabled: bool, killed: bool) -> FlagConfig {
        FlagConfig {
            key: key.into(),
            kind: FlagKind::Boolean,
            variations: vec![
                Variation {
                    name: "on".into(),
                    value: json!(true),
                    description: String::new(),
                },
                Variation {
                    name: "off".into(),
                    value: json!(false),
                    description: String::new(),
                },
            ],
            environment: FlagEnvironmentConfig {
                enabled,
                killed,
                off_variation: "off".into(),
                default_serve: Serve::Variation("on".into()),
                rules: Vec::new(),
            },
        }
    }

    fn snapshot(environment: &str, version: u64, flags: Vec<FlagConfig>) -> FlagSnapshot {
        FlagSnapshot {
            version,
            environment: environment.into(),
            flags,
            segments: Vec::new(),
        }
    }

    #[test]
    fn a_live_config_evaluates_with_the_shared_evaluator() {
        let config = LiveConfig::new(snapshot(
            "production",
            3,
            vec![
                boolean_flag("beta", true, false),
                boolean_flag("killed", true, true),
            ],
        ));
        let context = EvaluationContext::new("user-1");
        let beta = config.evaluate("beta", &context).unwrap();
        assert_eq!((beta.variant.as_str(), beta.reason), ("on", Reason::Static));
        let killed = config.evaluate("killed", &context).unwrap();
        assert_eq!(
            (killed.variant.as_str(), killed.reason),
            ("off", Reason::Disabled)
        );
        assert!(config.evaluate("missing", &context).is_none());
        assert_eq!(config.keys().collect::<Vec<_>>(), vec!["beta", "killed"]);
        assert_eq!(config.version(), 3);
    }

    #[test]
    fn a_flag_that_does_not_compile_answers_parse_error() {
        let mut broken = boolean_flag("broken", true, false);
        broken.environment.off_variation = "nope".into();
        let config = LiveConfig::new(snapshot("production", 1, vec![broken]));
        let answer = config
            .evaluate("broken", &EvaluationContext::new("u"))
            .unwrap();
        assert_eq!(answer.error_code, Some(ErrorCode::ParseError));
    }

    #[test]
    fn the_stream_replaces_storage_and_never_goes_back() {
        let mut model = StreamModel::new("production");
        let stored = serde_json::to_string(&snapshot("production", 9, Vec::new())).unwrap();
        assert!(model.restore(&stored));
        assert_eq!(model.view().version(), 9);
        assert!(!model.view().confirmed);
        // The stream's first answer wins over storage, even when older (a new database).
        assert_eq!(
            model.put(snapshot("production", 4, Vec::new())),
            PutOutcome::Accepted
        );
        assert_eq!(model.view().version(), 4);
        assert!(model.view().confirmed);
        assert_eq!(model.state(), StreamState::Live);
        // Then only the same version or newer.
        assert_eq!(
            model.put(snapshot("production", 3, Vec::new())),
            PutOutcome::Stale
        );
        assert_eq!(
            model.put(snapshot(
                "production",
                5,
                vec![boolean_flag("b", true, false)]
            )),
            PutOutcome::Accepted
        );
        assert_eq!(model.view().version(), 5);
        assert_eq!(
            model.put(snapshot("development", 6, Vec::new())),
            PutOutcome::WrongEnvironment
        );
        assert_eq!(model.view().version(), 5);
        // Storage no longer applies once there is a configuration.
        assert!(!model.restore(&stored));
    }

    #[test]
    fn storage_of_another_environment_or_garbage_is_ignored() {
        let mut model = StreamModel::new("production");
        let other = serde_json::to_string(&snapshot("development", 2, Vec::new())).unwrap();
        assert!(!model.restore(&other));
        assert!(!model.restore("{not json"));
        assert!(model.view().config.is_none());
    }

    #[test]
    fn connection_states_follow_the_event_source() {
        let mut model = StreamModel::new("production");
        assert_eq!(model.view().state, StreamState::Connecting);
        model.opened();
        assert_eq!(model.state(), StreamState::Live);
        // A drop: the browser reconnects by itself; connecting, nothing to schedule.
        assert_eq!(model.failed(false, true), None);
        assert_eq!(model.state(), StreamState::Connecting);
        // Its reconnect fails too: offline (the browser keeps trying).
        assert_eq!(model.failed(false, true), None);
        assert_eq!(model.state(), StreamState::Offline);
        model.opened();
        // Without a network: offline at once.
        assert_eq!(model.failed(false, false), None);
        assert_eq!(model.state(), StreamState::Offline);
        // Given up: offline, and our retries count up until it opens again.
        assert_eq!(model.failed(true, true), Some(0));
        model.retrying(400);
        assert_eq!(model.view().retry_in_ms, Some(400));
        assert_eq!(model.state(), StreamState::Offline);
        model.connecting(true);
        assert_eq!(model.state(), StreamState::Connecting);
        assert_eq!(model.failed(true, true), Some(1));
        model.opened();
        assert_eq!(model.failed(true, true), Some(0));
        assert!(model.view().error.is_some());
        model.opened();
        assert_eq!(model.view().error, None);
    }

    #[test]
    fn put_events_parse_into_snapshots() {
        let data = r#"{"version":7,"environment":"production","flags":[],"segments":[]}"#;
        assert_eq!(parse_put(data).unwrap().version, 7);
        assert!(parse_put("nope").unwrap_err().contains("unreadable"));
        assert_eq!(
            storage_key("production"),
            "meridian.flags.snapshot.production"
        );
        assert_eq!(StreamState::Live.as_str(), "live");
        assert_eq!(StreamState::Offline.as_str(), "offline");
        assert_eq!(StreamState::Connecting.as_str(), "connecting");
    }
}
