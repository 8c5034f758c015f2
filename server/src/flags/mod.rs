//! Feature flags: the admin API (`/api/flags`), the SSE stream SDKs follow
//! (`/api/flags/stream`), and OFREP (`/ofrep/v1/...`, in `ofrep.rs`).
//!
//! ```text
//! live   the compiled snapshot of every flag per environment, SSE subscribers
//! store  SQL: flags, segments, the version, audit log, approvals, schedules
//! ofrep  the OpenFeature Remote Evaluation Protocol
//! sdk    the Rust SDK (local evaluation from the stream, last known config kept)
//! ```
//!
//! Evaluation, validation and bucketing are `meridian_shared::flags`', identical in the
//! browser and in SDKs.
//!
//! Invariants:
//! - Every change (flag, environment, kill switch, segment) takes the next global
//!   version in its transaction and writes its audit entry (who, when, before, after)
//!   under it; nothing changes without an audit entry.
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
pub mod live;
pub mod ofrep;
pub mod sdk;
pub mod store;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::{ApiErrorBody, UserInfo};
use meridian_shared::flags::admin::{
    Approval, ApprovalList, ApprovalStatus, AuditLog, ChangeOutcome, ChangeStatus, Delivery,
    EnvironmentChange, EnvironmentList, EnvironmentSettings, FlagDefinition, FlagList, KillOutcome,
    KillRequest, Preview, PreviewRequest, Schedule, ScheduleList, SegmentList,
};
use meridian_shared::flags::{
    Flag, FlagEnvironmentConfig, Segment, Segments, Serve, ValidationError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::live::Live;
use self::store::NewAudit;
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
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
/// A comment line goes to idle stream subscribers this often (proxies drop silent
/// connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long the kill switch waits for its delivery to be complete before answering.
const KILL_WAIT: Duration = Duration::from_secs(2);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_flags, create_flag))
        .routes(routes!(get_flag, replace_flag, delete_flag))
        .routes(routes!(change_environment))
        .routes(routes!(kill))
        .routes(routes!(preview))
        .routes(routes!(flag_audit))
        .routes(routes!(audit_log))
        .routes(routes!(delivery))
        .routes(routes!(list_approvals))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(list_schedules))
        .routes(routes!(list_environments))
        .routes(routes!(set_environment))
        .routes(routes!(list_segments))
        .routes(routes!(put_segment, delete_segment))
        .routes(routes!(stream))
        .merge(ofrep::routes())
}

/// Loads the configuration and keeps it current: on every `public:flags` event (from
/// any instance), and every few seconds in case a notification was lost.
pub async fn start(state: &AppState) -> Result<(), sqlx::Error> {
    state.flags.reload(&state.db.pool).await?;
    state.tasks.spawn(follow(state.clone()));
    state.tasks.spawn(run_schedules_loop(state.clone()));
    if state.db.backend == meridian_shared::api::DatabaseBackend::Postgres {
        state.tasks.spawn(report_deliveries(state.clone()));
    }
    Ok(())
}

/// How often an instance reports its subscribers' deliveries, and how old a report may
/// be before its instance is taken for stopped.
const REPORT_EVERY: Duration = Duration::from_millis(100);
const REPORT_REFRESH_MS: i64 = 2_000;
const REPORT_FRESH_MS: i64 = 6_000;

/// PostgreSQL (several instances): reports this instance's deliveries when they change
/// (and every 2 s), so that any instance can tell when a change reached every client.
async fn report_deliveries(state: AppState) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    let mut last: BTreeMap<String, (Delivery, i64)> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let snapshot = state.flags.snapshot();
        let now = state.clock.now_ms();
        for env in snapshot.environments.keys() {
            let delivery = state.flags.delivery(env, snapshot.version);
            let stale = last
                .get(env)
                .is_none_or(|(d, at)| *d != delivery || now - at >= REPORT_REFRESH_MS);
            if !stale {
                continue;
            }
            match store::report_delivery(&state.db.pool, &state.instance_id, &delivery, now).await {
                Ok(()) => {
                    last.insert(env.clone(), (delivery, now));
                }
                Err(err) => tracing::warn!(%err, "could not report flag deliveries"),
            }
        }
    }
}

/// How far `version` has reached the subscribers of `environment` on every instance
/// (this one counted live; the others by their reports of the last few seconds).
pub async fn cluster_delivery(
    state: &AppState,
    environment: &str,
    version: u64,
) -> Result<Delivery, sqlx::Error> {
    let mut delivery = state.flags.delivery(environment, version);
    if state.db.backend == meridian_shared::api::DatabaseBackend::Postgres {
        let since = state.clock.now_ms() - REPORT_FRESH_MS;
        let others =
            store::other_deliveries(&state.db.pool, &state.instance_id, environment, since).await?;
        for (reported, subscribers, delivered) in others {
            delivery.subscribers += subscribers;
            if reported >= version {
                delivery.delivered += delivered;
            }
        }
        delivery.complete = delivery.delivered == delivery.subscribers;
    }
    Ok(delivery)
}

fn listen(state: &AppState) -> crate::realtime::hub::Registration {
    let registration = state
        .hub
        .register(&format!("{}flags", crate::realtime::hub::INTERNAL_PREFIX));
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

fn signed_in(session: &Session) -> ApiResult<&UserInfo> {
    session.user.as_ref().ok_or_else(|| {
        ApiError::unauthorized("sign_in_required", "managing flags needs a signed-in user")
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

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("serialises")
}

async fn segments_of(conn: &mut AnyConnection) -> Result<Segments, sqlx::Error> {
    Ok(store::segments(conn).await?.into_iter().collect())
}

/// Commits a change and makes it live: reloads this instance's snapshot and tells the
/// others.
async fn publish_change(
    state: &AppState,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    version: u64,
) -> ApiResult<()> {
    tx.commit().await?;
    state.flags.reload(&state.db.pool).await?;
    crate::realtime::publish(
        state,
        TOPIC,
        &format!("flags:{version}"),
        json!({ "version": version }),
        None,
    )
    .await?;
    Ok(())
}

/// The flag a definition makes, with every environment present (those left out start
/// off, serving the first variation).
fn into_flag(
    definition: FlagDefinition,
    environments: &[String],
    created: i64,
    updated: i64,
) -> Flag {
    let mut configs = definition.environments;
    if let Some(first) = definition.variations.first() {
        for env in environments {
            configs
                .entry(env.clone())
                .or_insert_with(|| FlagEnvironmentConfig {
                    enabled: false,
                    killed: false,
                    off_variation: first.name.clone(),
                    default_serve: Serve::Variation(first.name.clone()),
                    rules: Vec::new(),
                });
        }
    }
    Flag {
        key: definition.key,
        name: definition.name,
        description: definition.description,
        kind: definition.kind,
        variations: definition.variations,
        environments: configs,
        tags: definition.tags,
        created_at_ms: created,
        updated_at_ms: updated,
    }
}

async fn check_environments(state: &AppState, flag: &Flag) -> ApiResult<Vec<EnvironmentSettings>> {
    let known = store::environments(&state.db.pool).await?;
    for env in flag.environments.keys() {
        if !known.iter().any(|k| &k.name == env) {
            return Err(ApiError::bad_request(
                "unknown_environment",
                format!("environments.{env}: there is no environment {env:?}"),
            ));
        }
    }
    Ok(known)
}

/// Every flag with its configuration in every environment.
#[utoipa::path(
    get,
    path = "/api/flags",
    tag = "flags",
    responses(
        (status = 200, description = "Every flag", body = FlagList),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
    )
)]
async fn list_flags(State(state): State<AppState>, session: Session) -> ApiResult<Json<FlagList>> {
    signed_in(&session)?;
    let (version, flags, _) = store::load_all(&state.db.pool).await?;
    Ok(Json(FlagList { flags, version }))
}

/// Create a flag.
#[utoipa::path(
    post,
    path = "/api/flags",
    tag = "flags",
    request_body = FlagDefinition,
    responses(
        (status = 201, description = "Created", body = Flag),
        (status = 400, description = "`invalid_flag` (the message names the rule) or `unknown_environment`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 409, description = "`flag_exists`", body = ApiErrorBody),
    )
)]
async fn create_flag(
    State(state): State<AppState>,
    session: Session,
    Json(definition): Json<FlagDefinition>,
) -> ApiResult<(StatusCode, Json<Flag>)> {
    let user = signed_in(&session)?;
    if RESERVED.contains(&definition.key.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_flag",
            format!("key: {:?} is reserved", definition.key),
        ));
    }
    let now = state.clock.now_ms();
    let names = store::environment_names(&state.db.pool).await?;
    let flag = into_flag(definition, &names, now, now);
    check_environments(&state, &flag).await?;
    let mut tx = state.db.pool.begin().await?;
    let version = store::next_version(&mut tx).await?;
    flag.validate(&segments_of(&mut tx).await?)
        .map_err(invalid)?;
    if store::flag(&mut tx, &flag.key).await?.is_some() {
        return Err(ApiError::conflict(
            "flag_exists",
            format!("a flag {:?} exists", flag.key),
        ));
    }
    store::insert_flag(&mut tx, &flag).await?;
    store::audit(
        &mut tx,
        NewAudit::new(version, now, Some(&user.id), &user.username, "create")
            .flag(&flag.key)
            .change(None, Some(to_json(&flag))),
    )
    .await?;
    publish_change(&state, tx, version).await?;
    Ok((StatusCode::CREATED, Json(flag)))
}

/// One flag.
#[utoipa::path(
    get,
    path = "/api/flags/{key}",
    tag = "flags",
    responses(
        (status = 200, description = "The flag", body = Flag),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
    )
)]
async fn get_flag(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
) -> ApiResult<Json<Flag>> {
    signed_in(&session)?;
    let mut conn = state.db.pool.acquire().await?;
    store::flag(&mut conn, &key)
        .await?
        .map(Json)
        .ok_or_else(|| flag_not_found(&key))
}

/// Replace a flag's definition (name, variations, every environment). Refused with 409
/// `approval_required` if it changes an environment that requires approval: change that
/// environment through its own route.
#[utoipa::path(
    put,
    path = "/api/flags/{key}",
    tag = "flags",
    request_body = FlagDefinition,
    responses(
        (status = 200, description = "The flag as it now is", body = Flag),
        (status = 400, description = "`invalid_flag`, `key_mismatch` or `unknown_environment`", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
        (status = 409, description = "`approval_required`", body = ApiErrorBody),
    )
)]
async fn replace_flag(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    Json(definition): Json<FlagDefinition>,
) -> ApiResult<Json<Flag>> {
    let user = signed_in(&session)?;
    if definition.key != key {
        return Err(ApiError::bad_request(
            "key_mismatch",
            "a flag's key cannot change",
        ));
    }
    let now = state.clock.now_ms();
    let names = store::environment_names(&state.db.pool).await?;
    let mut tx = state.db.pool.begin().await?;
    let version = store::next_version(&mut tx).await?;
    let before = store::flag(&mut tx, &key)
        .await?
        .ok_or_else(|| flag_not_found(&key))?;
    let flag = into_flag(definition, &names, before.created_at_ms, now);
    let settings = check_environments(&state, &flag).await?;
    flag.validate(&segments_of(&mut tx).await?)
        .map_err(invalid)?;
    for env in settings.iter().filter(|e| e.require_approval) {
        let changed = flag.config(&env.name) != before.config(&env.name);
        if changed {
            return Err(ApiError::conflict(
                "approval_required",
                format!(
                    "changing {} needs approval: use PUT /api/flags/{key}/environments/{}",
                    env.name, env.name
                ),
            ));
        }
    }
    store::update_flag(&mut tx, &flag).await?;
    store::audit(
        &mut tx,
        NewAudit::new(version, now, Some(&user.id), &user.username, "update")
            .flag(&key)
            .change(Some(to_json(&before)), Some(to_json(&flag))),
    )
    .await?;
    publish_change(&state, tx, version).await?;
    Ok(Json(flag))
}

/// Delete a flag (SDKs then answer `FLAG_NOT_FOUND` and serve their defaults).
#[utoipa::path(
    delete,
    path = "/api/flags/{key}",
    tag = "flags",
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
    )
)]
async fn delete_flag(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    let user = signed_in(&session)?;
    let now = state.clock.now_ms();
    let mut tx = state.db.pool.begin().await?;
    let version = store::next_version(&mut tx).await?;
    let before = store::flag(&mut tx, &key)
        .await?
        .ok_or_else(|| flag_not_found(&key))?;
    store::delete_flag(&mut tx, &key).await?;
    store::audit(
        &mut tx,
        NewAudit::new(version, now, Some(&user.id), &user.username, "delete")
            .flag(&key)
            .change(Some(to_json(&before)), None),
    )
    .await?;
    publish_change(&state, tx, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a change does to one environment's config.
enum EnvUpdate {
    Replace(FlagEnvironmentConfig),
    /// Sets the kill switch, keeping the rest as it is when the change commits.
    Kill(bool),
}

/// Applies a new config of one environment (validated) and audits it. Returns the flag
/// and the version.
#[allow(clippy::too_many_arguments)]
async fn apply_environment(
    state: &AppState,
    key: &str,
    environment: &str,
    update: EnvUpdate,
    actor_id: Option<&str>,
    actor_name: &str,
    action: &str,
    approved_by: Option<&str>,
    expect_updated_ms: Option<i64>,
    schedule_id: Option<&str>,
) -> ApiResult<(Flag, u64)> {
    let now = state.clock.now_ms();
    let mut tx = state.db.pool.begin().await?;
    if let Some(id) = schedule_id {
        if !store::finish_schedule(&mut tx, id, "applied").await? {
            return Err(ApiError::conflict(
                "schedule_done",
                "this schedule already ran",
            ));
        }
    }
    let version = store::next_version(&mut tx).await?;
    let before = store::flag(&mut tx, key)
        .await?
        .ok_or_else(|| flag_not_found(key))?;
    if expect_updated_ms.is_some_and(|t| t != before.updated_at_ms) {
        return Err(ApiError::conflict(
            "stale_approval",
            "the flag changed after this change was proposed; propose it again",
        ));
    }
    // Read inside the transaction that holds the version lock: a kill never undoes a
    // change committed since its request was read.
    let config = match update {
        EnvUpdate::Replace(config) => config,
        EnvUpdate::Kill(killed) => FlagEnvironmentConfig {
            killed,
            ..before
                .environments
                .get(environment)
                .cloned()
                .ok_or_else(|| flag_not_found(key))?
        },
    };
    let mut flag = before.clone();
    flag.environments.insert(environment.to_owned(), config);
    flag.updated_at_ms = now;
    flag.validate(&segments_of(&mut tx).await?)
        .map_err(invalid)?;
    store::update_flag(&mut tx, &flag).await?;
    store::audit(
        &mut tx,
        NewAudit::new(version, now, actor_id, actor_name, action)
            .flag(key)
            .environment(environment)
            .change(
                before.environments.get(environment).map(to_json),
                flag.environments.get(environment).map(to_json),
            )
            .approved_by(approved_by),
    )
    .await?;
    publish_change(state, tx, version).await?;
    Ok((flag, version))
}

async fn environment_settings(state: &AppState, name: &str) -> ApiResult<EnvironmentSettings> {
    store::environments(&state.db.pool)
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_environment",
                format!("there is no environment {name:?}"),
            )
        })
}

/// Change one environment of a flag: applied now (200), or — when the environment
/// requires approval — proposed for a second user's approval (202), or scheduled for
/// `at_ms` (202).
#[utoipa::path(
    put,
    path = "/api/flags/{key}/environments/{environment}",
    tag = "flags",
    request_body = EnvironmentChange,
    responses(
        (status = 200, description = "Applied", body = ChangeOutcome),
        (status = 202, description = "Waiting for approval or for its time", body = ChangeOutcome),
        (status = 400, description = "`invalid_flag` (names the rule)", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found` or `unknown_environment`", body = ApiErrorBody),
    )
)]
async fn change_environment(
    State(state): State<AppState>,
    session: Session,
    Path((key, environment)): Path<(String, String)>,
    Json(change): Json<EnvironmentChange>,
) -> ApiResult<Response> {
    let user = signed_in(&session)?.clone();
    let settings = environment_settings(&state, &environment).await?;
    let mut conn = state.db.pool.acquire().await?;
    let current = store::flag(&mut conn, &key)
        .await?
        .ok_or_else(|| flag_not_found(&key))?;
    // Refuse an invalid config now, not when it is approved or due.
    let mut candidate = current.clone();
    candidate
        .environments
        .insert(environment.clone(), change.config.clone());
    candidate
        .validate(&segments_of(&mut conn).await?)
        .map_err(invalid)?;
    drop(conn);
    let version = state.flags.snapshot().version;
    if let Some(at_ms) = change.at_ms.filter(|&t| t > state.clock.now_ms()) {
        let schedule = Schedule {
            id: crate::auth::session::new_id(),
            flag_key: key.clone(),
            environment: environment.clone(),
            proposed: change.config,
            run_at_ms: at_ms,
            requested_name: user.username.clone(),
            status: "pending".into(),
        };
        store::insert_schedule(&state.db.pool, &schedule, &user.id).await?;
        let outcome = ChangeOutcome {
            status: ChangeStatus::Scheduled,
            flag: current,
            version,
            approval: None,
            schedule: Some(schedule),
        };
        return Ok((StatusCode::ACCEPTED, Json(outcome)).into_response());
    }
    if settings.require_approval {
        let approval = Approval {
            id: crate::auth::session::new_id(),
            flag_key: key.clone(),
            environment: environment.clone(),
            proposed: change.config,
            requested_by: user.id.clone(),
            requested_name: user.username.clone(),
            requested_at_ms: state.clock.now_ms(),
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_at_ms: None,
        };
        store::insert_approval(
            &state.db.pool,
            store::NewApproval {
                id: &approval.id,
                flag_key: &key,
                environment: &environment,
                proposed: &approval.proposed,
                base_updated_ms: current.updated_at_ms,
                requested_by: &user.id,
                requested_name: &user.username,
                at_ms: approval.requested_at_ms,
            },
        )
        .await?;
        let outcome = ChangeOutcome {
            status: ChangeStatus::PendingApproval,
            flag: current,
            version,
            approval: Some(approval),
            schedule: None,
        };
        return Ok((StatusCode::ACCEPTED, Json(outcome)).into_response());
    }
    let (flag, version) = apply_environment(
        &state,
        &key,
        &environment,
        EnvUpdate::Replace(change.config),
        Some(&user.id),
        &user.username,
        "update_environment",
        None,
        None,
        None,
    )
    .await?;
    let outcome = ChangeOutcome {
        status: ChangeStatus::Applied,
        flag,
        version,
        approval: None,
        schedule: None,
    };
    Ok(Json(outcome).into_response())
}

/// The kill switch: the flag serves its off variation in this environment, whatever its
/// rules say, at once and without approval. Answers when every subscriber of the
/// environment's stream, on every instance, has the change (or after 2 s, saying how
/// many have it). `"killed": false` lifts it.
#[utoipa::path(
    post,
    path = "/api/flags/{key}/kill",
    tag = "flags",
    request_body = KillRequest,
    responses(
        (status = 200, description = "Killed (or revived); with its delivery", body = KillOutcome),
        (status = 404, description = "`flag_not_found` or `unknown_environment`", body = ApiErrorBody),
    )
)]
async fn kill(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    Json(request): Json<KillRequest>,
) -> ApiResult<Json<KillOutcome>> {
    let user = signed_in(&session)?.clone();
    environment_settings(&state, &request.environment).await?;
    let action = if request.killed { "kill" } else { "unkill" };
    let (flag, version) = apply_environment(
        &state,
        &key,
        &request.environment,
        EnvUpdate::Kill(request.killed),
        Some(&user.id),
        &user.username,
        action,
        None,
        None,
        None,
    )
    .await?;
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    let delivery = loop {
        let delivery = cluster_delivery(&state, &request.environment, version).await?;
        if delivery.complete || tokio::time::Instant::now() >= deadline {
            break delivery;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tracing::warn!(flag = %key, environment = %request.environment, killed = request.killed, delivered = delivery.delivered, subscribers = delivery.subscribers, "kill switch");
    Ok(Json(KillOutcome {
        flag,
        version,
        delivery,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    environment: String,
    version: u64,
}

/// How many stream subscribers of an environment (on every instance) have a version.
#[utoipa::path(
    get,
    path = "/api/flags/delivery",
    tag = "flags",
    params(DeliveryQuery),
    responses((status = 200, description = "The delivery", body = Delivery))
)]
async fn delivery(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<Json<Delivery>> {
    signed_in(&session)?;
    Ok(Json(
        state.flags.delivery(&query.environment, query.version),
    ))
}

/// Which variant a context gets in an environment, and why (the rule, the bucket).
#[utoipa::path(
    post,
    path = "/api/flags/{key}/preview",
    tag = "flags",
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "The evaluation", body = Preview),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
    )
)]
async fn preview(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    Json(request): Json<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    signed_in(&session)?;
    let snapshot = state.flags.snapshot();
    let evaluation = snapshot
        .evaluate(&request.environment, &key, &request.context)
        .ok_or_else(|| flag_not_found(&key))?;
    Ok(Json(Preview {
        key,
        environment: request.environment,
        value: evaluation.value.clone(),
        variant: evaluation.variant.to_owned(),
        reason: evaluation.reason,
        error_code: evaluation.error_code,
        rule_index: evaluation.rule_index,
        bucket: evaluation.bucket,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Entries older than this version (`next_before` of the previous page).
    before: Option<u64>,
    /// 1 to 200 (50 by default).
    limit: Option<usize>,
}

async fn audit_page(state: &AppState, key: Option<&str>, query: AuditQuery) -> ApiResult<AuditLog> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("limit is 1 to 200, not {limit}"),
        ));
    }
    let mut entries = store::audit_log(
        &state.db.pool,
        key,
        query.before.unwrap_or(u64::MAX),
        limit + 1,
    )
    .await?;
    let next_before = (entries.len() > limit).then(|| entries[limit - 1].version);
    entries.truncate(limit);
    Ok(AuditLog {
        entries,
        next_before,
    })
}

/// The audit log of every change, newest first.
#[utoipa::path(
    get,
    path = "/api/flags/audit",
    tag = "flags",
    params(AuditQuery),
    responses((status = 200, description = "A page of the log", body = AuditLog))
)]
async fn audit_log(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditLog>> {
    signed_in(&session)?;
    Ok(Json(audit_page(&state, None, query).await?))
}

/// The audit log of one flag, newest first.
#[utoipa::path(
    get,
    path = "/api/flags/{key}/audit",
    tag = "flags",
    params(AuditQuery),
    responses((status = 200, description = "A page of the log", body = AuditLog))
)]
async fn flag_audit(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditLog>> {
    signed_in(&session)?;
    Ok(Json(audit_page(&state, Some(&key), query).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ApprovalQuery {
    /// `pending`, `approved` or `rejected`; all when absent.
    status: Option<String>,
}

/// Changes waiting for (or decided by) a second user.
#[utoipa::path(
    get,
    path = "/api/flags/approvals",
    tag = "flags",
    params(ApprovalQuery),
    responses((status = 200, description = "Approvals, newest first", body = ApprovalList))
)]
async fn list_approvals(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ApprovalQuery>,
) -> ApiResult<Json<ApprovalList>> {
    signed_in(&session)?;
    let approvals = store::approvals(&state.db.pool, query.status.as_deref()).await?;
    Ok(Json(ApprovalList { approvals }))
}

async fn decide(
    state: &AppState,
    session: &Session,
    id: &str,
    approve: bool,
) -> ApiResult<ChangeOutcome> {
    let user = signed_in(session)?.clone();
    let mut conn = state.db.pool.acquire().await?;
    let (approval, base) = store::pending_approval(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no approval {id:?}")))?;
    drop(conn);
    if approval.status != ApprovalStatus::Pending {
        return Err(ApiError::conflict(
            "already_decided",
            "this change was decided already",
        ));
    }
    if approval.requested_by == user.id {
        return Err(ApiError::forbidden(
            "self_approval",
            "a change needs the approval of another user than its author",
        ));
    }
    let now = state.clock.now_ms();
    if !approve {
        let mut conn = state.db.pool.acquire().await?;
        if !store::decide_approval(&mut conn, id, "rejected", &user.username, now).await? {
            return Err(ApiError::conflict(
                "already_decided",
                "this change was decided already",
            ));
        }
        let flag = store::flag(&mut conn, &approval.flag_key)
            .await?
            .ok_or_else(|| flag_not_found(&approval.flag_key))?;
        return Ok(ChangeOutcome {
            status: ChangeStatus::PendingApproval,
            flag,
            version: state.flags.snapshot().version,
            approval: Some(Approval {
                status: ApprovalStatus::Rejected,
                decided_by: Some(user.username),
                decided_at_ms: Some(now),
                ..approval
            }),
            schedule: None,
        });
    }
    let (flag, version) = apply_environment(
        state,
        &approval.flag_key,
        &approval.environment,
        EnvUpdate::Replace(approval.proposed.clone()),
        Some(&approval.requested_by),
        &approval.requested_name,
        "update_environment",
        Some(&user.username),
        Some(base),
        None,
    )
    .await?;
    let mut conn = state.db.pool.acquire().await?;
    store::decide_approval(&mut conn, id, "approved", &user.username, now).await?;
    Ok(ChangeOutcome {
        status: ChangeStatus::Applied,
        flag,
        version,
        approval: Some(Approval {
            status: ApprovalStatus::Approved,
            decided_by: Some(user.username),
            decided_at_ms: Some(now),
            ..approval
        }),
        schedule: None,
    })
}

/// Approve a proposed change (by another user than its author): it is applied now.
#[utoipa::path(
    post,
    path = "/api/flags/approvals/{id}/approve",
    tag = "flags",
    responses(
        (status = 200, description = "Applied", body = ChangeOutcome),
        (status = 403, description = "`self_approval`", body = ApiErrorBody),
        (status = 409, description = "`already_decided` or `stale_approval`", body = ApiErrorBody),
    )
)]
async fn approve(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<ChangeOutcome>> {
    Ok(Json(decide(&state, &session, &id, true).await?))
}

/// Reject a proposed change.
#[utoipa::path(
    post,
    path = "/api/flags/approvals/{id}/reject",
    tag = "flags",
    responses(
        (status = 200, description = "Rejected", body = ChangeOutcome),
        (status = 403, description = "`self_approval`", body = ApiErrorBody),
        (status = 409, description = "`already_decided`", body = ApiErrorBody),
    )
)]
async fn reject(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<ChangeOutcome>> {
    Ok(Json(decide(&state, &session, &id, false).await?))
}

/// Scheduled changes, latest first.
#[utoipa::path(
    get,
    path = "/api/flags/schedules",
    tag = "flags",
    responses((status = 200, description = "Schedules", body = ScheduleList))
)]
async fn list_schedules(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<ScheduleList>> {
    signed_in(&session)?;
    Ok(Json(ScheduleList {
        schedules: store::schedules(&state.db.pool).await?,
    }))
}

/// Applies the scheduled changes that are due (every instance tries; each runs once).
/// Returns how many ran.
pub async fn run_due_schedules(state: &AppState) -> Result<usize, sqlx::Error> {
    let due = store::due_schedules(&state.db.pool, state.clock.now_ms()).await?;
    let mut ran = 0;
    for (schedule, requested_by) in due {
        let applied = apply_environment(
            state,
            &schedule.flag_key,
            &schedule.environment,
            EnvUpdate::Replace(schedule.proposed.clone()),
            Some(&requested_by),
            &schedule.requested_name,
            "scheduled_update",
            None,
            None,
            Some(&schedule.id),
        )
        .await;
        match applied {
            Ok(_) => ran += 1,
            Err(err) if err.code == "schedule_done" => {}
            Err(err) => {
                tracing::warn!(id = %schedule.id, error = %err.message, "a scheduled flag change failed");
                let mut conn = state.db.pool.acquire().await?;
                store::finish_schedule(&mut conn, &schedule.id, "failed").await?;
            }
        }
    }
    Ok(ran)
}

async fn run_schedules_loop(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(err) = run_due_schedules(&state).await {
            tracing::warn!(%err, "scheduled flag changes failed");
        }
    }
}

/// The environments and whether each requires approval.
#[utoipa::path(
    get,
    path = "/api/flags/environments",
    tag = "flags",
    responses((status = 200, description = "Environments", body = EnvironmentList))
)]
async fn list_environments(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<EnvironmentList>> {
    signed_in(&session)?;
    Ok(Json(EnvironmentList {
        environments: store::environments(&state.db.pool).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EnvironmentUpdate {
    pub require_approval: bool,
}

/// Turn approval on or off for an environment.
#[utoipa::path(
    put,
    path = "/api/flags/environments/{name}",
    tag = "flags",
    request_body = EnvironmentUpdate,
    responses(
        (status = 200, description = "The environment", body = EnvironmentSettings),
        (status = 404, description = "`unknown_environment`", body = ApiErrorBody),
    )
)]
async fn set_environment(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Json(update): Json<EnvironmentUpdate>,
) -> ApiResult<Json<EnvironmentSettings>> {
    signed_in(&session)?;
    environment_settings(&state, &name).await?;
    store::set_require_approval(&state.db.pool, &name, update.require_approval).await?;
    Ok(Json(environment_settings(&state, &name).await?))
}

/// Every segment.
#[utoipa::path(
    get,
    path = "/api/flags/segments",
    tag = "flags",
    responses((status = 200, description = "Segments", body = SegmentList))
)]
async fn list_segments(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<SegmentList>> {
    signed_in(&session)?;
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(SegmentList {
        segments: store::segments(&mut conn).await?,
    }))
}

/// Create or replace a segment.
#[utoipa::path(
    put,
    path = "/api/flags/segments/{key}",
    tag = "flags",
    request_body = Segment,
    responses(
        (status = 200, description = "The segment", body = Segment),
        (status = 400, description = "`invalid_segment` or `key_mismatch`", body = ApiErrorBody),
    )
)]
async fn put_segment(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
    Json(segment): Json<Segment>,
) -> ApiResult<Json<Segment>> {
    let user = signed_in(&session)?;
    if segment.key != key {
        return Err(ApiError::bad_request(
            "key_mismatch",
            "the path and the body name different segments",
        ));
    }
    segment
        .validate()
        .map_err(|e| ApiError::bad_request("invalid_segment", e.to_string()))?;
    let now = state.clock.now_ms();
    let mut tx = state.db.pool.begin().await?;
    let version = store::next_version(&mut tx).await?;
    let before = store::segments(&mut tx)
        .await?
        .into_iter()
        .find(|s| s.key == key);
    store::put_segment(&mut tx, &segment, now).await?;
    // Every flag must still compile with the new segment.
    let segments = segments_of(&mut tx).await?;
    for flag in store::all_flags(&mut tx).await? {
        flag.validate(&segments).map_err(|e| {
            ApiError::bad_request("invalid_segment", format!("flag {}: {e}", flag.key))
        })?;
    }
    store::audit(
        &mut tx,
        NewAudit::new(
            version,
            now,
            Some(&user.id),
            &user.username,
            "segment_update",
        )
        .change(before.as_ref().map(to_json), Some(to_json(&segment))),
    )
    .await?;
    publish_change(&state, tx, version).await?;
    Ok(Json(segment))
}

/// Delete a segment that no flag uses.
#[utoipa::path(
    delete,
    path = "/api/flags/segments/{key}",
    tag = "flags",
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`segment_not_found`", body = ApiErrorBody),
        (status = 409, description = "`segment_in_use`", body = ApiErrorBody),
    )
)]
async fn delete_segment(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    let user = signed_in(&session)?;
    let now = state.clock.now_ms();
    let mut tx = state.db.pool.begin().await?;
    let version = store::next_version(&mut tx).await?;
    let before = store::segments(&mut tx)
        .await?
        .into_iter()
        .find(|s| s.key == key)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "segment_not_found",
                format!("there is no segment {key:?}"),
            )
        })?;
    store::delete_segment(&mut tx, &key).await?;
    let segments = segments_of(&mut tx).await?;
    for flag in store::all_flags(&mut tx).await? {
        if flag.validate(&segments).is_err() {
            return Err(ApiError::conflict(
                "segment_in_use",
                format!("flag {} uses segment {key:?}", flag.key),
            ));
        }
    }
    store::audit(
        &mut tx,
        NewAudit::new(
            version,
            now,
            Some(&user.id),
            &user.username,
            "segment_delete",
        )
        .change(Some(to_json(&before)), None),
    )
    .await?;
    publish_change(&state, tx, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// `production` when absent.
    environment: Option<String>,
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
    // Every subscriber sends the same pre-encoded frame of a version (a shared `Bytes`),
    // so a change costs each connection a wake-up and a write, nothing more.
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
    Ok((
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(frames),
    )
        .into_response())
}
