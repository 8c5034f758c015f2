//! The status page: the server's health (`GET /api/health`, refreshed every 5 s), the
//! realtime channel as this tab sees it, and the lobby, a small live message board on
//! topic `public:lobby` that shows the channel at work: messages are pending until the
//! server acknowledges them, survive going offline and reloading, and appear in every
//! tab.
//!
//! Invariants: the health panel always says whether it is loading, current, or showing
//! a stale answer after a failed check; the lobby shows at most [`LOBBY_SHOWN`] messages,
//! oldest first, pending ones last.

use std::cell::Cell;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use meridian_shared::api::HealthResponse;
use serde_json::json;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use crate::browser::{self, clear_input, input_value, local_time_hh_mm};
use crate::components::{Spinner, StatePill};
use crate::net::http;
use crate::net::realtime::{ConnectionState, Realtime, RealtimeStatus, StorageMode, TopicView};
use crate::session::SessionState;

/// How often the health panel asks the server again.
pub const HEALTH_REFRESH_MS: u32 = 5_000;
/// The lobby's topic.
pub const LOBBY_TOPIC: &str = "public:lobby";
/// How many lobby messages are shown.
pub const LOBBY_SHOWN: usize = 50;
/// The longest lobby message, in characters.
pub const LOBBY_MAX_CHARS: usize = 500;

// ---------------------------------------------------------------------------------------
// Health

/// What the health panel knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthState {
    /// The last successful answer.
    pub health: Option<HealthResponse>,
    /// A check is in flight.
    pub loading: bool,
    /// Why the latest check failed, if it did.
    pub error: Option<String>,
    /// When the latest check finished, in milliseconds since the Unix epoch.
    pub checked_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthAction {
    Started,
    Loaded { health: HealthResponse, at_ms: i64 },
    Failed { error: String, at_ms: i64 },
}

impl Reducible for HealthState {
    type Action = HealthAction;

    fn reduce(self: Rc<Self>, action: HealthAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            HealthAction::Started => next.loading = true,
            HealthAction::Loaded { health, at_ms } => {
                next.health = Some(health);
                next.loading = false;
                next.error = None;
                next.checked_at_ms = Some(at_ms);
            }
            HealthAction::Failed { error, at_ms } => {
                // The last good answer stays, marked stale by the error beside it.
                next.loading = false;
                next.error = Some(error);
                next.checked_at_ms = Some(at_ms);
            }
        }
        Rc::new(next)
    }
}

/// A duration in seconds, in the two largest units: "42 s", "5 min 3 s", "2 h 5 min",
/// "3 d 4 h".
pub fn format_uptime(seconds: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match seconds {
        s if s < MINUTE => format!("{s} s"),
        s if s < HOUR => format!("{} min {} s", s / MINUTE, s % MINUTE),
        s if s < DAY => format!("{} h {} min", s / HOUR, (s % HOUR) / MINUTE),
        s => format!("{} d {} h", s / DAY, (s % DAY) / HOUR),
    }
}

#[component]
fn HealthPanel() -> Html {
    let state = use_reducer_eq(HealthState::default);
    {
        let dispatch = state.dispatcher();
        use_effect_with((), move |_| {
            let in_flight = Rc::new(Cell::new(false));
            let check: Rc<dyn Fn()> = Rc::new(move || {
                // A slow answer is not overtaken by the next tick.
                if in_flight.replace(true) {
                    return;
                }
                dispatch.dispatch(HealthAction::Started);
                let dispatch = dispatch.clone();
                let in_flight = in_flight.clone();
                spawn_local(async move {
                    let result = http::health().await;
                    in_flight.set(false);
                    let at_ms = browser::now_ms();
                    dispatch.dispatch(match result {
                        Ok(health) => HealthAction::Loaded { health, at_ms },
                        Err(error) => HealthAction::Failed {
                            error: error.message(),
                            at_ms,
                        },
                    });
                });
            });
            check();
            let interval = Interval::new(HEALTH_REFRESH_MS, move || check());
            move || drop(interval)
        });
    }

    let body = match (&state.health, &state.error) {
        (None, None) => html! { <Spinner label="Checking the server…" /> },
        (None, Some(error)) => html! {
            <div class="callout callout-error" role="alert" data-testid="health-error">
                <strong>{ "The server did not answer. " }</strong>
                { error.clone() }
                <span class="muted">{ " Checking again every 5 seconds." }</span>
            </div>
        },
        (Some(health), error) => html! {
            <>
                if let Some(error) = error {
                    <div class="callout callout-warning" role="alert" data-testid="health-error">
                        <strong>{ "The latest check failed. " }</strong>
                        { error.clone() }
                        <span class="muted">{ " Showing the last answer." }</span>
                    </div>
                }
                <dl class="facts">
                    <div>
                        <dt>{ "Status" }</dt>
                        <dd data-testid="health-status">
                            <span class={classes!("badge", if health.status == "ok" { "badge-ok" } else { "badge-warn" })}>
                                { health.status.clone() }
                            </span>
                        </dd>
                    </div>
                    <div>
                        <dt>{ "Version" }</dt>
                        <dd data-testid="health-version">{ health.version.clone() }</dd>
                    </div>
                    <div>
                        <dt>{ "Database" }</dt>
                        <dd data-testid="health-database">{ health.database.as_str() }</dd>
                    </div>
                    <div>
                        <dt>{ "Uptime" }</dt>
                        <dd data-testid="health-uptime">{ format_uptime(health.uptime_seconds) }</dd>
                    </div>
                    <div>
                        <dt>{ "Instance" }</dt>
                        <dd data-testid="health-instance"><code>{ health.instance_id.clone() }</code></dd>
                    </div>
                    <div>
                        <dt>{ "Realtime connections" }</dt>
                        <dd data-testid="health-connections">{ health.realtime_connections }</dd>
                    </div>
                </dl>
            </>
        },
    };

    html! {
        <section class="card panel" aria-labelledby="health-title">
            <header class="panel-header">
                <h2 id="health-title">{ "Server" }</h2>
                <span class="panel-meta muted">
                    if state.loading && state.health.is_some() {
                        { "Refreshing…" }
                    } else if let Some(at_ms) = state.checked_at_ms {
                        { format!("Checked at {}", local_time_hh_mm_ss(at_ms)) }
                    }
                </span>
            </header>
            { body }
        </section>
    }
}

fn local_time_hh_mm_ss(at_ms: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
    format!(
        "{:02}:{:02}:{:02}",
        date.get_hours(),
        date.get_minutes(),
        date.get_seconds()
    )
}

// ---------------------------------------------------------------------------------------
// Channel

/// How the outbox is kept, for people.
pub fn describe_storage(storage: &StorageMode) -> String {
    match storage {
        StorageMode::Opening => "Opening IndexedDB…".to_owned(),
        StorageMode::IndexedDb => "IndexedDB: unsent messages survive a reload.".to_owned(),
        StorageMode::Memory(reason) => format!(
            "Memory only: IndexedDB is unavailable ({reason}). Unsent messages are lost if this tab closes."
        ),
    }
}

/// The round-trip time, for people.
pub fn describe_rtt(rtt_ms: Option<f64>) -> String {
    match rtt_ms {
        Some(rtt) if rtt < 1.0 => "< 1 ms".to_owned(),
        Some(rtt) => format!("{rtt:.0} ms"),
        None => "Not measured yet".to_owned(),
    }
}

#[component]
fn ChannelPanel() -> Html {
    let status = use_context::<RealtimeStatus>().unwrap_or_default();
    let realtime = use_context::<Realtime>();
    let reconnect = Callback::from(move |_: MouseEvent| {
        if let Some(realtime) = &realtime {
            realtime.reconnect_now();
        }
    });
    let storage_class = match status.storage {
        StorageMode::Memory(_) => "storage-warning",
        _ => "",
    };

    html! {
        <section class="card panel" aria-labelledby="channel-title">
            <header class="panel-header">
                <h2 id="channel-title">{ "Live channel" }</h2>
                <StatePill testid="realtime-state" state={status.state} />
            </header>
            <dl class="facts">
                <div>
                    <dt>{ "Round trip" }</dt>
                    <dd data-testid="realtime-rtt">{ describe_rtt(status.rtt_ms) }</dd>
                </div>
                <div>
                    <dt>{ "Waiting to send" }</dt>
                    <dd data-testid="outbox-pending">{ status.pending }</dd>
                </div>
                <div class="wide">
                    <dt>{ "Offline queue" }</dt>
                    <dd data-testid="outbox-storage" class={storage_class}>{ describe_storage(&status.storage) }</dd>
                </div>
                if let Some(connection) = &status.connection {
                    <div>
                        <dt>{ "Server instance" }</dt>
                        <dd><code>{ connection.instance_id.clone() }</code></dd>
                    </div>
                    <div>
                        <dt>{ "Heartbeat" }</dt>
                        <dd>{ format!("every {:.0} s", connection.heartbeat_ms as f64 / 1000.0) }</dd>
                    </div>
                }
            </dl>
            if status.state == ConnectionState::Offline {
                <p class="muted" data-testid="realtime-retry">
                    { match status.retry_in_ms {
                        Some(delay) => format!(
                            "Reconnect attempt {} in {:.1} s.",
                            status.failed_attempts,
                            delay as f64 / 1000.0
                        ),
                        None => "Waiting to reconnect.".to_owned(),
                    } }
                </p>
            }
            if let Some(error) = &status.last_error {
                <p class="callout callout-warning" data-testid="realtime-error">{ error.clone() }</p>
            }
            if status.state != ConnectionState::Online {
                <button type="button" class="button button-ghost" onclick={reconnect}>{ "Reconnect now" }</button>
            }
        </section>
    }
}

// ---------------------------------------------------------------------------------------
// Lobby

/// One line of the lobby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LobbyMessage {
    /// The op id: stable from the moment the message is queued to its acknowledgement.
    pub key: String,
    pub author: String,
    pub text: String,
    /// Not acknowledged by the server yet.
    pub pending: bool,
    /// When it was accepted (or, while pending, written).
    pub at_ms: i64,
}

/// The payload of a lobby message.
pub fn lobby_payload(text: &str, author: &str) -> serde_json::Value {
    json!({ "text": text, "author": author })
}

/// Reads a lobby payload; `None` for anything that is not `{"text": string, ...}`.
/// A missing or empty author reads as "Guest".
fn read_payload(payload: &serde_json::Value) -> Option<(String, String)> {
    let text = payload.get("text")?.as_str()?.to_owned();
    let author = payload
        .get("author")
        .and_then(|author| author.as_str())
        .map(str::trim)
        .filter(|author| !author.is_empty())
        .unwrap_or(crate::session::GUEST_NAME);
    Some((author.chars().take(64).collect(), text))
}

/// The lines to show: acknowledged messages in sequence order, then pending ones in the
/// order they were written, the latest `limit` of them.
pub fn lobby_messages(view: &TopicView, limit: usize) -> Vec<LobbyMessage> {
    let mut messages: Vec<LobbyMessage> = view
        .events
        .iter()
        .filter_map(|event| {
            let (author, text) = read_payload(&event.payload)?;
            Some(LobbyMessage {
                key: event.op_id.clone(),
                author,
                text,
                pending: false,
                at_ms: event.at_ms,
            })
        })
        .collect();
    let pending = view
        .pending
        .iter()
        .filter(|op| !view.events.iter().any(|event| event.op_id == op.op_id))
        .filter_map(|op| {
            let (author, text) = read_payload(&op.payload)?;
            Some(LobbyMessage {
                key: op.op_id.clone(),
                author,
                text,
                pending: true,
                at_ms: op.created_at_ms,
            })
        });
    messages.extend(pending);
    let skip = messages.len().saturating_sub(limit);
    messages.split_off(skip)
}

/// The text to send from what was typed, or why not.
pub fn lobby_text(typed: &str) -> Result<String, String> {
    let text = typed.trim();
    if text.is_empty() {
        return Err("Type a message first.".to_owned());
    }
    if text.chars().count() > LOBBY_MAX_CHARS {
        return Err(format!(
            "Messages are at most {LOBBY_MAX_CHARS} characters."
        ));
    }
    Ok(text.to_owned())
}

#[component]
fn Lobby() -> Html {
    let realtime = use_context::<Realtime>();
    let session = use_context::<SessionState>().unwrap_or_default();
    let status = use_context::<RealtimeStatus>().unwrap_or_default();
    let view = use_state_eq(|| None::<TopicView>);
    let input_ref = use_node_ref();
    let list_ref = use_node_ref();
    let hint = use_state_eq(|| None::<String>);

    {
        let set_view = view.setter();
        let realtime = realtime.clone();
        use_effect_with((), move |_| {
            let watch = realtime.map(|realtime| {
                realtime.watch(
                    LOBBY_TOPIC,
                    true,
                    Callback::from(move |topic: TopicView| set_view.set(Some(topic))),
                )
            });
            move || drop(watch)
        });
    }

    let messages = view
        .as_ref()
        .map(|view| lobby_messages(view, LOBBY_SHOWN))
        .unwrap_or_default();

    {
        // Keep the newest message in sight.
        let list_ref = list_ref.clone();
        let last = messages
            .last()
            .map(|message| (message.key.clone(), message.pending));
        use_effect_with(last, move |_| {
            if let Some(list) = list_ref.cast::<web_sys::Element>() {
                list.set_scroll_top(list.scroll_height());
            }
        });
    }

    let onsubmit = {
        let input_ref = input_ref.clone();
        let hint = hint.clone();
        let author = session.display_name().to_owned();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            match lobby_text(&input_value(&input_ref)) {
                Ok(text) => {
                    if let Some(realtime) = &realtime {
                        realtime.publish(LOBBY_TOPIC, lobby_payload(&text, &author));
                        clear_input(&input_ref);
                        hint.set(None);
                    }
                }
                Err(message) => hint.set(Some(message)),
            }
        })
    };

    let list = match view.as_ref() {
        None => html! { <Spinner label="Loading the lobby…" /> },
        Some(view) if messages.is_empty() => {
            if let Some(error) = &view.error {
                html! { <p class="callout callout-error" role="alert">{ format!("The lobby is unavailable: {error}") }</p> }
            } else if !view.subscribed && status.state == ConnectionState::Online {
                html! { <Spinner label="Loading messages…" /> }
            } else if !view.subscribed {
                html! {
                    <p class="empty muted">
                        { "The lobby's messages appear once the connection is back. Anything you send now waits and goes out then." }
                    </p>
                }
            } else {
                html! { <p class="empty muted">{ "No messages yet. Say hello!" }</p> }
            }
        }
        Some(view) => html! {
            <>
                if let Some(error) = &view.error {
                    <p class="callout callout-error" role="alert">{ format!("The lobby is unavailable: {error}") }</p>
                }
                <ol class="lobby-messages" ref={list_ref.clone()} aria-live="polite">
                    { for messages.iter().map(|message| html! {
                        <li
                            key={message.key.clone()}
                            class={classes!("lobby-message", message.pending.then_some("pending"))}
                            data-testid="lobby-message"
                            data-pending={if message.pending { "true" } else { "false" }}
                        >
                            <span class="lobby-author">{ message.author.clone() }</span>
                            <span class="lobby-text">{ message.text.clone() }</span>
                            <span class="lobby-meta">
                                if message.pending {
                                    { if status.state == ConnectionState::Online { "Sending…" } else { "Waiting to send" } }
                                } else {
                                    <time>{ local_time_hh_mm(message.at_ms) }</time>
                                }
                            </span>
                        </li>
                    }) }
                </ol>
            </>
        },
    };

    let rejections = view
        .as_ref()
        .map(|view| view.rejections.clone())
        .unwrap_or_default();

    html! {
        <section class="card panel lobby" aria-labelledby="lobby-title">
            <header class="panel-header">
                <h2 id="lobby-title">{ "Lobby" }</h2>
                <span class="panel-meta muted">{ format!("Posting as {}", session.display_name()) }</span>
            </header>
            <p class="muted small">
                { "A public board on the live channel. Messages show at once, stay marked as pending until the server has stored them, and reach every open tab." }
            </p>
            { list }
            { for rejections.iter().map(|rejection| {
                let text = read_payload(&rejection.payload).map(|(_, text)| text).unwrap_or_default();
                html! {
                    <p class="callout callout-error small" data-testid="lobby-rejected" key={rejection.op_id.clone()}>
                        { format!("Not sent: “{text}”. {}", rejection.message) }
                    </p>
                }
            }) }
            <form class="lobby-form" {onsubmit}>
                <input
                    ref={input_ref}
                    type="text"
                    name="message"
                    data-testid="lobby-input"
                    placeholder="Write a message"
                    aria-label="Message"
                    autocomplete="off"
                    maxlength={LOBBY_MAX_CHARS.to_string()}
                />
                <button type="submit" class="button button-primary" data-testid="lobby-send">{ "Send" }</button>
            </form>
            if let Some(hint) = &*hint {
                <p class="form-hint" role="status">{ hint.clone() }</p>
            }
        </section>
    }
}

// ---------------------------------------------------------------------------------------
// Page

/// The status page.
#[component]
pub fn StatusPage() -> Html {
    html! {
        <section class="page">
            <div class="page-header">
                <h1>{ "Status" }</h1>
                <p class="lead">{ "The server, the live channel, and a lobby to try them with." }</p>
            </div>
            <div class="grid-two">
                <HealthPanel />
                <ChannelPanel />
            </div>
            <Lobby />
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::OutboxOp;
    use meridian_shared::api::DatabaseBackend;
    use meridian_shared::realtime::Event;

    fn health() -> HealthResponse {
        HealthResponse {
            status: "ok".into(),
            version: "0.1.0".into(),
            database: DatabaseBackend::Sqlite,
            uptime_seconds: 5,
            instance_id: "i-1".into(),
            realtime_connections: 2,
        }
    }

    fn reduce(state: HealthState, action: HealthAction) -> HealthState {
        (*Rc::new(state).reduce(action)).clone()
    }

    #[test]
    fn health_goes_from_loading_to_loaded_to_stale() {
        let state = reduce(HealthState::default(), HealthAction::Started);
        assert!(state.loading);
        assert_eq!(state.health, None);
        let state = reduce(
            state,
            HealthAction::Loaded {
                health: health(),
                at_ms: 10,
            },
        );
        assert!(!state.loading);
        assert_eq!(
            state.health.as_ref().map(|h| h.database.as_str()),
            Some("sqlite")
        );
        let state = reduce(state, HealthAction::Started);
        let state = reduce(
            state,
            HealthAction::Failed {
                error: "down".into(),
                at_ms: 20,
            },
        );
        assert!(state.health.is_some(), "the last answer stays");
        assert_eq!(state.error.as_deref(), Some("down"));
        assert_eq!(state.checked_at_ms, Some(20));
        let state = reduce(
            state,
            HealthAction::Loaded {
                health: health(),
                at_ms: 30,
            },
        );
        assert_eq!(state.error, None);
    }

    #[test]
    fn uptime_reads_in_two_units() {
        assert_eq!(format_uptime(0), "0 s");
        assert_eq!(format_uptime(59), "59 s");
        assert_eq!(format_uptime(60), "1 min 0 s");
        assert_eq!(format_uptime(3_599), "59 min 59 s");
        assert_eq!(format_uptime(3_600 * 2 + 300), "2 h 5 min");
        assert_eq!(format_uptime(86_400 * 3 + 3_600 * 4 + 5), "3 d 4 h");
    }

    #[test]
    fn storage_and_rtt_read_plainly() {
        assert!(
            describe_storage(&StorageMode::Memory("no IndexedDB".into())).contains("Memory only")
        );
        assert!(describe_storage(&StorageMode::IndexedDb).contains("survive"));
        assert_eq!(describe_rtt(None), "Not measured yet");
        assert_eq!(describe_rtt(Some(0.4)), "< 1 ms");
        assert_eq!(describe_rtt(Some(23.6)), "24 ms");
    }

    fn event(seq: u64, text: &str) -> Event {
        Event {
            topic: LOBBY_TOPIC.into(),
            seq,
            op_id: format!("op-{seq}"),
            payload: lobby_payload(text, "alice"),
            at_ms: 1_000 + seq as i64,
        }
    }

    fn pending(op_id: &str, text: &str) -> OutboxOp {
        OutboxOp {
            op_id: op_id.into(),
            topic: LOBBY_TOPIC.into(),
            payload: lobby_payload(text, "Guest"),
            created_at_ms: 5_000,
        }
    }

    fn view(events: Vec<Event>, pending: Vec<OutboxOp>) -> TopicView {
        TopicView {
            topic: LOBBY_TOPIC.into(),
            subscribed: true,
            events,
            pending,
            error: None,
            rejections: Vec::new(),
        }
    }

    #[test]
    fn pending_messages_follow_acknowledged_ones() {
        let messages = lobby_messages(
            &view(
                vec![event(1, "hello"), event(2, "hi")],
                vec![pending("mine", "on my way")],
            ),
            LOBBY_SHOWN,
        );
        let lines: Vec<(&str, bool)> = messages
            .iter()
            .map(|message| (message.text.as_str(), message.pending))
            .collect();
        assert_eq!(
            lines,
            vec![("hello", false), ("hi", false), ("on my way", true)]
        );
        assert_eq!(messages[0].author, "alice");
        assert_eq!(messages[2].author, "Guest");
        assert_eq!(messages[2].key, "mine");
    }

    #[test]
    fn an_acknowledged_op_is_shown_once() {
        let mut acked = event(3, "done");
        acked.op_id = "mine".into();
        let messages = lobby_messages(&view(vec![acked], vec![pending("mine", "done")]), 50);
        assert_eq!(messages.len(), 1);
        assert!(!messages[0].pending);
    }

    #[test]
    fn only_the_latest_messages_are_shown() {
        let events: Vec<Event> = (1..=70).map(|seq| event(seq, &format!("m{seq}"))).collect();
        let messages = lobby_messages(&view(events, vec![pending("p", "last")]), LOBBY_SHOWN);
        assert_eq!(messages.len(), LOBBY_SHOWN);
        assert_eq!(messages[0].text, "m22");
        assert_eq!(messages.last().map(|m| m.text.as_str()), Some("last"));
    }

    #[test]
    fn foreign_payloads_are_skipped_and_authors_defaulted() {
        let mut odd = event(1, "x");
        odd.payload = json!({"emoji": "wave"});
        let mut anonymous = event(2, "x");
        anonymous.payload = json!({"text": "who am I", "author": "  "});
        let messages = lobby_messages(&view(vec![odd, anonymous], vec![]), 50);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].author, "Guest");
    }

    #[test]
    fn typed_text_is_trimmed_and_bounded() {
        assert_eq!(lobby_text("  hi  "), Ok("hi".into()));
        assert!(lobby_text("   ").is_err());
        assert!(lobby_text(&"a".repeat(LOBBY_MAX_CHARS)).is_ok());
        assert!(lobby_text(&"a".repeat(LOBBY_MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn the_payload_has_text_and_author() {
        assert_eq!(
            lobby_payload("hi", "Guest"),
            json!({"text": "hi", "author": "Guest"})
        );
    }
}
