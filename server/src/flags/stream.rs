//! The Server-Sent Events stream of one environment's configuration, which SDKs follow
//! to evaluate locally: `event: put` with the whole environment (`FlagSnapshot`), `id:`
//! its version, at connect and after every change.
//!
//! Invariants:
//! - Every subscriber of a version is sent the same pre-encoded frame (a shared
//!   `Bytes`): a change costs each connection a wake-up and a write, nothing more.
//! - A subscriber counts as having a version once its frame was taken by the connection
//!   (the kill switch waits on that count).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{environment_settings, live};
use crate::error::{ApiResult, Query};
use crate::AppState;

/// A comment line goes to idle stream subscribers this often (proxies drop silent
/// connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// `production` when absent.
    environment: Option<String>,
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
/// it is current, else the current configuration at once.
#[utoipa::path(
    get,
    path = "/api/flags/stream",
    tag = "flags",
    params(StreamQuery),
    responses(
        (status = 200, description = "`text/event-stream` of `put` events (data: FlagSnapshot)", content_type = "text/event-stream"),
        (status = 404, description = "`unknown_environment`", body = ApiErrorBody),
    )
)]
async fn stream(
    State(state): State<AppState>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let environment = query.environment.unwrap_or_else(|| "production".into());
    if !state
        .flags
        .snapshot()
        .environments
        .contains_key(&environment)
    {
        environment_settings(&state, &environment).await?;
    }
    let last_seen: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    struct Follow {
        watch: tokio::sync::watch::Receiver<Arc<live::Snapshot>>,
        guard: live::SubscriberGuard,
        environment: String,
        sent: Option<u64>,
        handed_over: Option<u64>,
        shutdown: CancellationToken,
    }
    let start = Follow {
        watch: state.flags.watch(),
        guard: state.flags.subscribe(&environment),
        environment,
        sent: last_seen,
        handed_over: None,
        shutdown: state.shutdown.clone(),
    };
    let frames = futures_util::stream::unfold(start, |mut f| async move {
        // The previous frame was taken by the connection: count it as delivered.
        if let Some(v) = f.handed_over.take() {
            f.guard.sent.store(v, Ordering::Release);
        }
        loop {
            let snapshot = f.watch.borrow_and_update().clone();
            if f.sent == Some(snapshot.version) {
                f.guard.sent.fetch_max(snapshot.version, Ordering::AcqRel);
            } else if let Some(env) = snapshot.environments.get(&f.environment) {
                f.sent = Some(snapshot.version);
                f.handed_over = Some(snapshot.version);
                return Some((Ok::<_, Infallible>(env.frame.clone()), f));
            }
            tokio::select! {
                _ = f.shutdown.cancelled() => return None,
                changed = f.watch.changed() => if changed.is_err() { return None },
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    return Some((Ok(axum::body::Bytes::from_static(b":\n\n")), f));
                }
            }
        }
    });
    Ok(event_stream(frames))
}
