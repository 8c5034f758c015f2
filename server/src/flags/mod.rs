//! Feature flags: the admin API (`/api/flags`), the SSE stream SDKs follow
//! (`/api/flags/stream`), and OFREP (`/ofrep/v1/...`).
//!
//! ```text
//! mod       routes(), start (reload on every change), Meridian's own feature gates
//! change    AuditedChange: the one way the configuration changes (version, audit, publish)
//! api/      the admin routes: flags, environments (change, kill), approvals, schedules,
//!           segments, the audit log, delivery keys
//! stream    the SSE streams: an environment's configuration, one context's values
//! keys      delivery keys (server, client) and who may read what on the SDK endpoints
//! delivery  how far a version has reached the stream's subscribers, on every instance
//! live      the compiled snapshot of every flag per environment, SSE subscribers
//! store     SQL: flags, segments, the version, audit log, approvals, schedules
//! ofrep     the OpenFeature Remote Evaluation Protocol
//! sdk       the Rust SDK (local evaluation from the stream, last known config kept)
//! access    the permissions the routes check
//! ```
//!
//! Evaluation, validation and bucketing are `meridian_shared::flags`', identical in the
//! browser and in SDKs.
//!
//! Invariants:
//! - Every change (flag, environment, kill switch, segment) goes through
//!   [`change::AuditedChange`]: it takes the next global version in its transaction and
//!   writes its audit entry (who, when, before, after) under it; nothing changes without
//!   an audit entry.
//! - A change is live on this instance before its answer is sent (the snapshot is
//!   reloaded), and reaches the other instances through the realtime topic
//!   `public:flags` (with a periodic version check as a safety net).
//! - A stream subscriber gets the whole environment at connect unless its
//!   `Last-Event-ID` is the current version, then every newer version; a subscriber is
//!   counted as having a version once the event was handed to its connection.
//! - Invalid configurations are refused with a 400 that names the place
//!   (`environments.production.rules[2].clauses[0]: ...`); segments in use cannot be
//!   deleted.

pub mod access;
mod api;
pub mod change;
pub mod delivery;
pub mod keys;
pub mod live;
pub mod ofrep;
pub mod sdk;
pub mod store;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use meridian_shared::flags::admin::EnvironmentSettings;
use meridian_shared::flags::{Segments, ValidationError};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa_axum::router::OpenApiRouter;

pub use self::api::environments::EnvironmentUpdate;
pub use self::api::schedules::run_due_schedules;
pub use self::delivery::cluster_delivery;
pub use self::live::Live;
use crate::error::ApiError;
use crate::AppState;

/// The realtime topic that tells every instance a new version exists.
pub const TOPIC: &str = "public:flags";
/// Keys that name admin routes under `/api/flags/` and cannot be flag keys.
const RESERVED: &[&str] = &[
    "approvals",
    "audit",
    "delivery",
    "environments",
    "schedules",
    "segments",
    "stream",
];

pub fn routes() -> OpenApiRouter<AppState> {
    // OFREP answers its own error shape (`errorCode`), so the platform's are not added
    // to it.
    crate::openapi::with_platform_errors(
        OpenApiRouter::with_openapi(delivery_key_scheme())
            .merge(api::routes())
            .merge(delivery::routes())
            .merge(stream::routes()),
    )
    .merge(ofrep::routes())
}

/// The OpenAPI security scheme `delivery_key` the SDK endpoints declare.
fn delivery_key_scheme() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "A delivery key of an environment (`mk_srv_...` or `mk_cli_...`), as \
             `Authorization: Bearer KEY`. Without one, a signed-in session with \
             `flags:read` (the page's cookie) may read.",
        ))
        .build();
    utoipa::openapi::OpenApiBuilder::new()
        .components(Some(
            utoipa::openapi::ComponentsBuilder::new()
                .security_scheme("delivery_key", SecurityScheme::Http(scheme))
                .build(),
        ))
        .build()
}

/// Loads the configuration and keeps it current: on every `public:flags` event (from
/// any instance), and every few seconds in case a notification was lost.
pub async fn start(state: &AppState) -> Result<(), sqlx::Error> {
    state.flags.reload(&state.db.pool).await?;
    state.tasks.spawn(follow(state.clone()));
    state
        .tasks
        .spawn(api::schedules::run_schedules_loop(state.clone()));
    if state.db.backend == meridian_shared::api::DatabaseBackend::Postgres {
        state
            .tasks
            .spawn(delivery::report_deliveries(state.clone()));
    }
    Ok(())
}

fn listen(state: &AppState) -> crate::realtime::hub::Registration {
    let registration = state.hub.register(
        &format!("{}flags", crate::realtime::hub::INTERNAL_PREFIX),
        None,
    );
    state.hub.subscribe(registration.id, TOPIC);
    registration
}

async fn follow(state: AppState) {
    let mut registration = listen(&state);
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            event = registration.queue.recv() => if event.is_none() {
                // Dropped by the hub (a full queue): listen again; the reload below
                // catches up on what was missed.
                registration = listen(&state);
            },
            _ = every.tick() => {}
        }
        if let Err(err) = state.flags.reload(&state.db.pool).await {
            tracing::warn!(%err, "could not reload the flags");
        }
    }
    state.hub.unregister(registration.id);
}

/// The environment whose flags gate Meridian's own features.
pub const OWN_ENVIRONMENT: &str = "production";

/// This instance's flags as a [`sdk::FlagSource`]: the in-process snapshot of one
/// environment, evaluated locally like any SDK does.
pub struct LocalFlags {
    snapshot: Arc<live::Snapshot>,
    environment: String,
}

impl LocalFlags {
    pub fn new(state: &AppState, environment: &str) -> LocalFlags {
        LocalFlags {
            snapshot: state.flags.snapshot(),
            environment: environment.to_owned(),
        }
    }
}

impl sdk::FlagSource for LocalFlags {
    fn evaluate(
        &self,
        key: &str,
        context: &meridian_shared::flags::EvaluationContext,
    ) -> Option<meridian_shared::flags::Evaluation> {
        self.snapshot
            .evaluate(&self.environment, key, context)
            .map(|e| e.into_owned())
    }
}

/// Whether one of Meridian's own features is on for `targeting_key`: its boolean flag in
/// [`OWN_ENVIRONMENT`], `default` while no such flag exists. A killed flag turns the
/// feature off everywhere at once.
pub fn feature_enabled(state: &AppState, key: &str, targeting_key: &str, default: bool) -> bool {
    use sdk::FlagSource;
    let context = meridian_shared::flags::EvaluationContext::new(targeting_key);
    LocalFlags::new(state, OWN_ENVIRONMENT).bool_value(key, &context, default)
}

/// A new public id (approvals, schedules, keys) from this instance's ID generator: a
/// snowflake as decimal text. 503 `unavailable` while the instance cannot issue (no
/// node id lease, a clock far behind).
fn new_id(state: &AppState) -> Result<String, ApiError> {
    state.ids.next_id().map_err(|err| {
        tracing::warn!(%err, "no id for a flag change");
        ApiError::unavailable(format!("cannot issue an id right now: {err}"))
    })
}

fn invalid(err: ValidationError) -> ApiError {
    ApiError::bad_request("invalid_flag", err.to_string())
}

fn flag_not_found(key: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "flag_not_found",
        format!("there is no flag {key:?}"),
    )
}

fn unknown_environment(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_environment",
        format!("there is no environment {name:?}"),
    )
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("serialises")
}

async fn segments_of(conn: &mut AnyConnection) -> Result<Segments, sqlx::Error> {
    Ok(store::segments(conn).await?.into_iter().collect())
}

/// One environment's settings, or 404 `unknown_environment`.
async fn environment_settings(
    state: &AppState,
    name: &str,
) -> Result<EnvironmentSettings, ApiError> {
    store::environments(&state.db.pool)
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| unknown_environment(name))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! An instance's state over a fresh SQLite file, without HTTP, for the flags' unit
    //! tests.

    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use crate::{AppState, Config, ManualClock};

    pub struct TestState {
        pub state: AppState,
        dir: PathBuf,
    }

    impl TestState {
        pub async fn start() -> TestState {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "meridian-flags-unit-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let clock = ManualClock::new(1_800_000_000_000);
            let state = AppState::start(Config::new(&dir), Arc::new(clock))
                .await
                .expect("start a state over SQLite");
            TestState { state, dir }
        }

        pub async fn stop(self) {
            self.state.shutdown.cancel();
            self.state.tasks.close();
            self.state.tasks.wait().await;
            self.state.db.pool.close().await;
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::TestState;
    use super::*;

    #[tokio::test]
    async fn ids_come_from_the_generator_and_its_refusal_is_a_503() {
        let test = TestState::start().await;
        let first: u64 = new_id(&test.state).unwrap().parse().expect("decimal");
        let second: u64 = new_id(&test.state).unwrap().parse().expect("decimal");
        assert!(second > first, "snowflakes increase");
        let decoded = meridian_shared::ids::decode_snowflake(first).unwrap();
        assert_eq!(Some(decoded.node), test.state.ids.node_id());

        let without_lease = test
            .state
            .with(|shared| shared.ids = crate::ids::Ids::new("no-lease"));
        let err = new_id(&without_lease).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (503, "unavailable"));
        assert_eq!(err.retry_after, Some(1));
        test.stop().await;
    }
}
