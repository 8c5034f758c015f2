//! The Server-Sent Events streams SDKs follow.
//!
//! - `/api/flags/stream`: one environment's whole configuration, for SDKs that evaluate
//!   locally (server keys, and the page): `event: put` with the environment
//!   (`FlagSnapshot`), `id:` its version, at connect and after every change.
//! - `/api/flags/stream/evaluated`: every flag evaluated for one context, for client
//!   keys (browsers, mobile apps): `event: put` with OFREP's bulk answer, at connect and
//!   whenever a new version changes what the context gets. Never rules or segments.
//!
//! Invariants:
//! - Every subscriber of a version of the configuration is sent the same pre-encoded
//!   frame (a shared `Bytes`): a change costs each connection a wake-up and a write.
//! - A subscriber counts as having a version once its frame was taken by the connection,
//!   or (evaluated stream) once it saw that the version changes nothing for it; the kill
//!   switch waits on that count.
//! - A stream opened with a key ends when the snapshot of the key's revocation arrives.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::EvaluationContext;
use serde::Deserialize;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::keys::{self, Grant};
use super::{environment_settings, live, ofrep};
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Query};
use crate::AppState;

/// A comment line goes to stream subscribers this often (proxies drop silent
/// connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream))
        .routes(routes!(evaluated_stream))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// The key's environment when absent (signed in: `production`). A key reads only its
    /// own.
    environment: Option<String>,
}

/// What a waiting stream listens to besides the configuration: the server's shutdown
/// and its keep-alive ticks. Both are registered once per connection, so a change wakes
/// each of thousands of subscribers without a timer or a cancellation waiter to
/// register again (a fresh `sleep` and `cancelled()` per wake-up cost more than the
/// write itself).
struct Quiet {
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    keep_alive: tokio::time::Interval,
}

impl Quiet {
    fn new(shutdown: &CancellationToken) -> Quiet {
        let mut keep_alive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Quiet {
            shutdown: Box::pin(shutdown.clone().cancelled_owned()),
            keep_alive,
        }
    }

    /// Waits for the configuration to change, the next keep-alive, or the shutdown.
    async fn wait(
        &mut self,
        watch: &mut tokio::sync::watch::Receiver<Arc<live::Snapshot>>,
    ) -> Wake {
        tokio::select! {
            _ = &mut self.shutdown => Wake::Stop,
            changed = watch.changed() => if changed.is_ok() { Wake::Changed } else { Wake::Stop },
            _ = self.keep_alive.tick() => Wake::KeepAlive,
        }
    }

    /// The comment line sent every [`KEEP_ALIVE`].
    fn comment() -> Bytes {
        Bytes::from_static(b":\n\n")
    }
}

/// What ended a stream's wait.
enum Wake {
    Changed,
    KeepAlive,
    Stop,
}

/// Who may follow the stream, and which environment: 401/403 otherwise, 404 for an
/// environment that does not exist.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<&Session>,
    decide: impl FnOnce(&keys::Caller) -> Result<Grant, ApiError>,
) -> ApiResult<Grant> {
    let caller = keys::authenticate(state, headers, session).await?;
    let grant = decide(&caller)?;
    if !state
        .flags
        .snapshot()
        .environments
        .contains_key(&grant.environment)
    {
        environment_settings(state, &grant.environment).await?;
    }
    Ok(grant)
}

/// Whether the snapshot says the stream's key was revoked.
fn revoked(snapshot: &live::Snapshot, key_id: &Option<String>) -> bool {
    key_id.as_deref().is_some_and(|id| snapshot.is_revoked(id))
}

/// The `text/event-stream` answer around a stream of frames.
fn event_stream(
    frames: impl futures_util::Stream<Item = Result<axum::body::Bytes, Infallible>> + Send + 'static,
) -> Response {
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(frames),
    )
        .into_response()
}

/// Server-Sent Events of one environment's configuration: `event: put` with the whole
/// environment (`FlagSnapshot`), `id:` its version, at connect and after every change.
/// A reconnecting client sends `Last-Event-ID`; it gets nothing until the next change if
/// it is current, else the current configuration at once. Needs a server key of the
/// environment (`Authorization: Bearer KEY`) or a signed-in session with `flags:read`;
/// a stream opened with a key ends when the key is revoked.
#[utoipa::path(
    get,
    path = "/api/flags/stream",
    tag = "flags",
    params(StreamQuery),
    security(("delivery_key" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of `put` events (data: FlagSnapshot)", content_type = "text/event-stream"),
        (status = 400, description = "`invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`key_required`: no key, or an unknown or revoked one (and not signed in)", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: a client key, a key of another environment, or an account without `flags:read`", body = ApiErrorBody),
        (status = 404, description = "`unknown_environment`", body = ApiErrorBody),
    )
)]
async fn stream(
    State(state): State<AppState>,
    session: Option<Session>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Grant {
        environment,
        key_id,
    } = admit(&state, &headers, session.as_ref(), |caller| {
        caller.configuration(query.environment.as_deref())
    })
    .await?;
    let last_seen: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    struct Follow {
        watch: tokio::sync::watch::Receiver<Arc<live::Snapshot>>,
        guard: live::SubscriberGuard,
        environment: String,
        key_id: Option<String>,
        sent: Option<u64>,
        handed_over: Option<u64>,
        quiet: Quiet,
    }
    let start = Follow {
        watch: state.flags.watch(),
        guard: state.flags.subscribe(&environment),
        environment,
        key_id,
        sent: last_seen,
        handed_over: None,
        quiet: Quiet::new(&state.shutdown),
    };
    let frames = futures_util::stream::unfold(start, |mut f| async move {
        // The previous frame was taken by the connection: count it as delivered.
        if let Some(v) = f.handed_over.take() {
            f.guard.mark_sent(v);
        }
        loop {
            let snapshot = f.watch.borrow_and_update().clone();
            if revoked(&snapshot, &f.key_id) {
                return None;
            }
            if f.sent == Some(snapshot.version) {
                f.guard.mark_sent(snapshot.version);
            } else if let Some(env) = snapshot.environments.get(&f.environment) {
                f.sent = Some(snapshot.version);
                f.handed_over = Some(snapshot.version);
                return Some((Ok::<_, Infallible>(env.frame.clone()), f));
            }
            match f.quiet.wait(&mut f.watch).await {
                Wake::Stop => return None,
                Wake::KeepAlive => return Some((Ok(Quiet::comment()), f)),
                Wake::Changed => {}
            }
        }
    });
    Ok(event_stream(frames))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EvaluatedQuery {
    /// The evaluation context as URL-encoded JSON, e.g.
    /// `{"targetingKey":"user-1","plan":"pro"}`; an empty context when absent.
    context: Option<String>,
    /// The key's environment when absent (signed in: `production`). A key reads only its
    /// own.
    environment: Option<String>,
}

/// One `put` event of the evaluated stream.
fn evaluated_frame(version: u64, body: &str) -> Bytes {
    Bytes::from(format!("event: put\nid: {version}\ndata: {body}\n\n"))
}

/// Server-Sent Events of every flag evaluated for one context, for client keys (and
/// server keys, and the page): `event: put`, `id:` the version, data OFREP's bulk answer
/// (`{"flags": [{"key", "value", "reason", "variant"}, ...]}`), at connect and whenever a
/// new version changes what this context gets. Never rules or segment members. A stream
/// opened with a key ends when the key is revoked.
#[utoipa::path(
    get,
    path = "/api/flags/stream/evaluated",
    tag = "flags",
    params(EvaluatedQuery),
    security(("delivery_key" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of `put` events (data: OfrepBulkEvaluationSuccess)", content_type = "text/event-stream"),
        (status = 400, description = "`invalid_context` (not a JSON evaluation context) or `invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`key_required`: no key, or an unknown or revoked one (and not signed in)", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: a key of another environment, or an account without `flags:read`", body = ApiErrorBody),
        (status = 404, description = "`unknown_environment`", body = ApiErrorBody),
    )
)]
async fn evaluated_stream(
    State(state): State<AppState>,
    session: Option<Session>,
    Query(query): Query<EvaluatedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Grant {
        environment,
        key_id,
    } = admit(&state, &headers, session.as_ref(), |caller| {
        caller.evaluations(query.environment.as_deref())
    })
    .await?;
    let context: EvaluationContext = match query.context.as_deref() {
        None | Some("") => EvaluationContext::default(),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(
                "invalid_context",
                format!("context is not a JSON evaluation context: {e}"),
            )
        })?,
    };
    struct Follow {
        watch: tokio::sync::watch::Receiver<Arc<live::Snapshot>>,
        guard: live::SubscriberGuard,
        environment: String,
        key_id: Option<String>,
        context: EvaluationContext,
        /// The version last looked at, and the answer last sent.
        seen: Option<u64>,
        sent: Option<String>,
        handed_over: Option<u64>,
        quiet: Quiet,
    }
    let start = Follow {
        watch: state.flags.watch(),
        guard: state.flags.subscribe(&environment),
        environment,
        key_id,
        context,
        seen: None,
        sent: None,
        handed_over: None,
        quiet: Quiet::new(&state.shutdown),
    };
    let frames = futures_util::stream::unfold(start, |mut f| async move {
        if let Some(v) = f.handed_over.take() {
            f.guard.mark_sent(v);
        }
        loop {
            let snapshot = f.watch.borrow_and_update().clone();
            if revoked(&snapshot, &f.key_id) {
                return None;
            }
            if f.seen != Some(snapshot.version) {
                f.seen = Some(snapshot.version);
                if let Some(env) = snapshot.environments.get(&f.environment) {
                    let answer = ofrep::evaluate_all_flags(env, &f.context);
                    let body = serde_json::to_string(&answer).expect("an answer serialises");
                    if f.sent.as_deref() != Some(body.as_str()) {
                        let frame = evaluated_frame(snapshot.version, &body);
                        f.sent = Some(body);
                        f.handed_over = Some(snapshot.version);
                        return Some((Ok::<_, Infallible>(frame), f));
                    }
                }
                // Nothing changed for this context: it is as current as it can be.
                f.guard.mark_sent(snapshot.version);
            }
            match f.quiet.wait(&mut f.watch).await {
                Wake::Stop => return None,
                Wake::KeepAlive => return Some((Ok(Quiet::comment()), f)),
                Wake::Changed => {}
            }
        }
    });
    Ok(event_stream(frames))
}
